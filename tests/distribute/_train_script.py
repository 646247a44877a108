"""Runs the same training code on one process (imported by the tests) or on each rank of a
``torchrun`` job (``python -m torch.distributed.run --nproc_per_node=2 _train_script.py OUT``).

Each run writes ``results.npz`` (weights, histories, evaluate/predict outputs) into its own
folder, ``OUT/rank<R>`` or the folder the test gives; callbacks write relative paths there, so
the test can see which ranks wrote files.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch
import torch.distributed.fsdp

import tapefit
from tapefit import layers

N_TRAIN, N_VAL, N_EVAL, GLOBAL_BATCH, EPOCHS = 48, 13, 13, 16, 3
HAS_FULLY_SHARD = hasattr(torch.distributed.fsdp, "fully_shard")  # torch >= 2.6


def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    out = {}
    for name, n in (("train", N_TRAIN), ("val", N_VAL), ("eval", N_EVAL)):
        x = rng.normal(size=(n, 5)).astype("float32")
        out[f"x_{name}"] = x
        out[f"y_{name}"] = (x[:, 0] + x[:, 1] > 0).astype("int64") + (x[:, 2] > 1).astype("int64")
    return out


def make_model(seed: int) -> tapefit.Model:
    tapefit.utils.set_random_seed(seed)
    model = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
    model.compile(
        optimizer=tapefit.optimizers.Adam(0.01),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


class CustomStep(tapefit.Model):
    """A user train_step with GradientTape + apply_gradients (synchronised by the optimizer)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = layers.Dense(8, activation="relu")
        self.out = layers.Dense(3)

    def call(self, x, training=False):
        return self.out(self.hidden(x))

    def train_step(self, data):
        x, y = data
        with tapefit.GradientTape() as tape:
            loss = self.compute_loss(y=y, y_pred=self(x, training=True))
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        return {"loss": loss}


class DropoutProbe(tapefit.Model):
    """Records, at every step, the rows it was given and a dropout mask drawn like the model's."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = layers.Dropout(0.5)
        self.out = layers.Dense(3)
        self.rows: list[np.ndarray] = []
        self.masks: list[np.ndarray] = []

    def call(self, x, training=False):
        return self.out(self.drop(x, training=training))

    def train_step(self, data):
        self.rows.append(data[0][:, 0].numpy().copy())
        self.masks.append((self.drop(torch.ones(4, 6), training=True) == 0).numpy())
        return super().train_step(data)


def dropout_run(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """An unseeded Dataset.shuffle and dropout: the same data order on every rank, different masks."""
    tapefit.utils.set_random_seed(8)
    model = DropoutProbe()
    model.compile(optimizer="sgd", loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = tapefit.data.Dataset.from_tensor_slices((d["x_train"], d["y_train"])).shuffle(N_TRAIN)
    model.fit(ds.batch(GLOBAL_BATCH), epochs=2, verbose=0)
    return {"dropout_rows": np.stack(model.rows), "dropout_masks": np.stack(model.masks)}


class StopOnRankZero(tapefit.callbacks.Callback):
    """Asks to stop after epoch 2 on rank 0 only: every rank must stop there."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1 and tapefit.distribute.rank() == 0:
            self.model.stop_training = True


def weights(model: tapefit.Model) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_weights()]


