"""MobileNetV2 against Keras 3's ``keras.applications.MobileNetV2`` (torch backend, weights=None):
same layers, names, parameter counts and weight order, same outputs with the same weights; the
weight files it loads; freezing."""

from __future__ import annotations

import os
import re

os.environ.setdefault("KERAS_BACKEND", "torch")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import tapefit  # noqa: E402
from tapefit.applications import MobileNetV2, imagenet_utils, mobilenet_v2  # noqa: E402
from tapefit.applications._keras_h5 import load_keras_h5  # noqa: E402

SMALL = {"input_shape": (32, 32, 3), "alpha": 0.35, "include_top": False}


def _plain_name(name: str) -> str:
    """Auto-generated names (input_layer_3, global_average_pooling2d_1) without their counter."""
    return re.sub(r"_\d+$", "", name) if name.startswith(("input_layer", "global_")) else name


def _randomize(keras_model: keras.Model, seed: int = 0) -> None:
    """Non-trivial BatchNormalization statistics, so that inference really uses them."""
    rng = np.random.default_rng(seed)
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, n),
                    rng.normal(0, 0.1, n),
                    rng.normal(0, 0.1, n),
                    rng.uniform(0.5, 1.5, n),
                ]
            )


def _image(shape: tuple[int, ...], seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def _keras_out(model: keras.Model, x: np.ndarray, training: bool = False) -> np.ndarray:
    return keras.ops.convert_to_numpy(model(x, training=training))


@pytest.fixture(scope="module")
def keras_small() -> keras.Model:
    model = keras.applications.MobileNetV2(weights=None, **SMALL)
    _randomize(model)
    return model


@pytest.fixture(scope="module")
def ours_small(keras_small: keras.Model) -> tapefit.Model:
    model = MobileNetV2(weights=None, **SMALL)
    model.set_weights(keras_small.get_weights())
    return model


@pytest.mark.parametrize(
    ("kwargs", "data_format"),
    [
        ({"input_shape": (3, 33, 35), "alpha": 0.35, "classes": 5}, "channels_first"),
        ({"input_shape": (35, 33, 3), "alpha": 1.3, "include_top": False, "pooling": "max"}, "channels_last"),
        ({"input_shape": None, "alpha": 0.75, "include_top": False, "pooling": "avg"}, "channels_last"),
    ],
)
def test_structure_and_outputs_match_keras(kwargs: dict, data_format: str) -> None:
    tapefit.config.set_image_data_format(data_format)
    keras.config.set_image_data_format(data_format)
    try:
        theirs = keras.applications.MobileNetV2(weights=None, **kwargs)
        ours = MobileNetV2(weights=None, **kwargs)
    finally:
        tapefit.config.set_image_data_format("channels_last")
        keras.config.set_image_data_format("channels_last")
    assert ours.name == theirs.name
    assert [_plain_name(x.name) for x in ours.layers] == [_plain_name(x.name) for x in theirs.layers]
    assert [type(x).__name__ for x in ours.layers] == [type(x).__name__ for x in theirs.layers]
    assert ours.count_params() == theirs.count_params()
    assert [w.shape for w in ours.get_weights()] == [tuple(w.shape) for w in theirs.get_weights()]
    _randomize(theirs)
    ours.set_weights(theirs.get_weights())
    x = _image((2, *(kwargs["input_shape"] or (40, 40, 3))))
    got = ours(torch.from_numpy(x), training=False).detach().numpy()
    np.testing.assert_allclose(got, _keras_out(theirs, x), atol=1e-4, rtol=1e-4)


def test_training_call_matches_keras_outputs_and_statistics() -> None:
    theirs = keras.applications.MobileNetV2(weights=None, **SMALL)
    ours = MobileNetV2(weights=None, **SMALL)
    assert ours.name == theirs.name == "mobilenetv2_0.35_32"
    assert [x.name for x in ours.layers[1:]] == [x.name for x in theirs.layers[1:]]
    assert ours.count_params() == theirs.count_params()
    _randomize(theirs, seed=3)
    ours.set_weights(theirs.get_weights())
    x = _image((16, 32, 32, 3))
    got = ours(torch.from_numpy(x), training=True).detach().numpy()
    # 52 layers normalised with batch statistics amplify float32 rounding (each one matches Keras to
    # ~1e-6 in tests/layers); the outputs agree to ~2e-4 and the moving statistics to ~2e-7.
    np.testing.assert_allclose(got, _keras_out(theirs, x, training=True), atol=1e-3, rtol=1e-3)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, keras.ops.convert_to_numpy(b), atol=1e-5, rtol=1e-5)


