"""activations, initializers and regularizers against Keras 3 (torch backend) and their formulas."""

import math

import numpy as np
import pytest
import torch

import tapefit
from tapefit import activations, initializers, regularizers
from tests.keras_parity import keras

X = np.linspace(-5, 5, 40, dtype="float32").reshape(1, 40)  # even: glu halves the last axis


@pytest.mark.parametrize("name", sorted(activations._ALL) + ["swish", "hard_swish"])
def test_activation_matches_keras(name):
    ours = activations.get(name)(torch.from_numpy(X))
    theirs = keras.ops.convert_to_numpy(keras.activations.get(name)(X))
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(negative_slope=0.1),
        dict(max_value=2.0),
        dict(threshold=1.0),
        dict(negative_slope=0.2, threshold=0.5, max_value=3.0),
    ],
)
def test_relu_options_match_keras(kwargs):
    ours = activations.relu(torch.from_numpy(X), **kwargs)
    theirs = keras.ops.convert_to_numpy(keras.activations.relu(X, **kwargs))
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-6)


def test_activation_errors_and_serialization():
    with pytest.raises(ValueError, match="Did you mean 'relu'"):
        activations.get("rellu")
    assert activations.get(None) is activations.linear
    assert activations.serialize(activations.get("swish")) == "silu"
    with pytest.raises(ValueError, match="register_serializable"):
        activations.serialize(lambda x: x)


@pytest.mark.parametrize("shape", [(30, 40), (3, 3, 16, 32), (5, 7, 8)])
def test_fans_match_keras(shape):
    from keras.src.initializers.random_initializers import compute_fans as keras_fans

    assert initializers.compute_fans(shape) == tuple(int(f) for f in keras_fans(shape))


@pytest.mark.parametrize(
    "name,var_fn",
    [
        ("glorot_uniform", lambda fi, fo: 2.0 / (fi + fo)),
        ("glorot_normal", lambda fi, fo: 2.0 / (fi + fo)),
        ("he_uniform", lambda fi, fo: 2.0 / fi),
        ("he_normal", lambda fi, fo: 2.0 / fi),
        ("lecun_uniform", lambda fi, fo: 1.0 / fi),
        ("lecun_normal", lambda fi, fo: 1.0 / fi),
    ],
)
def test_variance_scaling_presets_have_keras_variance_and_bounds(name, var_fn):
    shape = (3, 3, 64, 128)  # fan_in 576, fan_out 1152
    w = initializers.get(name)(shape, device="cpu").double()
    fan_in, fan_out = initializers.compute_fans(shape)
    assert w.var().item() == pytest.approx(var_fn(fan_in, fan_out), rel=0.05)
    if "uniform" in name:
        assert w.abs().max().item() <= math.sqrt(3 * var_fn(fan_in, fan_out)) + 1e-6
    else:  # truncated at two (untruncated) standard deviations, rescaled by 0.8796
        assert w.abs().max().item() <= 2 * math.sqrt(var_fn(fan_in, fan_out)) / 0.87962566103423978 + 1e-6


def test_simple_initializers_and_seeds():
    assert torch.equal(initializers.get("zeros")((2, 2), device="cpu"), torch.zeros(2, 2))
    assert torch.equal(initializers.get("ones")((2,), device="cpu"), torch.ones(2))
    assert torch.equal(initializers.Constant(3.0)((2,), device="cpu"), torch.full((2,), 3.0))
    a = initializers.RandomNormal(seed=5)((100,), device="cpu")
    b = initializers.RandomNormal(seed=5)((100,), device="cpu")
    assert torch.equal(a, b) and a.std().item() == pytest.approx(0.05, rel=0.3)
    q = initializers.Orthogonal()((6, 6), device="cpu")
    torch.testing.assert_close(q @ q.T, torch.eye(6), atol=1e-5, rtol=0)
    assert torch.equal(initializers.Identity()((3, 3), device="cpu"), torch.eye(3))
    with pytest.raises(ValueError, match="Did you mean 'glorot_uniform'"):
        initializers.get("glorot_unifrom")
    cfg = initializers.serialize(initializers.VarianceScaling(2.0, "fan_out", "uniform", seed=1))
    again = initializers.deserialize(cfg)
    assert again.get_config() == {
        "scale": 2.0,
        "mode": "fan_out",
        "distribution": "uniform",
        "seed": 1,
        "input_axes": None,
        "output_axes": None,
    }


def test_regularizers_match_keras_and_reach_model_losses():
    w = torch.randn(4, 3)
    for ours, theirs in [
        (regularizers.L1(0.1), keras.regularizers.L1(0.1)),
        (regularizers.L2(0.2), keras.regularizers.L2(0.2)),
        (regularizers.L1L2(0.1, 0.3), keras.regularizers.L1L2(0.1, 0.3)),
    ]:
        expected = float(keras.ops.convert_to_numpy(theirs(w.numpy())))
        assert ours(w).item() == pytest.approx(expected, rel=1e-5)
    model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(3, kernel_regularizer="l2")])
    kernel = model.layers[0].kernel
    (penalty,) = model.losses
    assert penalty.item() == pytest.approx(0.01 * kernel.detach().square().sum().item(), rel=1e-6)
    model.compile(optimizer="sgd", loss="mse")
    data_loss = float(torch.nn.functional.mse_loss(model(torch.ones(2, 4)).detach(), torch.zeros(2, 3)))
    total = model.evaluate(np.ones((2, 4)), np.zeros((2, 3)), verbose=0)
    assert total == pytest.approx(data_loss + penalty.item(), rel=1e-5)


def test_config_device_and_errors():
    assert tapefit.config.get_device() == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            tapefit.config.set_device("cuda")
    with pytest.raises(ValueError, match="image_data_format"):
        tapefit.config.set_image_data_format("nhwc")
    assert tapefit.config.epsilon() == 1e-7 and tapefit.config.floatx() == "float32"
