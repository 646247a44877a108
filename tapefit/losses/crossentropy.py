"""Crossentropy losses: sparse and one-hot categorical, binary, and their focal variants.

The math is Keras 3's on its torch backend: probabilities (``from_logits=False``) are
renormalised along the class axis where Keras does so, clipped to ``[epsilon, 1 - epsilon]``
and logged; logits go through ``log_softmax`` / ``binary_cross_entropy_with_logits``.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F

from .. import config
from .._masking import get_mask
from ._tensors import (
    _check_sparse_labels,
    align,
    as_tensor,
    check_binary_targets,
    pred_tensor,
    should_check_values,
    true_like,
)
from .loss import _BuiltinLoss, _row_local

__all__ = [
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "categorical_focal_crossentropy",
    "binary_crossentropy",
    "binary_focal_crossentropy",
    "SparseCategoricalCrossentropy",
    "CategoricalCrossentropy",
    "CategoricalFocalCrossentropy",
    "BinaryCrossentropy",
    "BinaryFocalCrossentropy",
]


def _clip_probs(p: torch.Tensor) -> torch.Tensor:
    eps = config.epsilon()
    return torch.clamp(p, eps, 1.0 - eps)


def _sparse_with_mask(
    y_true: Any, y_pred: Any, from_logits: bool = False, ignore_class: int | None = None, axis: int = -1
) -> tuple[torch.Tensor, torch.Tensor | None]:
    y_pred = pred_tensor(y_pred)
    y_true = as_tensor(y_true)
    if y_pred.dim() < 1:
        raise ValueError(
            f"sparse_categorical_crossentropy: y_pred must have a class axis; received shape "
            f"{tuple(y_pred.shape)}."
        )
    class_axis = axis % y_pred.dim()
    if y_true.dim() == y_pred.dim() and y_true.shape[class_axis] == 1:
        y_true = y_true.squeeze(class_axis)
    expected = tuple(d for i, d in enumerate(y_pred.shape) if i != class_axis)
    if tuple(y_true.shape) != expected:
        raise ValueError(
            f"sparse_categorical_crossentropy: y_true has shape {tuple(y_true.shape)} and y_pred has shape "
            f"{tuple(y_pred.shape)}; y_true must hold one class id per prediction, shaped {expected} "
            "(or with a size-1 class axis). For one-hot labels use categorical_crossentropy."
        )
    if y_true.is_complex():
        raise ValueError(
            f"sparse_categorical_crossentropy: labels must be integer class ids; received dtype "
            f"{y_true.dtype}."
        )
    if should_check_values(y_true):
        _check_sparse_labels(y_true, y_pred.shape[class_axis], ignore_class)
    labels = as_tensor(y_true, device=y_pred.device, dtype=torch.long)
    valid = None
    if ignore_class is not None:
        valid = labels != ignore_class
        labels = torch.where(valid, labels, torch.zeros_like(labels))
    output = y_pred.unsqueeze(0) if y_pred.dim() == 1 else y_pred.movedim(class_axis, 1)
    target = labels.unsqueeze(0) if y_pred.dim() == 1 else labels
    if from_logits:
        result = F.cross_entropy(output, target, reduction="none")
    else:
        probs = _clip_probs(output / torch.sum(output, dim=1, keepdim=True))
        result = F.nll_loss(torch.log(probs), target, reduction="none")
    if y_pred.dim() == 1:
        result = result.squeeze(0)
    if valid is not None:
        result = torch.where(valid, result, torch.zeros_like(result))
    return result, valid


@_row_local
def sparse_categorical_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, ignore_class: int | None = None, axis: int = -1
) -> torch.Tensor:
    """Crossentropy between integer class ids and per-class scores, one value per prediction.

    Labels may be of any integer dtype, or floats holding integers (as Keras accepts), shaped like
    ``y_pred`` without the class axis or with a size-1 class axis. On CPU, labels outside
    ``[0, num_classes)`` raise a ValueError naming the label; on CUDA that check is the trainer's,
    done on the host (see ``_check_sparse_labels``). Entries labelled ``ignore_class`` give 0.

    Example:
        >>> sparse_categorical_crossentropy(torch.tensor([1]), torch.tensor([[0.1, 0.9]]))
        tensor([0.1054])
    """
    return _sparse_with_mask(y_true, y_pred, from_logits, ignore_class, axis)[0]


sparse_categorical_crossentropy._with_mask = _sparse_with_mask  # type: ignore[attr-defined]


def _categorical_inputs(
    y_true: Any, y_pred: Any, label_smoothing: float, axis: int, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(axis, bool):
        raise ValueError(f"{name}: axis must be an int; received axis={axis!r}.")
    y_pred = pred_tensor(y_pred)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, name, exact=True)
    if y_pred.dim() < 1:
        raise ValueError(
            f"{name}: y_true and y_pred must be at least rank 1; received shape {tuple(y_pred.shape)}."
        )
    if y_pred.shape[-1] == 1:
        warnings.warn(
            f"In loss {name}, expected y_pred.shape to be (batch_size, num_classes) with num_classes > 1. "
            f"Received: y_pred.shape={tuple(y_pred.shape)}. Consider using 'binary_crossentropy' if you "
            "only have 2 classes.",
            SyntaxWarning,
            stacklevel=3,
        )
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + label_smoothing / y_true.shape[-1]
    return y_true, y_pred


@_row_local
def categorical_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> torch.Tensor:
    """Crossentropy between one-hot (or soft) targets and per-class scores along ``axis``.

    Example:
        >>> categorical_crossentropy(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.1, 0.9]]))
        tensor([0.1054])
    """
    y_true, y_pred = _categorical_inputs(y_true, y_pred, label_smoothing, axis, "categorical_crossentropy")
    if from_logits:
        log_prob = F.log_softmax(y_pred, dim=axis)
    else:
        log_prob = torch.log(_clip_probs(y_pred / torch.sum(y_pred, dim=axis, keepdim=True)))
    return -torch.sum(y_true * log_prob, dim=axis)


@_row_local
def categorical_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> torch.Tensor:
    """Categorical crossentropy scaled by ``alpha * (1 - p) ** gamma`` per class (Lin et al., 2017)."""
    y_true, y_pred = _categorical_inputs(
        y_true, y_pred, label_smoothing, axis, "categorical_focal_crossentropy"
    )
    if from_logits:
        y_pred = torch.softmax(y_pred, dim=axis)
    output = _clip_probs(y_pred / torch.sum(y_pred, dim=axis, keepdim=True))
    focal = alpha * torch.pow(1.0 - output, gamma) * (-y_true * torch.log(output))
    return torch.sum(focal, dim=axis)


def _binary_elementwise(y_true: torch.Tensor, y_pred: torch.Tensor, from_logits: bool) -> torch.Tensor:
    if from_logits:
        return F.binary_cross_entropy_with_logits(y_pred, y_true, reduction="none")
    # F.binary_cross_entropy's formula, written out: that kernel refuses to run inside autocast.
    p = _clip_probs(y_pred)
    return (y_true - 1.0) * torch.clamp_min(torch.log(1.0 - p), -100.0) - y_true * torch.clamp_min(
        torch.log(p), -100.0
    )


def _binary_inputs(
    y_true: Any, y_pred: Any, label_smoothing: float, name: str
) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = pred_tensor(y_pred)
    check_binary_targets(y_true, name)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, name, exact=True)
    if label_smoothing:
        y_true = y_true * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return y_true, y_pred


@_row_local
def binary_crossentropy(
    y_true: Any, y_pred: Any, from_logits: bool = False, label_smoothing: float = 0.0, axis: int = -1
) -> torch.Tensor:
    """Binary crossentropy averaged over ``axis``; targets of any dtype are cast to ``y_pred``'s (as Keras).

    Example:
        >>> binary_crossentropy(torch.tensor([[0, 1]]), torch.tensor([[0.4, 0.6]]))
        tensor([0.5108])
    """
    y_true, y_pred = _binary_inputs(y_true, y_pred, label_smoothing, "binary_crossentropy")
    return torch.mean(_binary_elementwise(y_true, y_pred, from_logits), dim=axis)


@_row_local
def binary_focal_crossentropy(
    y_true: Any,
    y_pred: Any,
    apply_class_balancing: bool = False,
    alpha: float = 0.25,
    gamma: float = 2.0,
    from_logits: bool = False,
    label_smoothing: float = 0.0,
    axis: int = -1,
) -> torch.Tensor:
    """Binary crossentropy scaled by ``(1 - p_t) ** gamma``, optionally by ``alpha`` per class.

    With ``from_logits`` the logits go through a sigmoid and then the clipped-probability
    formula, exactly as Keras computes it.
    """
    y_true, y_pred = _binary_inputs(y_true, y_pred, label_smoothing, "binary_focal_crossentropy")
    if from_logits:
        y_pred = torch.sigmoid(y_pred)
    bce = _binary_elementwise(y_true, y_pred, from_logits=False)
    p_t = y_true * y_pred + (1 - y_true) * (1 - y_pred)
    focal_bce = torch.pow(1.0 - p_t, gamma) * bce
    if apply_class_balancing:
        focal_bce = (y_true * alpha + (1 - y_true) * (1 - alpha)) * focal_bce
    return torch.mean(focal_bce, dim=axis)


class SparseCategoricalCrossentropy(_BuiltinLoss):
    """Crossentropy for integer class labels against per-class scores (Keras's defaults).

    Args:
        from_logits: Whether ``y_pred`` holds logits rather than probabilities.
        ignore_class: A label (e.g. a padding id) whose entries neither add to the loss nor count
            in ``"sum_over_batch_size"``'s divisor.
        axis: The class axis of ``y_pred``.

    Example:
        >>> loss = SparseCategoricalCrossentropy()
        >>> loss(torch.tensor([1, 2]), torch.tensor([[0.05, 0.95, 0.0], [0.1, 0.8, 0.1]]))
        tensor(1.1769)
    """

    def __init__(
        self,
        from_logits: bool = False,
        ignore_class: int | None = None,
        reduction: str | None = "sum_over_batch_size",
        axis: int = -1,
        name: str = "sparse_categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            sparse_categorical_crossentropy,
            reduction,
            name,
            dtype,
            from_logits=from_logits,
            ignore_class=ignore_class,
            axis=axis,
        )
        self._fast = (
            from_logits
            and ignore_class is None
            and axis == -1
            and self.reduction in ("sum_over_batch_size", "mean")
        )

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        # The common training case (logits (N, C), integer labels (N,), no weights) in one fused
        # kernel: the same number as the general path, without its reshapes and extra autograd nodes.
        if (
            self._fast
            and sample_weight is None
            and isinstance(y_pred, torch.Tensor)
            and y_pred.dim() == 2
            and y_pred.dtype == self._torch_dtype
            and isinstance(y_true, torch.Tensor)
            and y_true.dtype in (torch.int64, torch.int32)
            and y_true.dim() == 1
            and y_true.shape[0] == y_pred.shape[0] > 0
            and y_true.device == y_pred.device
            and get_mask(y_pred) is None
        ):
            if should_check_values(y_true):
                _check_sparse_labels(y_true, y_pred.shape[1])
            return F.cross_entropy(y_pred, y_true if y_true.dtype == torch.int64 else y_true.long())
        return super().__call__(y_true, y_pred, sample_weight)


class CategoricalCrossentropy(_BuiltinLoss):
    """Crossentropy for one-hot or soft targets; ``label_smoothing`` mixes in the uniform distribution."""

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            categorical_crossentropy,
            reduction,
            name,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


class CategoricalFocalCrossentropy(_BuiltinLoss):
    """Focal version of `CategoricalCrossentropy`: down-weights well-classified examples."""

    def __init__(
        self,
        alpha: float = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            categorical_focal_crossentropy,
            reduction,
            name,
            dtype,
            alpha=alpha,
            gamma=gamma,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


class BinaryCrossentropy(_BuiltinLoss):
    """Binary crossentropy; ``label_smoothing`` pulls targets towards 0.5.

    Example:
        >>> BinaryCrossentropy()(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.4, 0.6]]))
        tensor(0.5108)
    """

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            binary_crossentropy,
            reduction,
            name,
            dtype,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )


class BinaryFocalCrossentropy(_BuiltinLoss):
    """Focal binary crossentropy (Lin et al., 2017); ``apply_class_balancing`` weights by ``alpha``."""

    def __init__(
        self,
        apply_class_balancing: bool = False,
        alpha: float = 0.25,
        gamma: float = 2.0,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "binary_focal_crossentropy",
        dtype: Any = None,
    ) -> None:
        super().__init__(
            binary_focal_crossentropy,
            reduction,
            name,
            dtype,
            apply_class_balancing=apply_class_balancing,
            alpha=alpha,
            gamma=gamma,
            from_logits=from_logits,
            label_smoothing=label_smoothing,
            axis=axis,
        )
