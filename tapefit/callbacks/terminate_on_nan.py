"""`TerminateOnNaN`: stop `fit` at the first NaN or Inf loss without a sync per step.

On CUDA the finiteness test runs on the device and its one-byte answer is copied to pinned
host memory asynchronously; the callback reads it once the copy has landed (an event query,
which never blocks), so a bad loss is seen a step or two after it happens, and reported with
the batch where it happened.
"""

from __future__ import annotations

import collections
import math
from typing import Any

import torch

from .callback import Callback, _say, _to_float

__all__ = ["TerminateOnNaN"]


class TerminateOnNaN(Callback):
    """Stops training when the loss becomes NaN or infinite.

    Args:
        raise_error: Raise ``RuntimeError`` instead of setting ``model.stop_training``.
        restore_weights: Keep a copy of the weights from before each step and put it back when
            the loss turns non-finite, so the model ends with its last good weights. It costs a
            weight copy per step, and on CUDA it checks each step synchronously.
    """

    def __init__(self, raise_error: bool = False, restore_weights: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error
        self.restore_weights = restore_weights
        self._pending: collections.deque = collections.deque()  # (batch, host flag, event)
        self._free: list[torch.Tensor] = []
        self._saved: list[torch.Tensor] | None = None
        if not restore_weights:  # no per-step hook unless asked for
            self.on_train_batch_begin = Callback.on_train_batch_begin.__get__(self)  # type: ignore[method-assign]

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        weights = self.model.weights
        with torch.no_grad():
            if self._saved is None or len(self._saved) != len(weights):
                self._saved = [w.detach().clone() for w in weights]
            else:
                torch._foreach_copy_(self._saved, [w.detach() for w in weights])

    def on_train_begin(self, logs: dict | None = None) -> None:
        self._pending.clear()

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        if isinstance(loss, torch.Tensor) and loss.device.type == "cuda" and not self.restore_weights:
            self._poll()
            self._enqueue(batch, loss)
        elif not math.isfinite(_to_float(loss)):
            self._terminate(batch, _to_float(loss))

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if self._poll(wait=True):
            return
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(_to_float(loss)):
            self._terminate(None, _to_float(loss))

    def _enqueue(self, batch: int, loss: torch.Tensor) -> None:
        flag = self._free.pop() if self._free else torch.empty((), dtype=torch.bool, pin_memory=True)
        flag.copy_(torch.isfinite(loss.detach()).all(), non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending.append((batch, flag, event))

    def _poll(self, wait: bool = False) -> bool:
        while self._pending and (wait or self._pending[0][2].query()):
            batch, flag, event = self._pending.popleft()
            if wait:
                event.synchronize()
            finite = bool(flag)
            self._free.append(flag)
            if not finite:
                self._pending.clear()
                self._terminate(batch, float("nan"))
                return True
        return False

    def _terminate(self, batch: int | None, loss: Any) -> None:
        where = f"Batch {batch}" if batch is not None else "Epoch end"
        if self.restore_weights and self._saved is not None and batch is not None:
            with torch.no_grad():
                torch._foreach_copy_([w.detach() for w in self.model.weights], self._saved)
            _say(f"{where}: restored the weights from before the non-finite step")
        if self.raise_error:
            raise RuntimeError(
                f"NaN or Inf loss encountered at {where.lower()}. Loss value: {loss}. "
                "Terminating training immediately."
            )
        _say(f"{where}: Invalid loss, terminating training")
        self.model.stop_training = True
