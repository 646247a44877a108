"""Issue 7's "clear errors for bad input": each error says what was expected, what was received and
how to fix it, and a fit that fails leaves the weights and the optimizer's step count untouched.
"""

import re

import numpy as np
import pytest
import torch

import tapefit
from tapefit import layers

RNG = np.random.default_rng(0)
X = RNG.random((8, 4)).astype("float32")
Y = RNG.random((8, 3)).astype("float32")


def _model(compiled=True):
    model = tapefit.Sequential(
        [tapefit.Input((4,)), layers.Dense(5, name="hidden"), layers.Dense(3, name="head")]
    )
    if compiled:
        model.compile(optimizer="sgd", loss="mse")
    return model


def _dict_model():
    a, b = tapefit.Input((4,), name="a"), tapefit.Input((4,), name="b")
    model = tapefit.Model({"a": a, "b": b}, layers.Dense(3)(layers.Concatenate()([a, b])))
    model.compile(optimizer="sgd", loss="mse")
    return model


def _snapshot(model):
    return [w.copy() for w in model.get_weights()], int(model.optimizer.iterations)


def _assert_untouched(model, snapshot):
    weights, iterations = snapshot
    after = model.get_weights()
    assert len(after) == len(weights)
    for a, b in zip(weights, after):
        np.testing.assert_array_equal(a, b)
    assert int(model.optimizer.iterations) == iterations == 0


def _fails_cleanly(model, call, error, match):
    """``call(model)`` raises ``error`` matching ``match`` and changes no weight and no step count."""
    snapshot = _snapshot(model)
    with pytest.raises(error, match=match):
        call(model)
    _assert_untouched(model, snapshot)


def _empty_generator():
    return
    yield


def _forever(batch):
    while True:
        yield batch


# ------------------------------------------------------------------------------- before compile
def test_predict_works_before_compile_as_in_keras():
    model = _model(compiled=False)
    with torch.no_grad():
        expected = model(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(model.predict(X, verbose=0), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(model.predict_on_batch(X), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    "method,call",
    [
        ("fit", lambda m: m.fit(X, Y, verbose=0)),
        ("evaluate", lambda m: m.evaluate(X, Y, verbose=0)),
        ("train_on_batch", lambda m: m.train_on_batch(X, Y)),
        ("test_on_batch", lambda m: m.test_on_batch(X, Y)),
    ],
)
def test_training_and_evaluating_before_compile_say_to_call_compile(method, call):
    model = _model(compiled=False)
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(
        (ValueError, RuntimeError), match=rf"compile\(\) before {method}\(\).*model\.compile\("
    ):
        call(model)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("method", ["fit", "evaluate"])
def test_the_before_compile_error_is_a_value_error_as_in_keras(method):
    with pytest.raises(ValueError):
        getattr(_model(compiled=False), method)(X, Y, verbose=0)


# ------------------------------------------------------------------------------------ empty data
def _empty_dataset():
    return tapefit.data.Dataset.from_tensor_slices(
        (np.zeros((0, 4), "float32"), np.zeros((0, 3), "float32"))
    ).batch(2)


@pytest.mark.parametrize("source", [_empty_dataset, _empty_generator], ids=["dataset", "generator"])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_empty_data_is_reported_as_empty(method, source):
    _fails_cleanly(
        _model(),
        lambda m: getattr(m, method)(source(), verbose=0),
        ValueError,
        r"(?s)^(?=.*empty)(?=.*(no batches|no data|0 samples))",
    )


@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_empty_arrays_are_reported_with_their_sample_count(method):
    args = (np.zeros((0, 4), "float32"),) + ((np.zeros((0, 3), "float32"),) if method != "predict" else ())
    _fails_cleanly(
        _model(), lambda m: getattr(m, method)(*args, verbose=0), ValueError, r"empty \(0 samples\)"
    )


# ------------------------------------------------------------------------ string and object arrays
BAD_ARRAYS = {
    "object": np.array([[1, 2, 3, 4]] * 8, dtype=object),
    "<U1": np.array([["a"] * 4] * 8),
    "|S1": np.array([[b"a"] * 4] * 8),
}


@pytest.mark.parametrize("dtype", BAD_ARRAYS)
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_string_and_object_x_name_the_dtype(method, dtype):
    x = BAD_ARRAYS[dtype]
    args = (x,) if method == "predict" else (x, Y)
    _fails_cleanly(
        _model(),
        lambda m: getattr(m, method)(*args, verbose=0),
        TypeError,
        rf"x has dtype {re.escape(dtype)}.*convert strings or objects to numbers",
    )


@pytest.mark.parametrize("dtype", BAD_ARRAYS)
def test_string_and_object_y_name_the_dtype(dtype):
    y = BAD_ARRAYS[dtype][:, :3]
    _fails_cleanly(
        _model(),
        lambda m: m.fit(X, y, verbose=0),
        TypeError,
        rf"y has dtype {re.escape(dtype)}.*convert strings or objects to numbers",
    )


def test_string_batches_from_a_generator_name_the_dtype():
    strings = np.array([["a"] * 4] * 4)
    _fails_cleanly(
        _model(),
        lambda m: m.fit(_forever((strings, Y[:4])), steps_per_epoch=2, verbose=0),
        TypeError,
        r"dtype <U1.*convert it to numbers",
    )


# -------------------------------------------------------------------------------- validation_split
def _loader():
    pairs = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(Y))
    return torch.utils.data.DataLoader(pairs, batch_size=4)


@pytest.mark.parametrize(
    "source",
    [
        lambda: _forever((X, Y)),
        _loader,
        lambda: tapefit.data.Dataset.from_tensor_slices((X, Y)).batch(4),
    ],
    ids=["generator", "DataLoader", "Dataset"],
)
def test_validation_split_with_streamed_data_says_to_pass_validation_data(source):
    _fails_cleanly(
        _model(),
        lambda m: m.fit(source(), validation_split=0.25, steps_per_epoch=2, verbose=0),
        ValueError,
        r"validation_split is only supported for arrays.*pass validation_data= instead",
    )


# ------------------------------------------------------------------------------------- set_weights
def test_set_weights_with_a_wrong_count_names_the_model_and_both_counts():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(
        ValueError, match=r"Layer 'sequential\w*' expects 4 weights, but set_weights received 3"
    ):
        model.set_weights([w + 1 for w in before[:3]])
    with pytest.raises(ValueError, match=r"Layer 'head' expects 2 weights, but set_weights received 1"):
        model.get_layer("head").set_weights([before[2] + 1])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_set_weights_with_a_wrong_shape_names_the_layer_and_both_shapes_and_writes_nothing():
    model = _model()
    before = [w.copy() for w in model.get_weights()]
    new = [w + 1 for w in before]
    new[2] = np.ones((5, 2), "float32")  # head's kernel is (5, 3); hidden's arrays come first and are fine
    with pytest.raises(
        ValueError, match=r"Layer 'head' weight 'kernel' has shape \(5, 3\), but .* shape \(5, 2\)"
    ):
        model.set_weights(new)
    with pytest.raises(
        ValueError, match=r"Layer 'hidden' weight 'bias' has shape \(5,\), but .* shape \(4,\)"
    ):
        model.get_layer("hidden").set_weights([before[0] + 1, np.zeros(4, "float32")])
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)  # nothing half-written


