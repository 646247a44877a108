"""Exact resume on 2 ranks (``torchrun --nproc_per_node=2 _resume_script.py OUT``).

For DataParallel and FSDP: a reference fit, then the same fit stopped by an error on every rank
after its seventh batch (mid-epoch), then a fresh model resuming from the backup. Each rank works in its own
folder (``OUT/rank<R>``), so rank 1 never sees the backup files: what it resumes from is what
rank 0 read and sent. Writes ``results.npz`` and ``files.json`` into each rank's folder.
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

import tapefit
from tapefit import layers

GLOBAL_BATCH, EPOCHS = 8, 3


class Stop(Exception):
    pass


class StopAfter(tapefit.callbacks.Callback):
    def __init__(self, batches: int) -> None:
        super().__init__()
        self.batches = batches

    def on_train_batch_end(self, batch, logs=None):
        self.batches -= 1
        if self.batches == 0:
            raise Stop


def build(strategy: tapefit.distribute.DataParallel) -> tapefit.Model:
    tapefit.utils.set_random_seed(11)
    with strategy.scope():
        model = tapefit.Sequential(
            [tapefit.Input((5,)), layers.Dense(8, activation="relu"), layers.Dropout(0.3), layers.Dense(3)]
        )
        model.compile(
            optimizer=tapefit.optimizers.Adam(0.01),
            loss=tapefit.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    return model


def fit(strategy, callbacks):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 5)).astype("float32")
    y = (x[:, 0] > 0).astype("int64") + (x[:, 1] > 1).astype("int64")
    model = build(strategy)
    history = model.fit(x, y, batch_size=GLOBAL_BATCH, epochs=EPOCHS, verbose=0, callbacks=callbacks)
    return model, history


def run(folder: str) -> None:
    os.makedirs(folder, exist_ok=True)
    os.chdir(folder)
    out: dict[str, np.ndarray] = {}
    files: dict[str, list[str]] = {}
    for kind in ("ddp", "fsdp"):
        strategy = tapefit.distribute.FSDP() if kind == "fsdp" else tapefit.distribute.DataParallel()
        reference, ref_history = fit(strategy, [])
        backup = f"backup-{kind}"
        try:
            fit(strategy, [StopAfter(7), tapefit.callbacks.BackupAndRestore(backup, save_freq=2)])
        except Stop:
            pass
        files[kind] = sorted(os.listdir(backup)) if os.path.isdir(backup) else []
        resumed, history = fit(strategy, [tapefit.callbacks.BackupAndRestore(backup, save_freq=2)])
        x = np.linspace(-1, 1, 16, dtype="float32").reshape(8, 2).repeat(3, axis=1)[:, :5]
        out[f"{kind}_reference"] = reference.predict(x, batch_size=GLOBAL_BATCH, verbose=0)
        out[f"{kind}_resumed"] = resumed.predict(x, batch_size=GLOBAL_BATCH, verbose=0)
        out[f"{kind}_reference_history"] = np.array(json.dumps(ref_history.history))
        out[f"{kind}_resumed_history"] = np.array(json.dumps(history.history))
        files[f"{kind}_after"] = sorted(os.listdir(backup)) if os.path.isdir(backup) else []
    np.savez("results.npz", **out)
    with open("files.json", "w") as f:
        json.dump(files, f)


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(os.path.join(sys.argv[1], f"rank{os.environ.get('RANK', '0')}"))
