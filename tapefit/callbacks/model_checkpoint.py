"""`ModelCheckpoint`: save the model or its weights during `fit`, crash-safely."""

from __future__ import annotations

import os
import warnings
from typing import Any

from .._atomic import atomic_path, clean_stale_temporaries
from ..distribute.checkpointing import has_sharded
from .callback import _is_chief, _pythonify_logs, _saving_to, _say, _to_float
from .monitor_callback import MonitorCallback

__all__ = ["ModelCheckpoint"]

_WEIGHTS_SUFFIX = ".weights.safetensors"
_MODEL_SUFFIX = ".tapefit"


def _check_filepath(filepath: str, save_weights_only: bool) -> None:
    if save_weights_only and not filepath.endswith(_WEIGHTS_SUFFIX):
        raise ValueError(
            "When using `save_weights_only=True` in `ModelCheckpoint`, the filepath provided must "
            f"end in `{_WEIGHTS_SUFFIX}` (tapefit weights format). Received: filepath={filepath}"
        )
    if not save_weights_only and not filepath.endswith(_MODEL_SUFFIX):
        hint = (
            " (`.keras` files are Keras's; tapefit writes `.tapefit`)" if filepath.endswith(".keras") else ""
        )
        raise ValueError(
            f"The filepath provided must end in `{_MODEL_SUFFIX}` (tapefit model format){hint}, or pass "
            f"`save_weights_only=True` with a filepath ending in `{_WEIGHTS_SUFFIX}`. "
            f"Received: filepath={filepath}"
        )


class ModelCheckpoint(MonitorCallback):
    """Save the model (``.tapefit``) or its weights (``.weights.safetensors``) during `fit`.

    ``filepath`` may hold ``str.format`` fields filled from the epoch (1-based), the batch
    (1-based, with ``save_freq`` an int) and the logs, e.g.
    ``"ckpt-{epoch:02d}-{val_loss:.2f}.weights.safetensors"``. Every file is written to a
    temporary beside its destination, fsynced and renamed, so an interrupted save leaves the
    previous checkpoint intact. A failed save (full disk, no permission) raises with the path
    rather than letting training go on without checkpoints.

    Args:
        filepath: Where to save, ending in ``.tapefit`` or, with ``save_weights_only``,
            ``.weights.safetensors``.
        monitor: The log key that ``save_best_only`` compares.
        verbose: 1 prints a message on each save.
        save_best_only: Save only when ``monitor`` improved (with a fixed filepath, the file
            always holds the best model).
        save_weights_only: Save ``model.save_weights`` instead of ``model.save``.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        save_freq: ``"epoch"`` or a number of batches between saves.
        initial_value_threshold: The value ``monitor`` must beat for the first save.
    """

    def __init__(
        self,
        filepath: str | os.PathLike,
        monitor: str = "val_loss",
        verbose: int = 0,
        save_best_only: bool = False,
        save_weights_only: bool = False,
        mode: str = "auto",
        save_freq: str | int = "epoch",
        initial_value_threshold: float | None = None,
    ) -> None:
        super().__init__(monitor, mode, initial_value_threshold)
        self.verbose = verbose
        self.filepath = os.fspath(filepath)
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        self.save_freq = save_freq
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen: int | None = None
        self._current_epoch = 0
        if save_freq != "epoch" and (not isinstance(save_freq, int) or isinstance(save_freq, bool)):
            raise ValueError(
                f"Unrecognized save_freq: {save_freq!r}. Expected 'epoch' or a positive number of batches."
            )
        if isinstance(save_freq, int):
            # Batch hooks only when asked for, so that fit can skip them otherwise.
            self.on_train_batch_end = self._save_on_batch
        _check_filepath(self.filepath, save_weights_only)

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "_batches_seen_since_last_saving": self._batches_seen_since_last_saving}

    def _save_on_batch(self, batch: int, logs: dict | None = None) -> None:
        if self._should_save_on_batch(batch):
            self._save_model(epoch=self._current_epoch, batch=batch, logs=logs)

    def on_train_begin(self, logs: dict | None = None) -> None:
        folder = os.path.dirname(self.filepath)
        if _is_chief() and "{" not in folder:  # what a killed save left; live writers' files stay
            clean_stale_temporaries(folder or ".")

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._current_epoch = epoch

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        if self.save_freq == "epoch":
            self._save_model(epoch=epoch, batch=None, logs=logs)

    def _should_save_on_batch(self, batch: int) -> bool:
        if self._last_batch_seen is None or batch <= self._last_batch_seen:
            added = batch + 1  # a new epoch began
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _should_save_model(self, epoch: int, logs: dict, filepath: str) -> bool:
        talk = self.verbose > 0
        if not self.save_best_only:
            if talk:
                _say(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available.", stacklevel=3)
            return True
        current = _to_float(current)
        best_str = "None" if self.best is None else f"{self.best:.5f}"
        if self._is_improvement(current, self.best):
            if talk:
                _say(
                    f"\nEpoch {epoch + 1}: {self.monitor} improved from {best_str} to {current:.5f}, "
                    f"saving model to {filepath}"
                )
            self.best = current
            return True
        if talk:
            _say(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {best_str}")
        return False

    def _save_model(self, epoch: int, batch: int | None, logs: dict | None) -> None:
        logs = _pythonify_logs(logs)
        filepath = self._get_file_path(epoch, batch, logs)
        if not self._should_save_model(epoch, logs, filepath):
            return
        if os.path.isdir(filepath):
            raise IsADirectoryError(
                f"ModelCheckpoint: the filepath is an existing directory: {filepath}. "
                "Give a file path ending in the file name."
            )
        save = self.model.save_weights if self.save_weights_only else self.model.save
        with _saving_to(filepath, "ModelCheckpoint", "the checkpoints you asked for"):
            if _is_chief():
                with atomic_path(filepath) as tmp:  # even a save() of the user's own cannot tear the file
                    save(tmp)
            elif has_sharded(self.model.state_dict()):
                save(filepath)  # the weights are gathered from every rank; only rank 0 writes
        if self.verbose > 0:
            _say(f"\nEpoch {epoch + 1}: finished saving model to {filepath}")

    def _get_file_path(self, epoch: int, batch: int | None, logs: dict) -> str:
        try:
            if batch is None or "batch" in logs:
                return self.filepath.format(epoch=epoch + 1, **logs)
            return self.filepath.format(epoch=epoch + 1, batch=batch + 1, **logs)
        except KeyError as e:
            raise KeyError(
                f'Failed to format this callback filepath: "{self.filepath}". Reason: {e} is not in the '
                f"logs; available: epoch, batch, {', '.join(sorted(logs))}"
            ) from None
