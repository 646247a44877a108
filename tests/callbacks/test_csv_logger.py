"""CSVLogger: Keras's columns and rows, read back; append mode; never a torn file."""

from __future__ import annotations

import csv
import errno
import os

import numpy as np
import pytest

import tapefit
from tapefit.callbacks import CSVLogger


def _rows(path, sep=","):
    with open(path, newline="") as f:
        return list(csv.reader(f, delimiter=sep))


def test_rows_read_back(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75, "val_accuracy": 0.125})
    assert _rows(path) == [  # complete after every epoch, not only at the end
        ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"],
        ["0", "0.25", "0.5", "0.125", "0.75"],
    ]
    cb.on_epoch_end(1, {"loss": 0.25, "accuracy": 0.5, "val_loss": 0.5, "val_accuracy": 0.25})
    cb.on_train_end()
    assert _rows(path)[2] == ["1", "0.5", "0.25", "0.25", "0.5"]
    assert [n for n in os.listdir(tmp_path)] == ["log.csv"]  # no temporaries left


def test_validation_columns_reserved_when_validation_starts_later(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path, separator=";")
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    cb.on_epoch_end(1, {"loss": 0.5, "val_loss": 0.75})
    assert _rows(path, ";") == [["epoch", "loss", "val_loss"], ["0", "1.0", "NA"], ["1", "0.5", "0.75"]]


def test_append_keeps_the_header_and_earlier_rows(tmp_path):
    path = tmp_path / "log.csv"
    for start in (0, 2):
        cb = CSVLogger(path, append=True)
        cb.on_train_begin()
        cb.on_epoch_end(start, {"loss": 1.0})
        cb.on_epoch_end(start + 1, {"loss": 0.5})
        cb.on_train_end()
    assert _rows(path) == [["epoch", "loss", "val_loss"]] + [
        [str(e), v, "NA"] for e, v in zip(range(4), ["1.0", "0.5"] * 2)
    ]


def test_overwrite_without_append(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("old,content\n1,2\n")
    cb = CSVLogger(path)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    assert _rows(path)[0] == ["epoch", "loss", "val_loss"] and len(_rows(path)) == 2


def test_a_crash_while_writing_leaves_the_previous_epoch(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0})
    before = path.read_text()

    def torn_fsync(fd):
        raise OSError("power cut")

    monkeypatch.setattr(os, "fsync", torn_fsync)
    with pytest.raises(OSError, match="power cut"):
        cb.on_epoch_end(1, {"loss": 0.5})
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["log.csv"]


def test_list_values_are_quoted(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": 1.0, "per_class": [0.5, 0.25]})
    assert _rows(path)[1][2] == '"[0.5, 0.25]"'


def test_rows_match_keras(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    epochs = [
        {"loss": 1.0, "acc": 0.5},
        {"loss": 0.5, "acc": 0.75, "val_loss": 0.6},
        {"loss": 0.25, "acc": 1.0},
    ]
    for name, cls in [("ours.csv", CSVLogger), ("keras.csv", keras.callbacks.CSVLogger)]:
        cb = cls(str(tmp_path / name), separator="\t")
        cb.on_train_begin()
        for epoch, logs in enumerate(epochs):
            cb.on_epoch_end(epoch, dict(logs))
        cb.on_train_end()
    assert _rows(tmp_path / "ours.csv", "\t") == _rows(tmp_path / "keras.csv", "\t")


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._f.__exit__(*exc)


@pytest.mark.parametrize("where", ["fsync", "write"])
def test_a_full_disk_is_reported_with_the_path_and_stops_training(tmp_path, monkeypatch, where):
    path = tmp_path / "log.csv"
    model = tapefit.Sequential([tapefit.Input((2,)), tapefit.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((8, 2), "float32"), np.ones((8, 1), "float32")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[CSVLogger(path)])
    before = path.read_text()
    if where == "fsync":

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "fsync", full)
    else:
        real_fdopen = os.fdopen
        monkeypatch.setattr(os, "fdopen", lambda *a, **k: _FullDisk(real_fdopen(*a, **k)))
    seen = []

    class Count(tapefit.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    with pytest.raises(OSError) as info:
        model.fit(x, y, epochs=3, verbose=0, callbacks=[CSVLogger(path, append=True), Count()])
    message = str(info.value)
    assert info.value.errno == errno.ENOSPC
    assert f"could not save to {path}" in message and "No space left on device" in message
    assert "Training stops here rather than going on without" in message
    assert seen == [0]  # no epoch ran after the failed write
    monkeypatch.undo()
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["log.csv"]
