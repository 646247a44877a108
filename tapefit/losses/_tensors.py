"""Input handling shared by the losses: tensor conversion, dtype names, label/prediction shape checks.

The checks here only read shapes and dtypes (free), except `_check_sparse_labels`, which reads
label values and is therefore run only on CPU tensors inside a loss (see its docstring).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .. import config

_DTYPE_NAMES = {
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "mixed_float16": torch.float16,
    "mixed_bfloat16": torch.bfloat16,
}


def resolve_dtype(dtype: Any) -> torch.dtype:
    """A torch float dtype from a name, a torch dtype, or a policy object with ``compute_dtype``."""
    if isinstance(dtype, torch.dtype):
        resolved = dtype
    elif isinstance(dtype, str) and dtype in _DTYPE_NAMES:
        resolved = _DTYPE_NAMES[dtype]
    elif hasattr(dtype, "compute_dtype"):
        return resolve_dtype(dtype.compute_dtype)
    else:
        raise ValueError(
            f"Unknown loss dtype {dtype!r}: use 'float32', 'float64', 'bfloat16', 'float16' "
            "or a torch float dtype."
        )
    if not resolved.is_floating_point:
        raise ValueError(f"A loss computes in a float dtype; received dtype={dtype!r}.")
    return resolved


def as_tensor(
    x: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """``x`` as a torch tensor on ``device`` with ``dtype`` (each kept when None), copying only if needed."""
    if isinstance(x, torch.Tensor):
        if (dtype is not None and x.dtype != dtype) or (
            device is not None and x.device != torch.device(device)
        ):
            return x.to(device=device, dtype=dtype, non_blocking=True)
        return x
    if isinstance(x, np.ndarray) and x.dtype.kind in "OUSV":
        raise ValueError(
            f"Loss inputs must be numeric; received a numpy array of dtype {x.dtype}. "
            "Encode strings or objects as numbers (class ids, floats) first."
        )
    try:
        return torch.as_tensor(x, dtype=dtype, device=device)
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(
            f"Could not convert a loss input of type {type(x).__name__} to a tensor: {err}"
        ) from err


def pred_tensor(y_pred: Any) -> torch.Tensor:
    """Predictions as a float tensor (integers become ``floatx()``)."""
    y_pred = as_tensor(y_pred, device=None if isinstance(y_pred, torch.Tensor) else config.get_device())
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(resolve_dtype(config.floatx()))
    return y_pred


def true_like(y_true: Any, y_pred: torch.Tensor) -> torch.Tensor:
    """Targets cast to the predictions' dtype and device (Keras casts ``y_true`` to ``y_pred.dtype``)."""
    return as_tensor(y_true, device=y_pred.device, dtype=y_pred.dtype)


def _shapes(y_true: torch.Tensor, y_pred: torch.Tensor) -> str:
    return f"y_true has shape {tuple(y_true.shape)} and y_pred has shape {tuple(y_pred.shape)}"


