"""No host-device sync inside fit's, evaluate's and predict's steps, checked without a GPU.

Meta tensors carry shapes but no data, so any host read of a value (``.item()``, ``float(t)``,
``bool(t)``, ``.tolist()``, ``.cpu()``, boolean-mask indexing, ``nonzero``) raises on them. These
tests run whole epochs on the meta device, with the CPU-only checks off (they test ``is_cpu``),
exactly as they would run on CUDA. The one read allowed is the epoch's logs at its end; it is
replaced by zeros here and counted. After the first steps no host data may reach the device
either (a blocking host-to-device copy waits for the stream on CUDA). On a GPU,
``test_no_sync_in_a_cuda_epoch`` checks the same with ``torch.cuda.set_sync_debug_mode``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import tapefit
from tapefit import config
from tapefit.trainers import trainer as trainer_module

META = torch.device("meta")
N, BATCH = 96, 16


@pytest.fixture
def epoch_end_reads(monkeypatch):
    """Replace the epoch-end read of the logs (the allowed sync) by zeros; count the reads."""
    reads: list[list[str]] = []

    def fake_to_python(logs: dict[str, Any]) -> dict[str, Any]:
        reads.append(sorted(logs))
        return {k: 0.0 for k in logs}

    monkeypatch.setattr(trainer_module, "to_python", fake_to_python)
    return reads


class _ArmAfterFirstEpoch(tapefit.callbacks.Callback):
    def __init__(self, arm):
        super().__init__()
        self.arm = arm
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1

    def on_epoch_end(self, epoch, logs=None):
        self.arm()


def _data(classes: int = 10, sparse: bool = True):
    rng = np.random.default_rng(0)
    x = rng.random((N, 20), dtype=np.float32)
    labels = rng.integers(0, classes, N)
    y = labels if sparse else np.eye(classes, dtype=np.float32)[labels]
    return x, y


def _mlp(classes: int = 10, **dense_kwargs) -> tapefit.Model:
    return tapefit.Sequential(
        [
            tapefit.Input((20,)),
            tapefit.layers.Dense(32, activation="relu", **dense_kwargs),
            tapefit.layers.BatchNormalization(),
            tapefit.layers.Dropout(0.2),
            tapefit.layers.Dense(classes),
        ]
    )


OPTIMIZERS = {
    "sgd_momentum": lambda: tapefit.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: tapefit.optimizers.Adam(amsgrad=True),
    "adamw": lambda: tapefit.optimizers.AdamW(),
    "adamax": lambda: tapefit.optimizers.Adamax(),
    "nadam": lambda: tapefit.optimizers.Nadam(),
    "rmsprop": lambda: tapefit.optimizers.RMSprop(momentum=0.5, centered=True),
    "adagrad": lambda: tapefit.optimizers.Adagrad(),
    "adadelta": lambda: tapefit.optimizers.Adadelta(),
    "lion": lambda: tapefit.optimizers.Lion(),
    "schedule_clip_ema": lambda: tapefit.optimizers.Adam(
        tapefit.optimizers.schedules.CosineDecay(0.01, 50, warmup_target=0.1, warmup_steps=5),
        global_clipnorm=1.0,
        use_ema=True,
        weight_decay=1e-4,
    ),
    "clipvalue_accumulation": lambda: tapefit.optimizers.SGD(
        0.1, clipvalue=0.5, gradient_accumulation_steps=2
    ),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_fit_with_validation_never_reads_a_step_back(name, on_meta, epoch_end_reads, no_host_to_device):
    model = _mlp()
    model.compile(
        optimizer=OPTIMIZERS[name](),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", tapefit.metrics.SparseTopKCategoricalAccuracy(k=3)],
    )
    x, y = _data()
    counter = _ArmAfterFirstEpoch(no_host_to_device)
    model.fit(x, y, batch_size=BATCH, epochs=2, validation_data=(x, y), verbose=0, callbacks=[counter])
    assert counter.batches == 2 * N // BATCH
    # Per epoch: one read of the training logs, one of the validation logs; nothing else.
    assert epoch_end_reads == [["accuracy", "loss", "sparse_top_k_categorical_accuracy"]] * 4
    assert all(p.device == META for p in model.parameters())


@pytest.mark.parametrize(
    "loss, metrics, sparse",
    [
        ("categorical_crossentropy", ["categorical_accuracy", "auc", "precision", "recall"], False),
        (
            tapefit.losses.CategoricalFocalCrossentropy(from_logits=True, label_smoothing=0.1),
            ["f1_score"],
            False,
        ),
        ("mse", ["mae", tapefit.metrics.RootMeanSquaredError()], False),
        ("binary_crossentropy", ["binary_accuracy", tapefit.metrics.BinaryIoU()], False),
    ],
)
def test_other_losses_and_metrics_never_read_a_step_back(
    loss, metrics, sparse, on_meta, epoch_end_reads, no_host_to_device
):
    model = _mlp(kernel_regularizer="l2", kernel_constraint=tapefit.constraints.MaxNorm(2.0))
    model.compile(optimizer="adam", loss=loss, metrics=metrics, steps_per_execution=2)
    x, y = _data(sparse=sparse)
    weights = np.linspace(0.5, 1.5, N).astype(np.float32)
    counter = _ArmAfterFirstEpoch(no_host_to_device)
    model.fit(x, y, sample_weight=weights, batch_size=BATCH, epochs=2, verbose=0, callbacks=[counter])
    assert counter.batches == N // BATCH  # once per two batches (steps_per_execution), two epochs
    assert len(epoch_end_reads) == 2


def test_class_weight_and_a_dataset_never_read_a_step_back(on_meta, epoch_end_reads, no_host_to_device):
    model = _mlp()
    model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    counter = _ArmAfterFirstEpoch(no_host_to_device)
    ds = tapefit.data.Dataset.from_tensor_slices((x, y)).shuffle(N).batch(BATCH)
    model.fit(ds, epochs=1, verbose=0)
    model.fit(
        x,
        y,
        class_weight={i: 1.0 + i / 10 for i in range(10)},
        batch_size=BATCH,
        epochs=2,
        verbose=0,
        callbacks=[counter],
    )
    assert len(epoch_end_reads) == 3


def test_evaluate_and_predict_read_once(on_meta, epoch_end_reads, no_host_to_device):
    model = _mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    seen = tapefit.callbacks.LambdaCallback(on_predict_batch_end=lambda b, logs: batches.append(b))
    batches: list[int] = []
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        model.predict(x, batch_size=BATCH, verbose=0, callbacks=[seen])
    assert batches == list(range(N // BATCH))  # the one read is the whole output, after the last batch
    model.evaluate(x, y, batch_size=BATCH, verbose=0)

    class Arm(tapefit.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            no_host_to_device()  # each call moves its data to the device once, before its first batch

    model.evaluate(x, y, batch_size=BATCH, verbose=0, callbacks=[Arm()])
    assert epoch_end_reads == [["accuracy", "loss"]] * 2


def test_a_chunked_evaluation_reads_once_and_copies_nothing(on_meta, epoch_end_reads, no_host_to_device):
    """evaluate() updating its loss and metrics once per chunk of batches (trainers/eval_chunks.py)."""
    model = _mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    model.evaluate(x, y, batch_size=BATCH, verbose=0)  # builds the weights and compiled metrics on meta
    x, y = torch.from_numpy(x).to(META), torch.from_numpy(y).to(META)
    updates = []
    update = model._loss_tracker.update_state
    model._loss_tracker.update_state = lambda *a, **k: updates.append(1) or update(*a, **k)
    no_host_to_device()
    model.evaluate(x, y, batch_size=BATCH, verbose=1)  # the progress bar never reads a value back
    assert len(updates) == 2  # the first batch alone, then the other five as one chunk
    assert epoch_end_reads == [["accuracy", "loss"]] * 2


def test_the_progress_bar_and_history_never_read_a_step_back(on_meta, epoch_end_reads, capsys):
    model = _mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = _data()
    history = model.fit(x, y, batch_size=BATCH, epochs=2, verbose=1)
    assert history.history["loss"] == [0.0, 0.0]
    assert "6/6" in capsys.readouterr().out


def test_the_check_catches_a_sync_in_train_step(on_meta, epoch_end_reads):
    class Syncing(tapefit.Sequential):
        def train_step(self, data):
            logs = super().train_step(data)
            if float(self.optimizer.iterations) > 1:  # a host read, as on CUDA it would sync
                pass
            return logs

    model = Syncing([tapefit.Input((20,)), tapefit.layers.Dense(10)])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x, y = _data()
    with pytest.raises((NotImplementedError, RuntimeError), match="meta"):
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_sync_in_a_cuda_epoch():
    config.set_device("cuda")
    try:
        model = _mlp()
        model.compile(
            optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"], jit_compile=False
        )
        x, y = _data()
        model.fit(x, y, batch_size=BATCH, epochs=1, verbose=0)  # builds, moves the data once

        class Guard(tapefit.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")

            def on_train_batch_end(self, batch, logs=None):
                self.steps = batch + 1

        guard = Guard()
        try:
            model.fit(x, y, batch_size=BATCH, epochs=1, verbose=1, callbacks=[guard])
        except RuntimeError as e:
            # The epoch-end read is the only sync allowed; it must come after the last step.
            assert "synchroniz" in str(e), e
            assert guard.steps == N // BATCH, f"synchronised in step {guard.steps}: {e}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
    finally:
        config.set_device("cpu")


def test_a_gradient_tape_loop_never_reads_a_step_back(on_meta):
    model = _mlp()
    optimizer = tapefit.optimizers.Adam(1e-3)
    loss_fn = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    loss_metric = tapefit.metrics.Mean()
    accuracy = tapefit.metrics.SparseCategoricalAccuracy()

    @tapefit.function
    def train_step(x, y):
        with tapefit.GradientTape() as tape:
            logits = model(x, training=True)
            loss = loss_fn(y, logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        loss_metric.update_state(loss)
        accuracy.update_state(y, logits)

    for _epoch in range(2):
        for _step in range(N // BATCH):
            train_step(
                torch.empty(BATCH, 20, device=META), torch.empty(BATCH, dtype=torch.int64, device=META)
            )
        assert loss_metric.result().device == META and accuracy.result().device == META
        loss_metric.reset_state()
        accuracy.reset_state()
    assert optimizer.iterations.device == META


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_sync_in_a_chunked_cuda_evaluation(epoch_end_reads):
    """evaluate() with its loss and metrics updated per chunk of batches: not one sync until the
    logs are read at the end (replaced by zeros here, and counted)."""
    config.set_device("cuda")
    try:
        model = _mlp()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        x, y = _data()
        model.evaluate(x, y, batch_size=BATCH, verbose=0)  # builds the model and the compiled metrics

        class Guard(tapefit.callbacks.Callback):
            def on_test_begin(self, logs=None):  # after the data moved to the GPU
                torch.cuda.synchronize()
                torch.cuda.set_sync_debug_mode("error")

        try:
            model.evaluate(x, y, batch_size=BATCH, verbose=1, callbacks=[Guard()])
        finally:
            torch.cuda.set_sync_debug_mode("default")
        assert epoch_end_reads == [["accuracy", "loss"]] * 2
    finally:
        config.set_device("cpu")
