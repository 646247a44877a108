"""What ``compile()`` was given, as JSON, so that a resumed run can say what changed.

``BackupAndRestore`` stores a signature of the optimizer, loss, loss weights and metrics with
every backup and refuses a resume whose signature differs, listing the differences.
"""

from __future__ import annotations

import json
from typing import Any

import torch

__all__ = ["compile_signature", "differences"]


def compile_signature(model: Any) -> dict[str, Any]:
    """What ``compile`` was given (as this run starts, before any learning-rate change)."""
    from ..losses import get as get_loss

    config = getattr(model, "_compile_config", None) or {}

    def loss(x: Any) -> Any:  # "mse" and "mean_squared_error" name the same function
        if isinstance(x, (list, tuple)):
            return [loss(v) for v in x]
        if isinstance(x, dict):
            return {k: loss(v) for k, v in x.items()}
        return get_loss(x) if isinstance(x, str) else x

    signature = {
        "optimizer": getattr(model, "optimizer", None),  # resolved: "adam" is Adam()
        "loss": loss(config.get("loss")),
        "loss_weights": config.get("loss_weights"),
        "metrics": config.get("metrics"),
        "weighted_metrics": config.get("weighted_metrics"),
    }
    return json.loads(json.dumps(_describe(signature)))


def _describe(obj: Any) -> Any:
    """A JSON description of a ``compile`` argument, to compare the arguments of two runs.

    Objects give their class and ``get_config()`` without auto-generated names (``adam_3``).
    """
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_describe(o) for o in obj]
    if isinstance(obj, dict):
        return {str(k): _describe(v) for k, v in obj.items()}
    get_config = getattr(obj, "get_config", None)
    if callable(get_config) and not isinstance(obj, type):
        try:
            config = {k: _describe(v) for k, v in get_config().items() if k != "name"}
        except Exception:  # a config that cannot be built still has a class
            config = {}
        return {"class": type(obj).__name__, "config": config}
    if callable(obj):
        return getattr(obj, "__name__", type(obj).__name__)
    return str(obj) if isinstance(obj, torch.dtype) else type(obj).__name__


def differences(saved: Any, now: Any, path: str = "") -> list[str]:
    """Where two signatures differ, one line each (``path: backup ..., now ...``)."""
    if isinstance(saved, dict) and isinstance(now, dict):
        out = []
        for k in sorted(set(saved) | set(now)):
            out += differences(saved.get(k), now.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if saved == now else [f"{path}: backup {saved!r}, now {now!r}"]
