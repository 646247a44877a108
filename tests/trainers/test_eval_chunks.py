"""evaluate() updates its loss and metrics once per chunk of batches where that gives the same numbers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import tapefit
from tapefit import layers
from tapefit.trainers import eval_chunks


class _PerBatch(tapefit.callbacks.Callback):
    """Reads the metrics at the end of every evaluation batch (which needs per-batch updates)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, float]] = []

    def on_test_batch_end(self, batch, logs=None):
        self.seen.append({k: np.asarray(v, dtype=np.float64) for k, v in logs.items()})


class _Counting:
    """Counts the loss tracker's updates (one per update of the loss and metrics)."""

    def __init__(self, model):
        self.calls = 0
        tracker = model._loss_tracker
        original = tracker.update_state

        def counted(*args, **kwargs):
            self.calls += 1
            return original(*args, **kwargs)

        tracker.update_state = counted  # on the instance: its class and the model's methods stay tapefit's


def _classifier(**dense_kwargs) -> tapefit.Model:
    tapefit.utils.set_random_seed(0)
    return tapefit.Sequential(
        [tapefit.Input((6,)), layers.Dense(8, activation="relu", **dense_kwargs), layers.Dense(3)]
    )


def _data(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 6)).astype("float32"), rng.integers(0, 3, n)


def _evaluate(model, x, y, **kwargs):
    return model.evaluate(x, y, batch_size=32, verbose=0, return_dict=True, **kwargs)


def test_chunked_loss_and_accuracy_equal_the_per_batch_torch_computation():
    x, y = _data()  # 1000 rows: 31 batches of 32 and one of 8
    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    counter = _Counting(model)
    got = _evaluate(model, x, y)
    assert counter.calls == 1 + 1  # the first batch alone, then the other 31 in one chunk

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(x), 32):
            out = model(xt[start : start + 32])
            rows = len(out)
            loss_sum += float(F.cross_entropy(out, yt[start : start + 32])) * rows
            correct += int((out.argmax(1) == yt[start : start + 32]).sum())
    assert got["loss"] == pytest.approx(loss_sum / len(x), rel=1e-6)
    assert got["accuracy"] == pytest.approx(correct / len(x), rel=1e-7)  # a float32 ratio of counts


def _same_as_per_batch(model_fn, x, y, rel=1e-6, **kwargs):
    """Evaluates with chunks, then with a per-batch callback; returns the chunked compute_loss calls."""
    chunked_model = model_fn()
    counter = _Counting(chunked_model)
    chunked = _evaluate(chunked_model, x, y, **kwargs)
    per_batch_model = model_fn()
    reader = _PerBatch()
    per_batch = _evaluate(per_batch_model, x, y, callbacks=[reader], **kwargs)
    assert chunked.keys() == per_batch.keys() == reader.seen[-1].keys()
    for key in chunked:
        np.testing.assert_allclose(chunked[key], per_batch[key], rtol=rel, atol=1e-7, err_msg=key)
        # the callback's last batch logs are the final values (per-batch updates happened)
        np.testing.assert_allclose(reader.seen[-1][key], per_batch[key], rtol=1e-7, err_msg=key)
    return counter.calls


def test_regression_losses_metrics_and_sample_weights_match_per_batch_updates():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 6)).astype("float32")
    y = rng.normal(size=(500, 2)).astype("float32")
    weights = rng.uniform(0, 2, size=500).astype("float32")

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(2, kernel_regularizer="l2")])
        model.compile(
            "sgd",
            "mse",
            metrics=["mae", tapefit.metrics.RootMeanSquaredError(name="rmse")],
            weighted_metrics=["mse"],
        )
        return model

    calls = _same_as_per_batch(model_fn, x, y, sample_weight=weights)
    assert calls == 2  # a weight penalty is the same for every batch, so it does not stop chunking


