"""The compiled loss and metrics: their single-output paths give the general path's numbers and errors."""

import numpy as np
import pytest
import torch

import tapefit
from tapefit.trainers.compile_utils import CompileLoss, CompileMetrics


def _batch(n=16, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (n,), generator=g), torch.randn(n, classes, generator=g)


def test_sparse_cross_entropy_on_logits_equals_the_loss_object():
    y, logits = _batch()
    loss = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    compiled = CompileLoss(loss, output_names=["out"])
    assert torch.equal(compiled(y, logits), loss(y, logits))
    assert compiled._fused_sparse is torch.float32
    weights = torch.rand(16)
    assert torch.allclose(compiled(y, logits, weights), loss(y, logits, weights))


@pytest.mark.parametrize("bad", [5, -1, -100])
def test_an_out_of_range_label_is_reported_by_name(bad):
    y, logits = _batch()
    y[3] = bad  # -100 is the label torch ignores silently by default; Keras reports it
    compiled = CompileLoss(tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=rf"Sparse label {bad} is out of range for 5 classes"):
        compiled(y, logits)


@pytest.mark.parametrize(
    "loss",
    [
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=False),
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
        "sparse_categorical_crossentropy",
    ],
)
def test_other_sparse_losses_keep_their_own_path(loss):
    y, logits = _batch()
    probs = torch.softmax(logits, -1)
    compiled = CompileLoss(loss)
    reference = tapefit.losses.SparseCategoricalCrossentropy() if isinstance(loss, str) else loss
    expected = reference(y, probs)
    assert torch.allclose(compiled(y, probs), expected)
    assert compiled._fused_sparse is None


def test_loss_weight_applies_on_the_single_output_path():
    y, logits = _batch()
    loss = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    compiled = CompileLoss(loss, loss_weights=0.5, output_names=["out"])
    assert torch.allclose(compiled(y, logits), 0.5 * loss(y, logits))


def test_single_output_metrics_equal_a_metric_updated_directly():
    y, logits = _batch(n=64)
    weights = torch.rand(64)
    compiled = CompileMetrics(["accuracy"], ["accuracy"], output_names=["out"])
    plain, weighted = tapefit.metrics.SparseCategoricalAccuracy(), tapefit.metrics.SparseCategoricalAccuracy()
    for i in range(0, 64, 16):
        compiled.update_state(y[i : i + 16], logits[i : i + 16], weights[i : i + 16])
        plain.update_state(y[i : i + 16], logits[i : i + 16])
        weighted.update_state(y[i : i + 16], logits[i : i + 16], sample_weight=weights[i : i + 16])
    result = compiled.result()
    assert float(result["accuracy"]) == pytest.approx(float(plain.result()))
    assert float(result["weighted_accuracy"]) == pytest.approx(float(weighted.result()))
    expected = float(((logits.argmax(-1) == y).float() * weights).sum() / weights.sum())
    assert float(result["weighted_accuracy"]) == pytest.approx(expected, rel=1e-6)


def test_metric_updates_inside_a_training_step_build_no_graph():
    y, logits = _batch()
    logits.requires_grad_(True)
    mean, acc = tapefit.metrics.Mean(), tapefit.metrics.SparseCategoricalAccuracy()
    loss = torch.nn.functional.cross_entropy(logits, y)
    mean.update_state(loss, sample_weight=16)
    acc.update_state(y, logits)
    assert not mean.result().requires_grad and not acc.result().requires_grad
    assert torch.is_grad_enabled()
    assert float(mean.result()) == pytest.approx(float(loss.detach()))
    np.testing.assert_allclose(float(acc.result()), float((logits.argmax(-1) == y).float().mean()))


def _one_named_output(as_dict: bool) -> tapefit.Model:
    tapefit.utils.set_random_seed(0)
    inputs = tapefit.Input((4,))
    out = tapefit.layers.Dense(3, name="out")(inputs)
    model = tapefit.Model(inputs, {"out": out} if as_dict else out)
    loss = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("sgd", loss={"out": loss} if as_dict else loss, metrics={"out": ["accuracy"]})
    return model