# -------------------------------------------------------------------------------- None gradients
def test_a_none_gradient_warns_with_the_variable_name_as_keras_does():
    model = _model()
    head_kernel = model.get_layer("head").kernel
    named = tapefit.variables.Variable(torch.zeros(3), name="my_bias")
    used = torch.nn.Parameter(torch.ones(3))
    opt = tapefit.optimizers.SGD(0.1)
    with pytest.warns(UserWarning, match=r"Gradients do not exist for variables .*my_bias") as record:
        opt.apply_gradients([(torch.ones(3), used), (None, named), (None, head_kernel)])
    message = str(record[0].message)
    assert "head/kernel" in message  # a layer weight is named by its path, not only by its shape
    np.testing.assert_allclose(used.detach().numpy(), np.full(3, 0.9), rtol=1e-6)
    np.testing.assert_array_equal(named.numpy(), np.zeros(3))


# ------------------------------------------------------------------------------------- batch_size
@pytest.mark.parametrize("batch_size", [-1, -32, 0])
@pytest.mark.parametrize("method", ["fit", "evaluate", "predict"])
def test_a_batch_size_below_one_is_named(method, batch_size):
    args = (X,) if method == "predict" else (X, Y)
    _fails_cleanly(
        _model(),
        lambda m: getattr(m, method)(*args, batch_size=batch_size, verbose=0),
        ValueError,
        rf"batch_size must be a positive integer, got {batch_size}\.",
    )


# ----------------------------------------------------------------------- Dataset element structure
def _sequential():
    return _model()


def _unbuilt_sequential():
    model = tapefit.Sequential([layers.Dense(3)])
    model.compile(optimizer="sgd", loss="mse")
    return model


def _functional():
    inp = tapefit.Input((4,))
    model = tapefit.Model(inp, layers.Dense(3)(inp))
    model.compile(optimizer="sgd", loss="mse")
    return model


ELEMENTS = {
    "dict": (lambda: ({"a": X}, Y), r"(?s)^(?=.*\binput)(?=.*\bdict\b)(?=.*'a')"),
    "tuple-x": (lambda: ((X, X), Y, np.ones(8, "float32")), r"(?s)^(?=.*\binput)(?=.*\b(tuple|2)\b)"),
}


