"""RMSNormalization and UnitNormalization against Keras 3 (same weights, same inputs), against their
documented formulas where Keras's torch backend is wrong, and their gradients against plain torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tapefit.layers.rms_normalization import RMSNormalization
from tapefit.layers.symbolic import Input
from tapefit.layers.unit_normalization import UnitNormalization
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input


def _random_scale(layer, x, seed=1):
    layer(torch.from_numpy(x))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.standard_normal(w.shape).astype("float32") for w in layer.get_weights()])
    return layer


def _rms_formula(x, axes, epsilon, scale):
    """Keras's documented formula ``x * rsqrt(mean(square(x)) + epsilon) * scale`` in torch."""
    ndim = x.dim()
    axes = sorted(a % ndim for a in axes)
    bshape = [x.shape[d] if d in axes else 1 for d in range(ndim)]
    return x * torch.rsqrt(x.square().mean(dim=axes, keepdim=True) + epsilon) * scale.reshape(bshape)


# ---------------------------------------------------------------------------------- RMSNormalization
@pytest.mark.parametrize(
    "shape, axis, epsilon",
    [
        ((4, 7), -1, 1e-6),
        ((3, 4, 5), -1, 1e-3),
        ((3, 4, 5), [1, 2], 1e-6),
        ((2, 3, 4, 5), [3, 2], 0.5),
        ((3, 4, 5), [-2, -1], 1e-6),
        ((3, 4, 5), 2, 1.0),
    ],
)
def test_rms_matches_keras(shape, axis, epsilon):
    x = random_input(shape) * 0.3  # small values, so epsilon changes the result visibly
    ours = _random_scale(RMSNormalization(axis=axis, epsilon=epsilon), x)
    assert_layer_parity(ours, keras.layers.RMSNormalization(axis=axis, epsilon=epsilon), x)


@pytest.mark.parametrize("shape, axis", [((3, 4, 5), 1), ((2, 3, 4, 5), [1, 3]), ((3, 4, 5), 0)])
def test_rms_on_inner_axes_follows_the_formula(shape, axis):
    # Keras's torch backend hands these to F.rms_norm, which normalizes the trailing dims (and fails
    # on the scale's shape); the reference is the formula.
    x = torch.from_numpy(random_input(shape))
    ours = _random_scale(RMSNormalization(axis=axis, epsilon=1e-2), x.numpy())
    axes = axis if isinstance(axis, list) else [axis]
    torch.testing.assert_close(ours(x), _rms_formula(x, axes, 1e-2, ours.scale.detach()))


@pytest.mark.parametrize("shape, axis", [((3, 4, 5), -1), ((3, 4, 5), [1, 2]), ((3, 4, 5), 1)])
def test_rms_gradients_match_plain_torch(shape, axis):
    x_np = random_input(shape)
    ours = _random_scale(RMSNormalization(axis=axis, epsilon=1e-3), x_np)
    scale = ours.scale.detach().clone().requires_grad_()
    x1, x2 = torch.from_numpy(x_np).requires_grad_(), torch.from_numpy(x_np).requires_grad_()
    up = torch.from_numpy(random_input(shape, seed=3))
    axes = axis if isinstance(axis, list) else [axis]
    g1 = torch.autograd.grad((ours(x1) * up).sum(), [x1, ours.scale])
    g2 = torch.autograd.grad((_rms_formula(x2, axes, 1e-3, scale) * up).sum(), [x2, scale])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_rms_gradients_match_keras():
    x_np = random_input((3, 4, 5))
    ours = _random_scale(RMSNormalization(axis=[1, 2]), x_np)
    theirs = keras.layers.RMSNormalization(axis=[1, 2])
    theirs(x_np)
    theirs.set_weights(ours.get_weights())
    x1, x2 = torch.from_numpy(x_np).requires_grad_(), torch.from_numpy(x_np).requires_grad_()
    up = torch.from_numpy(random_input((3, 4, 5), seed=3))
    g1 = torch.autograd.grad((ours(x1) * up).sum(), [x1, ours.scale])
    g2 = torch.autograd.grad((theirs(x2) * up).sum(), [x2, theirs.scale.value])
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.detach().numpy(), atol=1e-5, rtol=1e-5)


def test_rms_half_precision_computes_in_float32_like_keras():
    x = random_input((4, 6, 64)) * 40
    scale = random_input((64,), seed=1)
    ours, theirs = RMSNormalization(dtype="bfloat16"), keras.layers.RMSNormalization(dtype="bfloat16")
    ours(torch.from_numpy(x)), theirs(x)
    with torch.no_grad():
        ours.scale.copy_(torch.from_numpy(scale))
    theirs.scale.assign(scale)
    y = ours(torch.from_numpy(x))
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, theirs(x), atol=0, rtol=0)
    inner = RMSNormalization(axis=1, dtype="bfloat16")
    xb = torch.from_numpy(x).to(torch.bfloat16)
    expected = _rms_formula(xb.float(), [1], 1e-6, torch.ones(6)).to(torch.bfloat16)
    torch.testing.assert_close(inner(xb), expected, atol=0, rtol=0)