def test_binary_confusion_metrics_match_per_batch_updates():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(700, 6)).astype("float32")
    y = (x[:, :1] + 0.5 * rng.normal(size=(700, 1)) > 0).astype("float32")

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(1, activation="sigmoid")])
        model.compile(
            "sgd",
            "binary_crossentropy",
            metrics=[
                "accuracy",
                tapefit.metrics.AUC(name="auc"),
                tapefit.metrics.Precision(name="precision"),
                tapefit.metrics.Recall(thresholds=[0.3, 0.7], name="recall"),
                tapefit.metrics.F1Score(threshold=0.5, name="f1"),
                tapefit.metrics.BinaryIoU(name="iou"),
            ],
        )
        return model

    assert _same_as_per_batch(model_fn, x, y) == 2


def test_a_two_output_model_with_loss_weights_matches_per_batch_updates():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(300, 6)).astype("float32")
    targets = {"cls": rng.integers(0, 3, 300), "reg": rng.normal(size=(300, 1)).astype("float32")}

    def model_fn():
        tapefit.utils.set_random_seed(0)
        inputs = tapefit.Input((6,))
        hidden = layers.Dense(8, activation="relu")(inputs)
        model = tapefit.Model(
            inputs, {"cls": layers.Dense(3, name="cls")(hidden), "reg": layers.Dense(1, name="reg")(hidden)}
        )
        model.compile(
            "sgd",
            loss={"cls": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "huber"},
            loss_weights={"cls": 1.0, "reg": 0.5},
            metrics={"cls": ["accuracy"], "reg": ["mae"]},
        )
        return model

    assert _same_as_per_batch(model_fn, x, targets) == 2


def test_the_progress_bar_reads_exact_values_of_a_chunked_evaluation(capsys):
    x, y = _data(400)
    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    counter = _Counting(model)
    got = model.evaluate(x, y, batch_size=32, verbose=1, return_dict=True)
    assert counter.calls < 13  # chunked although a progress bar listens per batch
    final_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert f"accuracy: {got['accuracy']:.4f}" in final_line
    assert f"loss: {got['loss']:.4f}" in final_line
    assert model._lazy_metrics_object().before_read is None  # detached after the evaluation


class _UserAccuracy(tapefit.metrics.Metric):
    """A user's metric: the mean of per-batch accuracies (depends on how batches are cut)."""

    def __init__(self, name="batch_mean_accuracy"):
        super().__init__(name=name)
        self.total = self.add_variable(shape=(), name="total")
        self.batches = self.add_variable(shape=(), name="batches")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.total.assign_add((y_pred.argmax(-1) == y_true).float().mean())
        self.batches.assign_add(torch.ones(()))

    def result(self):
        return self.total.value / self.batches.value


def _worst_ce(y_true, y_pred):
    """A user's function with one value per batch: its worst sample's cross-entropy."""
    return F.cross_entropy(y_pred, y_true.long(), reduction="none").max()


@pytest.mark.parametrize(
    "compile_kwargs",
    [
        {
            "loss": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": [_UserAccuracy()],
        },
        {"loss": _worst_ce},
        {"loss": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=2)},
        {"loss": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")},
        {
            "loss": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
            "metrics": [tapefit.metrics.MeanMetricWrapper(_worst_ce, name="user")],
        },
    ],
    ids=["user-metric", "user-loss", "ignore-class", "sum-reduction", "user-fn-in-wrapper"],
)
def test_what_does_not_sum_over_samples_is_updated_per_batch(compile_kwargs):
    x, y = _data(200)  # 7 batches, the last of 8 rows: batch-level statistics differ from chunked ones
    model = _classifier()
    model.compile("sgd", **compile_kwargs)
    counter = _Counting(model)
    got = _evaluate(model, x, y)
    assert counter.calls == 7
    chunks = eval_chunks.EvalChunks(model)
    with torch.no_grad():
        assert chunks._first_capacity(torch.from_numpy(y[:32]), model(torch.from_numpy(x[:32])), None) == 1
    chunks.detach()

    per_batch = _classifier()
    per_batch.compile("sgd", **compile_kwargs)
    assert _evaluate(per_batch, x, y, callbacks=[_PerBatch()]) == pytest.approx(got)