@pytest.mark.parametrize("element", ELEMENTS)
@pytest.mark.parametrize(
    "make",
    [
        pytest.param(_sequential, id="sequential"),
        pytest.param(_unbuilt_sequential, id="unbuilt-sequential"),
        pytest.param(_functional, id="functional"),
    ],
)
def test_a_dataset_element_that_does_not_match_a_single_input_model(make, element):
    build, match = ELEMENTS[element]
    ds = tapefit.data.Dataset.from_tensor_slices(build()).batch(4)
    _fails_cleanly(make(), lambda m: m.fit(ds, verbose=0), (ValueError, TypeError), match)


def test_a_dataset_element_missing_a_key_of_a_dict_input_model():
    ds = tapefit.data.Dataset.from_tensor_slices(({"a": X, "c": X}, Y)).batch(4)
    _fails_cleanly(
        _dict_model(),
        lambda m: m.fit(ds, verbose=0),
        ValueError,
        r"missing inputs \['b'\]; got keys \['a', 'c'\]",
    )


# -------------------------------------------------------------------------------- integer inputs
@pytest.mark.parametrize("dtype", ["int64", "uint8"])
def test_integer_x_is_cast_to_the_input_dtype_as_in_keras(dtype):
    import keras

    x = RNG.integers(0, 10, (8, 4)).astype(dtype)
    ours = _model()
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5), keras.layers.Dense(3)])
    theirs.set_weights(ours.get_weights())
    theirs.compile(optimizer="sgd", loss="mse")
    expected = np.asarray(theirs.predict(x, verbose=0))
    assert expected.dtype == np.float32
    np.testing.assert_allclose(ours.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-5)
    assert ours.evaluate(x, Y, verbose=0) == pytest.approx(theirs.evaluate(x, Y, verbose=0), rel=1e-5)
    ours.fit(x, Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    theirs.fit(x, Y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), theirs.get_weights()):
        np.testing.assert_allclose(a, np.asarray(b), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------- int targets to BCE
@pytest.mark.parametrize("dtype", ["int64", "int32"])
@pytest.mark.parametrize(
    "loss",
    ["binary_crossentropy", tapefit.losses.BinaryCrossentropy(from_logits=True)],
    ids=["name", "object"],
)
def test_class_ids_given_to_binary_crossentropy_name_the_dtype_and_the_value(loss, dtype):
    """Keras 3 (torch backend) fails inside torch with "all elements of target should be between 0
    and 1" (no dtype, no value, no fix); TensorFlow's trains silently on the nonsense."""
    model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(1)])
    model.compile(optimizer="sgd", loss=loss)
    y = np.arange(8).astype(dtype)  # class ids 0..7: the first batch already holds 2 and 3
    _fails_cleanly(
        model,
        lambda m: m.fit(X, y, batch_size=4, shuffle=False, verbose=0),
        ValueError,
        rf"integer targets \(dtype {dtype}\) must be 0 or 1, but y_true holds 2 "
        r".*sparse_categorical_crossentropy",
    )


# ------------------------------------------------------------ errors before any weight changes
@pytest.mark.parametrize(
    "loss,units,y",
    [
        ("binary_crossentropy", 1, np.array([0, 1, 0, 1, 0, 1, 0, 7])),
        (
            tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
            3,
            np.array([0, 1, 2, 0, 1, 2, 0, 5]),
        ),
    ],
    ids=["binary", "sparse"],
)
def test_a_bad_label_in_a_later_batch_of_arrays_fails_before_any_step(loss, units, y):
    model = tapefit.Sequential([tapefit.Input((4,)), layers.Dense(units)])
    model.compile(optimizer="sgd", loss=loss)
    _fails_cleanly(
        model, lambda m: m.fit(X, y, batch_size=4, shuffle=False, verbose=0), ValueError, r"\b[57]\b"
    )


# ------------------------------------------------------------ torch errors get tapefit's context
def test_a_cryptic_torch_error_names_the_layer_and_the_inputs_and_keeps_the_cause():
    class Net(tapefit.Model):
        def __init__(self):
            super().__init__()
            self.hidden = layers.Dense(4, name="hidden")
            self.w = torch.nn.Parameter(torch.ones(7, 2))

        def call(self, x):
            return self.hidden(x) @ self.w  # (batch, 4) @ (7, 2): torch's shape error

    model = Net()
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(
        RuntimeError, match=r"Net 'net' failed on inputs \(4, 3\) float32 on cpu: mat1 and mat2"
    ) as info:
        model.fit(np.ones((4, 3), "float32"), np.ones((4, 2), "float32"), verbose=0)
    assert type(info.value.__cause__) is RuntimeError and "mat1 and mat2" in str(info.value.__cause__)


def test_errors_that_callers_catch_by_type_keep_their_type():
    class Unimplemented(layers.Layer):
        def call(self, x):
            raise NotImplementedError("later")

    with pytest.raises(NotImplementedError, match="later"):
        Unimplemented()(torch.ones(2, 2))
