"""`TimeSplit`: where each epoch's training time goes: the model's compute, the input pipeline, and
tapefit's own overhead, in ms per step.

The callback owns the clocks and the report; ``fit`` owns the loop and asks the callback (found by
`CallbackList.time_split`) to wrap the epoch's batch iterator and step function. Without a
TimeSplit in the callbacks, ``fit`` runs its loop untimed, so the report costs nothing when off.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from .callback import Callback, _is_chief

__all__ = ["TimeSplit"]

_PARTS = ("step_ms", "compute_ms", "pipeline_ms", "overhead_ms")


class TimeSplit(Callback):
    """Reports how each epoch's step time splits into compute, input pipeline and overhead.

    At the end of every epoch of `fit` it prints one line (rank 0 only) and records, in ms per
    training step:

    - ``compute_ms``: time inside the train step (forward, loss, backward, optimizer update). On
      CUDA it is the GPU time between two events recorded around each step, read once at the end
      of the epoch, so the step loop gains no host-device synchronisation.
    - ``pipeline_ms``: time blocked fetching the next batch (gathering or decoding it, and its
      copy to the device as far as the host waits for it).
    - ``overhead_ms``: the rest of the step loop: callbacks, log accumulation, the loop itself.
    - ``step_ms``: the step loop's time per step, the sum of the three (validation and the
      epoch-end callbacks are not part of it). On CUDA, where the host runs ahead of the GPU,
      the overhead is what remains of the loop's time once compute and pipeline are taken out
      (0 when the GPU work overlapped the fetching).

    It is a callback rather than an argument of ``fit``, as Keras reports through callbacks
    (`ProgbarLogger`, `CSVLogger`, `TensorBoard`): ``fit`` keeps Keras's signature, and a run
    without it executes the untimed loop.

    Args:
        verbose: ``None`` follows the ``verbose`` of ``fit``; ``0`` records without printing; any
            other value prints one line per epoch.

    Attributes:
        history: ``{"step_ms": [...], "compute_ms": [...], "pipeline_ms": [...],
            "overhead_ms": [...], "steps": [...]}``, one entry per epoch.
        last: The last epoch's entry of each list, as a dict (empty before the first epoch ends).

    Example:
        >>> import numpy as np, tapefit
        >>> model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(2)])
        >>> model.compile(optimizer="sgd", loss="mse")
        >>> split = TimeSplit(verbose=0)
        >>> _ = model.fit(np.ones((64, 4)), np.zeros((64, 2)), batch_size=16, verbose=0, callbacks=[split])
        >>> split.last["steps"]
        4
        >>> parts = split.last["compute_ms"] + split.last["pipeline_ms"] + split.last["overhead_ms"]
        >>> abs(parts - split.last["step_ms"]) < 1e-6
        True
    """

    def __init__(self, verbose: int | None = None) -> None:
        super().__init__()
        self.verbose = verbose
        self.history: dict[str, list[float]] = {k: [] for k in (*_PARTS, "steps")}
        self.last: dict[str, float] = {}
        self._reset(cuda=False)

    def _reset(self, cuda: bool) -> None:
        self._cuda = cuda
        self._pipeline = 0.0
        self._compute = 0.0
        self._steps = 0
        self._events: list[tuple[Any, Any]] = []
        self._start = time.perf_counter()

    # ------------------------------------------------------------ called by fit's loop
    def begin_loop(
        self, batches: Iterable[Any], step_fn: Callable[[Any], Any], device: torch.device
    ) -> tuple[Iterator[Any], Callable[[Any], Any]]:
        """Start timing an epoch's step loop: returns the timed batch iterator and step function."""
        self._reset(cuda=device.type == "cuda")
        return self._timed_batches(iter(batches)), self._timed_step(step_fn)

    def end_loop(self) -> None:
        """Close the epoch's step loop: read the CUDA events (one wait) and record the split."""
        if self._events:
            self._events[-1][1].synchronize()
            self._compute = sum(start.elapsed_time(end) for start, end in self._events) / 1000.0
            self._events = []
        total = time.perf_counter() - self._start
        steps = max(self._steps, 1)
        overhead = total - self._pipeline - self._compute
        if self._cuda:
            overhead = max(overhead, 0.0)
            total = self._pipeline + self._compute + overhead
        values = {
            "step_ms": 1000.0 * total / steps,
            "compute_ms": 1000.0 * self._compute / steps,
            "pipeline_ms": 1000.0 * self._pipeline / steps,
            "overhead_ms": 1000.0 * overhead / steps,
            "steps": self._steps,
        }
        for key, value in values.items():
            self.history[key].append(value)
        self.last = values

    def _timed_batches(self, batches: Iterator[Any]) -> Iterator[Any]:
        clock = time.perf_counter
        while True:
            t = clock()
            try:
                item = next(batches)
            except StopIteration:
                self._pipeline += clock() - t
                return
            self._pipeline += clock() - t
            yield item

    def _timed_step(self, step_fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
        if self._cuda:

            def cuda_step(batch: Any) -> Any:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                out = step_fn(batch)
                end.record()
                self._events.append((start, end))
                self._steps += 1
                return out

            return cuda_step
        clock = time.perf_counter

        def step(batch: Any) -> Any:
            t = clock()
            out = step_fn(batch)
            self._compute += clock() - t
            self._steps += 1
            return out

        return step

    # ------------------------------------------------------------------ reporting
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.last:
            return
        verbose = self.params.get("verbose", 1) if self.verbose is None else self.verbose
        if verbose and _is_chief():
            sys.stdout.write(self._line(epoch) + "\n")
            sys.stdout.flush()

    def _line(self, epoch: int) -> str:
        v = self.last
        total = v["step_ms"] or 1.0

        def part(name: str, key: str) -> str:
            return f"{name} {v[key]:.3f} ({100.0 * v[key] / total:.0f}%)"

        return (
            f"Epoch {epoch + 1} time split: {v['step_ms']:.3f} ms/step = "
            f"{part('compute', 'compute_ms')} + {part('input pipeline', 'pipeline_ms')} + "
            f"{part('tapefit overhead', 'overhead_ms')}"
        )