def tape_loop(d: dict[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
    """A custom GradientTape loop using tapefit.distribute."""
    strategy = tapefit.distribute.DataParallel()
    model = make_model(seed=2)
    optimizer = tapefit.optimizers.SGD(0.1)
    loss_fn = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    mean_loss = tapefit.metrics.Mean()
    ds = tapefit.data.Dataset.from_tensor_slices((d["x_train"], d["y_train"])).batch(GLOBAL_BATCH)
    for _ in range(2):
        mean_loss.reset_state()
        for x, y in strategy.distribute_dataset(ds):
            with tapefit.GradientTape() as tape:
                loss = loss_fn(y, model(x, training=True))
            grads = tapefit.distribute.all_reduce_gradients(tape.gradient(loss, model.trainable_weights))
            optimizer.apply_gradients(zip(grads, model.trainable_weights))
            mean_loss.update_state(loss, sample_weight=len(x))
    return weights(model), tapefit.distribute.metric_results([mean_loss])["mean"]


def backward_loop(d: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A ``loss.backward()`` loop with a torch optimizer and the DDP-wrapped model."""
    strategy = tapefit.distribute.DataParallel()
    model = make_model(seed=6)
    wrapped = strategy.wrap_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_fn = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    ds = tapefit.data.Dataset.from_tensor_slices((d["x_train"], d["y_train"])).batch(GLOBAL_BATCH)
    for x, y in strategy.distribute_dataset(ds):
        optimizer.zero_grad()
        loss_fn(y, wrapped(x, training=True)).backward()
        optimizer.step()
    return weights(model)


def run(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    d = data()
    out: dict[str, np.ndarray] = {}

    model = make_model(seed=1)
    history = model.fit(
        d["x_train"],
        d["y_train"],
        batch_size=GLOBAL_BATCH,
        epochs=EPOCHS,
        shuffle=False,
        validation_data=(d["x_val"], d["y_val"]),
        callbacks=[
            tapefit.callbacks.ModelCheckpoint("ckpt-{epoch}.weights.safetensors", save_weights_only=True),
            tapefit.callbacks.BackupAndRestore("backup", delete_checkpoint=False),
            tapefit.callbacks.CSVLogger("log.csv"),
        ],
        verbose=0,
    )
    for i, w in enumerate(weights(model)):
        out[f"fit_w{i}"] = w
    out["history"] = np.array(json.dumps(history.history))
    out["evaluate"] = np.array(
        json.dumps(model.evaluate(d["x_eval"], d["y_eval"], batch_size=4, verbose=0, return_dict=True))
    )
    out["predict"] = model.predict(d["x_eval"], batch_size=4, verbose=0)
    # Fewer rows than processes (1 row; batches of 1): every rank handles every row.
    x1, y1 = d["x_eval"][:1], d["y_eval"][:1]
    out["one_row_evaluate"] = np.array(json.dumps(model.evaluate(x1, y1, verbose=0, return_dict=True)))
    out["one_row_predict"] = model.predict(x1, verbose=0)
    out["batch_of_one_evaluate"] = np.array(
        json.dumps(model.evaluate(d["x_eval"], d["y_eval"], batch_size=1, verbose=0, return_dict=True))
    )
    singles = tapefit.data.Dataset.from_tensor_slices(d["x_eval"][:3]).batch(1)
    out["dataset_of_ones_predict"] = model.predict(singles, verbose=0)

    shuffled = make_model(seed=3)
    shuffled.fit(d["x_train"], d["y_train"], batch_size=GLOBAL_BATCH, epochs=2, shuffle=True, verbose=0)
    for i, w in enumerate(weights(shuffled)):
        out[f"shuffled_w{i}"] = w

    stopped = make_model(seed=4)
    h = stopped.fit(
        d["x_train"], d["y_train"], batch_size=GLOBAL_BATCH, epochs=4, callbacks=[StopOnRankZero()], verbose=0
    )
    out["stopped_epochs"] = np.array(len(h.history["loss"]))

    tape_weights, tape_loss = tape_loop(d)
    for i, w in enumerate(tape_weights):
        out[f"tape_w{i}"] = w
    out["tape_loss"] = np.array(tape_loss)

    for i, w in enumerate(backward_loop(d)):
        out[f"ddp_w{i}"] = w

    tapefit.utils.set_random_seed(5)
    custom = CustomStep()
    custom.compile(
        optimizer=tapefit.optimizers.Adam(0.01),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    custom.fit(d["x_train"], d["y_train"], batch_size=GLOBAL_BATCH, epochs=2, shuffle=False, verbose=0)
    for i, w in enumerate(weights(custom)):
        out[f"custom_w{i}"] = w

    out.update(dropout_run(d))
    out.update(accumulation_run(d))
    if HAS_FULLY_SHARD:
        out.update(fsdp_run(d))
    np.savez("results.npz", **out)


def accumulation_run(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """SGD with momentum accumulating 2 batches of 8, counting the all-reduces made inside the
    steps: by DDP (a comm hook) and by the optimizer (``_sum_in_place``)."""
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

    from tapefit.distribute import reduction

    tapefit.utils.set_random_seed(6)
    model = tapefit.Sequential([tapefit.Input((5,)), layers.Dense(8, activation="relu"), layers.Dense(3)])
    model.compile(
        optimizer=tapefit.optimizers.SGD(0.1, momentum=0.9, gradient_accumulation_steps=2),
        loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    counts = {"ddp": 0, "optimizer": 0, "in_step": False}

    def ddp_hook(state, bucket):
        counts["ddp"] += 1
        return default_hooks.allreduce_hook(None, bucket)

    class Count(tapefit.callbacks.Callback):
        def on_train_begin(self, logs=None):
            ddp = self.model.__dict__.get("_ddp_forward")
            if ddp is not None:
                ddp.register_comm_hook(None, ddp_hook)

        def on_train_batch_begin(self, batch, logs=None):
            counts["in_step"] = True

        def on_train_batch_end(self, batch, logs=None):
            counts["in_step"] = False

    original = reduction._sum_in_place

    def counted(tensors):
        counts["optimizer"] += counts["in_step"]
        return original(tensors)

    reduction._sum_in_place = counted
    try:
        model.fit(
            d["x_train"],
            d["y_train"],
            batch_size=GLOBAL_BATCH // 2,
            epochs=2,
            shuffle=False,
            verbose=0,
            callbacks=[Count()],
        )
    finally:
        reduction._sum_in_place = original
    out = {f"accum_w{i}": w for i, w in enumerate(weights(model))}
    out["accum_all_reduces"] = np.array([counts["ddp"], counts["optimizer"]])
    return out


def fsdp_run(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """FSDP fit, a full-weights checkpoint, and that checkpoint loaded into a fresh sharded model."""
    strategy = tapefit.distribute.FSDP()
    with strategy.scope():
        model = make_model(seed=1)
        fresh = make_model(seed=9)
    checkpoint = tapefit.callbacks.ModelCheckpoint(
        os.path.join("..", f"fsdp-ckpt-{tapefit.distribute.world_size()}.tapefit")
    )
    model.fit(
        d["x_train"],
        d["y_train"],
        batch_size=GLOBAL_BATCH,
        epochs=EPOCHS,
        shuffle=False,
        verbose=0,
        callbacks=[checkpoint],
    )
    path = os.path.join("..", f"fsdp-{tapefit.distribute.world_size()}.weights.safetensors")
    strategy.save_weights(model, path)
    strategy.load_weights(strategy.shard_model(fresh), path)
    x = d["x_eval"][:12]  # batches of 4: every rank gets rows of every batch, as FSDP needs
    return {
        "fsdp_predict": model.predict(x, batch_size=4, verbose=0),
        "fsdp_reloaded_predict": fresh.predict(x, batch_size=4, verbose=0),
        "fsdp_one_row_predict": model.predict(x[:1], verbose=0),
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(os.path.join(sys.argv[1], f"rank{os.environ.get('RANK', '0')}"))