def test_layers_that_add_losses_and_overridden_steps_are_updated_per_batch():
    x, y = _data(200)
    model = _classifier(activity_regularizer="l2")
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    counter = _Counting(model)
    _evaluate(model, x, y)
    assert counter.calls == 7

    class OwnStep(tapefit.Sequential):
        def test_step(self, data):
            return super().test_step(data)

    tapefit.utils.set_random_seed(0)
    own = OwnStep([tapefit.Input((6,)), layers.Dense(3)])
    own.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    counter = _Counting(own)
    _evaluate(own, x, y)
    assert counter.calls == 7


def test_batches_of_different_shapes_are_updated_one_by_one():
    def batches():  # sequences padded to each batch's own length: the per-batch means differ
        rng = np.random.default_rng(4)
        for length in (3, 5, 3, 7, 2):
            x = rng.normal(size=(4, length, 2)).astype("float32")
            yield x, rng.normal(size=(4, length, 1)).astype("float32")

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((None, 2)), layers.Dense(1)])
        model.compile("sgd", "mse", metrics=["mae"])
        return model

    chunked = model_fn()
    got = chunked.evaluate(batches(), verbose=0, return_dict=True)
    per_batch = model_fn()
    want = per_batch.evaluate(batches(), verbose=0, return_dict=True, callbacks=[_PerBatch()])
    assert got == pytest.approx(want, rel=1e-6)
    manual_loss, manual_mae = 0.0, 0.0
    with torch.no_grad():
        for xb, yb in batches():
            out = chunked(torch.from_numpy(xb))
            manual_loss += float(F.mse_loss(out, torch.from_numpy(yb))) * 4
            manual_mae += float((out - torch.from_numpy(yb)).abs().mean()) * 4
    assert got["loss"] == pytest.approx(manual_loss / 20, rel=1e-6)
    assert got["mae"] == pytest.approx(manual_mae / 20, rel=1e-6)


def test_large_or_masked_outputs_make_chunks_of_one_batch():
    y_pred = torch.zeros(32, eval_chunks._MAX_BYTES // (32 * 4))  # one batch's outputs fill the budget
    assert eval_chunks._capacity(torch.zeros(32, dtype=torch.int64), y_pred, None) == 1
    assert eval_chunks._capacity(torch.zeros(32, dtype=torch.int64), torch.zeros(32, 10), None) == 32
    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = _data(64)
    _evaluate(model, x, y)  # builds the compiled loss and metrics
    chunks = eval_chunks.EvalChunks(model)
    labels, outputs = torch.from_numpy(y[:32]), torch.zeros(32, 3)
    assert chunks._first_capacity(labels, outputs, None) == 32
    outputs._keras_mask = torch.ones(32, dtype=torch.bool)
    assert chunks._first_capacity(labels, outputs, None) == 1
    chunks.detach()


def test_intermediate_progress_lines_show_the_values_so_far(capsys):
    x, y = _data(320)
    lines = {}
    for how, extra in (("chunked", []), ("per-batch", [_PerBatch()])):
        model = _classifier()
        model.compile(
            "sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"]
        )
        progress = tapefit.callbacks.ProgbarLogger(interval=0)  # a line per batch
        model.evaluate(x, y, batch_size=32, verbose=1, callbacks=[progress, *extra])
        out = capsys.readouterr().out.replace("\r", "\n")
        lines[how] = [line.split(" - ", 1)[-1] for line in out.splitlines() if "/10" in line]
    assert len(lines["chunked"]) >= 10
    assert lines["chunked"] == lines["per-batch"]


