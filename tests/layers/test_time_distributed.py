"""TimeDistributed against Keras 3 (torch backend) with the same weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers as L
from tests.keras_parity import keras


def _pair(make, x):
    ours, theirs = L.TimeDistributed(make(tapefit)), keras.layers.TimeDistributed(make(keras))
    ours(torch.from_numpy(x))
    theirs(x)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda lib: lib.layers.Dense(3, activation="relu"), (2, 5, 4)),
        (lambda lib: lib.layers.Conv2D(4, 3), (2, 3, 6, 6, 2)),
        (lambda lib: lib.layers.Flatten(), (2, 3, 4, 2)),
    ],
    ids=["dense", "conv2d", "flatten"],
)
def test_matches_keras(make, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    ours, theirs = _pair(make, x)
    got = ours(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(x)), rtol=1e-5, atol=1e-6)


def test_batch_normalization_keeps_per_timestep_statistics_in_training():
    # Each timestep has its own scale and offset, so per-step statistics differ from pooled ones.
    noise = np.random.default_rng(1).standard_normal((4, 3, 2))
    x = (noise * np.array([1, 5, 9])[None, :, None] + np.arange(3)[None, :, None]).astype("float32")
    ours, theirs = _pair(lambda lib: lib.layers.BatchNormalization(momentum=0.5), x)
    got = ours(torch.from_numpy(x), training=True).detach().numpy()
    np.testing.assert_allclose(
        got, keras.ops.convert_to_numpy(theirs(x, training=True)), rtol=1e-4, atol=1e-5
    )
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_mask_passes_through_and_configs_round_trip(tmp_path):
    tokens = torch.tensor([[3, 4, 0], [5, 0, 0]])
    out = L.TimeDistributed(L.Dense(2))(L.Embedding(8, 3, mask_zero=True)(tokens))
    assert torch.equal(out._keras_mask, tokens != 0)
    inp = tapefit.Input((3, 4))
    model = tapefit.Model(inp, L.TimeDistributed(L.Dense(2), name="td")(inp))
    model.save(tmp_path / "td.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "td.tapefit")
    x = torch.randn(2, 3, 4)
    torch.testing.assert_close(loaded(x), model(x))
    with pytest.raises(ValueError, match="wraps a tapefit layer"):
        L.TimeDistributed(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"needs inputs of shape \(batch, timesteps, \.\.\.\)"):
        L.TimeDistributed(L.Dense(2))(torch.zeros(2, 3))


def test_the_wrapped_layer_gets_each_timesteps_mask_as_in_keras():
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5)).astype("float32")
    mask = np.random.default_rng(3).random((2, 3, 4)) > 0.3
    mask[..., 0] = True
    ours = L.TimeDistributed(L.GlobalAveragePooling1D())
    theirs = keras.layers.TimeDistributed(keras.layers.GlobalAveragePooling1D())
    got = ours(torch.from_numpy(x), mask=torch.from_numpy(mask)).numpy()
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(theirs(x, mask=mask)), rtol=1e-5, atol=1e-6)
