"""Keras 3 ``.keras`` models and ``.weights.h5`` files loaded into tapefit: same architecture, same
weights, same predictions (Keras on its torch backend is the reference)."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest

pytest.importorskip("h5py")

import tapefit  # noqa: E402
from tapefit.saving import KerasFormatError  # noqa: E402
from tapefit.saving._keras_weights import keras_layer_order  # noqa: E402
from tests.keras_parity import keras  # noqa: E402

L = keras.layers


def _np(x):
    return [np.asarray(v) for v in x] if isinstance(x, (list, tuple)) else np.asarray(x)


def _assert_same_predictions(kmodel, ours, x, atol=1e-5):
    expected, got = _np(kmodel.predict(x, verbose=0)), _np(ours.predict(x, verbose=0))
    if isinstance(expected, list):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            np.testing.assert_allclose(a, b, atol=atol, rtol=atol)
    else:
        np.testing.assert_allclose(got, expected, atol=atol, rtol=atol)


def _save_and_load(kmodel, tmp_path, **kwargs):
    path = tmp_path / "m.keras"
    kmodel.save(path)
    return tapefit.saving.load_model(path, **kwargs)


def test_sequential_mlp_with_dropout_and_fitted_batchnorm(tmp_path):
    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(0)
    x, y = (
        3 + 2 * rng.standard_normal((64, 6)).astype("float32"),
        rng.standard_normal((64, 3)).astype("float32"),
    )
    kmodel = keras.Sequential(
        [
            keras.Input((6,)),
            L.Dense(16, activation="relu"),
            L.BatchNormalization(),
            L.Dropout(0.3),
            L.Dense(3),
        ]
    )
    kmodel.compile(optimizer="adam", loss="mse")
    kmodel.fit(x, y, epochs=1, batch_size=16, verbose=0)
    moving_mean = np.asarray(kmodel.layers[1].moving_mean)
    assert np.abs(moving_mean).max() > 1e-2  # the statistics moved: a swapped order would show

    kmodel.save(tmp_path / "m.keras")
    ours = tapefit.models.load_model(tmp_path / "m.keras")
    assert isinstance(ours, tapefit.Sequential)
    assert [type(layer).__name__ for layer in ours.layers] == [
        "Dense",
        "BatchNormalization",
        "Dropout",
        "Dense",
    ]
    np.testing.assert_allclose(ours.layers[1].get_weights()[2], moving_mean, atol=1e-6)
    _assert_same_predictions(kmodel, ours, x)


def test_functional_cnn_with_two_inputs_and_concatenated_branches(tmp_path):
    keras.utils.set_random_seed(2)
    image, extra = keras.Input((10, 10, 3), name="image"), keras.Input((8, 8, 1), name="extra")
    a = L.Conv2D(4, 3, activation="relu")(image)
    a = L.MaxPooling2D()(a)
    a = L.GlobalAveragePooling2D()(a)
    b = L.Conv2D(5, 3, padding="same", use_bias=False)(extra)
    b = L.GlobalAveragePooling2D()(b)
    b = L.Dense(6, activation="tanh")(b)
    out = L.Dense(3, activation="softmax")(L.Concatenate()([a, b]))
    kmodel = keras.Model([image, extra], out)
    ours = _save_and_load(kmodel, tmp_path)

    rng = np.random.default_rng(1)
    x = [
        rng.standard_normal((5, 10, 10, 3)).astype("float32"),
        rng.standard_normal((5, 8, 8, 1)).astype("float32"),
    ]
    _assert_same_predictions(kmodel, ours, x)
    # The order that names Keras's weight groups, recomputed from tapefit's graph (load_weights uses it).
    assert [layer.name for layer in keras_layer_order(ours)] == [layer.name for layer in kmodel.layers]


def test_masked_text_model_with_lstm_and_bidirectional_gru(tmp_path):
    keras.utils.set_random_seed(3)
    tokens = keras.Input((9,), dtype="int32")
    x = L.Embedding(30, 8, mask_zero=True)(tokens)
    x = L.LSTM(6, return_sequences=True)(x)
    x = L.Bidirectional(L.GRU(5))(x)
    kmodel = keras.Model(tokens, L.Dense(2)(x))
    ours = _save_and_load(kmodel, tmp_path)

    ids = np.random.default_rng(2).integers(1, 30, (4, 9)).astype("int32")
    ids[0, 5:], ids[1, 2:], ids[3, 8:] = 0, 0, 0  # padding the mask must hide
    _assert_same_predictions(kmodel, ours, ids)


def test_rnn_layers_over_built_in_and_stacked_cells(tmp_path):
    inputs = keras.Input((6, 3))
    h = L.RNN(L.LSTMCell(5), return_sequences=True)(inputs)
    h = L.Bidirectional(L.RNN(L.GRUCell(3), return_sequences=True))(h)
    h = L.RNN([L.GRUCell(4), L.SimpleRNNCell(3)])(h)
    kmodel = keras.Model(inputs, h)
    x = np.random.default_rng(2).standard_normal((4, 6, 3)).astype("float32")
    ours = _save_and_load(kmodel, tmp_path)
    assert type(ours.layers[1].cell).__name__ == "LSTMCell"
    _assert_same_predictions(kmodel, ours, x)


def test_nested_functional_models_feeding_layers(tmp_path):
    rng = np.random.default_rng(3)
    xa, xb = rng.standard_normal((3, 5)).astype("float32"), rng.standard_normal((3, 5)).astype("float32")
    i = keras.Input((5,))
    backbone = keras.Model(i, L.Dense(4, activation="tanh")(L.Dense(4)(i)), name="backbone")
    a, b = keras.Input((5,)), keras.Input((5,))
    head = keras.Model(a, L.Dense(2)(backbone(a)))
    _assert_same_predictions(head, _save_and_load(head, tmp_path), xa)
    ea, eb = backbone(a), backbone(b)  # called twice, once more here: node indices 1 and 2
    siamese = keras.Model([a, b], [L.Subtract()([eb, ea]), eb])
    _assert_same_predictions(siamese, _save_and_load(siamese, tmp_path), [xa, xb])


def test_attention_block_with_ops_time_distributed_and_nested_sequential(tmp_path):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((6, 8))
    attended = L.MultiHeadAttention(num_heads=2, key_dim=4, dropout=0.1)(inputs, inputs)
    x = L.LayerNormalization(epsilon=1e-5)(inputs + attended)
    x = L.TimeDistributed(L.Dense(5, activation="gelu"))(x)
    x = keras.Sequential([keras.Input((6, 5)), L.Dense(4), L.Dense(4)], name="head")(x)
    out = 2.0 * x[:, 0] - x[:, -1] / 3.0
    kmodel = keras.Model(inputs, out)
    ours = _save_and_load(kmodel, tmp_path)

    x = np.random.default_rng(3).standard_normal((3, 6, 8)).astype("float32")
    _assert_same_predictions(kmodel, ours, x)


def test_masks_through_concatenate_and_a_shared_nested_functional_with_dict_outputs(tmp_path):
    keras.utils.set_random_seed(8)
    a, b = keras.Input((4, 3), name="a"), keras.Input((4, 3), name="b")
    seq = L.LSTM(2, return_sequences=True)(L.Masking(0.0)(a))  # Keras records its mask as ops
    y = 1 - (2 * a - b / 3.0 + (-a) ** 2)[..., :2]
    dense = L.Dense(2)
    inner = keras.Input((4, 2))
    shared = keras.Model(inner, L.Dense(1)(inner), name="shared")
    outputs = {
        "first": shared(dense(L.Concatenate()([seq, y]))),
        "second": shared(dense(L.Concatenate()([y, seq]))),
    }
    kmodel = keras.Model([a, b], outputs)
    ours = _save_and_load(kmodel, tmp_path)

    rng = np.random.default_rng(5)
    x = [rng.standard_normal((3, 4, 3)).astype("float32"), rng.standard_normal((3, 4, 3)).astype("float32")]
    x[0][0, 2:] = 0.0  # masked timesteps
    expected, got = kmodel.predict(x, verbose=0), ours.predict(x, verbose=0)
    assert set(got) == {"first", "second"}
    for key in expected:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-5, rtol=1e-5)


def test_keras_op_without_tapefit_equivalent_is_refused_by_name(tmp_path):
    inputs = keras.Input((3,))
    kmodel = keras.Model(inputs, keras.ops.concatenate([inputs, inputs], axis=-1))
    with pytest.raises(
        KerasFormatError, match=r"Keras op 'concatenate(_\d+)?' \(Concatenate.*no tapefit equivalent"
    ):
        _save_and_load(kmodel, tmp_path)


def test_an_explicit_mask_computed_by_ops_is_refused(tmp_path):
    # The same mask as Masking() would make, but passed by hand: tapefit cannot rebuild the ops.
    inputs = keras.Input((5, 3))
    mask = keras.ops.any(keras.ops.not_equal(inputs, 0.0), axis=-1)
    kmodel = keras.Model(inputs, L.LSTM(2)(inputs, mask=mask))
    with pytest.raises(KerasFormatError, match=r"\(NotEqual\) has no tapefit equivalent"):
        _save_and_load(kmodel, tmp_path)


def _regression_data():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((32, 5)).astype("float32")
    return x, (x @ rng.standard_normal((5, 2)) + 0.1).astype("float32")


def test_compiled_model_restores_compile_config(tmp_path):
    kmodel = keras.Sequential([keras.Input((5,)), L.Dense(2)])
    kmodel.compile(optimizer=keras.optimizers.Adam(learning_rate=0.005), loss="mse", metrics=["mae"])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the optimizer had no state yet: nothing to warn
        ours = _save_and_load(kmodel, tmp_path)
    assert ours.compiled
    config = ours.get_compile_config()
    assert config["optimizer"]["class_name"] == "Adam"
    assert config["optimizer"]["config"]["learning_rate"] == pytest.approx(0.005)
    assert config["loss"] == "mse" and config["metrics"] == ["mae"]
    assert not getattr(tapefit.saving.load_model(tmp_path / "m.keras", compile=False), "compiled", False)


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda: keras.optimizers.Adam(learning_rate=0.005),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
        lambda: keras.optimizers.RMSprop(0.01, momentum=0.5, centered=True),
        lambda: keras.optimizers.Nadam(0.01, use_ema=True),
    ],
    ids=["adam", "sgd", "rmsprop", "nadam_ema"],
)
def test_fit_continues_where_keras_stopped(tmp_path, make_optimizer):
    keras.utils.set_random_seed(5)
    x, y = _regression_data()
    x = x.reshape(32, 5, 1)
    kmodel = keras.Sequential(
        [keras.Input((5, 1)), L.Conv1D(4, 2, activation="relu"), L.Flatten(), L.Dense(2)]
    )
    kmodel.compile(optimizer=make_optimizer(), loss="mse", metrics=["mae"])
    kmodel.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0)
    ours = _save_and_load(kmodel, tmp_path)
    assert int(ours.optimizer.iterations) == 8

    # One more epoch on both follows the same trajectory only with the optimizer's state restored.
    history = ours.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    kmodel.fit(x, y, epochs=1, batch_size=8, shuffle=False, verbose=0)
    assert set(history.history) == {"loss", "mae"}
    for a, b in zip(ours.get_weights(), kmodel.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5, rtol=1e-5)


def test_compile_arguments_tapefit_cannot_honour_warn_and_load_uncompiled(tmp_path):
    kmodel = keras.Sequential([keras.Input((5,)), L.Dense(2)])
    kmodel.compile(optimizer=keras.optimizers.Ftrl(), loss="mse")
    with pytest.warns(UserWarning, match="loaded uncompiled"):
        ours = _save_and_load(kmodel, tmp_path)
    assert not getattr(ours, "compiled", False)
    _assert_same_predictions(kmodel, ours, _regression_data()[0])


def test_load_weights_from_a_keras_weights_file(tmp_path):
    keras.utils.set_random_seed(6)
    inputs = keras.Input((5,))
    h = L.Dense(7, activation="relu")(inputs)
    kmodel = keras.Model(inputs, L.Dense(3)(L.BatchNormalization()(h)))
    x, y = _regression_data()
    kmodel.compile(optimizer="sgd", loss="mse")
    kmodel.fit(x, np.pad(y, ((0, 0), (0, 1))), epochs=1, verbose=0)
    kmodel.save_weights(tmp_path / "k.weights.h5")

    T = tapefit.layers
    ours_in = tapefit.Input((5,))
    ours = tapefit.Model(ours_in, T.Dense(3)(T.BatchNormalization()(T.Dense(7, activation="relu")(ours_in))))
    ours.load_weights(tmp_path / "k.weights.h5")
    _assert_same_predictions(kmodel, ours, x)

    wrong = tapefit.Sequential([tapefit.Input((5,)), T.Dense(7), T.Dense(3)])
    before = wrong.get_weights()
    with pytest.raises(KerasFormatError, match="k.weights.h5"):
        wrong.load_weights(tmp_path / "k.weights.h5")
    for a, b in zip(before, wrong.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_subclassed_model_with_custom_objects(tmp_path):
    @keras.saving.register_keras_serializable(package="kf_test")
    class Blocks(keras.Model):
        def __init__(self, units=4, **kwargs):
            super().__init__(**kwargs)
            self.units = units
            self.blocks = [L.Dense(units, activation="relu"), L.BatchNormalization(), L.Dense(units)]
            self.head = L.Dense(2)

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return self.head(x)

        def get_config(self):
            return {**super().get_config(), "units": self.units}

    class OurBlocks(tapefit.Model):  # the same attribute names: Keras files address weights by them
        def __init__(self, units=4, name=None, trainable=True, dtype=None):
            super().__init__(name=name, trainable=trainable)
            self.units = units
            T = tapefit.layers
            self.blocks = [T.Dense(units, activation="relu"), T.BatchNormalization(), T.Dense(units)]
            self.head = T.Dense(2)

        def call(self, x):
            for block in self.blocks:
                x = block(x)
            return self.head(x)

    keras.utils.set_random_seed(7)
    kmodel = Blocks(units=6)
    x = _regression_data()[0]
    kmodel(x)
    kmodel.set_weights([w + 0.1 for w in kmodel.get_weights()])  # non-trivial BatchNormalization state
    with pytest.raises(KerasFormatError, match=r"custom class .*Blocks.*custom_objects"):
        _save_and_load(kmodel, tmp_path)
    ours = _save_and_load(kmodel, tmp_path, custom_objects={"Blocks": OurBlocks})
    assert isinstance(ours, OurBlocks) and ours.units == 6
    _assert_same_predictions(kmodel, ours, x)


def test_unknown_layer_class_is_refused_by_name(tmp_path):
    kmodel = keras.Sequential(
        [keras.Input((3,)), L.SpectralNormalization(L.Dense(2), name="normed"), L.Dense(2)]
    )
    with pytest.raises(
        KerasFormatError, match=r"'normed' \(SpectralNormalization\): tapefit has no SpectralNormalization"
    ):
        _save_and_load(kmodel, tmp_path)


def test_option_tapefit_lacks_is_refused_by_name(tmp_path):
    dense = L.Dense(2, name="adapted")
    kmodel = keras.Sequential([keras.Input((3,)), dense])
    dense.enable_lora(2)
    with pytest.raises(KerasFormatError, match=r"'adapted' \(Dense\) sets lora_rank=2"):
        _save_and_load(kmodel, tmp_path)


def test_keras_lambda_is_refused_in_safe_mode(tmp_path):
    kmodel = keras.Sequential([keras.Input((3,)), L.Lambda(lambda t: t * 2)])
    with pytest.raises(tapefit.saving.SafeModeError):
        _save_and_load(kmodel, tmp_path)
    with pytest.raises(KerasFormatError, match="bytecode"):
        _save_and_load(kmodel, tmp_path, safe_mode=False)


def _rewritten_archive(kmodel, tmp_path, name, edit):
    """``kmodel`` saved as a ``.keras`` file, then written again as ``name`` after ``edit`` has
    changed its members (a dict of member name to bytes)."""
    path = tmp_path / "m.keras"
    kmodel.save(path)
    with zipfile.ZipFile(path) as zf:
        members = {member: zf.read(member) for member in zf.namelist()}
    edit(members)
    rewritten = tmp_path / name
    with zipfile.ZipFile(rewritten, "w") as zf:
        for member, data in members.items():
            zf.writestr(member, data)
    return rewritten


def _edit_weights(tmp_path, edit):
    """An ``edit`` for :func:`_rewritten_archive` that changes model.weights.h5 with h5py."""
    import h5py

    def apply(members):
        weights = tmp_path / "w.h5"
        weights.write_bytes(members["model.weights.h5"])
        with h5py.File(weights, "r+") as f:
            edit(f)
        members["model.weights.h5"] = weights.read_bytes()

    return apply


def test_truncated_and_corrupted_keras_files_are_refused(tmp_path):
    kmodel = keras.Sequential([keras.Input((3,)), L.Dense(64), L.Dense(2)])
    path = tmp_path / "m.keras"
    kmodel.save(path)
    blob = path.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match=r"truncated\.keras.*corrupted/truncated"):
        tapefit.saving.load_model(truncated)

    def cut_weights(members):
        h5 = members["model.weights.h5"]
        members["model.weights.h5"] = h5[: len(h5) // 3]

    damaged = _rewritten_archive(kmodel, tmp_path, "damaged.keras", cut_weights)
    with pytest.raises(ValueError, match=r"damaged\.keras:model\.weights\.h5 .*(truncated|corrupted)"):
        tapefit.saving.load_model(damaged)


def test_links_inside_the_weights_file_are_refused(tmp_path):
    import h5py

    def link(f):
        del f["layers/dense/vars"]
        f["layers/dense/vars"] = h5py.ExternalLink(str(tmp_path / "elsewhere.h5"), "/vars")

    kmodel = keras.Sequential([keras.Input((3,)), L.Dense(2)])
    linked = _rewritten_archive(kmodel, tmp_path, "linked.keras", _edit_weights(tmp_path, link))
    with pytest.raises(KerasFormatError, match=r"layers/dense/vars' is a link"):
        tapefit.saving.load_model(linked)


def test_the_weights_file_cannot_inflate_past_its_budget(tmp_path):
    def add_datasets(f):  # each dataset is small, together they are not
        for i in range(2, 12):
            f.create_dataset(
                f"layers/dense/vars/{i}", data=np.zeros((500, 500), "float32"), compression="gzip"
            )

    kmodel = keras.Sequential([keras.Input((5,)), L.Dense(3)])
    bomb = _rewritten_archive(kmodel, tmp_path, "bomb.keras", _edit_weights(tmp_path, add_datasets))
    with pytest.raises(KerasFormatError, match="for the whole file"):
        tapefit.saving.load_model(bomb)


def test_a_config_that_cannot_be_built_is_refused_naming_the_file(tmp_path):
    import json

    def policy_without_name(members):
        config = json.loads(members["config.json"])
        config["config"]["layers"][1]["config"]["dtype"] = {"class_name": "DTypePolicy", "config": {}}
        members["config.json"] = json.dumps(config).encode()

    kmodel = keras.Sequential([keras.Input((5,)), L.Dense(3)])
    broken = _rewritten_archive(kmodel, tmp_path, "broken.keras", policy_without_name)
    with pytest.raises(KerasFormatError, match="broken.keras: the model in config.json cannot be rebuilt"):
        tapefit.saving.load_model(broken)


def test_a_file_of_neither_format_is_refused(tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"definitely not a zip archive" * 10)
    with pytest.raises(ValueError, match=r"junk\.keras: not a tapefit model file .*nor a Keras one"):
        tapefit.saving.load_model(junk)
    legacy = tmp_path / "legacy.h5"
    legacy.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    with pytest.raises(ValueError, match=r"legacy Keras HDF5"):
        tapefit.saving.load_model(legacy)
