"""pad_sequences against Keras 3's, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit.utils import pad_sequences
from tests.keras_parity import keras

SEQUENCES = [[1, 2, 3, 4], [5], [], [6, 7]]


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("truncating", ["pre", "post"])
@pytest.mark.parametrize("maxlen", [None, 0, 2, 6])
def test_matches_keras(padding, truncating, maxlen):
    kwargs = {"maxlen": maxlen, "padding": padding, "truncating": truncating}
    got = pad_sequences(SEQUENCES, **kwargs)
    if maxlen == 0:  # Keras's s[-0:] keeps whole sequences and then fails; no step is kept here
        assert got.shape == (4, 0)
        return
    want = keras.utils.pad_sequences(SEQUENCES, **kwargs)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == want.dtype == np.int32


def test_values_dtypes_and_steps_with_features():
    steps = [np.ones((3, 2)), np.full((1, 2), 2.0)]
    got = pad_sequences(steps, dtype="float32", value=-1.0, padding="post")
    np.testing.assert_array_equal(
        got, keras.utils.pad_sequences(steps, dtype="float32", value=-1.0, padding="post")
    )
    assert got.shape == (2, 3, 2)
    words = pad_sequences([["a", "b"], ["c"]], dtype=object, value="<pad>")
    assert words.tolist() == [["a", "b"], ["<pad>", "c"]]


def test_pads_for_a_masked_model():
    padded = pad_sequences([[3, 1, 4], [1]])  # "pre": the default, as in Keras
    emb = tapefit.layers.Embedding(5, 2, mask_zero=True)(torch.from_numpy(padded))
    assert emb._keras_mask.tolist() == [[True, True, True], [False, False, True]]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match='padding must be "pre" or "post", got \'middle\''):
        pad_sequences(SEQUENCES, padding="middle")
    with pytest.raises(ValueError, match='truncating must be "pre" or "post"'):
        pad_sequences(SEQUENCES, truncating="end")
    with pytest.raises(ValueError, match="maxlen must be a non-negative integer"):
        pad_sequences(SEQUENCES, maxlen=-1)
    with pytest.raises(ValueError, match="item 1 is 5, which has no length"):
        pad_sequences([[1], 5])
    with pytest.raises(ValueError, match="needs a string dtype; got dtype=int32"):
        pad_sequences([["a"]], value="<pad>")
    with pytest.raises(ValueError, match=r"sequence 1 has steps of shape \(3,\)"):
        pad_sequences([np.ones((2, 2)), np.ones((1, 3))], dtype="float32")