def align(
    y_true: torch.Tensor, y_pred: torch.Tensor, loss_name: str, exact: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Match ``(N,)`` with ``(N, 1)`` as Keras does, then refuse shapes that would broadcast by accident.

    Same-rank shapes may broadcast along size-1 axes (Keras allows it) unless ``exact``; shapes
    of different rank are refused, since broadcasting ``(N,)`` against ``(N, C)`` pairs the
    wrong axes (the ``(N, N)`` trap).
    """
    from .loss import squeeze_or_expand_to_same_rank

    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    if y_true.shape == y_pred.shape or (y_true.dim() == 0 and not exact):
        return y_true, y_pred
    if not exact and y_true.dim() == y_pred.dim():
        try:
            # y_true may broadcast along its size-1 axes; the predictions are never expanded to fit
            # the labels ((N, 3) labels against an (N, 1) output is a wrong output layer, not data).
            if torch.broadcast_shapes(y_true.shape, y_pred.shape) == y_pred.shape:
                return y_true, y_pred
        except RuntimeError:
            pass
    hint = (
        "Give y_true the shape of y_pred (a trailing axis of size 1 may differ, as in (N,) against (N, 1))."
    )
    if loss_name in ("categorical_crossentropy", "categorical_focal_crossentropy") and (
        y_true.dim() == y_pred.dim() - 1 or (y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1)
    ):
        hint = (
            "y_true looks like integer class ids: use sparse_categorical_crossentropy, or one-hot encode "
            "the labels."
        )
    raise ValueError(f"{loss_name}: {_shapes(y_true, y_pred)}; these shapes do not fit. {hint}")


def _first(values: torch.Tensor) -> float | int:
    return values.reshape(-1)[:1].tolist()[0]


def _check_sparse_labels(y_true: Any, num_classes: int, ignore_class: int | None = None) -> None:
    """Raise a ValueError if sparse labels are not integers in ``[0, num_classes)``.

    It reads the label values, so it is cheap on the host and a device sync on an accelerator.
    The sparse losses call it by themselves for CPU labels only; for CUDA the trainer calls it on
    the host batch before the data goes to the device, so a bad label is reported by name instead
    of an asynchronous device-side assert. Labels equal to ``ignore_class`` are allowed.

    Example:
        >>> _check_sparse_labels(torch.tensor([0, 3]), num_classes=3)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: Sparse label 3 is out of range for 3 classes: labels must lie in [0, 3) ...
    """
    labels = y_true if isinstance(y_true, torch.Tensor) else as_tensor(np.asarray(y_true))
    if labels.dtype == torch.bool:
        labels = labels.long()
    if labels.is_complex():
        raise ValueError(f"Sparse labels must be integer class ids; received dtype {labels.dtype}.")
    if labels.is_floating_point():
        bad = ~(torch.isfinite(labels) & (labels == torch.floor(labels)))
        if bool(bad.any()):
            raise ValueError(
                f"Sparse labels must be integer class ids, but y_true has dtype "
                f"{str(labels.dtype).removeprefix('torch.')} and holds {_first(labels[bad])!r}. Pass integer "
                "labels (e.g. y.astype('int64')), or use categorical_crossentropy for one-hot or soft "
                "targets."
            )
    if ignore_class is None and labels.numel() and not labels.is_floating_point():
        low, high = torch.aminmax(labels)  # one pass; the detailed report below only on failure
        if int(low) >= 0 and int(high) < num_classes:
            return
    out = (labels < 0) | (labels >= num_classes)
    if ignore_class is not None:
        out &= labels != ignore_class
    if bool(out.any()):
        bad_values = labels[out]
        first = int(_first(bad_values))
        raise ValueError(
            f"Sparse label {first} is out of range for {num_classes} classes: labels must lie in "
            f"[0, {num_classes}) ({bad_values.numel()} of {labels.numel()} labels are outside, from "
            f"{int(_first(bad_values.min()))} to {int(_first(bad_values.max()))}). Check the number of units "
            "of the output layer, or set ignore_class for a padding label."
        )


def check_binary_targets(y_true: Any, name: str) -> None:
    """Raise a ValueError if integer targets of a binary loss hold values other than 0 and 1.

    Class ids (0..K-1) given to a binary crossentropy are a common mix-up that trains silently
    on nonsense; float targets (soft labels) are not checked. Run on the host only.

    Example:
        >>> check_binary_targets(torch.tensor([0, 1, 3]), "binary_crossentropy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: binary_crossentropy: integer targets (dtype int64) must be 0 or 1, but y_true holds 3 ...
    """
    labels = y_true if isinstance(y_true, torch.Tensor) else None
    if labels is None:
        array = np.asarray(y_true)
        if array.dtype.kind not in "iu":
            return
        labels = torch.from_numpy(array)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool or not labels.numel():
        return
    if not should_check_values(labels):
        return
    low, high = torch.aminmax(labels)
    if int(low) >= 0 and int(high) <= 1:
        return
    bad = labels[(labels < 0) | (labels > 1)]
    raise ValueError(
        f"{name}: integer targets (dtype {str(labels.dtype).removeprefix('torch.')}) must be 0 or 1, but "
        f"y_true holds {int(_first(bad))} ({bad.numel()} of {labels.numel()} values are neither). For class "
        "ids use sparse_categorical_crossentropy; for several binary labels per sample, one column each."
    )


def should_check_values(t: torch.Tensor) -> bool:
    """Value checks run on CPU tensors in eager mode only: elsewhere they would sync or break a graph."""
    return t.is_cpu and not torch.compiler.is_compiling()
