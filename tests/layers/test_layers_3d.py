"""3-D spatial layers against Keras 3 (torch backend), same weights: Conv3D, Conv3DTranspose, the 3-D
poolings, UpSampling3D, ZeroPadding3D and Cropping3D; outputs, weight layouts, configs, symbolic
shapes, a fitted model, errors, and the zero-copy handling of channels_last volumes."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import tapefit
from tapefit.layers import pooling, reshaping
from tapefit.layers.conv import Conv3D, Convolution3D
from tapefit.layers.conv_transpose import Conv3DTranspose, Convolution3DTranspose
from tapefit.layers.symbolic import Input
from tests.keras_parity import assert_config_round_trip, assert_layer_parity, keras, random_input
from tests.layers.test_pooling import _reference_pool

OURS = {
    "Conv3D": Conv3D,
    "Conv3DTranspose": Conv3DTranspose,
    **{name: getattr(pooling, name) for name in pooling.__all__ if name.endswith("3D")},
    **{name: getattr(reshaping, name) for name in reshaping.__all__ if name.endswith("3D")},
}


def _pair(name: str, **kw):
    return OURS[name](**kw), getattr(keras.layers, name)(**kw)


def _shape(kw: dict, spatial: tuple[int, int, int] = (6, 7, 5), channels: int = 4) -> tuple[int, ...]:
    if kw.get("data_format") == "channels_first":
        return (2, channels, *spatial)
    return (2, *spatial, channels)


CONV_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=3, strides=2, padding="same"),  # 6 -> 3 pads (0, 1); 7 and 5 pad (1, 1)
    dict(kernel_size=2, padding="same"),  # even kernel: the odd cell goes at the end
    dict(kernel_size=(2, 3, 1), strides=(1, 2, 3), padding="same"),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=2, dilation_rate=(1, 2, 1)),
    dict(kernel_size=3, groups=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", data_format="channels_first"),
    dict(kernel_size=2, padding="same", groups=4, data_format="channels_first"),
    dict(kernel_size=3, use_bias=False, activation="relu"),
]


@pytest.mark.parametrize("kw", CONV_CASES, ids=str)
def test_conv3d_parity(kw):
    ours, theirs = _pair("Conv3D", filters=4, **kw)
    assert_layer_parity(ours, theirs, random_input(_shape(kw)))


TRANSPOSE_CASES = [
    dict(kernel_size=3),
    dict(kernel_size=3, strides=2),
    dict(kernel_size=2, strides=3),  # stride > kernel: zeros between the patches
    dict(kernel_size=3, strides=2, padding="same"),  # output cropped by hand
    dict(kernel_size=4, strides=2, padding="same"),  # torch padding does it
    dict(kernel_size=3, strides=2, padding="same", output_padding=1),
    dict(kernel_size=3, strides=(3, 2, 1), output_padding=(2, 1, 0)),
    dict(kernel_size=(2, 3, 1), strides=(2, 1, 2), padding="same", output_padding=(0, 0, 1)),
    dict(kernel_size=3, dilation_rate=2, padding="same"),
    dict(kernel_size=3, strides=2, padding="same", data_format="channels_first", use_bias=False),
    dict(kernel_size=2, strides=2, output_padding=1, data_format="channels_first"),
]


@pytest.mark.parametrize("kw", TRANSPOSE_CASES, ids=str)
def test_conv3d_transpose_parity(kw):
    ours, theirs = _pair("Conv3DTranspose", filters=3, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras warns about backend inconsistencies for some paddings
        assert_layer_parity(ours, theirs, random_input(_shape(kw, spatial=(3, 4, 2))))


def test_keras_weight_layouts_and_aliases():
    x = torch.from_numpy(random_input(_shape({})))
    conv = Conv3D(6, (2, 3, 1), groups=2)
    conv(x)
    assert [w.shape for w in conv.get_weights()] == [(2, 3, 1, 2, 6), (6,)]
    assert tuple(conv.kernel.shape) == (6, 2, 2, 3, 1)  # torch layout in storage
    transpose = Conv3DTranspose(5, (3, 2, 1))
    transpose(x)
    assert [w.shape for w in transpose.get_weights()] == [(3, 2, 1, 5, 4), (5,)]
    assert tuple(transpose.kernel.shape) == (4, 5, 3, 2, 1)
    assert Convolution3D is Conv3D and Convolution3DTranspose is Conv3DTranspose
    assert pooling.MaxPool3D is pooling.MaxPooling3D and pooling.AvgPool3D is pooling.AveragePooling3D
    assert pooling.GlobalAvgPool3D is pooling.GlobalAveragePooling3D
    assert pooling.GlobalMaxPool3D is pooling.GlobalMaxPooling3D
    assert conv.name.startswith("conv3d") and transpose.name.startswith("conv3d_transpose")


POOL_CASES = [
    dict(pool_size=2),
    dict(pool_size=3),
    dict(pool_size=2, padding="same"),  # odd sizes: one padded cell at the end
    dict(pool_size=3, strides=1, padding="same"),  # symmetric padding
    dict(pool_size=3, strides=2, padding="same"),
    dict(pool_size=(2, 3, 1), strides=(1, 2, 1), padding="same"),
    dict(pool_size=(1, 2, 2), strides=(2, 1, 3)),
    dict(pool_size=3, strides=2, padding="same", data_format="channels_first"),
]


@pytest.mark.parametrize("mode", ["Max", "Average"])
@pytest.mark.parametrize("kw", POOL_CASES, ids=str)
def test_pooling_matches_the_keras_definition(kw, mode):
    """Against the documented definition: padding never wins a max and never counts in an average."""
    x = random_input(_shape(kw, spatial=(5, 7, 6), channels=3))
    y = getattr(pooling, f"{mode}Pooling3D")(**kw)(torch.from_numpy(x)).numpy()
    channels_first = kw.get("data_format") == "channels_first"
    pool = kw["pool_size"] if isinstance(kw["pool_size"], tuple) else (kw["pool_size"],) * 3
    strides = kw.get("strides", pool)
    strides = strides if isinstance(strides, tuple) else (strides,) * 3
    xl = np.moveaxis(x, 1, -1) if channels_first else x
    expected = _reference_pool(xl, pool, strides, kw.get("padding", "valid"), mode.lower())
    expected = np.moveaxis(expected, -1, 1) if channels_first else expected
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw", POOL_CASES, ids=str)
def test_max_pooling_parity(kw):
    ours, theirs = _pair("MaxPooling3D", **kw)
    assert_layer_parity(ours, theirs, random_input(_shape(kw, spatial=(5, 7, 6), channels=3)))


# Keras's torch backend pads asymmetric "same" average pooling by replicating edge cells (see
# test_pooling.py), so the Keras comparison uses the cases whose padding is symmetric or absent.
@pytest.mark.parametrize("kw", [POOL_CASES[i] for i in (0, 1, 3, 6)], ids=str)
def test_average_pooling_parity(kw):
    ours, theirs = _pair("AveragePooling3D", **kw)
    assert_layer_parity(ours, theirs, random_input(_shape(kw, spatial=(5, 7, 6), channels=3)))


@pytest.mark.parametrize("name", ["GlobalAveragePooling3D", "GlobalMaxPooling3D"])
@pytest.mark.parametrize(
    "kw", [{}, dict(keepdims=True), dict(data_format="channels_first", keepdims=True)], ids=str
)
def test_global_pooling_parity(name, kw):
    ours, theirs = _pair(name, **kw)
    assert_layer_parity(ours, theirs, random_input(_shape(kw)))


RESHAPING_CASES = [
    ("UpSampling3D", {}),
    ("UpSampling3D", dict(size=(1, 3, 2), data_format="channels_first")),
    ("ZeroPadding3D", {}),
    ("ZeroPadding3D", dict(padding=2)),
    ("ZeroPadding3D", dict(padding=(1, 0, 2))),
    ("ZeroPadding3D", dict(padding=((1, 0), (0, 2), (3, 1)), data_format="channels_first")),
    ("Cropping3D", {}),
    ("Cropping3D", dict(cropping=(0, 2, 1))),
    ("Cropping3D", dict(cropping=((1, 0), (0, 2), (2, 1)), data_format="channels_first")),
]


@pytest.mark.parametrize("name,kw", RESHAPING_CASES, ids=str)
def test_reshaping_parity(name, kw):
    ours, theirs = _pair(name, **kw)
    assert_layer_parity(ours, theirs, random_input(_shape(kw)))


ALL_LAYERS = [
    (
        "Conv3D",
        dict(
            filters=4,
            kernel_size=(3, 2, 1),
            strides=2,
            padding="same",
            groups=2,
            activation="relu",
            kernel_regularizer="l2",
            data_format="channels_first",
        ),
    ),
    ("Conv3DTranspose", dict(filters=4, kernel_size=3, strides=2, padding="same", output_padding=1)),
    ("MaxPooling3D", dict(pool_size=(2, 3, 1), strides=1, padding="same")),
    ("AveragePooling3D", dict(pool_size=2, data_format="channels_first")),
    ("GlobalAveragePooling3D", dict(keepdims=True)),
    ("GlobalMaxPooling3D", {}),
    ("UpSampling3D", dict(size=(1, 2, 3))),
    ("ZeroPadding3D", dict(padding=((1, 0), 2, (0, 3)))),
    ("Cropping3D", dict(cropping=1, data_format="channels_first")),
]


@pytest.mark.parametrize("name,kw", ALL_LAYERS, ids=[n for n, _ in ALL_LAYERS])
def test_config_round_trip_and_keras_config(name, kw):
    ours, theirs = _pair(name, **kw)
    assert_config_round_trip(ours)
    from_json = type(ours).from_config(json.loads(json.dumps(ours.get_config())))  # as saved models do
    assert from_json.get_config() == ours.get_config()
    theirs_config = theirs.get_config()
    assert set(ours.get_config()) == set(theirs_config) - {"dtype"}
    for key in (
        "kernel_size",
        "strides",
        "padding",
        "data_format",
        "dilation_rate",
        "filters",
        "groups",
        "output_padding",
        "use_bias",
        "activation",
        "pool_size",
        "keepdims",
        "size",
        "cropping",
    ):
        if key in theirs_config:
            assert ours.get_config()[key] == theirs_config[key], key


@pytest.mark.parametrize("name,kw", ALL_LAYERS, ids=[n for n, _ in ALL_LAYERS])
@pytest.mark.parametrize("spatial", ["fixed", "unknown"])
def test_symbolic_shapes_match_keras(name, kw, spatial):
    ours, theirs = _pair(name, **kw)
    shape = _shape(kw, spatial=(6, 7, 8))[1:]
    if spatial == "unknown":
        shape = tuple(None if s != 4 else s for s in shape)
    y = ours(Input(shape))
    assert tuple(y.shape) == tuple(theirs.compute_output_shape((None, *shape)))


def _volume_classifier(lib, conv3d, max_pooling3d, global_average_pooling3d):
    inputs = lib.Input((6, 5, 4, 2))
    h = conv3d(4, 3, padding="same", activation="relu")(inputs)
    h = max_pooling3d(padding="same")(h)
    h = global_average_pooling3d()(h)
    return lib.Model(inputs, lib.layers.Dense(3, activation="softmax")(h))


def test_functional_volume_classifier_fits_like_keras():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 6, 5, 4, 2)).astype("float32")
    y = rng.integers(0, 3, 16).astype("int64")
    ours = _volume_classifier(tapefit, Conv3D, pooling.MaxPooling3D, pooling.GlobalAveragePooling3D)
    kl = keras.layers
    theirs = _volume_classifier(keras, kl.Conv3D, kl.MaxPooling3D, kl.GlobalAveragePooling3D)
    before = ours.get_weights()
    theirs.set_weights(before)
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.5), loss="sparse_categorical_crossentropy")
    got = ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    want = theirs.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-4, atol=1e-6)
    assert not np.allclose(ours.get_weights()[0], before[0])  # the conv kernel really trained


WRONG_RANK = [
    lambda: Conv3D(2, 1),
    lambda: Conv3DTranspose(2, 1),
    lambda: pooling.MaxPooling3D(1),
    lambda: pooling.AveragePooling3D(1),
    lambda: pooling.GlobalAveragePooling3D(),
    lambda: pooling.GlobalMaxPooling3D(),
    lambda: reshaping.UpSampling3D(),
    lambda: reshaping.ZeroPadding3D(),
    lambda: reshaping.Cropping3D(0),
]


@pytest.mark.parametrize("make", WRONG_RANK, ids=range(len(WRONG_RANK)))
def test_wrong_input_rank_names_the_layer_and_layout(make):
    layer = make()
    with pytest.raises(
        ValueError,
        match=rf"{type(layer).__name__} .*rank 5 \(batch, depth, height, "
        r"width, channels\).*\(2, 4, 4, 3\)",
    ):
        layer(torch.zeros(2, 4, 4, 3))
    layer = make()
    layer.data_format = "channels_first"
    with pytest.raises(ValueError, match=r"rank 5 \(batch, channels, depth, height, width\)"):
        layer(torch.zeros(2, 3, 4, 4, 4, 1))


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: Conv3D(4, (3, 3)), "kernel_size"),
        (lambda: Conv3D(4, 3, padding="causal"), "padding"),
        (lambda: Conv3D(6, 3, groups=4), "groups"),
        (lambda: Conv3D(4, 3, strides=2, dilation_rate=2), "dilation_rate"),
        (lambda: Conv3DTranspose(4, 3, strides=2, output_padding=(1, 2, 0)), "output_padding"),
        (lambda: pooling.MaxPooling3D((2, 2)), "pool_size"),
        (lambda: pooling.AveragePooling3D(2, padding="full"), "padding"),
        (lambda: reshaping.ZeroPadding3D((1, 2)), "padding"),
        (lambda: reshaping.Cropping3D(((1, 2), (3,), 1)), "cropping"),
        (lambda: reshaping.UpSampling3D(0), "size"),
    ],
)
def test_bad_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_inputs_name_the_layer_and_shapes():
    with pytest.raises(ValueError, match=r"Conv3D 'big'.*\(1, 5, 2, 5, 3\).*kernel"):
        Conv3D(4, 3, name="big")(torch.zeros(1, 5, 2, 5, 3))
    layer = Conv3D(4, 3, name="chan")
    layer(torch.zeros(1, 5, 5, 5, 3))
    with pytest.raises(ValueError, match=r"'chan'.*3 channels.*\(1, 5, 5, 5, 2\)"):
        layer(torch.zeros(1, 5, 5, 5, 2))
    with pytest.raises(ValueError, match=r"MaxPooling3D 'pool'.*\(1, 4, 2, 4, 3\).*pool_size"):
        pooling.MaxPooling3D(3, name="pool")(torch.zeros(1, 4, 2, 4, 3))
    with pytest.raises(ValueError, match=r"Cropping3D 'crop'.*leaves nothing.*\(1, 4, 4, 2, 3\)"):
        reshaping.Cropping3D(1, name="crop")(torch.zeros(1, 4, 4, 2, 3))


class _RecordOps(TorchDispatchMode):
    """Records every aten op (and the inputs of convolutions and poolings) run under it."""

    def __init__(self):
        super().__init__()
        self.ops: list[str] = []
        self.op_inputs: list[torch.Tensor] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        self.ops.append(name)
        if name in ("convolution", "max_pool3d_with_indices", "avg_pool3d", "_upsample_nearest_exact3d"):
            self.op_inputs.append(args[0])
        return func(*args, **(kwargs or {}))


_COPIES = {"clone", "copy_", "_to_copy", "contiguous", "constant_pad_nd", "pad", "_reshape_copy"}


@pytest.mark.parametrize(
    "make",
    [
        lambda: Conv3D(8, 3, strides=2, padding="same"),  # 7 -> 4: symmetric, no F.pad
        lambda: Conv3DTranspose(8, 4, strides=2, padding="same"),
        lambda: pooling.MaxPooling3D(3, strides=1, padding="same"),
        lambda: pooling.AveragePooling3D(3, strides=2, padding="same"),
        lambda: reshaping.UpSampling3D((2, 1, 3)),
    ],
    ids=range(5),
)
def test_channels_last_volumes_cost_no_copy(make):
    layer = make()
    x = torch.randn(2, 7, 7, 7, 4)
    layer(x)
    with _RecordOps() as rec:
        y = layer(x)
    assert not _COPIES & set(rec.ops), rec.ops
    [op_input] = rec.op_inputs
    assert op_input.dim() == 5 and op_input.is_contiguous(memory_format=torch.channels_last_3d)
    # torch's CPU avg_pool3d has no channels_last_3d kernel: its (N, C, D, H, W) result comes back as a
    # strided (N, D, H, W, C) view; every other op keeps the layout, so the result is contiguous.
    assert y.is_contiguous() or isinstance(layer, pooling.AveragePooling3D)


def test_cropping_is_a_view_and_upsampling_repeats():
    x = torch.randn(2, 5, 6, 4, 3)
    cropped = reshaping.Cropping3D(((1, 2), (0, 1), (1, 1)))(x)
    assert cropped._base is x and torch.equal(cropped, x[:, 1:3, 0:5, 1:3])
    up = reshaping.UpSampling3D((2, 1, 3))(x)
    assert torch.equal(up, x.repeat_interleave(2, 1).repeat_interleave(3, 3))


def test_a_saved_volume_model_loads_with_the_same_predictions(tmp_path):
    inputs = tapefit.Input((6, 6, 6, 2))
    h = reshaping.ZeroPadding3D(1)(inputs)
    h = Conv3DTranspose(3, 2, strides=2)(Conv3D(4, 3)(h))
    h = reshaping.UpSampling3D()(reshaping.Cropping3D(1)(pooling.AveragePooling3D(2)(h)))
    h = pooling.GlobalMaxPooling3D()(pooling.MaxPooling3D()(h))
    model = tapefit.Model(inputs, tapefit.layers.Dense(2)(h))
    x = np.random.default_rng(7).standard_normal((3, 6, 6, 6, 2)).astype("float32")
    model.save(tmp_path / "volume.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "volume.tapefit")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)