def test_block_details_follow_keras() -> None:
    model = MobileNetV2(weights=None, **SMALL)
    bn = model.get_layer("block_3_expand_BN")
    assert (bn.epsilon, bn.momentum) == (1e-3, 0.999)
    assert model.get_layer("block_1_pad").padding == ((0, 1), (0, 1))
    assert model.get_layer("out_relu").max_value == 6.0
    assert model.get_layer("block_2_add") is not None
    widths = [mobilenet_v2._make_divisible(v, 8) for v in (32 * 0.35, 16 * 0.35, 1280 * 1.4, 3)]
    assert widths == [16, 8, 1792, 8]


def test_frozen_base_keeps_weights_and_statistics_through_fit(keras_small) -> None:
    base = MobileNetV2(weights=None, **SMALL)
    base.trainable = False
    model = tapefit.Sequential(
        [
            base,
            tapefit.layers.GlobalAveragePooling2D(),
            tapefit.layers.Dropout(0.2),
            tapefit.layers.Dense(3),
        ]
    )
    model.compile(
        optimizer=tapefit.optimizers.Adam(1e-2),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.build((None, 32, 32, 3))
    before = [w.copy() for w in base.get_weights()]
    head_before = model.layers[-1].get_weights()[0].copy()
    x = _image((16, 32, 32, 3))
    y = np.arange(16) % 3
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert base.trainable_weights == []
    for a, b in zip(before, base.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(head_before, model.layers[-1].get_weights()[0])
    base.trainable = True
    n_trainable = sum(w.numel() for w in base.trainable_weights)
    assert n_trainable == sum(int(np.prod(w.shape)) for w in keras_small.trainable_weights)


@pytest.mark.parametrize("filename", ["base.weights.safetensors", "base.pt"])
def test_weights_file_round_trip(tmp_path, ours_small, filename: str) -> None:
    base = ours_small
    path = tmp_path / filename
    if filename.endswith(".pt"):
        torch.save(base.state_dict(), path)
    else:
        base.save_weights(str(path))
    again = MobileNetV2(weights=str(path), **SMALL)
    x = torch.from_numpy(_image((2, 32, 32, 3)))
    torch.testing.assert_close(again(x, training=False), base(x, training=False), atol=1e-6, rtol=0)


def test_loads_keras3_weights_h5(tmp_path, keras_small) -> None:
    path = tmp_path / "keras.weights.h5"
    keras_small.save_weights(str(path))
    ours = MobileNetV2(weights=str(path), **SMALL)
    x = _image((2, 32, 32, 3))
    np.testing.assert_allclose(
        ours(torch.from_numpy(x)).detach().numpy(), _keras_out(keras_small, x), atol=1e-4
    )


def test_imagenet_loads_a_local_legacy_h5_file(tmp_path, monkeypatch, keras_small) -> None:
    """The published ImageNet files use Keras 2's layout; one found in $TAPEFIT_HOME/models is used."""
    from keras.src.legacy.saving import legacy_h5_format

    monkeypatch.setenv("TAPEFIT_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    (tmp_path / "models").mkdir()
    theirs = keras.applications.MobileNetV2(
        weights=None, input_shape=(96, 96, 3), alpha=0.35, include_top=False
    )
    theirs.set_weights(keras_small.get_weights())
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5"
    with h5py.File(tmp_path / "models" / name, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, theirs)
    ours = MobileNetV2(weights="imagenet", input_shape=(96, 96, 3), alpha=0.35, include_top=False)
    x = _image((1, 96, 96, 3))
    np.testing.assert_allclose(ours(torch.from_numpy(x)).detach().numpy(), _keras_out(theirs, x), atol=1e-4)


def test_imagenet_without_a_local_file_explains(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("TAPEFIT_HOME", str(tmp_path))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(ValueError, match="cannot be downloaded here.*local weights file") as info:
        MobileNetV2(input_shape=(96, 96, 3), alpha=0.35, include_top=False)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_96_no_top.h5" in str(info.value)


def test_input_tensor_brings_the_layers_before_it() -> None:
    inp = tapefit.Input((30, 30, 3))
    padded = tapefit.layers.ZeroPadding2D(1)(inp)
    model = MobileNetV2(input_tensor=padded, alpha=0.35, include_top=False, pooling="avg", weights=None)
    assert model.inputs[0] is inp
    assert isinstance(model.layers[1], tapefit.layers.ZeroPadding2D) and model.layers[2].name == "Conv1"
    assert model.name == "mobilenetv2_0.35_None"  # Keras's name when only input_tensor gives the size
    assert tuple(model(torch.zeros(2, 30, 30, 3)).shape) == (2, 1280)
    with pytest.raises(ValueError, match="symbolic tensor"):
        MobileNetV2(input_tensor=torch.zeros(1, 32, 32, 3), include_top=False, weights=None)


def test_argument_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="no file at"):
        MobileNetV2(weights=str(tmp_path / "missing.weights.safetensors"), **SMALL)
    with pytest.raises(ValueError, match="at least 32x32"):
        MobileNetV2(input_shape=(16, 16, 3), include_top=False, weights=None)
    with pytest.raises(ValueError, match="classes must be 1000"):
        MobileNetV2(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="pooling"):
        MobileNetV2(weights=None, pooling="sum", **SMALL)
    with pytest.raises(ValueError, match="alpha"):
        MobileNetV2(weights="imagenet", alpha=0.6, include_top=False, input_shape=(96, 96, 3))


def test_h5_that_does_not_match_loads_nothing(tmp_path, ours_small) -> None:
    other = keras.applications.MobileNetV2(
        weights=None, input_shape=(32, 32, 3), alpha=0.5, include_top=False
    )
    path = tmp_path / "other.weights.h5"
    other.save_weights(str(path))
    ours = ours_small
    before = ours.get_weights()
    with pytest.raises(ValueError, match="(?i)nothing was loaded"):
        load_keras_h5(ours, path)
    for a, b in zip(before, ours.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe"])
@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
def test_preprocess_input_matches_keras(mode: str, data_format: str) -> None:
    from keras.applications import imagenet_utils as keras_utils

    x = np.random.default_rng(0).integers(
        0, 256, (2, 5, 5, 3) if data_format == "channels_last" else (2, 3, 5, 5)
    )
    want = keras_utils.preprocess_input(x.astype("float32"), data_format=data_format, mode=mode)
    original = x.astype("float32")
    kept = original.copy()
    got_np = imagenet_utils.preprocess_input(original, data_format=data_format, mode=mode)
    np.testing.assert_array_equal(original, kept)
    got_torch = imagenet_utils.preprocess_input(
        torch.from_numpy(x.astype("uint8")), data_format=data_format, mode=mode
    )
    np.testing.assert_allclose(got_np, want, rtol=1e-6)
    np.testing.assert_allclose(got_torch.numpy(), want, rtol=1e-5, atol=1e-5)
    assert got_torch.dtype == torch.float32


def test_mobilenet_preprocess_scales_to_unit_range() -> None:
    out = mobilenet_v2.preprocess_input(np.array([0, 127.5, 255.0]))
    np.testing.assert_allclose(out, [-1.0, 0.0, 1.0])


def test_decode_predictions_reads_a_local_class_index(tmp_path, monkeypatch) -> None:
    import json

    monkeypatch.setenv("TAPEFIT_HOME", str(tmp_path))
    monkeypatch.setattr(imagenet_utils, "_CLASS_INDEX", None)
    (tmp_path / "models").mkdir()
    index = {str(i): [f"n{i:08d}", f"class_{i}"] for i in range(1000)}
    (tmp_path / "models" / "imagenet_class_index.json").write_text(json.dumps(index))
    preds = np.zeros((2, 1000), dtype="float32")
    preds[0, [5, 9]] = [0.7, 0.2]
    preds[1, 999] = 1.0
    top = mobilenet_v2.decode_predictions(preds, top=2)
    assert [t[:2] for t in top[0]] == [("n00000005", "class_5"), ("n00000009", "class_9")]
    assert top[1][0][1] == "class_999" and top[0][0][2] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="1000"):
        mobilenet_v2.decode_predictions(np.zeros((2, 10)))
