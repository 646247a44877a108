"""Convolution layers against Keras 3 (torch backend): outputs, weight layouts, configs, symbolic
shapes, errors, and the zero-copy handling of channels_last inputs."""

from __future__ import annotations

import json
import warnings

import keras
import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tapefit import regularizers
from tapefit.layers.conv import Conv1D, Conv2D
from tapefit.layers.conv_transpose import Conv1DTranspose, Conv2DTranspose
from tapefit.layers.depthwise_conv import DepthwiseConv1D, DepthwiseConv2D
from tapefit.layers.separable_conv import SeparableConv1D, SeparableConv2D
from tapefit.layers.symbolic import Input
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, random_input

OURS = {"Conv1D": Conv1D, "Conv2D": Conv2D, "DepthwiseConv1D": DepthwiseConv1D,
        "DepthwiseConv2D": DepthwiseConv2D, "SeparableConv1D": SeparableConv1D,
        "SeparableConv2D": SeparableConv2D, "Conv1DTranspose": Conv1DTranspose,
        "Conv2DTranspose": Conv2DTranspose}


def _input_shape(name: str, kw: dict, channels: int = 4) -> tuple[int, ...]:
    spatial = (9,) if "1D" in name else (9, 8)
    if kw.get("data_format") == "channels_first":
        return (2, channels, *spatial)
    return (2, *spatial, channels)


def _pair(name: str, **kw):
    return OURS[name](**kw), getattr(keras.layers, name)(**kw)


CONV2D_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=3, padding="same"),
    dict(kernel_size=2, padding="same"),  # even kernel: the odd pixel goes bottom/right
    dict(kernel_size=3, strides=2, padding="same"),
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=(2, 3), strides=(1, 2), padding="same"),
    dict(kernel_size=3, dilation_rate=2),
    dict(kernel_size=2, dilation_rate=(2, 3), padding="same"),
    dict(kernel_size=3, groups=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", data_format="channels_first"),
    dict(kernel_size=2, padding="same", data_format="channels_first", groups=4),
    dict(kernel_size=3, use_bias=False, activation="relu"),
]


@pytest.mark.parametrize("kw", CONV2D_CASES, ids=str)
def test_conv2d_parity(kw):
    ours, theirs = _pair("Conv2D", filters=8, **kw)
    assert_layer_parity(ours, theirs, random_input(_input_shape("Conv2D", kw)))


CONV1D_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=4, strides=2, padding="same"),
    dict(kernel_size=2, padding="same"),
    dict(kernel_size=3, padding="causal"),
    dict(kernel_size=3, padding="causal", dilation_rate=2),
    dict(kernel_size=3, padding="causal", strides=2),
    dict(kernel_size=3, groups=2, dilation_rate=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", data_format="channels_first"),
]


@pytest.mark.parametrize("kw", CONV1D_CASES, ids=str)
def test_conv1d_parity(kw):
    ours, theirs = _pair("Conv1D", filters=6, **kw)
    assert_layer_parity(ours, theirs, random_input(_input_shape("Conv1D", kw)))


DEPTHWISE_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, depth_multiplier=2, strides=2, padding="same"),
    dict(kernel_size=2, padding="same", dilation_rate=2),
    dict(kernel_size=3, depth_multiplier=3, data_format="channels_first", padding="same"),
]


@pytest.mark.parametrize("name", ["DepthwiseConv2D", "DepthwiseConv1D"])
@pytest.mark.parametrize("kw", DEPTHWISE_CASES, ids=str)
def test_depthwise_parity(name, kw):
    ours, theirs = _pair(name, **kw)
    assert_layer_parity(ours, theirs, random_input(_input_shape(name, kw)))


@pytest.mark.parametrize("name", ["SeparableConv2D", "SeparableConv1D"])
@pytest.mark.parametrize("kw", DEPTHWISE_CASES, ids=str)
def test_separable_parity(name, kw):
    ours, theirs = _pair(name, filters=5, activation="tanh", **kw)
    assert_layer_parity(ours, theirs, random_input(_input_shape(name, kw)))


TRANSPOSE_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=2, strides=3),  # stride > kernel: zeros between the patches
    dict(kernel_size=3, strides=2, padding="same"),  # output cropped by hand
    dict(kernel_size=4, strides=2, padding="same"),  # torch padding does it
    dict(kernel_size=5, strides=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", output_padding=1),
    dict(kernel_size=3, strides=3, padding="valid", output_padding=2),
    dict(kernel_size=(2, 3), strides=(2, 1), padding="same", output_padding=(0, 0)),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", data_format="channels_first", use_bias=False),
]


