"""Activation layers against Keras 3: same options, same inputs, same outputs (and PReLU weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tapefit.layers.activation_layers import ELU, LeakyReLU, PReLU, ReLU, Softmax
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input


def _spread_input(shape=(4, 8)):
    """Values from -10 to 10 so that thresholds, slopes and ceilings are all exercised."""
    return (random_input(shape) * 5).astype("float32")


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"max_value": 6.0},
        {"max_value": 2.5},
        {"negative_slope": 0.1},
        {"threshold": 1.5},
        {"negative_slope": 0.2, "threshold": 1.0},
        {"negative_slope": 0.2, "max_value": 4.0},
        {"negative_slope": 0.3, "max_value": 3.0, "threshold": 0.5},
        {"max_value": 1.0, "threshold": 2.0},
    ],
)
def test_relu_matches_keras(kwargs):
    assert_layer_parity(ReLU(**kwargs), keras.layers.ReLU(**kwargs), _spread_input())


def test_relu_gradient_matches_formula():
    x = torch.tensor([-2.0, 0.5, 3.0, 8.0], requires_grad=True)
    ReLU(max_value=6.0, negative_slope=0.1, threshold=1.0)(x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.1, 0.1, 1.0, 0.0])


@pytest.mark.parametrize(
    "bad", [{"max_value": -1.0}, {"negative_slope": -0.1}, {"threshold": -1.0}, {"negative_slope": None}]
)
def test_relu_rejects_bad_arguments(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        ReLU(**bad)


def test_leaky_relu_default_slope_is_keras_3s():
    assert keras.layers.LeakyReLU().negative_slope == LeakyReLU().negative_slope == 0.3
    assert_layer_parity(LeakyReLU(), keras.layers.LeakyReLU(), _spread_input())
    assert_layer_parity(
        LeakyReLU(negative_slope=0.05), keras.layers.LeakyReLU(negative_slope=0.05), _spread_input()
    )
    assert LeakyReLU(alpha=0.2).negative_slope == 0.2
    with pytest.raises(ValueError, match="negative_slope"):
        LeakyReLU(-1.0)


@pytest.mark.parametrize("axis", [-1, 1, 0, [1, 2], (-2, -1)])
def test_softmax_matches_keras(axis):
    assert_layer_parity(Softmax(axis=axis), keras.layers.Softmax(axis=axis), random_input((2, 3, 5)))


def test_softmax_mask_matches_keras():
    x = random_input((2, 5))
    mask = np.array([[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]], dtype=bool)
    ours = Softmax()(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()
    theirs = keras.ops.convert_to_numpy(keras.layers.Softmax()(x, mask=mask))
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert (ours[~mask] == 0).all()


def test_softmax_errors():
    with pytest.raises(ValueError, match="axis"):
        Softmax(axis="last")
    with pytest.raises(ValueError, match="broadcast"):
        Softmax()(torch.ones(2, 3), mask=torch.ones(1, 2, 3, dtype=torch.bool))
    # A padding mask (batch, steps) on (batch, steps, classes) scores, as Keras refuses it too.
    with pytest.raises(ValueError, match=r"inputs of shape \(2, 4, 3\) and a mask of shape \(2, 4\)"):
        Softmax()(torch.ones(2, 4, 3), mask=torch.ones(2, 4, dtype=torch.bool))


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_matches_keras(alpha):
    assert_layer_parity(ELU(alpha), keras.layers.ELU(alpha), _spread_input())


@pytest.mark.parametrize("shape, shared_axes", [((4, 6), None), ((2, 5, 6, 3), [1, 2]), ((2, 5, 3), 1)])
def test_prelu_matches_keras_with_random_alpha(shape, shared_axes):
    ours = PReLU(shared_axes=shared_axes)
    ours(torch.from_numpy(_spread_input(shape)))
    alpha_shape = ours.get_weights()[0].shape
    ours.set_weights([np.random.default_rng(1).uniform(0, 1, alpha_shape).astype("float32")])
    assert_layer_parity(ours, keras.layers.PReLU(shared_axes=shared_axes), _spread_input(shape))


def test_prelu_weight_shape_regularizer_and_errors():
    layer = PReLU(shared_axes=[1, 2], alpha_regularizer="l2")
    layer(torch.ones(2, 4, 4, 3))
    assert layer.get_weights()[0].shape == (1, 1, 3)
    assert len(layer.losses) == 1 and len(layer.trainable_weights) == 1
    with pytest.raises(ValueError, match="shared_axes"):
        PReLU(shared_axes=[0])(torch.ones(2, 3))


@pytest.mark.parametrize(
    "layer",
    [
        ReLU(max_value=6.0, negative_slope=0.1, threshold=0.5),
        LeakyReLU(0.2),
        Softmax(axis=[1, 2]),
        ELU(0.7),
        PReLU(alpha_initializer="ones", shared_axes=[1]),
    ],
    ids=lambda layer: type(layer).__name__,
)
def test_config_round_trip(layer):
    assert_config_round_trip(layer)