def _one_value_per_batch_of_1d_labels():
    """Keras's mean-over-last-axis functions give one value per batch on 1-D data (here "mae" on
    the second output, (N,) against (N,) labels), which a mean metric counts once per batch."""
    tapefit.utils.set_random_seed(0)
    inputs = tapefit.Input((6,))
    reg = layers.Lambda(lambda t: t[:, 0])(layers.Dense(1)(inputs))
    model = tapefit.Model(inputs, {"cls": layers.Dense(3)(inputs), "reg": reg})
    model.compile(
        "sgd",
        loss={"cls": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": None},
        metrics={"reg": ["mae"]},
    )
    return model


def _one_value_per_batch_of_a_loss_object():
    """A Loss object used as a metric gives one (reduced) value per batch."""
    tapefit.utils.set_random_seed(0)
    model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(3, activation="softmax")])
    model.compile("sgd", "categorical_crossentropy", metrics=[tapefit.losses.MeanSquaredError(name="mse")])
    return model


@pytest.mark.parametrize(
    "model_fn", [_one_value_per_batch_of_1d_labels, _one_value_per_batch_of_a_loss_object]
)
def test_one_value_per_batch_is_counted_per_batch(model_fn):
    x, labels = _data(1000, seed=6)
    if model_fn is _one_value_per_batch_of_1d_labels:
        y = {"cls": labels, "reg": np.random.default_rng(6).normal(size=1000).astype("float32")}
    else:
        y = np.eye(3, dtype="float32")[labels]
    assert _same_as_per_batch(model_fn, x, y) == 32  # no chunks: every batch updates on its own


class _FirstColumnSigmoid(layers.Layer):
    """(N, 1) -> (N,): a 1-D output."""

    def call(self, t):
        return torch.sigmoid(t[:, 0])


def _one_dim_output(metrics):
    """A model whose second output is 1-D and has no loss, so only its metrics see 1-D data."""
    tapefit.utils.set_random_seed(0)
    inputs = tapefit.Input((6,))
    model = tapefit.Model(
        inputs, {"a": layers.Dense(3)(inputs), "b": _FirstColumnSigmoid()(layers.Dense(1)(inputs))}
    )
    model.compile(
        "sgd",
        loss={"a": tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), "b": None},
        metrics={"b": metrics},
    )
    return model


@pytest.mark.parametrize(
    "metric",
    [
        lambda: tapefit.metrics.Precision(top_k=3, name="precision"),
        lambda: tapefit.metrics.Recall(top_k=1, name="recall"),
        lambda: tapefit.metrics.MeanIoU(num_classes=2, sparse_y_pred=False, name="iou"),
    ],
    ids=["precision-top-k", "recall-top-k", "iou-arg-max"],
)
def test_options_that_look_along_the_last_axis_of_1d_outputs_are_updated_per_batch(metric):
    x, labels = _data(320, seed=8)
    y = {"a": labels, "b": (np.random.default_rng(8).random(320) > 0.5).astype("float32")}
    assert _same_as_per_batch(lambda: _one_dim_output([metric()]), x, y) == 10


