"""`ReduceLROnPlateau`: divide the learning rate when a monitored quantity stalls."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .callback import _say, _to_float
from .monitor_callback import MonitorCallback

__all__ = ["ReduceLROnPlateau"]


def _optimizers(model: Any) -> list[tuple[Any, str]]:
    optimizer = model.optimizer
    if hasattr(optimizer, "optimizers"):
        return [(opt, getattr(opt, "name", f"optimizer_{i}")) for i, opt in enumerate(optimizer.optimizers)]
    return [(optimizer, "")]


class ReduceLROnPlateau(MonitorCallback):
    """Reduce the learning rate when a metric has stopped improving (Keras 3's rules).

    After ``patience`` epochs without an improvement larger than ``min_delta`` the learning
    rate becomes ``max(lr * factor, min_lr)``, then ``cooldown`` epochs pass before counting
    again. Adds ``learning_rate`` to the epoch logs (so `History` records it).

    Args:
        monitor: Quantity to watch.
        factor: Multiplier for the learning rate, < 1.
        patience: Epochs without improvement before a reduction.
        verbose: 1 prints a message on each reduction.
        mode: ``"auto"``, ``"min"`` or ``"max"``.
        min_delta: Minimum change that counts as an improvement.
        cooldown: Epochs to wait after a reduction before counting again.
        min_lr: Lower bound on the learning rate.

    Example:
        >>> cb = ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
        >>> class Opt: learning_rate = 0.1
        >>> class M: optimizer = Opt()
        >>> cb.set_model(M())
        >>> cb.on_train_begin()
        >>> for epoch in range(3):
        ...     cb.on_epoch_end(epoch, {"loss": 1.0})
        >>> cb.model.optimizer.learning_rate
        0.025
    """

    def __init__(
        self,
        monitor: str = "val_loss",
        factor: float = 0.1,
        patience: int = 10,
        verbose: int = 0,
        mode: str = "auto",
        min_delta: float = 1e-4,
        cooldown: int = 0,
        min_lr: float = 0.0,
    ) -> None:
        super().__init__(monitor, mode, min_delta=min_delta)
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        self.factor = factor
        self.min_lr = min_lr
        self.patience = patience
        self.verbose = verbose
        self.cooldown = cooldown
        self.cooldown_counter = 0
        self.wait = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "wait": self.wait, "cooldown_counter": self.cooldown_counter}

    def _reset(self) -> None:
        self.best = None
        self.cooldown_counter = 0
        self.wait = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _reduce_optimizer_lr(self, optimizer: Any, epoch: int, name: str = "") -> bool:
        old_lr = float(_to_float(optimizer.learning_rate))
        if old_lr <= np.float32(self.min_lr):
            return False
        new_lr = max(old_lr * self.factor, self.min_lr)
        optimizer.learning_rate = new_lr
        if self.verbose > 0:
            name_str = f" {name}" if name else ""
            _say(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing{name_str} learning rate to {new_lr}.")
        return True

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._reset()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self.monitor_op is None:
            self._set_monitor_op()
        logs = logs if logs is not None else {}
        optimizers = _optimizers(self.model)
        for opt, name in optimizers:
            key = f"learning_rate_{name}" if name else "learning_rate"
            logs[key] = float(_to_float(opt.learning_rate))
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(
                f"Learning rate reduction is conditioned on metric `{self.monitor}` which is not available. "
                f"Available metrics are: {','.join(logs)}.",
                stacklevel=2,
            )
            return
        current = _to_float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                reduced = [self._reduce_optimizer_lr(opt, epoch, name) for opt, name in optimizers]
                if any(reduced):
                    self.cooldown_counter = self.cooldown
                    self.wait = 0
