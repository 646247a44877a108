"""AlphaDropout (identity at inference; in training Keras's a, b and the mean and variance they keep)
and ActivityRegularization (the added loss by hand and in Keras, and its effect in fit)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import constraints, regularizers
from tapefit.layers.dense import Dense
from tapefit.layers.regularization import ActivityRegularization, AlphaDropout
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input

N = 400_000  # elements for the statistical checks: standard error of the mean and std about 0.0016

ALPHA_P = -1.6732632423543772848170429916717 * 1.0507009873554804934193349852946


def _a_b(rate):
    a = ((1 - rate) * (1 + rate * ALPHA_P**2)) ** -0.5
    return a, -a * ALPHA_P * rate


# -------------------------------------------------------------------------------------- AlphaDropout
def test_alpha_dropout_is_the_identity_at_inference_like_keras():
    x = random_input((2, 4, 3))
    assert_layer_parity(AlphaDropout(0.3), keras.layers.AlphaDropout(0.3), x, training=False, atol=0)
    t = torch.from_numpy(x)
    assert AlphaDropout(0.3)(t) is t
    assert AlphaDropout(0.0)(t, training=True) is t


@pytest.mark.parametrize("rate", [0.05, 0.2, 0.5])
def test_alpha_dropout_keeps_mean_and_variance(rate):
    x = torch.randn(N, generator=torch.Generator().manual_seed(1))
    y = AlphaDropout(rate, seed=3)(x, training=True)
    assert abs(y.mean().item() - x.mean().item()) < 0.008
    assert abs(y.std().item() - x.std().item()) < 0.008
    a, b = _a_b(rate)
    dropped = torch.isclose(y, torch.tensor(a * ALPHA_P + b), rtol=0, atol=1e-6)
    assert abs(dropped.float().mean().item() - rate) < 0.005


@pytest.mark.parametrize("rate", [0.1, 0.4])
def test_alpha_dropout_values_follow_keras_formula(rate):
    a, b = _a_b(rate)
    x = torch.from_numpy(random_input((2000,)))
    y = AlphaDropout(rate, seed=0)(x, training=True)
    kept = torch.isclose(y, a * x + b, atol=1e-6)
    torch.testing.assert_close(y[~kept], torch.full_like(y[~kept], a * ALPHA_P + b))
    assert abs((~kept).float().mean().item() - rate) < 0.04
    # Keras's random stream differs, but on ones its output takes the same two values as ours.
    ones = np.ones(4000, "float32")
    theirs = np.unique(
        keras.ops.convert_to_numpy(keras.layers.AlphaDropout(rate, seed=0)(ones, training=True))
    )
    ours = np.unique(AlphaDropout(rate, seed=0)(torch.from_numpy(ones), training=True).numpy())
    np.testing.assert_allclose(ours, theirs, rtol=1e-6)
    np.testing.assert_allclose(ours, sorted([a * ALPHA_P + b, a + b]), rtol=1e-6)


def test_alpha_dropout_gradient_is_a_on_kept_units_and_zero_on_dropped():
    a, b = _a_b(0.3)
    x = torch.randn(1000, requires_grad=True)
    y = AlphaDropout(0.3, seed=1)(x, training=True)
    y.sum().backward()
    dropped = torch.isclose(y.detach(), torch.tensor(a * ALPHA_P + b))
    torch.testing.assert_close(x.grad, torch.where(dropped, 0.0, a))


def test_alpha_dropout_noise_shape_and_seed():
    layer = AlphaDropout(0.5, noise_shape=(None, 1, 6), seed=5)
    y = layer(torch.ones(300, 7, 6), training=True)
    assert (y == y[:, :1, :]).all()  # one mask for every timestep
    assert abs((y[:, 0, :] < 0).float().mean().item() - 0.5) < 0.05
    with pytest.raises(ValueError, match="noise_shape"):
        layer(torch.ones(2, 6), training=True)
    x = torch.randn(1000)
    first, twin = AlphaDropout(0.5, seed=7), AlphaDropout(0.5, seed=7)
    assert torch.equal(first(x, training=True), twin(x, training=True))
    assert not torch.equal(first(x, training=True), twin(x, training=False))


def test_alpha_dropout_config_and_errors():
    ours = AlphaDropout(0.2, noise_shape=(None, 1, 4), seed=2)
    theirs = keras.layers.AlphaDropout(0.2, noise_shape=(None, 1, 4), seed=2)
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) == set(keras_config) - {"dtype"}
    assert (config["rate"], config["seed"]) == (keras_config["rate"], keras_config["seed"])
    assert config["noise_shape"] == list(keras_config["noise_shape"])
    assert_config_round_trip(ours)
    assert ours.supports_masking and ours.get_weights() == []
    for bad in (-0.1, 1.0, 1.5, "0.5"):
        with pytest.raises(ValueError, match="rate"):
            AlphaDropout(bad)
    with pytest.raises(ValueError, match="AlphaDropout: noise_shape"):
        AlphaDropout(0.1, noise_shape=(2, 0))


# ---------------------------------------------------------------------------- ActivityRegularization
def test_activity_regularization_adds_the_hand_computed_loss_like_keras():
    x = random_input((4, 3, 2))
    ours, theirs = (
        ActivityRegularization(l1=0.01, l2=0.1),
        keras.layers.ActivityRegularization(l1=0.01, l2=0.1),
    )
    t = torch.from_numpy(x)
    assert ours(t) is t
    expected = (0.01 * np.abs(x).sum() + 0.1 * np.square(x).sum()) / 4
    theirs(x)
    [loss] = ours.losses
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert loss.item() == pytest.approx(float(keras.ops.convert_to_numpy(theirs.losses[0])), rel=1e-6)
    ours(t[:2])  # each call replaces the last call's loss
    assert len(ours.losses) == 1
    assert ours.losses[0].item() == pytest.approx(
        (0.01 * np.abs(x[:2]).sum() + 0.1 * np.square(x[:2]).sum()) / 2
    )
    ours(t[:0])
    assert ours.losses[0].item() == 0.0  # Keras's divide_no_nan


def test_activity_regularization_gradient_is_the_penalty_derivative():
    x = torch.randn(5, 3, requires_grad=True)
    layer = ActivityRegularization(l1=0.2, l2=0.3)
    layer(x)
    layer.losses[0].backward()
    torch.testing.assert_close(x.grad, (0.2 * x.sign() + 0.6 * x).detach() / 5)


def test_activity_regularization_in_fit_matches_keras():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 5)).astype("float32"), rng.standard_normal((24, 2)).astype("float32")
    ours = tapefit.Sequential([tapefit.Input((5,)), Dense(2), ActivityRegularization(l1=0.05, l2=0.2)])
    theirs = keras.Sequential(
        [keras.Input((5,)), keras.layers.Dense(2), keras.layers.ActivityRegularization(0.05, 0.2)]
    )
    theirs.set_weights(ours.get_weights())
    out = ours(torch.from_numpy(x)).detach().numpy()
    reg = (0.05 * np.abs(out).sum() + 0.2 * np.square(out).sum()) / 24
    assert [v.item() for v in ours.losses] == pytest.approx([reg], rel=1e-5)
    for model in (ours, theirs):
        model.compile(optimizer="sgd", loss="mse")
    mse = np.mean((out - y) ** 2)
    assert ours.evaluate(x, y, batch_size=24, verbose=0) == pytest.approx(mse + reg, rel=1e-5)
    h1 = ours.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    h2 = theirs.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
    np.testing.assert_allclose(h1.history["loss"], h2.history["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_activity_regularization_config_and_errors():
    ours, theirs = ActivityRegularization(l1=0.1), keras.layers.ActivityRegularization(l1=0.1)
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) == set(keras_config) - {"dtype"}
    assert (config["l1"], config["l2"]) == (keras_config["l1"], keras_config["l2"])
    assert_config_round_trip(ActivityRegularization(l1=0.5, l2=2))
    assert ours.supports_masking and ours.get_weights() == []
    for bad in (-1.0, "0.1", None):
        with pytest.raises(ValueError, match="l2"):
            ActivityRegularization(l2=bad)


# ------------------------------------------------------------------- serialize(None), as Keras's
def test_serialize_none_gives_none_like_keras_and_layer_configs_keep_none():
    assert regularizers.serialize(None) is None is keras.regularizers.serialize(None)
    assert constraints.serialize(None) is None is keras.constraints.serialize(None)
    config = Dense(3).get_config()
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer", "kernel_constraint"):
        assert config[key] is None
    config = Dense(3, kernel_regularizer="l2", bias_constraint="non_neg").get_config()
    assert config["kernel_regularizer"] == {"class_name": "L2", "config": {"l2": 0.01}}
    assert config["bias_constraint"] == {"class_name": "NonNeg", "config": {}}