@pytest.mark.parametrize("as_dict", [False, True], ids=["tensor-output", "dict-output"])
def test_one_output_takes_its_targets_keyed_by_name_or_in_a_list(as_dict):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, 64)
    weights = rng.uniform(0.5, 1.5, 64).astype("float32")
    results = []
    for targets in (y, {"out": y}, [y]):
        model = _one_named_output(as_dict)
        history = model.fit(
            x, targets, sample_weight=weights, batch_size=16, epochs=2, shuffle=False, verbose=0
        )
        evaluated = model.evaluate(x, targets, batch_size=16, verbose=0, return_dict=True)
        results.append((history.history, evaluated, [w.detach().clone() for w in model.trainable_weights]))
    model = _one_named_output(as_dict)  # per-output weights keyed by name too, from a Dataset
    data = tapefit.data.Dataset.from_tensor_slices((x, {"out": y}, {"out": weights})).batch(16)
    history = model.fit(data, epochs=2, verbose=0)
    evaluated = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    results.append((history.history, evaluated, [w.detach().clone() for w in model.trainable_weights]))
    for history, evaluated, weights_after in results[1:]:
        assert history == results[0][0] and evaluated == results[0][1]
        for got, want in zip(weights_after, results[0][2]):
            torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="output is named 'out'"):
        _one_named_output(as_dict).fit(x, {"label": y}, batch_size=16, verbose=0)


def _two_outputs(metrics):
    tapefit.utils.set_random_seed(0)
    inputs = tapefit.Input((4,))
    hidden = tapefit.layers.Dense(8, activation="relu")(inputs)
    model = tapefit.Model(
        inputs,
        {"a": tapefit.layers.Dense(2, name="a")(hidden), "b": tapefit.layers.Dense(3, name="b")(hidden)},
    )
    loss = {"a": None, "b": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)}
    model.compile("sgd", loss=loss, metrics=metrics)
    return model


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # output "a" has no loss: as in Keras
def test_targets_may_leave_out_an_output_without_a_loss():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = rng.integers(0, 3, 64)
    results = []
    for targets in ({"b": y}, {"a": np.zeros((64, 2), "float32"), "b": y}):  # "a"'s targets are unused
        model = _two_outputs({"b": ["accuracy"]})
        history = model.fit(x, targets, batch_size=16, epochs=2, shuffle=False, verbose=0)
        evaluated = model.evaluate(x, targets, batch_size=16, verbose=0, return_dict=True)
        results.append((history.history, evaluated, [w.detach().clone() for w in model.trainable_weights]))
    assert results[0][0] == results[1][0] and results[0][1] == results[1][1]
    for got, want in zip(results[0][2], results[1][2]):
        torch.testing.assert_close(got, want)
    with pytest.raises(ValueError, match="gives output 'a' metrics, but the targets have no entry for it"):
        _two_outputs({"a": ["mae"], "b": ["accuracy"]}).fit(x, {"b": y}, batch_size=16, verbose=0)
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        _two_outputs({"b": ["accuracy"]}).fit(
            x, {"a": np.zeros((64, 2), "float32")}, batch_size=16, verbose=0
        )


def test_fit_and_evaluate_take_sample_weights_per_output():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(64, 4)).astype("float32")
    y = {"a": rng.integers(0, 3, 64), "b": rng.integers(0, 3, 64)}
    weights = rng.uniform(0.5, 1.5, 64).astype("float32")

    def model_fn():
        model = _two_outputs({"b": ["accuracy"]})
        model.compile(
            "sgd", loss={"a": "mse", "b": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)}
        )
        return model

    arrays, dataset = model_fn(), model_fn()
    y_a = np.eye(2, dtype="float32")[y["a"] % 2]
    targets = {"a": y_a, "b": y["b"]}
    h1 = arrays.fit(x, targets, sample_weight={"b": weights}, batch_size=16, shuffle=False, verbose=0)
    data = tapefit.data.Dataset.from_tensor_slices((x, targets, {"b": weights})).batch(16)
    h2 = dataset.fit(data, verbose=0)
    assert h1.history == h2.history
    got = arrays.evaluate(
        x, targets, sample_weight={"b": weights}, batch_size=16, verbose=0, return_dict=True
    )
    with torch.no_grad():
        out = arrays(torch.from_numpy(x))
        ce = torch.nn.functional.cross_entropy(out["b"], torch.from_numpy(y["b"]), reduction="none")
        mse = ((out["a"] - torch.from_numpy(y_a)) ** 2).mean()
    assert got["b_loss"] == pytest.approx(float((ce * torch.from_numpy(weights)).mean()), rel=1e-5)
    assert got["a_loss"] == pytest.approx(float(mse), rel=1e-5)  # "a" has no weights: unweighted
    with pytest.raises(ValueError, match="class_weight needs a single sample_weight array"):
        arrays.fit(x, y["b"], sample_weight={"b": weights}, class_weight={0: 1.0, 1: 2.0, 2: 1.0}, verbose=0)


