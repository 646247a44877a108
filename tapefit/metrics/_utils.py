"""Small tensor helpers shared by the metric families: conversion, rank matching, safe division.

Everything here is data-independent (no value ever leaves the device), so metrics built from
these helpers can be updated inside a training step without a host-device sync.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch

from .. import config
from .._naming import to_snake_case, unique_name
from ..losses.loss import squeeze_or_expand_to_same_rank


def auto_name(class_name: str) -> str:
    """A unique default name (``precision``, then ``precision_1``, ...), as Keras's ``auto_name``."""
    return unique_name(to_snake_case(class_name))


def object_name(obj: Any) -> str:
    """The name Keras gives a metric object: its ``name``, else its snake-cased function or class name."""
    if hasattr(obj, "name"):
        return str(obj.name)
    raw = getattr(obj, "__name__", None) or type(obj).__name__
    return to_snake_case(re.sub(r"\W+", "", raw))


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Resolve ``"float32"``, ``"int"``, ``torch.float64`` or ``None`` (floatx) to a torch dtype."""
    if dtype is None:
        dtype = config.floatx()
    if isinstance(dtype, torch.dtype):
        return dtype
    name = {"int": "int32", "float": "float32", "uint": "uint32"}.get(str(dtype), str(dtype))
    name = name.removeprefix("torch.")
    result = getattr(torch, name, None)
    if not isinstance(result, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use a name such as 'float32', 'float64' or 'int32'.")
    return result


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def to_tensor(x: Any, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Convert arrays, lists and scalars to a tensor on ``device``; tensors keep their device.

    A Python or numpy scalar (a batch size passed as ``sample_weight``) becomes a ``torch.full``
    on the device: a fill kernel, where ``torch.as_tensor(3.0, device="cuda")`` would copy from
    the host and wait for the stream.
    """
    if isinstance(x, torch.Tensor):
        return x if dtype is None or x.dtype == dtype else x.to(dtype)
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, bool | int | float):
        if dtype is None:
            dtype = {bool: torch.bool, int: torch.int64}.get(type(x), torch_dtype(None))
        return torch.full((), x, dtype=dtype, device=device)
    if isinstance(x, np.ndarray):
        tensor = torch.as_tensor(x, device=device)
        return tensor if dtype is None else tensor.to(dtype)
    if dtype is None:
        array = np.asarray(x)
        if array.dtype == np.float64:
            array = array.astype(config.floatx())
        return torch.as_tensor(array, device=device)
    return torch.as_tensor(x, dtype=dtype, device=device)


def divide_no_nan(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """``x1 / x2`` with 0 wherever ``x2 == 0`` (no NaN, no sync)."""
    # The quotient's inf/NaN at x2 == 0 is discarded by the where (results carry no gradient):
    # three kernels, where guarding the divisor too would take four on every result() read.
    return torch.where(x2 == 0, 0.0, x1 / x2)


def apply_mask(
    sample_weight: torch.Tensor | None, mask: torch.Tensor | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Fold a padding mask into the sample weights (Keras's ``apply_mask`` with ``reduction="sum"``)."""
    if mask is None:
        return sample_weight
    float_mask = mask.to(dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = squeeze_or_expand_to_same_rank(float_mask, sample_weight.to(dtype))
    return sample_weight * float_mask
