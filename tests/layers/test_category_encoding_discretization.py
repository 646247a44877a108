"""CategoryEncoding and Discretization against Keras 3 on its torch backend: every output mode and
input rank, count_weights, adapted boundaries (arrays, iterables, tapefit Datasets), configs,
a functional model trained one epoch, and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit.layers.preprocessing.category_encoding import CategoryEncoding
from tapefit.layers.preprocessing.discretization import Discretization
from tests.keras_parity import assert_config_round_trip, keras


def _np(x):
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else keras.ops.convert_to_numpy(x)


def _same(ours, theirs, x, **kwargs):
    out, ref = ours(x, **kwargs), theirs(x, **kwargs)
    assert str(out.dtype) == str(ref.dtype), (out.dtype, ref.dtype)
    assert tuple(out.shape) == tuple(ref.shape), (tuple(out.shape), tuple(ref.shape))
    np.testing.assert_array_equal(_np(out), _np(ref))


_TOKENS = [
    np.array(2),
    np.array([3, 2, 0, 1, 3]),
    np.array([[3], [0], [2]]),
    np.array([[0, 1, 1], [3, 3, 2]]),
    np.array([[0, -1, 2], [-3, 3, 3]]),
    np.array([[[0, 1], [2, 3]], [[1, 1], [0, 2]]]),
    np.array([[0.7, 2.9], [3.2, 1.0]], dtype="float32"),
]


# ------------------------------------------------------------------------------------ CategoryEncoding
@pytest.mark.parametrize("mode", ["one_hot", "multi_hot", "count"])
def test_category_encoding_matches_keras_for_every_rank(mode):
    ours, theirs = CategoryEncoding(4, output_mode=mode), keras.layers.CategoryEncoding(4, output_mode=mode)
    for x in _TOKENS:
        _same(ours, theirs, x)
    _same(ours, theirs, torch.tensor([[1, 0]]))


def test_category_encoding_count_weights_and_binary_alias():
    ours, theirs = (
        CategoryEncoding(5, output_mode="count"),
        keras.layers.CategoryEncoding(5, output_mode="count"),
    )
    rng = np.random.default_rng(0)
    for shape in [(6,), (3, 4)]:
        x, w = rng.integers(0, 5, shape), rng.random(shape)
        _same(ours, theirs, x, count_weights=w)
    x, w = np.array([[1, 1, 3], [0, 2, 3]]), np.array([0.5, 2.0, 3.0])  # weights broadcast, as Keras
    _same(ours, theirs, x, count_weights=w)
    out = ours(torch.tensor([[1, 1, 4]]), count_weights=torch.tensor([[0.5, 2.0, 3.0]]))
    np.testing.assert_allclose(_np(out), [[0, 2.5, 0, 0, 3.0]])
    binary = CategoryEncoding(3, output_mode="binary")
    assert binary.output_mode == "multi_hot"
    np.testing.assert_array_equal(_np(binary(np.array([[2, 2]]))), [[0, 0, 1]])


def test_category_encoding_dtype_policy():
    out = CategoryEncoding(3, output_mode="one_hot", dtype="float64")(np.array([0, 2]))
    assert out.dtype == torch.float64
    ref = keras.layers.CategoryEncoding(3, output_mode="one_hot", dtype="float64")(np.array([0, 2]))
    assert str(ref.dtype) == str(out.dtype)


def test_category_encoding_errors():
    with pytest.raises(RuntimeError, match="Class values must be smaller"):
        keras.layers.CategoryEncoding(4)(np.array([[0, 4]]))
    for mode in ["one_hot", "multi_hot", "count"]:
        with pytest.raises(RuntimeError, match=r"\[0, 4\).*num_tokens"):
            CategoryEncoding(4, output_mode=mode)(np.array([[0, 4]]))
    with pytest.raises(ValueError, match="count_weights is only used"):
        CategoryEncoding(4)(np.array([[0, 1]]), count_weights=np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="must broadcast to the inputs' shape"):
        CategoryEncoding(4, output_mode="count")(np.array([[0, 1]]), count_weights=np.array([1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="sparse=True"):
        CategoryEncoding(4, sparse=True)
    with pytest.raises(ValueError, match="IntegerLookup"):
        CategoryEncoding()
    with pytest.raises(ValueError, match=">= 1"):
        CategoryEncoding(0)
    with pytest.raises(ValueError, match="output_mode"):
        CategoryEncoding(3, output_mode="int")


def test_category_encoding_config_has_keras_keys():
    ours, theirs = (
        CategoryEncoding(7, output_mode="count"),
        keras.layers.CategoryEncoding(7, output_mode="count"),
    )
    config, keras_config = ours.get_config(), theirs.get_config()
    assert set(config) == set(keras_config) - {"dtype"}
    assert (config["num_tokens"], config["output_mode"]) == (7, "count")
    assert_config_round_trip(ours)
    assert ours.get_weights() == []


# -------------------------------------------------------------------------------------- Discretization
_VALUES = [
    np.array([[-1.5, 1.0, 3.4, 0.5], [0.0, 3.0, 1.3, 0.0]]),
    np.array([0.1, 0.3, 2.0, -4.0], dtype="float64"),
    np.array([[0.5], [2.5], [1.0]], dtype="float32"),
    np.array([[0, 1, 2, 5]]),
    np.array([[[0.5, 1.5], [2.0, 3.0]], [[-1.0, 0.1], [0.3, 0.3]]], dtype="float32"),
]


@pytest.mark.parametrize("mode", ["int", "one_hot", "multi_hot", "count"])
def test_discretization_matches_keras_for_every_mode(mode):
    edges = [0.0, 0.1, 0.3, 1.0, 2.0]
    ours = Discretization(bin_boundaries=edges, output_mode=mode)
    theirs = keras.layers.Discretization(bin_boundaries=edges, output_mode=mode)
    for x in _VALUES:
        _same(ours, theirs, x)


def test_discretization_buckets_are_closed_on_the_left():
    out = Discretization(bin_boundaries=[0.0, 1.0])(torch.tensor([-0.5, 0.0, 0.5, 1.0, 7.0]))
    assert out.tolist() == [0, 1, 1, 2, 2] and out.dtype == torch.int32


def _keras_boundaries(batches, num_bins, epsilon):
    """Keras's adapt, without the TensorFlow it imports to test for tf.data: its own per-batch
    update_state and finalize_state."""
    layer = keras.layers.Discretization(num_bins=num_bins, epsilon=epsilon)
    for batch in batches:
        layer.update_state(batch)
    layer.finalize_state()
    return layer.bin_boundaries


@pytest.mark.parametrize(
    "n, epsilon, num_bins", [(8, 0.01, 4), (37, 0.1, 3), (2000, 0.01, 5), (30000, 0.001, 10)]
)
def test_adapt_on_arrays_and_batches_matches_keras_exactly(n, epsilon, num_bins):
    rng = np.random.default_rng(n)
    data = (rng.standard_normal((n, 3)) * 3).astype("float32")
    data[: n // 4] = np.round(data[: n // 4])  # ties
    layer = Discretization(num_bins=num_bins, epsilon=epsilon)
    layer.adapt(data)
    assert layer.bin_boundaries == _keras_boundaries([data], num_bins, epsilon)
    batches = np.array_split(data, 5)
    layer.adapt(iter(batches))
    assert layer.bin_boundaries == _keras_boundaries(batches, num_bins, epsilon)
    layer.adapt(torch.from_numpy(data))
    assert layer.bin_boundaries == _keras_boundaries([data], num_bins, epsilon)


def test_adapt_on_datasets_matches_keras_and_the_adapted_layer_buckets_like_keras():
    rng = np.random.default_rng(1)
    x, y = rng.gamma(2.0, size=(100, 2)).astype("float32"), rng.random(100).astype("float32")
    batches = [x[i : i + 16] for i in range(0, 100, 16)]
    expected = _keras_boundaries(batches, 6, 0.05)
    for data in (
        tapefit.data.Dataset.from_tensor_slices(x).batch(16),
        tapefit.data.Dataset.from_tensor_slices((x, y)).batch(16),
        tapefit.data.Dataset.from_tensor_slices(x).batch(16).repeat(),
    ):
        layer = Discretization(num_bins=6, epsilon=0.05, output_mode="one_hot")
        layer.adapt(data, steps=7)
        assert layer.bin_boundaries == expected
    layer.adapt(iter(batches + batches), steps=3)
    assert layer.bin_boundaries == _keras_boundaries(batches[:3], 6, 0.05)
    theirs = keras.layers.Discretization(bin_boundaries=layer.bin_boundaries, output_mode="one_hot")
    _same(layer, theirs, x)


def test_discretization_config_matches_keras_and_keeps_adapted_boundaries():
    ours, theirs = (
        Discretization(num_bins=3, epsilon=0.05),
        keras.layers.Discretization(num_bins=3, epsilon=0.05),
    )
    assert ours.get_config() | {"name": None} == theirs.get_config() | {"name": None}
    ours.adapt(np.arange(12, dtype="float32"))
    config = ours.get_config()
    assert config["num_bins"] == 3 and config["bin_boundaries"] == ours.bin_boundaries
    clone = Discretization.from_config(config)
    assert clone.bin_boundaries == ours.bin_boundaries and clone.get_config() == config
    keras_clone = keras.layers.Discretization.from_config(config)
    x = np.linspace(-1, 13, 29).astype("float32")
    _same(clone, keras_clone, x)
    assert_config_round_trip(Discretization(bin_boundaries=[0.0, 2.0], output_mode="count", dtype="float64"))
    assert ours.get_weights() == []


def test_discretization_errors():
    with pytest.raises(ValueError, match="not both"):
        Discretization(bin_boundaries=[1.0], num_bins=2)
    with pytest.raises(ValueError, match="either num_bins"):
        Discretization()
    with pytest.raises(ValueError, match=">= 0"):
        Discretization(num_bins=-1)
    with pytest.raises(ValueError, match="sorted"):
        Discretization(bin_boundaries=[1.0, 0.0])
    with pytest.raises(ValueError, match="sparse=True"):
        Discretization(num_bins=2, output_mode="count", sparse=True)
    with pytest.raises(ValueError, match="output_mode"):
        Discretization(num_bins=2, output_mode="tf_idf")
    with pytest.raises(ValueError, match="call adapt"):
        Discretization(num_bins=2)(np.array([1.0]))
    with pytest.raises(ValueError, match="nothing to learn"):
        Discretization(bin_boundaries=[1.0]).adapt(np.array([1.0]))
    with pytest.raises(ValueError, match="infinite"):
        Discretization(num_bins=2).adapt(
            tapefit.data.Dataset.from_tensor_slices(np.ones((4, 1))).batch(2).repeat()
        )
    with pytest.raises(ValueError, match="no data"):
        Discretization(num_bins=2).adapt([np.zeros((0, 2))])
    with pytest.raises(ValueError, match=r"ragged.*iter\(batches\)"):
        Discretization(num_bins=2).adapt([np.zeros((2, 2)), np.zeros((1, 2))])
    with pytest.raises(ValueError, match="steps"):
        Discretization(num_bins=2).adapt(np.ones(3), steps=1)
    with pytest.raises(TypeError, match="iterable of batches"):
        Discretization(num_bins=2).adapt(3.0)


# ------------------------------------------------------------------------------------ in a model
def _model(lib, edges):
    tokens = lib.Input((4,), dtype="int32")
    values = lib.Input((3,))
    a = lib.layers.CategoryEncoding(6, output_mode="count")(tokens)
    b = lib.layers.Discretization(bin_boundaries=edges, output_mode="multi_hot")(values)
    c = lib.layers.Flatten()(lib.layers.Discretization(bin_boundaries=edges, output_mode="one_hot")(values))
    h = lib.layers.Concatenate()([a, b, c])
    return lib.Model([tokens, values], lib.layers.Dense(1)(h))


def test_functional_model_fits_one_epoch_like_keras():
    rng = np.random.default_rng(3)
    tokens, values = (
        rng.integers(0, 6, (32, 4)).astype("int32"),
        rng.standard_normal((32, 3)).astype("float32"),
    )
    y = rng.standard_normal((32, 1)).astype("float32")
    ours, theirs = _model(tapefit, [-0.5, 0.0, 0.5]), _model(keras, [-0.5, 0.0, 0.5])
    assert tuple(ours.output_shape) == tuple(theirs.output_shape) == (None, 1)
    theirs.set_weights(ours.get_weights())
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    h_ours = ours.fit([tokens, values], y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    h_theirs = theirs.fit([tokens, values], y, batch_size=8, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h_ours["loss"], h_theirs["loss"], rtol=1e-5)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


def test_a_saved_model_keeps_the_adapted_boundaries(tmp_path):
    discretization = Discretization(num_bins=4)
    discretization.adapt(np.random.default_rng(4).standard_normal((200, 1)).astype("float32"))
    inputs = tapefit.Input((1,))
    encoded = CategoryEncoding(4, output_mode="one_hot")(discretization(inputs))
    model = tapefit.Model(inputs, tapefit.layers.Dense(2)(encoded))
    model.save(tmp_path / "m.tapefit")
    loaded = tapefit.saving.load_model(tmp_path / "m.tapefit")
    assert loaded.layers[1].bin_boundaries == discretization.bin_boundaries
    x = np.random.default_rng(5).standard_normal((6, 1)).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_adapt_on_a_python_list_summarises_it_as_one_array_as_keras():
    values = np.random.default_rng(11).standard_normal(300).astype("float32")
    expected = _keras_boundaries([values], 4, 0.01)
    for data in (values.tolist(), [[v] for v in values.tolist()]):
        layer = Discretization(num_bins=4)
        layer.adapt(data)
        np.testing.assert_array_equal(layer.bin_boundaries, expected)
