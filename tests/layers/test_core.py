"""Core layers against Keras 3 (Embedding, Activation, Identity, Lambda) and TorchModuleWrapper
against plain torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import tapefit
from tapefit.layers.core import Activation, Embedding, Identity, Lambda, TorchModuleWrapper
from tapefit.layers.dense import Dense
from tapefit.layers.layer import Layer
from tapefit.layers.symbolic import Input, KerasTensor
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input


# ------------------------------------------------------------------------------------------- Embedding
@pytest.mark.parametrize("dtype", ["int64", "int32", "int16", "int8", "uint8"])
def test_embedding_matches_keras_for_any_int_dtype(dtype):
    ids = np.random.default_rng(0).integers(0, 10, (3, 5)).astype(dtype)
    assert_layer_parity(Embedding(10, 4), keras.layers.Embedding(10, 4), ids)


def test_embedding_output_shape_and_lookup():
    layer = Embedding(7, 3)
    ids = torch.tensor([[0, 6], [2, 2]])
    out = layer(ids)
    assert out.shape == (2, 2, 3)
    table = layer.get_weights()[0]
    np.testing.assert_array_equal(out.detach().numpy(), table[ids.numpy()])
    assert layer.get_weights()[0].shape == (7, 3)


def test_embedding_default_initializer_is_keras_uniform():
    layer = Embedding(500, 40)
    layer.build()
    w = layer.get_weights()[0]
    assert w.min() >= -0.05 and w.max() <= 0.05
    assert abs(w.std() - 0.1 / np.sqrt(12)) < 0.003  # U(-0.05, 0.05)


def test_embedding_float_indices_are_cast_like_keras():
    layer = Embedding(5, 2)
    out = layer(torch.tensor([1.0, 3.0]))
    np.testing.assert_array_equal(out.detach().numpy(), layer.get_weights()[0][[1, 3]])


def test_embedding_weights_argument_and_gradients():
    table = np.arange(12, dtype="float32").reshape(4, 3)
    layer = Embedding(4, 3, weights=[table])
    np.testing.assert_array_equal(layer.get_weights()[0], table)
    layer(torch.tensor([1, 1, 2])).sum().backward()
    np.testing.assert_array_equal(layer.embeddings.grad[:, 0].numpy(), [0, 2, 1, 0])


def test_embedding_errors_and_config():
    with pytest.raises(ValueError, match="input_dim"):
        Embedding(0, 3)
    with pytest.raises(ValueError, match="output_dim"):
        Embedding(3, 2.5)
    assert_config_round_trip(Embedding(3, 2, mask_zero=True))
    layer = Embedding(10, 4, embeddings_regularizer="l2")
    assert_config_round_trip(layer)
    layer(torch.tensor([1, 2]))
    assert len(layer.losses) == 1


def test_embedding_in_functional_graph():
    x = Input((6,), dtype="int64")
    y = Embedding(10, 4)(x)
    assert isinstance(y, KerasTensor) and y.shape == (None, 6, 4)


# ------------------------------------------------------------------------------------ Activation & co
@pytest.mark.parametrize(
    "name",
    [
        "relu",
        "sigmoid",
        "tanh",
        "softmax",
        "gelu",
        "silu",
        "elu",
        "selu",
        "softplus",
        "linear",
        "relu6",
        "hard_sigmoid",
    ],
)
def test_activation_matches_keras(name):
    assert_layer_parity(Activation(name), keras.layers.Activation(name), random_input((4, 6)))


def test_activation_config_and_errors():
    assert_config_round_trip(Activation("relu"))
    assert Activation("relu").get_config()["activation"] == "relu"
    with pytest.raises(ValueError, match="relu"):
        Activation("reluu")


def test_identity_returns_input_unchanged():
    x = torch.randn(3, 4)
    assert Identity()(x) is x
    assert_config_round_trip(Identity())
    assert Identity().count_params() == 0


# --------------------------------------------------------------------------------------------- Lambda
def test_lambda_eager_symbolic_and_arguments():
    layer = Lambda(lambda x, scale: x * scale, arguments={"scale": 3.0})
    np.testing.assert_allclose(layer(torch.ones(2, 2)).numpy(), 3.0)
    y = Lambda(lambda x: x[:, :2] * 2)(Input((5,)))
    assert y.shape == (None, 2)


def test_lambda_passes_training_when_the_function_takes_it():
    seen = []

    def fn(x, training=None):
        seen.append(training)
        return x

    layer = Lambda(fn)
    layer(torch.ones(1), training=True)
    layer(torch.ones(1))
    assert seen == [True, False]


def test_lambda_on_a_list_of_inputs():
    out = Lambda(lambda xs: xs[0] - xs[1])([torch.ones(2), torch.full((2,), 3.0)])
    np.testing.assert_allclose(out.numpy(), -2.0)


def test_lambda_output_shape_overrides_inference():
    layer = Lambda(lambda x: x, output_shape=(7,))
    assert layer.compute_output_shape((None, 3)) == (None, 7)
    assert Lambda(lambda x: x.sum(-1)).compute_output_shape((None, 3, 4)) == (None, 3)


def test_unregistered_lambda_cannot_be_saved_by_config():
    layer = Lambda(lambda x: x + 1)
    with pytest.raises(ValueError, match="register_serializable"):
        layer.get_config()


def test_registered_function_round_trips_by_name():
    @tapefit.saving.register_serializable(package="test_core")
    def add_one(x):
        return x + 1

    layer = Lambda(add_one, name="plus_one")
    config = layer.get_config()
    assert config["function"] == "test_core>add_one"
    assert "code" not in str(config)
    clone = Lambda.from_config(config)
    assert clone.function is add_one and clone.get_config() == config
    assert Lambda.from_config(Lambda("relu").get_config()).function is tapefit.activations.relu


def test_lambda_from_config_refuses_unknown_names():
    with pytest.raises(ValueError, match="Unknown object"):
        Lambda.from_config({"function": "nowhere>fn", "arguments": {}})


# ----------------------------------------------------------------------------------- TorchModuleWrapper
def test_wrapped_module_parameters_are_the_layer_weights():
    lin = nn.Linear(3, 2)
    layer = TorchModuleWrapper(lin)
    assert [id(w) for w in layer.trainable_weights] == [id(lin.weight), id(lin.bias)]
    assert [w.shape for w in layer.get_weights()] == [(2, 3), (2,)]
    assert layer.count_params() == 8
    x = torch.randn(4, 3)
    torch.testing.assert_close(layer(x), lin(x))


def test_wrapped_module_switches_between_train_and_eval():
    seen = []

    class Probe(nn.Module):
        def forward(self, x):
            seen.append(self.training)
            return x

    layer = TorchModuleWrapper(nn.Sequential(Probe(), nn.Dropout(0.5)))
    x = torch.ones(1000)
    assert torch.equal(layer(x), x)
    dropped = layer(x, training=True)
    assert (dropped == 0).any() and seen == [False, True]


def test_wrapped_batchnorm_buffers_are_non_trainable_weights():
    layer = TorchModuleWrapper(nn.BatchNorm1d(3))
    names = [tuple(w.shape) for w in layer.non_trainable_weights]
    assert names == [(3,), (3,)]  # running_mean, running_var (num_batches_tracked is an int buffer)
    before = layer.get_weights()[2].copy()
    layer(torch.randn(8, 3) + 5, training=True)
    assert not np.allclose(layer.get_weights()[2], before)


class _Net(Layer):
    def __init__(self):
        super().__init__()
        self.body = TorchModuleWrapper(nn.Sequential(nn.Linear(4, 8), nn.Tanh()))
        self.head = Dense(1)

    def call(self, x, training=False):
        return self.head(self.body(x))


def test_wrapped_module_trains_with_the_rest_of_the_model():
    torch.manual_seed(0)
    net = _Net()
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    net(x)
    assert len(net.trainable_weights) == 4  # torch Linear weight+bias, Dense kernel+bias
    start = [w.detach().clone() for w in net.trainable_weights]
    opt = torch.optim.SGD(net.trainable_weights, lr=0.1)
    losses = []
    for _ in range(20):
        loss = ((net(x, training=True) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert all(not torch.equal(a, b) for a, b in zip(start, net.trainable_weights))


def test_frozen_wrapper_has_no_trainable_weights():
    layer = TorchModuleWrapper(nn.Linear(2, 2))
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2
    assert TorchModuleWrapper(nn.Linear(2, 2), trainable=False).trainable_weights == []


def test_wrapper_in_a_functional_graph_and_errors():
    y = TorchModuleWrapper(nn.Conv1d(3, 5, 3))(Input((3, 10)))
    assert y.shape == (None, 5, 8)
    with pytest.raises(NotImplementedError, match="save_weights"):
        TorchModuleWrapper(nn.Linear(2, 2)).get_config()
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchModuleWrapper(lambda x: x)
    with pytest.raises(ValueError, match="lazy"):
        TorchModuleWrapper(nn.LazyLinear(3))
