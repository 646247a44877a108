"""Regression losses: squared, absolute, percentage and log errors, Huber, log-cosh, cosine similarity.

Each function returns one value per sample (the mean over the last axis, as Keras does) after
matching ``(N,)`` targets with ``(N, 1)`` predictions; shapes of different rank are refused
rather than broadcast.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from .. import config
from ._tensors import align, pred_tensor, true_like
from .loss import _BuiltinLoss, _row_local

__all__ = [
    "mean_squared_error",
    "mean_absolute_error",
    "mean_absolute_percentage_error",
    "mean_squared_logarithmic_error",
    "huber",
    "log_cosh",
    "cosine_similarity",
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "Huber",
    "LogCosh",
    "CosineSimilarity",
]


def _inputs(y_true: Any, y_pred: Any, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = pred_tensor(y_pred)
    return align(true_like(y_true, y_pred), y_pred, name)


@_row_local
def mean_squared_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean((y_true - y_pred) ** 2, axis=-1)``.

    Example:
        >>> mean_squared_error(torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 1.0]]))
        tensor([0.5000])
    """
    y_true, y_pred = _inputs(y_true, y_pred, "mean_squared_error")
    return torch.mean(torch.square(y_true - y_pred), dim=-1)


@_row_local
def mean_absolute_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean(abs(y_true - y_pred), axis=-1)``."""
    y_true, y_pred = _inputs(y_true, y_pred, "mean_absolute_error")
    return torch.mean(torch.abs(y_true - y_pred), dim=-1)


@_row_local
def mean_absolute_percentage_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``100 * mean(abs((y_true - y_pred) / max(abs(y_true), epsilon)), axis=-1)``."""
    y_true, y_pred = _inputs(y_true, y_pred, "mean_absolute_percentage_error")
    diff = torch.abs((y_true - y_pred) / torch.clamp_min(torch.abs(y_true), config.epsilon()))
    return 100.0 * torch.mean(diff, dim=-1)


@_row_local
def mean_squared_logarithmic_error(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean((log(max(y_pred, eps) + 1) - log(max(y_true, eps) + 1)) ** 2, axis=-1)``."""
    y_true, y_pred = _inputs(y_true, y_pred, "mean_squared_logarithmic_error")
    eps = config.epsilon()
    first_log = torch.log(torch.clamp_min(y_pred, eps) + 1.0)
    second_log = torch.log(torch.clamp_min(y_true, eps) + 1.0)
    return torch.mean(torch.square(first_log - second_log), dim=-1)


@_row_local
def huber(y_true: Any, y_pred: Any, delta: float = 1.0) -> torch.Tensor:
    """Quadratic for errors up to ``delta``, linear beyond: ``0.5 e**2`` or ``delta * |e| - 0.5 delta**2``."""
    y_true, y_pred = _inputs(y_true, y_pred, "huber")
    error = y_pred - y_true
    abs_error = torch.abs(error)
    quadratic = 0.5 * torch.square(error)
    linear = delta * abs_error - 0.5 * delta**2
    return torch.mean(torch.where(abs_error <= delta, quadratic, linear), dim=-1)


@_row_local
def log_cosh(y_true: Any, y_pred: Any) -> torch.Tensor:
    """``mean(log(cosh(y_pred - y_true)), axis=-1)`` as ``x + softplus(-2x) - log 2`` (no overflow)."""
    y_true, y_pred = _inputs(y_true, y_pred, "log_cosh")
    x = y_pred - y_true
    return torch.mean(x + F.softplus(x * -2.0) - math.log(2.0), dim=-1)


def _l2_normalize(x: torch.Tensor, axis: int) -> torch.Tensor:
    inv_norm = torch.rsqrt(torch.sum(torch.square(x), dim=axis, keepdim=True))
    return x * torch.clamp_max(inv_norm, 1.0 / config.epsilon())


@_row_local
def cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> torch.Tensor:
    """Negative cosine similarity along ``axis``: -1 when the vectors point the same way, 0 when orthogonal.

    Example:
        >>> cosine_similarity(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 2.0]]))
        tensor([-1.])
    """
    y_true, y_pred = _inputs(y_true, y_pred, "cosine_similarity")
    if y_pred.dim() == 0:
        y_true, y_pred = y_true.reshape(1), y_pred.reshape(1)
    return -torch.sum(_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis), dim=axis)


class MeanSquaredError(_BuiltinLoss):
    """Mean of squared errors; the Keras default for regression (``"mse"``).

    Example:
        >>> MeanSquaredError()(torch.tensor([[0.0, 1.0], [0.0, 0.0]]), torch.tensor([[1.0, 1.0], [1.0, 0.0]]))
        tensor(0.5000)
    """

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_squared_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(mean_squared_error, reduction, name, dtype)


class MeanAbsoluteError(_BuiltinLoss):
    """Mean of absolute errors (``"mae"``)."""

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_absolute_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(mean_absolute_error, reduction, name, dtype)


class MeanAbsolutePercentageError(_BuiltinLoss):
    """Mean absolute error relative to the target, in percent (``"mape"``)."""

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_absolute_percentage_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(mean_absolute_percentage_error, reduction, name, dtype)


class MeanSquaredLogarithmicError(_BuiltinLoss):
    """Mean squared error of ``log(1 + x)`` (``"msle"``)."""

    def __init__(
        self,
        reduction: str | None = "sum_over_batch_size",
        name: str = "mean_squared_logarithmic_error",
        dtype: Any = None,
    ) -> None:
        super().__init__(mean_squared_logarithmic_error, reduction, name, dtype)


class Huber(_BuiltinLoss):
    """Huber loss with threshold ``delta``: squared for small errors, absolute for large ones."""

    def __init__(
        self,
        delta: float = 1.0,
        reduction: str | None = "sum_over_batch_size",
        name: str = "huber_loss",
        dtype: Any = None,
    ) -> None:
        super().__init__(huber, reduction, name, dtype, delta=delta)


class LogCosh(_BuiltinLoss):
    """Logarithm of the hyperbolic cosine of the error."""

    def __init__(
        self, reduction: str | None = "sum_over_batch_size", name: str = "log_cosh", dtype: Any = None
    ) -> None:
        super().__init__(log_cosh, reduction, name, dtype)


class CosineSimilarity(_BuiltinLoss):
    """Negative cosine similarity along ``axis`` (minimising it aligns the vectors)."""

    def __init__(
        self,
        axis: int = -1,
        reduction: str | None = "sum_over_batch_size",
        name: str = "cosine_similarity",
        dtype: Any = None,
    ) -> None:
        super().__init__(cosine_similarity, reduction, name, dtype, axis=axis)