@pytest.mark.parametrize(
    "compile_kwargs",
    [
        {"loss": tapefit.losses.CategoricalCrossentropy(axis=0)},
        {"loss": tapefit.losses.CosineSimilarity(axis=0)},
        {
            "loss": "categorical_crossentropy",
            "metrics": [tapefit.metrics.CosineSimilarity(axis=0, name="cos")],
        },
        {
            "loss": "categorical_crossentropy",
            "metrics": [tapefit.metrics.OneHotIoU(32, [0, 1], axis=0, name="i")],
        },
    ],
    ids=["cce-axis-0", "cosine-loss-axis-0", "cosine-metric-axis-0", "one-hot-iou-axis-0"],
)
def test_reductions_over_the_rows_are_updated_per_batch(compile_kwargs):
    """With as many columns as rows (32), a reduction along axis 0 has one value per row too."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(320, 6)).astype("float32")
    y = np.eye(32, dtype="float32")[rng.integers(0, 32, 320)]

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(32, activation="softmax")])
        model.compile("sgd", **compile_kwargs)
        return model

    assert _same_as_per_batch(model_fn, x, y) == 10


def test_a_test_step_set_on_the_model_runs_for_every_batch():
    x, y = _data(320)
    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    calls = []
    default = model.test_step
    model.test_step = lambda data: calls.append(1) or default(data)
    _evaluate(model, x, y)
    assert len(calls) == 10


def test_hinge_decides_its_label_encoding_per_batch():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 6)).astype("float32")
    y = rng.integers(0, 2, size=(200, 1)).astype("float32")
    y[-5:] = 0.5  # the last batch's labels are not all 0/1, so only it keeps them as they are

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(1, activation="tanh")])
        model.compile("sgd", "hinge", metrics=["squared_hinge"])
        return model

    assert _same_as_per_batch(model_fn, x, y) == 7


def test_a_generator_that_refills_its_arrays_is_evaluated_per_batch():
    x_all, y_all = _data(256)

    def refilled():
        xb, yb = np.empty((32, 6), "float32"), np.empty(32, "int64")
        for start in range(0, 256, 32):
            xb[:], yb[:] = x_all[start : start + 32], y_all[start : start + 32]
            yield xb, yb

    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    got = model.evaluate(refilled(), verbose=0, return_dict=True)
    assert got == pytest.approx(_evaluate(model, x_all, y_all), rel=1e-6)


def test_a_progress_bar_subclass_that_reads_the_metrics_gets_per_batch_updates():
    class Reading(tapefit.callbacks.ProgbarLogger):
        def __init__(self):
            super().__init__()
            self.losses = []

        def on_test_batch_end(self, batch, logs=None):
            self.losses.append(float(self.model.metrics[0].result()))

    x, y = _data(320)
    values = []
    for extra in ([], [_PerBatch()]):
        model = _classifier()
        model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        reading = Reading()
        model.evaluate(x, y, batch_size=32, verbose=0, callbacks=[reading, *extra])
        values.append(reading.losses)
    assert len(set(values[0])) == 10  # a new running mean after every batch
    assert values[0] == pytest.approx(values[1], rel=1e-6)


class _LateLoss(layers.Layer):
    """Adds an activity loss only from the fourth call on (data-dependent add_loss)."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def call(self, x):
        self.calls += 1
        if self.calls >= 4:
            self.add_loss(x.abs().mean())
        return x


def test_a_layer_that_adds_its_first_loss_mid_evaluation_turns_chunking_off():
    x, y = _data(320)

    def model_fn():
        tapefit.utils.set_random_seed(0)
        model = tapefit.Sequential([tapefit.Input((6,)), layers.Dense(3), _LateLoss()])
        model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        return model

    chunked, per_batch = model_fn(), model_fn()
    got = _evaluate(chunked, x, y)
    want = _evaluate(per_batch, x, y, callbacks=[_PerBatch()])
    assert got == pytest.approx(want, rel=1e-6)
    assert got["loss"] > _evaluate(model_fn(), x[:96], y[:96])["loss"]  # the late losses count


def test_an_evaluation_that_fails_leaves_no_deferred_updates_behind():
    def batches():
        rng = np.random.default_rng(5)
        for i in range(6):
            if i == 4:
                raise RuntimeError("the data source failed")
            yield rng.normal(size=(8, 6)).astype("float32"), rng.integers(0, 3, 8)

    model = _classifier()
    model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    with pytest.raises(RuntimeError, match="the data source failed"):
        model.evaluate(batches(), verbose=0)
    assert model._lazy_metrics_object().before_read is None
    x, y = _data(64)
    assert _evaluate(model, x, y) == pytest.approx(_evaluate(model, x, y, callbacks=[_PerBatch()]))


def test_a_bad_label_is_reported_as_a_per_batch_evaluation_reports_it():
    x, y = _data(320)
    y[200] = 7  # batch 6 of 10; the model has 3 classes
    data = tapefit.data.Dataset.from_tensor_slices((x, y)).batch(32)  # (arrays are checked up front)
    messages = []
    for extra in ([], [_PerBatch()]):
        model = _classifier()
        model.compile("sgd", tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
        with pytest.raises(ValueError) as error:
            model.evaluate(data, verbose=0, callbacks=extra)
        messages.append(str(error.value))
    assert messages[0] == messages[1]
    assert "7" in messages[0] and "of 32" in messages[0]
