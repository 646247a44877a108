"""``EinsumDense`` against Keras 3 (torch backend) with the same weights, and Keras's fan rule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tapefit import initializers
from tapefit import layers as L
from tests.keras_parity import keras

CASES = [
    # (equation, output_shape, bias_axes, input shape): Keras's documented examples and both ellipses
    ("ab,bc->ac", 6, "c", (3, 5)),
    ("abc,cd->abd", (None, 6), "d", (3, 4, 5)),
    ("abc,cde->abde", (None, 2, 3), "de", (3, 4, 5)),
    ("abc,cde->abde", (None, 2, 3), "e", (3, 4, 5)),
    ("...b,bc->...c", 6, "c", (3, 4, 2, 5)),
    ("ab...,bc->ac...", 6, "c", (3, 5, 4)),
    ("abcd,cde->abe", (None, 6), None, (3, 4, 2, 5)),
]


@pytest.mark.parametrize(("equation", "output_shape", "bias_axes", "shape"), CASES)
def test_matches_keras(equation, output_shape, bias_axes, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")
    theirs = keras.layers.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation="tanh")
    expected = keras.ops.convert_to_numpy(theirs(x))
    ours = L.EinsumDense(equation, output_shape, bias_axes=bias_axes, activation="tanh")
    ours.build(shape)
    assert [tuple(w.shape) for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    ours.set_weights(theirs.get_weights())
    got = ours(torch.from_numpy(x))
    np.testing.assert_allclose(got.detach().numpy(), expected, rtol=1e-5, atol=1e-6)
    assert ours.compute_output_shape(shape) == expected.shape


def test_glorot_counts_fans_over_the_kernels_input_and_output_axes():
    # Kernel (64, 8, 16): fans 64 and 8*16 as Keras counts them, not a conv kernel's 8*64 and 16*64.
    layer = L.EinsumDense("abc,cde->abde", output_shape=(None, 8, 16))
    layer.build((2, 3, 64))
    limit = np.sqrt(6.0 / (64 + 128))
    kernel = layer.kernel.detach()
    assert kernel.abs().max() <= limit
    assert kernel.abs().max() > 0.9 * limit
    assert initializers.compute_fans((64, 8, 16), [0], [1, 2]) == (64, 128)
    from keras.src.initializers.random_initializers import compute_fans

    assert compute_fans((64, 8, 16), [0], [1, 2]) == (64, 128)


def test_initializer_axes_round_trip_in_configs():
    init = initializers.GlorotUniform(seed=3, input_axes=[0], output_axes=[1, 2])
    again = initializers.deserialize(initializers.serialize(init))
    assert (again.input_axes, again.output_axes, again.seed) == ([0], [1, 2], 3)
    assert set(init.get_config()) == set(keras.initializers.GlorotUniform().get_config())


def test_config_round_trip_and_keras_keys():
    layer = L.EinsumDense("abc,cd->abd", (None, 6), bias_axes="d", activation="relu", kernel_regularizer="l2")
    layer.build((2, 4, 5))
    again = L.EinsumDense.from_config(layer.get_config())
    again.build((2, 4, 5))
    again.set_weights(layer.get_weights())
    x = torch.randn(2, 4, 5)
    torch.testing.assert_close(again(x), layer(x))
    theirs = keras.layers.EinsumDense("abc,cd->abd", (None, 6), bias_axes="d").get_config()
    assert set(layer.get_config()) == set(theirs) - {"quantization_config", "dtype"}


@pytest.mark.parametrize(
    ("equation", "output_shape", "bias_axes", "message"),
    [
        ("ab,bc", 4, None, "invalid equation"),
        ("a.b,bc->ac", 4, None, "invalid equation"),
        ("ab,bc->ac", 4, "z", "bias_axes 'z'"),
        ("ab,bc->acd", (4, 2), None, "output axis 'd'"),
        ("abc,cd->abd", (7, 6), "d", "axis 'b' is 4 in the input but 7"),
        ("ab,bcz->ac", 4, None, "kernel axis 'z'"),
    ],
)
def test_errors_name_the_problem(equation, output_shape, bias_axes, message):
    with pytest.raises(ValueError, match=message):
        layer = L.EinsumDense(equation, output_shape, bias_axes=bias_axes)
        layer.build((2, 4, 5) if equation.startswith("abc") else (2, 5))
