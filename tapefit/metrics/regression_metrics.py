"""Regression metrics: mean squared / absolute (percentage) / squared-log error, RMSE, log-cosh, cosine.

Like Keras, the error metrics wrap the loss functions (``tapefit.losses.mean_squared_error``...):
each averages over the last axis, then the metric averages those values over everything it has
seen. (A 1-D batch therefore gives one value per batch, exactly as in Keras.)
"""

from __future__ import annotations

from typing import Any

import torch

from .. import config, losses
from ..losses.loss import _row_local, squeeze_or_expand_to_same_rank
from ._utils import to_tensor
from .reduction_metrics import Mean, MeanMetricWrapper

__all__ = [
    "MeanSquaredError",
    "MeanAbsoluteError",
    "MeanAbsolutePercentageError",
    "MeanSquaredLogarithmicError",
    "RootMeanSquaredError",
    "LogCoshError",
    "CosineSimilarity",
]


def _pair(y_true: Any, y_pred: Any) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = to_tensor(y_pred)
    if not y_pred.is_floating_point():
        y_pred = y_pred.to(getattr(torch, config.floatx()))
    y_true = to_tensor(y_true, device=y_pred.device).to(y_pred.dtype)
    return squeeze_or_expand_to_same_rank(y_true, y_pred)


def _l2_normalize(x: torch.Tensor, axis: int) -> torch.Tensor:
    if x.dim() == 0:
        x = x.unsqueeze(0)
    inv_norm = torch.rsqrt(x.square().sum(dim=axis, keepdim=True))
    return x * inv_norm.clamp_max(1.0 / config.epsilon())


@_row_local
def _cosine_similarity(y_true: Any, y_pred: Any, axis: int = -1) -> torch.Tensor:
    y_true, y_pred = _pair(y_true, y_pred)
    return (_l2_normalize(y_true, axis) * _l2_normalize(y_pred, axis)).sum(dim=axis)


class MeanSquaredError(MeanMetricWrapper):
    """Mean of ``mean((y_true - y_pred) ** 2, axis=-1)`` over all samples.

    Example:
        >>> float(MeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]))
        0.25
    """

    def __init__(self, name: str = "mean_squared_error", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(fn=losses.mean_squared_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsoluteError(MeanMetricWrapper):
    """Mean of ``mean(|y_true - y_pred|, axis=-1)`` over all samples.

    Example:
        >>> float(MeanAbsoluteError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]))
        0.25
    """

    def __init__(self, name: str = "mean_absolute_error", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(fn=losses.mean_absolute_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class MeanAbsolutePercentageError(MeanMetricWrapper):
    """Mean of ``100 * mean(|(y_true - y_pred) / y_true|, axis=-1)`` (denominator at least ``epsilon``)."""

    def __init__(
        self, name: str = "mean_absolute_percentage_error", dtype: str | torch.dtype | None = None
    ) -> None:
        super().__init__(fn=losses.mean_absolute_percentage_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class MeanSquaredLogarithmicError(MeanMetricWrapper):
    """Mean of ``mean((log(1 + y_pred) - log(1 + y_true)) ** 2, axis=-1)`` (inputs clipped at ``epsilon``)."""

    def __init__(
        self, name: str = "mean_squared_logarithmic_error", dtype: str | torch.dtype | None = None
    ) -> None:
        super().__init__(fn=losses.mean_squared_logarithmic_error, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class LogCoshError(MeanMetricWrapper):
    """Mean of ``mean(log(cosh(y_pred - y_true)), axis=-1)``."""

    def __init__(self, name: str = "logcosh", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(fn=losses.log_cosh, name=name, dtype=dtype)
        self._direction = "down"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class CosineSimilarity(MeanMetricWrapper):
    """Mean cosine similarity between labels and predictions along ``axis``."""

    def __init__(
        self, name: str = "cosine_similarity", dtype: str | torch.dtype | None = None, axis: int = -1
    ) -> None:
        super().__init__(fn=_cosine_similarity, name=name, dtype=dtype, axis=axis)
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class RootMeanSquaredError(Mean):
    """``sqrt(mean((y_true - y_pred) ** 2))`` over every element seen (sample weights per sample).

    Example:
        >>> float(RootMeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [0, 0]]))
        0.5
    """

    _per_sample_state = True

    def __init__(self, name: str = "root_mean_squared_error", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self._direction = "down"

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_true = self._as_tensor(y_true, self._torch_dtype)
        y_pred = self._as_tensor(y_pred, self._torch_dtype)
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        super().update_state((y_pred - y_true).square(), sample_weight=sample_weight)

    def result(self) -> torch.Tensor:
        return torch.sqrt(super().result())
