"""`EarlyStopping`: stop `fit` when a monitored quantity stops improving (Keras 3's rules)."""

from __future__ import annotations

import warnings
from typing import Any

from .callback import _say, _to_float
from .monitor_callback import MonitorCallback

__all__ = ["EarlyStopping"]


class EarlyStopping(MonitorCallback):
    """Stop training when a monitored metric has stopped improving.

    At the end of each epoch the monitored value counts as an improvement when it beats the
    best so far by more than ``min_delta``; after ``patience`` epochs without one (and never
    at epoch 0) ``model.stop_training`` is set.

    Args:
        monitor: Quantity to watch. Defaults to ``"val_loss"``.
        min_delta: Minimum change that counts as an improvement.
        patience: Epochs without improvement after which training stops.
        verbose: 1 prints a message when the callback acts.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        baseline: Training stops unless the model beats this value within ``patience``
            epochs.
        restore_best_weights: At the end of training, load the weights of the best epoch
            (whether or not it beat ``baseline``).
        start_from_epoch: Epochs of warm-up during which nothing is monitored.

    Example:
        >>> cb = EarlyStopping(monitor="loss", patience=1)
        >>> class M: stop_training = False
        >>> cb.set_model(M())
        >>> cb.on_train_begin()
        >>> for epoch, loss in enumerate([1.0, 0.9, 0.95]):
        ...     cb.on_epoch_end(epoch, {"loss": loss})
        >>> cb.model.stop_training, cb.stopped_epoch
        (True, 2)
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        min_delta: float = 0,
        patience: int = 0,
        verbose: int = 0,
        mode: str = "auto",
        baseline: float | None = None,
        restore_best_weights: bool = False,
        start_from_epoch: int = 0,
    ) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.wait = 0
        self.stopped_epoch = 0
        self.restore_best_weights = restore_best_weights
        self.best_weights: list | None = None
        self.best_epoch = 0
        self.start_from_epoch = start_from_epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "wait": self.wait,
            "stopped_epoch": self.stopped_epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
        }

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # The wait restarts only when the value beats both the baseline and the best.
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.stopped_epoch > 0 and self.verbose > 0:
            _say(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                _say(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)

    def get_monitor_value(self, logs: dict | None) -> float | None:
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(
                f"Early stopping conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}",
                stacklevel=2,
            )
            return None
        return _to_float(value)
