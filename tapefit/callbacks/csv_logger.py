"""`CSVLogger`: one CSV row per epoch, the file rewritten atomically so no row is ever torn."""

from __future__ import annotations

import collections.abc
import csv
import io
import os
from typing import Any

import numpy as np

from .._atomic import atomic_write
from .callback import Callback, _is_chief, _saving_to

__all__ = ["CSVLogger"]


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, collections.abc.Iterable) and not (
        isinstance(value, np.ndarray) and value.ndim == 0
    ):
        return f'"[{", ".join(map(str, value))}]"'
    return value


class CSVLogger(Callback):
    """Streams epoch results to a CSV file (Keras's columns: ``epoch`` then sorted log keys).

    After every epoch the whole file is written to a temporary, fsynced and renamed into
    place: a crash leaves the file as it was after the previous epoch, never a torn row.

    Args:
        filename: Path of the CSV file.
        separator: Column separator.
        append: Append to an existing file (its header is kept) instead of overwriting it.

    Example:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), "log.csv")
        >>> cb = CSVLogger(path)
        >>> cb.on_train_begin()
        >>> cb.on_epoch_end(0, {"loss": 0.5, "val_loss": 0.75})
        >>> cb.on_train_end()
        >>> open(path).read().splitlines()
        ['epoch,loss,val_loss', '0,0.5,0.75']
    """

    def __init__(self, filename: str | os.PathLike, separator: str = ",", append: bool = False) -> None:
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.keys: list[str] | None = None
        self._prefix = ""
        self._rows = io.StringIO()
        self._writer: csv.DictWriter | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._prefix = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, newline="") as f:
                self._prefix = f.read()
            if self._prefix and not self._prefix.endswith("\n"):
                self._prefix += "\n"
        self._rows = io.StringIO()
        self._writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            # Validation may start later (validation_freq): reserve its columns now.
            if self.keys and not any(k.startswith("val_") for k in self.keys):
                self.keys.extend(f"val_{k}" for k in list(self.keys))
        if self._writer is None:
            sep = self.sep

            class _Dialect(csv.excel):
                delimiter = sep
                lineterminator = "\n"

            self._writer = csv.DictWriter(self._rows, fieldnames=["epoch", *self.keys], dialect=_Dialect)
            if not self._prefix:
                self._writer.writeheader()
        row = {"epoch": epoch, **{k: _cell(logs.get(k, "NA")) for k in self.keys}}
        self._writer.writerow(row)
        self._flush()

    def _flush(self) -> None:
        if not _is_chief():
            return
        note = " (the file still holds the rows up to the previous epoch)"
        with (
            _saving_to(self.filename, "CSVLogger", "the log you asked for", note),
            atomic_write(self.filename, "w") as f,
        ):
            f.write(self._prefix + self._rows.getvalue())

    def on_train_end(self, logs: dict | None = None) -> None:
        self._writer = None
