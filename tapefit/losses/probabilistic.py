"""Divergence and count losses: Kullback-Leibler divergence and Poisson."""

from __future__ import annotations

from typing import Any

import torch

from .. import config
from ._tensors import align, pred_tensor, true_like
from .loss import _BuiltinLoss, _row_local

__all__ = ["kl_divergence", "poisson", "KLDivergence", "Poisson"]


@_row_local
def kl_divergence(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``sum(y_true * log(y_true / y_pred), axis=-1)`` with both clipped to ``[epsilon, 1]``.

    Example:
        >>> kl_divergence(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.5, 0.5]]))
        tensor([0.])
    """
    y_pred = pred_tensor(y_pred)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, "kl_divergence")
    eps = config.epsilon()
    y_true = torch.clamp(y_true, eps, 1.0)
    y_pred = torch.clamp(y_pred, eps, 1.0)
    return torch.sum(y_true * torch.log(y_true / y_pred), dim=-1)


@_row_local
def poisson(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean(y_pred - y_true * log(y_pred + epsilon), axis=-1)``: Poisson NLL up to a constant."""
    y_pred = pred_tensor(y_pred)
    y_true, y_pred = align(true_like(y_true, y_pred), y_pred, "poisson")
    return torch.mean(y_pred - y_true * torch.log(y_pred + config.epsilon()), dim=-1)


class KLDivergence(_BuiltinLoss):
    """Kullback-Leibler divergence from ``y_pred`` to ``y_true`` (``"kld"``)."""

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "kl_divergence", dtype: Any = None
    ) -> None:
        super().__init__(kl_divergence, reduction, name, dtype)


class Poisson(_BuiltinLoss):
    """Poisson loss for count targets; ``y_pred`` is the predicted rate."""

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "poisson", dtype: Any = None
    ) -> None:
        super().__init__(poisson, reduction, name, dtype)