@pytest.mark.parametrize("name", ["Conv2DTranspose", "Conv1DTranspose"])
@pytest.mark.parametrize("kw", TRANSPOSE_CASES, ids=str)
def test_conv_transpose_parity(name, kw):
    if name == "Conv1DTranspose":
        kw = {k: (v[0] if isinstance(v, tuple) else v) for k, v in kw.items()}
    ours, theirs = _pair(name, filters=3, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about backend inconsistencies for some paddings
        assert_layer_parity(ours, theirs, random_input(_input_shape(name, kw)))


def test_keras_weight_layouts():
    x = torch.from_numpy(random_input((2, 9, 8, 4)))
    conv = Conv2D(6, (2, 3), groups=2)
    conv(x)
    assert [w.shape for w in conv.get_weights()] == [(2, 3, 2, 6), (6,)]
    assert tuple(conv.kernel.shape) == (6, 2, 2, 3)  # torch layout in storage
    depthwise = DepthwiseConv2D(3, depth_multiplier=2)
    depthwise(x)
    assert [w.shape for w in depthwise.get_weights()] == [(3, 3, 4, 2), (8,)]
    transpose = Conv2DTranspose(5, 3)
    transpose(x)
    assert [w.shape for w in transpose.get_weights()] == [(3, 3, 5, 4), (5,)]


def test_set_weights_round_trip_and_shape_check():
    layer = Conv2D(3, 3)
    layer(torch.zeros(1, 5, 5, 2))
    new = [np.arange(54, dtype="float32").reshape(3, 3, 2, 3), np.ones(3, "float32")]
    layer.set_weights(new)
    np.testing.assert_array_equal(layer.get_weights()[0], new[0])
    with pytest.raises(ValueError, match="shape"):
        layer.set_weights([new[0].transpose(3, 2, 0, 1), new[1]])


ALL_LAYERS = [
    ("Conv1D", dict(filters=4, kernel_size=3, padding="causal", dilation_rate=2)),
    ("Conv2D", dict(filters=4, kernel_size=(3, 2), strides=2, padding="same", groups=2, activation="relu",
                    kernel_regularizer="l2", data_format="channels_first")),
    ("DepthwiseConv1D", dict(kernel_size=3, depth_multiplier=2)),
    ("DepthwiseConv2D", dict(kernel_size=3, depth_multiplier=2, padding="same", use_bias=False)),
    ("SeparableConv1D", dict(filters=4, kernel_size=3, padding="same")),
    ("SeparableConv2D", dict(filters=4, kernel_size=3, strides=2, pointwise_initializer="he_normal")),
    ("Conv1DTranspose", dict(filters=4, kernel_size=3, strides=2, output_padding=1)),
    ("Conv2DTranspose", dict(filters=4, kernel_size=3, strides=2, padding="same")),
]


@pytest.mark.parametrize("name,kw", ALL_LAYERS, ids=[n for n, _ in ALL_LAYERS])
def test_config_round_trip_and_keras_keys(name, kw):
    ours, theirs = _pair(name, **kw)
    assert_config_round_trip(ours)
    from_json = type(ours).from_config(json.loads(json.dumps(ours.get_config())))  # as saved models do
    assert from_json.get_config() == ours.get_config()
    ignored = {"dtype"}
    assert set(ours.get_config()) == set(theirs.get_config()) - ignored
    for key in ("kernel_size", "strides", "padding", "data_format", "dilation_rate", "filters", "groups",
                "depth_multiplier", "output_padding", "use_bias", "activation"):
        if key in theirs.get_config():
            assert ours.get_config()[key] == theirs.get_config()[key], key


@pytest.mark.parametrize("name,kw", ALL_LAYERS, ids=[n for n, _ in ALL_LAYERS])
@pytest.mark.parametrize("spatial", ["fixed", "unknown"])
def test_symbolic_shapes_match_keras(name, kw, spatial):
    ours, theirs = _pair(name, **kw)
    shape = _input_shape(name, kw, channels=4)[1:]
    if spatial == "unknown":
        shape = tuple(None if s != 4 else s for s in shape)
    y = ours(Input(shape))
    assert tuple(y.shape) == tuple(theirs.compute_output_shape((None, *shape)))


def test_regularizer_losses_match_keras():
    ours = Conv2D(3, 3, kernel_regularizer=regularizers.L2(0.1), activity_regularizer=regularizers.L1(0.01))
    theirs = keras.layers.Conv2D(3, 3, kernel_regularizer=keras.regularizers.L2(0.1),
                                 activity_regularizer=keras.regularizers.L1(0.01))
    x = random_input((2, 6, 6, 2))
    assert_layer_parity(ours, theirs, x)
    ours_total = sum(float(loss.detach()) for loss in ours.losses)
    theirs_total = sum(float(keras.ops.convert_to_numpy(loss)) for loss in theirs.losses)
    assert ours_total == pytest.approx(theirs_total, rel=1e-5)


@pytest.mark.parametrize("make,match", [
    (lambda: Conv2D(4, 3, padding="full"), "padding"),
    (lambda: Conv2D(4, 3, padding="causal"), "padding"),
    (lambda: Conv2D(4, 3, data_format="NHWC"), "data_format"),
    (lambda: Conv2D(0, 3), "filters"),
    (lambda: Conv2D(6, 3, groups=4), "groups"),
    (lambda: Conv2D(4, (3, 3, 3)), "kernel_size"),
    (lambda: Conv2D(4, 3, strides=0), "strides"),
    (lambda: Conv2D(4, 3, strides=2, dilation_rate=2), "dilation_rate"),
    (lambda: DepthwiseConv2D(3, depth_multiplier=0), "depth_multiplier"),
    (lambda: Conv2DTranspose(4, 3, strides=2, output_padding=2), "output_padding"),
])
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Conv2D 'big'.*\(1, 5, 5, 3\).*kernel"):
        Conv2D(4, 7, name="big")(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match=r"'big_sym'.*\(None, 5, 5, 3\)"):
        Conv2D(4, 7, name="big_sym")(Input((5, 5, 3)))
    layer = Conv2D(4, 3, name="chan")
    layer(torch.zeros(1, 5, 5, 3))
    with pytest.raises(ValueError, match=r"'chan'.*3 channels.*\(1, 5, 5, 2\)"):
        layer(torch.zeros(1, 5, 5, 2))
    with pytest.raises(ValueError, match="rank 4"):
        layer(torch.zeros(5, 5, 3))
    with pytest.raises(ValueError, match="divisible"):
        Conv2D(4, 3, groups=2)(torch.zeros(1, 5, 5, 3))


class _RecordOps(TorchDispatchMode):
    """Records every aten op (and the convolution inputs) run under it."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.conv_inputs: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops.append(name)
        if name == "convolution":
            self.conv_inputs.append(args[0])
        return func(*args, **(kwargs or {}))


_COPIES = {"clone", "copy_", "_to_copy", "contiguous", "constant_pad_nd", "pad", "_reshape_copy"}

NO_COPY_LAYERS = [
    lambda: Conv2D(8, 3),
    lambda: Conv2D(8, 3, strides=2, padding="same", activation="relu"),  # 9 -> 5: symmetric, no F.pad
    lambda: Conv2D(8, 3, groups=2, padding="same"),
    lambda: Conv1D(8, 3, padding="same"),
    lambda: DepthwiseConv2D(3, depth_multiplier=2, padding="same"),
    lambda: SeparableConv2D(8, 3, padding="same"),
    lambda: Conv2DTranspose(8, 4, strides=2, padding="same"),
]


@pytest.mark.parametrize("make", NO_COPY_LAYERS, ids=range(len(NO_COPY_LAYERS)))
def test_channels_last_costs_no_copy(make):
    layer = make()
    x = torch.randn(2, 9, 9, 4) if "2D" in type(layer).__name__ else torch.randn(2, 9, 4)
    layer(x)
    with _RecordOps() as rec:
        y = layer(x)
    assert not _COPIES & set(rec.ops), rec.ops
    assert all(t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last) for t in rec.conv_inputs)
    assert y.is_contiguous()  # NHWC result without any .contiguous() call


def test_asymmetric_same_padding_pads_once_and_stays_channels_last():
    layer = Conv2D(8, 2, padding="same")  # even kernel: 0 rows on top, 1 at the bottom
    x = torch.randn(2, 9, 9, 4)
    layer(x)
    with _RecordOps() as rec:
        y = layer(x)
    assert rec.ops.count("constant_pad_nd") == 1 and not (_COPIES - {"constant_pad_nd"}) & set(rec.ops)
    assert rec.conv_inputs[0].is_contiguous(memory_format=torch.channels_last)
    assert y.shape == (2, 9, 9, 8) and y.is_contiguous()


def test_channels_first_is_plain_nchw():
    layer = Conv2D(8, 3, data_format="channels_first")
    x = torch.randn(2, 4, 8, 8)
    layer(x)
    with _RecordOps() as rec:
        y = layer(x)
    assert not _COPIES & set(rec.ops)
    assert y.shape == (2, 8, 6, 6) and y.is_contiguous()


def test_gradients_reach_keras_layout_weights():
    layer = Conv2D(3, 3, padding="same")
    x = torch.randn(2, 5, 5, 2, requires_grad=True)
    layer(x).square().sum().backward()
    assert layer.kernel.grad is not None and layer.kernel.grad.shape == layer.kernel.shape
    assert x.grad is not None and x.grad.shape == x.shape