def test_rms_weights_and_config_match_keras():
    ours, theirs = (
        RMSNormalization(axis=[1, 2], epsilon=1e-4),
        keras.layers.RMSNormalization(axis=[1, 2], epsilon=1e-4),
    )
    x = random_input((2, 3, 4))
    ours(torch.from_numpy(x)), theirs(x)
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()] == [(3, 4)]
    assert [w.path.split("/")[-1] for w in theirs.weights] == ["scale"]
    assert np.array_equal(ours.get_weights()[0], np.ones((3, 4), "float32"))
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) == set(keras_config) - {"dtype"}
    assert (config["axis"], config["epsilon"]) == (keras_config["axis"], keras_config["epsilon"])
    assert_config_round_trip(RMSNormalization(axis=-2, epsilon=1e-3))
    # A config saved by Keras after build (axis turned into a list) loads.
    clone = RMSNormalization.from_config({k: v for k, v in keras_config.items() if k != "dtype"})
    assert clone.axis == [1, 2] and clone.epsilon == 1e-4


def test_rms_shapes_and_errors():
    assert RMSNormalization()(Input((7, 3))).shape == (None, 7, 3)
    for bad in ("last", [1, "2"], [], True):
        with pytest.raises(TypeError, match="axis"):
            RMSNormalization(axis=bad)
    with pytest.raises(ValueError, match="out of bounds"):
        RMSNormalization(axis=2)(torch.ones(2, 3))
    y = RMSNormalization()(torch.tensor([[3, 4]]))  # integers give floats
    torch.testing.assert_close(y, torch.tensor([[3.0, 4.0]]) / (12.5 + 1e-6) ** 0.5)


# --------------------------------------------------------------------------------- UnitNormalization
@pytest.mark.parametrize(
    "shape, axis", [((4, 7), -1), ((3, 4, 5), 1), ((3, 4, 5), [1, 2]), ((2, 3, 4, 5), (0, 2)), ((3, 4), 0)]
)
def test_unit_matches_keras(shape, axis):
    x = random_input(shape)
    assert_layer_parity(UnitNormalization(axis=axis), keras.layers.UnitNormalization(axis=axis), x)
    axes = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
    norms = np.sqrt((UnitNormalization(axis=axis)(torch.from_numpy(x)).numpy() ** 2).sum(axis=axes))
    np.testing.assert_allclose(norms, 1.0, rtol=1e-6)


def test_unit_zero_slices_and_integers_like_keras():
    x = np.array([[0.0, 0.0, 0.0], [1e-14, 0.0, 0.0], [3.0, 0.0, 4.0]], "float32")
    assert_layer_parity(UnitNormalization(), keras.layers.UnitNormalization(), x, atol=1e-6)
    ints = np.arange(6).reshape(2, 3)
    expected = keras.ops.convert_to_numpy(keras.layers.UnitNormalization()(ints))
    np.testing.assert_allclose(UnitNormalization()(torch.from_numpy(ints)).numpy(), expected, rtol=1e-6)


def test_unit_gradient_matches_the_formula_and_stays_finite_at_zero():
    x_np = random_input((3, 4, 5))
    x1, x2 = torch.from_numpy(x_np).requires_grad_(), torch.from_numpy(x_np).requires_grad_()
    up = torch.from_numpy(random_input((3, 4, 5), seed=2))
    g1 = torch.autograd.grad((UnitNormalization(axis=[1, 2])(x1) * up).sum(), x1)[0]
    g2 = torch.autograd.grad((x2 * x2.square().sum(dim=(1, 2), keepdim=True).rsqrt() * up).sum(), x2)[0]
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-5)
    zero = torch.zeros(2, 3, requires_grad=True)
    UnitNormalization()(zero).sum().backward()
    assert torch.isfinite(zero.grad).all()


def test_unit_config_mask_and_errors():
    ours, theirs = UnitNormalization(axis=(1, 2)), keras.layers.UnitNormalization(axis=(1, 2))
    assert set(ours.get_config()) == set(theirs.get_config()) - {"dtype"}
    assert ours.get_config()["axis"] == theirs.get_config()["axis"] == [1, 2]
    assert_config_round_trip(UnitNormalization(axis=-2))
    assert ours.built and ours.get_weights() == [] and ours.supports_masking
    assert UnitNormalization()(Input((7, 3))).shape == (None, 7, 3)
    for bad in ("last", 1.0, [1, "2"]):
        with pytest.raises(TypeError, match="axis"):
            UnitNormalization(axis=bad)
    with pytest.raises(ValueError, match="out of bounds"):
        UnitNormalization(axis=[1, 3])(torch.ones(2, 3, 4))
