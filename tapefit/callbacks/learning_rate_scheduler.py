"""`LearningRateScheduler`: set the learning rate from ``schedule(epoch, lr)`` at each epoch."""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable
from typing import Any

import numpy as np

from .callback import Callback, _say, _to_float
from .reduce_lr_on_plateau import _optimizers

__all__ = ["LearningRateScheduler"]


def _takes_lr(schedule: Callable) -> bool:
    try:
        params = inspect.signature(schedule).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: assume the two-argument form
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class LearningRateScheduler(Callback):
    """Set the learning rate at the start of each epoch to ``schedule(epoch, lr)``.

    ``schedule`` takes the epoch index (0-based) and the current learning rate and returns
    the new one as a float; a one-argument ``schedule(epoch)`` works too. Adds
    ``learning_rate`` to the epoch logs.

    Args:
        schedule: ``(epoch, lr) -> float`` or ``(epoch) -> float``.
        verbose: 1 prints the learning rate each epoch.

    Example:
        >>> cb = LearningRateScheduler(lambda epoch, lr: lr if epoch < 1 else lr * 0.5)
        >>> class Opt: learning_rate = 0.1
        >>> class M: optimizer = Opt()
        >>> cb.set_model(M())
        >>> for epoch in range(3):
        ...     cb.on_epoch_begin(epoch)
        >>> cb.model.optimizer.learning_rate
        0.025
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose
        self._two_args = _takes_lr(schedule)

    def _update_optimizer_lr(self, optimizer: Any, epoch: int) -> float:
        if not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        if self._two_args:
            lr = self.schedule(epoch, float(_to_float(optimizer.learning_rate)))
        else:
            lr = self.schedule(epoch)
        if isinstance(lr, bool) or not isinstance(lr, (numbers.Real, np.floating)):
            raise ValueError(
                f"The output of the `schedule` function should be a float. Got: {lr!r} ({type(lr).__name__})"
            )
        optimizer.learning_rate = float(lr)
        return float(lr)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        for opt, name in _optimizers(self.model):
            lr = self._update_optimizer_lr(opt, epoch)
            if self.verbose > 0:
                which = f"{name} learning rate" if name else "learning rate"
                _say(f"\nEpoch {epoch + 1}: LearningRateScheduler setting {which} to {lr}.")

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for opt, name in _optimizers(self.model):
            logs[f"learning_rate_{name}" if name else "learning_rate"] = float(_to_float(opt.learning_rate))