def _list_outputs(loss):
    tapefit.utils.set_random_seed(0)
    inputs = tapefit.Input((4,))
    model = tapefit.Model(
        inputs, [tapefit.layers.Dense(2, name="a")(inputs), tapefit.layers.Dense(1, name="b")(inputs)]
    )
    model.compile("sgd", loss=loss)
    return model


def test_per_output_structures_that_do_not_match_the_outputs_are_clear_errors():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = [rng.normal(size=(32, 2)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")]
    w = rng.uniform(0.5, 1.5, 32).astype("float32")
    model = _list_outputs("mse")
    for weights in ([w], [w, w, w]):  # a short list used to drop an output's loss from the total
        with pytest.raises(
            ValueError, match=f"sample_weight has {len(weights)} entries, but the model has 2 outputs"
        ):
            model.evaluate(x, y, sample_weight=weights, verbose=0)
    with pytest.raises(ValueError, match=r"sample_weight has entries for \['B'\], which are not outputs"):
        model.evaluate(x, y, sample_weight={"B": w}, verbose=0)
    with pytest.raises(ValueError, match=r"y has entries for \['c'\], which are not outputs"):
        model.evaluate(x, {"a": y[0], "b": y[1], "c": y[1]}, verbose=0)


def test_none_stands_for_an_output_without_targets_or_weights():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = [rng.normal(size=(32, 2)).astype("float32"), rng.normal(size=(32, 1)).astype("float32")]
    w = rng.uniform(0.5, 1.5, 32).astype("float32")
    model = _list_outputs(["mse", None])
    got = model.evaluate(x, [y[0], None], batch_size=8, verbose=0, return_dict=True)
    assert set(got) == {"loss"}  # one output with a loss: no per-output entries, as in Keras
    with torch.no_grad():
        out = model(torch.from_numpy(x))
    assert got["loss"] == pytest.approx(float(((out[0] - torch.from_numpy(y[0])) ** 2).mean()), rel=1e-5)
    both = _list_outputs("mse")
    got = both.evaluate(x, y, sample_weight=[w, None], batch_size=8, verbose=0, return_dict=True)
    with torch.no_grad():
        out = both(torch.from_numpy(x))
        weighted = (((out[0] - torch.from_numpy(y[0])) ** 2).mean(-1) * torch.from_numpy(w)).mean()
    assert got["a_loss"] == pytest.approx(float(weighted), rel=1e-5)
    assert got["b_loss"] == pytest.approx(float(((out[1] - torch.from_numpy(y[1])) ** 2).mean()), rel=1e-5)


def test_one_output_takes_its_loss_and_loss_weight_in_one_element_lists_as_keras():
    from tests.keras_parity import keras

    x = np.random.default_rng(0).standard_normal((16, 4)).astype("float32")
    y = np.random.default_rng(1).standard_normal((16, 2)).astype("float32")
    ours = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(2)])
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    theirs.set_weights(ours.get_weights())
    for model, lib in ((ours, tapefit), (theirs, keras)):
        model.compile(lib.optimizers.SGD(0.1), loss=["mse"], loss_weights=[0.5])
    h_ours = ours.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]
    h_theirs = theirs.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0).history["loss"]
    np.testing.assert_allclose(h_ours, h_theirs, rtol=1e-5)
