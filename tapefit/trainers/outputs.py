"""What the loops hand back: per-step input checks, evaluate's return shape, predict's arrays."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..utils.data_utils import unpack_x_y_sample_weight
from .data_adapters import leaves

__all__ = [
    "batch_size_of",
    "check_finite",
    "format_logs",
    "concat_tensors",
    "concat_to_numpy",
    "group_outputs",
]


def batch_size_of(x: Any) -> int:
    if isinstance(x, torch.Tensor):
        return x.shape[0]
    flat = leaves(x)
    return int(flat[0].shape[0]) if flat else 0


def check_finite(batch: Any, epoch: int, step: int) -> None:
    """Raise, naming the batch and the part of it, if a floating input holds NaN or Inf."""
    x, y, sample_weight = unpack_x_y_sample_weight(batch)
    for part, value in (("x", x), ("y", y), ("sample_weight", sample_weight)):
        for t in leaves(value):
            if isinstance(t, torch.Tensor) and t.is_floating_point():
                nan, inf = int(torch.isnan(t).sum()), int(torch.isinf(t).sum())
                if nan or inf:
                    raise ValueError(
                        f"Non-finite input in epoch {epoch + 1}, batch {step}: {part} holds {nan} NaN and "
                        f"{inf} Inf values. Clean the data (or drop check_numerics=True to train on it "
                        "anyway); the weights were not changed by this batch."
                    )


def format_logs(logs: dict[str, float], return_dict: bool) -> Any:
    if return_dict:
        return logs
    values = list(logs.values())
    return values[0] if len(values) == 1 else values


def concat_tensors(outputs: list[Any]) -> Any:
    """Per-batch outputs joined along the rows, kept as tensors (``None`` when there are none)."""
    if not outputs:
        return None
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat([o.detach() for o in outputs])
    if isinstance(first, (list, tuple)):
        return type(first)(concat_tensors([o[i] for o in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: concat_tensors([o[k] for o in outputs]) for k in first}
    raise TypeError(
        f"predict_step returned {type(first).__name__}; a distributed predict() needs tensors (or "
        "lists/dicts of tensors) with one row per input row."
    )


def group_outputs(outputs: list[Any]) -> Any:
    """One execution's predictions for ``on_predict_batch_end``: its batches joined along the rows
    (as Keras does with ``steps_per_execution``), or the batch's own output when it ran alone."""
    if len(outputs) == 1:
        return outputs[0]
    try:
        return concat_tensors(outputs)
    except TypeError:
        return list(outputs)  # outputs that are not tensors: the execution's per-batch list


def concat_to_numpy(outputs: list[Any]) -> Any:
    first = outputs[0]
    if isinstance(first, torch.Tensor):
        return torch.cat([o.detach() for o in outputs]).cpu().numpy()
    if isinstance(first, (list, tuple)):
        return type(first)(concat_to_numpy([o[i] for o in outputs]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: concat_to_numpy([o[k] for o in outputs]) for k in first}
    if isinstance(first, np.ndarray):
        return np.concatenate(outputs)
    warnings.warn(
        f"predict_step returned {type(first).__name__}; returning the per-batch list.", stacklevel=3
    )
    return outputs
