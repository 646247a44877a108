"""Dense against Keras 3, and its weights read the way torch's own tools expect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from tapefit.layers.dense import Dense
from tapefit.variables import Variable
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input


@pytest.mark.parametrize(
    ("kwargs", "shape"),
    [
        ({"units": 4, "activation": "relu"}, (3, 5)),
        ({"units": 4, "use_bias": False}, (3, 5)),
        ({"units": 2, "activation": "tanh"}, (2, 3, 5)),
        ({"units": 2, "use_bias": False}, (2, 3, 5)),
    ],
)
def test_matches_keras(kwargs, shape):
    assert_layer_parity(Dense(**kwargs), keras.layers.Dense(**kwargs), random_input(shape))
    assert_config_round_trip(Dense(**kwargs))


class _Doubled(nn.Module):
    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return 2 * w


@pytest.mark.parametrize("name", ["kernel", "bias"])
def test_a_parametrized_weight_is_used(name):
    layer = Dense(3)
    x = torch.randn(4, 5)
    layer(x)
    kernel, bias = layer.kernel.detach().clone(), layer.bias.detach().clone()
    parametrize.register_parametrization(layer, name, _Doubled())
    want = x @ (2 * kernel) + bias if name == "kernel" else x @ kernel + 2 * bias
    with torch.no_grad():
        torch.testing.assert_close(layer(x), want)


def test_functional_call_swaps_the_weights():
    layer = Dense(3)
    x = torch.randn(4, 5)
    layer(x)
    kernel, bias = torch.randn(5, 3), torch.randn(3)
    got = torch.func.functional_call(layer, {"kernel": kernel, "bias": bias}, (x,))
    torch.testing.assert_close(got, x @ kernel + bias)
    np.testing.assert_array_equal(layer.kernel.detach().numpy() != kernel.numpy(), True)


def test_bfloat16_weights_come_back_as_float32_arrays_of_the_same_values():
    layer = Dense(3, dtype="bfloat16")
    layer.build((None, 4))
    kernel, bias = layer.get_weights()
    assert kernel.dtype == np.float32
    np.testing.assert_array_equal(kernel, layer.kernel.detach().float().numpy())
    variable = Variable(layer.kernel.detach())
    np.testing.assert_array_equal(variable.numpy(), kernel)
    layer.set_weights([kernel * 2, bias])
    assert layer.kernel.dtype == torch.bfloat16
    np.testing.assert_array_equal(layer.get_weights()[0], kernel * 2)
