"""Step logs on their way to callbacks: flattened, accumulated on the device, read once.

A step returns a dict of tensors. Values that are metric results (their name is one of the
model's metrics) are taken as they are at the end; any other value (a raw batch loss a custom
``train_step`` returns) is averaged over the epoch's steps, as tf.keras's progress bar did.
Accumulation happens on the device; ``to_python`` reads everything in one transfer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from .compile_utils import CompileMetrics

__all__ = ["EpochLogs", "flatten_logs", "to_python"]


def flatten_logs(logs: Any) -> dict[str, Any]:
    """Nested dicts (the compiled metrics' results) become top-level keys, as in Keras 3."""
    if logs is None:
        return {}
    if isinstance(logs, MetricResults):
        return dict(logs)
    if not isinstance(logs, Mapping):
        raise TypeError(f"A step must return a dict of logs (name -> value); got {type(logs).__name__}.")
    out: dict[str, Any] = {}
    for k, v in logs.items():
        if isinstance(v, dict):
            out.update(flatten_logs(v))
        else:
            out[k] = v
    return out


class MetricResults(Mapping):
    """The model's metric results, computed only when someone reads them.

    The default ``train_step`` returns this instead of a dict, so a step that nobody looks at
    (no callback reading batch logs, a progress bar between redraws) launches no ``result()``
    kernels. Metric state accumulates either way, so a late read gives the same numbers.
    """

    def __init__(self, model: Any):
        self._model = model
        self._values: dict[str, Any] | None = None
        # Called before a read: brings deferred metric updates in (see eval_chunks).
        self.before_read: Callable[[], None] | None = None

    def invalidate(self) -> None:
        self._values = None

    def _compute(self) -> dict[str, Any]:
        if self._values is None:
            if self.before_read is not None:
                self.before_read()
            self._values = flatten_logs({m.name: m.result() for m in self._model.metrics})
        return self._values

    def __getitem__(self, key: str) -> Any:
        return self._compute()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._compute())

    def __len__(self) -> int:
        return len(self._compute())


def _metric_names(model: Any) -> set[str]:
    names: set[str] = set()
    for m in model.metrics:
        if isinstance(m, CompileMetrics):
            names.update(x.name for x in m.metrics)
        names.add(m.name)
    return names


class EpochLogs:
    """Accumulates one epoch's step logs without reading them on the host."""

    def __init__(self, model: Any):
        self._model = model
        self._last: dict[str, Any] = {}
        self._sums: dict[str, Any] = {}
        self._stateful: set[str] | None = None
        self._lazy: MetricResults | None = None
        self.steps = 0

    def add(self, step_logs: Any) -> None:
        if isinstance(step_logs, MetricResults):
            self._lazy = step_logs
            self.steps += 1
            return
        logs = flatten_logs(step_logs)
        if self._stateful is None:
            self._stateful = _metric_names(self._model)
        self.steps += 1
        for k, v in logs.items():
            if k in self._stateful:
                self._last[k] = v
            else:
                v = v.detach() if isinstance(v, torch.Tensor) else v
                self._sums[k] = v if k not in self._sums else self._sums[k] + v

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The accumulators as tensors plus JSON metadata (for exact mid-epoch resume)."""
        tensors: dict[str, torch.Tensor] = {}
        for kind, values in (("sums", self._sums), ("last", self._last)):
            for k, v in values.items():
                tensors[f"{kind}/{k}"] = torch.as_tensor(v).detach().cpu().clone()
        return tensors, {"steps": self.steps, "lazy": self._lazy is not None}

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any], device: Any) -> None:
        self.steps = int(meta["steps"])
        for k, v in tensors.items():
            kind, name = k.split("/", 1)
            (self._sums if kind == "sums" else self._last)[name] = v.to(device)
        if meta.get("lazy"):
            self._lazy = self._model._lazy_metrics_object()

    def current(self, dict_copy: bool = True) -> Mapping[str, Any]:
        """The epoch's logs so far; with ``dict_copy=False`` possibly a lazy view (see MetricResults)."""
        if self._lazy is not None and not self._last and not self._sums and not dict_copy:
            return self._lazy
        out = dict(self._lazy or {})
        out.update(self._last)
        for k, v in self._sums.items():
            out[k] = v / self.steps
        return out

    def current_from_metrics(self, results: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The epoch's logs with every metric value read from ``results`` (e.g. metrics reduced
        over the ranks), and the keys that are per-step averages instead (to reduce separately)."""
        out = dict(results) if self._lazy is not None else {}
        averaged = []
        for k, v in self._last.items():
            out[k] = results[k] if k in results else v
            if k not in results:
                averaged.append(k)
        for k, v in self._sums.items():
            out[k] = v / self.steps
            averaged.append(k)
        return out, averaged


def to_python(logs: Mapping[str, Any]) -> dict[str, Any]:
    """Floats (or numpy arrays for vector metrics) for every value, in one device transfer."""
    scalars = {k: v for k, v in logs.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
    out: dict[str, Any] = {}
    if scalars:
        by_device: dict[torch.device, list[str]] = {}
        for k, v in scalars.items():
            by_device.setdefault(v.device, []).append(k)
        for keys in by_device.values():
            values = torch.stack([scalars[k].detach().reshape(()).to(torch.float64) for k in keys]).tolist()
            out.update(zip(keys, values))
    for k, v in logs.items():
        if k in out:
            continue
        if isinstance(v, torch.Tensor):
            out[k] = v.detach().cpu().numpy()
        elif isinstance(v, (int, float, np.floating, np.integer)):
            out[k] = float(v)
        else:
            out[k] = v
    return {k: out[k] for k in logs}
