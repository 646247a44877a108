"""The `Callback` base class (every Keras hook) and the log helpers callbacks share.

Batch-level logs may hold 0-dim tensors that still live on the accelerator: callbacks read
them with :func:`_to_float` only when they must, because each read is a host-device sync.
Epoch-level logs reach callbacks as Python floats (:class:`CallbackList` converts them).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch

from ..distribute.environment import is_chief

__all__ = ["Callback"]


def _is_chief() -> bool:
    """Whether this process writes files and prints: rank 0 of a distributed job, or the only one."""
    return is_chief()


def _say(message: str) -> None:
    """Print a callback's message from rank 0 only: every rank runs the callbacks."""
    if is_chief():
        print(message)


@contextlib.contextmanager
def _saving_to(path: str, who: str, what: str, note: str = "") -> Iterator[None]:
    """Re-raise an ``OSError`` from the block as one saying training stops, and why, and how to resume.

    ``who`` names the callback, ``what`` the output that would be missing, ``note`` ends the message.
    """
    try:
        yield
    except OSError as e:
        message = (
            f"{who} could not save to {path}: {e.strerror or e}. Training stops here rather than going on "
            f"without {what}; free space or fix the permissions and resume{note}"
        )
        raise (OSError(e.errno, message) if e.errno is not None else OSError(message)) from e


def _to_float(value: Any) -> Any:
    """A Python float for a scalar tensor/array/number; other values come back unchanged.

    Reading a CUDA tensor is a host-device sync: call this only where a number is needed.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, torch.Tensor):
        value = value.detach()
        if value.numel() != 1:
            value = value.float().mean()
        return float(value)
    if isinstance(value, np.ndarray):
        return float(value.mean()) if value.size != 1 else float(value.reshape(()))
    if isinstance(value, (int, float, np.number)):
        return float(value)
    return value


def _pythonify_logs(logs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keras's epoch-level log form: nested dicts flattened, keys sorted, scalars as floats."""
    result: dict[str, Any] = {}
    for key, value in sorted((logs or {}).items()):
        if isinstance(value, Mapping):
            result.update(_pythonify_logs(value))
        else:
            result[key] = _to_float(value)
    return result


def _is_finite(value: Any) -> bool:
    value = _to_float(value)
    return not isinstance(value, float) or math.isfinite(value)


class Callback:
    """Base class for objects that hook into `fit`, `evaluate` and `predict`.

    Override any of the ``on_*`` methods. ``self.model`` is the model being trained and
    ``self.params`` holds ``{"verbose", "epochs", "steps"}``. Setting
    ``self.model.stop_training = True`` ends `fit` after the current batch.

    Batch-level ``logs`` may contain 0-dim tensors still on the accelerator: convert with
    ``float()`` only when you need the number (each conversion waits for the device).
    Epoch-level ``logs`` contain Python floats.

    Example:
        >>> class Counter(Callback):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.epochs_seen = 0
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         self.epochs_seen += 1
        >>> c = Counter()
        >>> c.on_epoch_end(0, {"loss": 0.5})
        >>> c.epochs_seen
        1
    """

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}
        self._model: Any = None

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def set_model(self, model: Any) -> None:
        self._model = model

    @property
    def model(self) -> Any:
        return self._model

    def state_dict(self) -> dict[str, Any]:
        """The callback's progress (counters, best values) as plain Python values."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned; unknown keys raise ``KeyError``."""
        unexpected = set(state) - set(self.state_dict())
        if unexpected:
            raise KeyError(f"{type(self).__name__}.load_state_dict: unexpected keys {sorted(unexpected)}")
        for key, value in state.items():
            setattr(self, key, value)

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """A backwards-compatible alias for :meth:`on_train_batch_begin`."""

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """A backwards-compatible alias for :meth:`on_train_batch_end`."""

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the start of an epoch during `fit`."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        """Called at the end of an epoch; ``logs`` has the epoch's metrics and ``val_`` ones."""

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before each training batch in `fit`."""
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after each training batch; ``logs`` is what ``train_step`` returned."""
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before each batch in `evaluate` (and in `fit`'s validation)."""

    def on_test_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after each batch in `evaluate`; ``logs`` is what ``test_step`` returned."""

    def on_predict_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        """Called before each batch in `predict`."""

    def on_predict_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Called after each batch in `predict`."""

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Called once at the start of `fit`."""

    def on_train_end(self, logs: dict | None = None) -> None:
        """Called once at the end of `fit` with the last epoch's logs."""

    def on_test_begin(self, logs: dict | None = None) -> None:
        """Called at the start of `evaluate` (and of each validation run)."""

    def on_test_end(self, logs: dict | None = None) -> None:
        """Called at the end of `evaluate` with its results."""

    def on_predict_begin(self, logs: dict | None = None) -> None:
        """Called at the start of `predict`."""

    def on_predict_end(self, logs: dict | None = None) -> None:
        """Called at the end of `predict`."""
