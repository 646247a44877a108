"""Maximum-margin losses: hinge, squared hinge and categorical hinge."""

from __future__ import annotations

from typing import Any

import torch

from ._tensors import align, pred_tensor, true_like
from .loss import _BuiltinLoss, _row_local

__all__ = ["hinge", "squared_hinge", "categorical_hinge", "Hinge", "SquaredHinge", "CategoricalHinge"]


def _hinge_inputs(y_true: Any, y_pred: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = pred_tensor(y_pred)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, name)
    # Keras maps {0, 1} labels to {-1, 1} when every label is 0 or 1. Deciding that with a
    # tensor-valued where (not a Python `if`) keeps it free of a host sync.
    is_binary = torch.all((y_true == 0) | (y_true == 1))
    return torch.where(is_binary, 2.0 * y_true - 1.0, y_true), y_pred


def hinge(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean(max(1 - y_true * y_pred, 0), axis=-1)``; labels are -1/1 (0/1 are converted).

    Example:
        >>> hinge(torch.tensor([[0.0, 1.0]]), torch.tensor([[-0.5, 0.5]]))
        tensor([0.5000])
    """
    y_true, y_pred = _hinge_inputs(y_true, y_pred, "hinge")
    return torch.mean(torch.clamp_min(1.0 - y_true * y_pred, 0.0), dim=-1)


def squared_hinge(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean(max(1 - y_true * y_pred, 0) ** 2, axis=-1)``; labels are -1/1 (0/1 are converted)."""
    y_true, y_pred = _hinge_inputs(y_true, y_pred, "squared_hinge")
    return torch.mean(torch.square(torch.clamp_min(1.0 - y_true * y_pred, 0.0)), dim=-1)


@_row_local
def categorical_hinge(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``max(max((1 - y_true) * y_pred) - sum(y_true * y_pred) + 1, 0)`` for one-hot ``y_true``."""
    y_pred = pred_tensor(y_pred)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, "categorical_hinge")
    pos = torch.sum(y_true * y_pred, dim=-1)
    neg = torch.amax((1.0 - y_true) * y_pred, dim=-1)
    return torch.clamp_min(neg - pos + 1.0, 0.0)


class Hinge(_BuiltinLoss):
    """Hinge loss for -1/1 (or 0/1) labels."""

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "hinge", dtype: Any = None
    ) -> None:
        super().__init__(hinge, reduction, name, dtype)


class SquaredHinge(_BuiltinLoss):
    """Squared hinge loss for -1/1 (or 0/1) labels."""

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "squared_hinge", dtype: Any = None
    ) -> None:
        super().__init__(squared_hinge, reduction, name, dtype)


class CategoricalHinge(_BuiltinLoss):
    """Hinge loss between one-hot labels and per-class scores."""

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "categorical_hinge",
        dtype: Any = None,
    ) -> None:
        super().__init__(categorical_hinge, reduction, name, dtype)
