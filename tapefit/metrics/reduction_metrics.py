"""Reductions over batches: ``Sum``, ``Mean`` and ``MeanMetricWrapper`` (a per-sample function, averaged).

Sample weights follow Keras exactly: weights are squeezed or expanded to the values' rank, the
values are reduced to the weights' rank, and the weighted mean is ``sum(v * w) / sum(w)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .._masking import get_mask
from ..losses.loss import _one_value_per_row, squeeze_or_expand_to_same_rank
from ._utils import apply_mask, divide_no_nan
from .metric import Metric

__all__ = ["Sum", "Mean", "MeanMetricWrapper"]


def _reduce_to_samplewise_values(
    metric: Metric, values: Any, sample_weight: Any, reduce_fn: Callable[..., torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weight ``values`` and reduce them to one value per sample (Keras's ``reduce_to_samplewise_values``)."""
    mask = get_mask(values)
    dtype = metric._torch_dtype
    values = metric._as_tensor(values, dtype)
    if sample_weight is not None:
        sample_weight = apply_mask(metric._as_tensor(sample_weight, dtype), mask, dtype)
        values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
        weight_ndim, values_ndim = sample_weight.dim(), values.dim()
        if values_ndim > weight_ndim:
            values = reduce_fn(values, dim=tuple(range(weight_ndim, values_ndim)))
        sample_weight = sample_weight.broadcast_to(values.shape)
        values = values * sample_weight
        if weight_ndim > 1:
            sample_weight = reduce_fn(sample_weight, dim=tuple(range(1, weight_ndim)))
    if values.dim() > 1:
        values = reduce_fn(values, dim=tuple(range(1, values.dim())))
    return values, sample_weight


class Sum(Metric):
    """The (weighted) sum of the given values.

    Example:
        >>> m = Sum()
        >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        4.0
    """

    def __init__(self, name: str = "sum", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self._torch_dtype, name="total")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        values, _ = _reduce_to_samplewise_values(self, values, sample_weight, torch.sum)
        self._raw.total.add_(values.sum())

    def result(self) -> torch.Tensor:
        return self._raw.total.to(self._torch_dtype, copy=True)


class Mean(Metric):
    """The (weighted) mean of the given values: ``total / count``.

    Example:
        >>> m = Mean()
        >>> m.update_state([1, 3, 5, 7], sample_weight=[1, 1, 0, 0])
        >>> float(m.result())
        2.0
    """

    def __init__(self, name: str = "mean", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(name=name, dtype=dtype)
        self.total = self.add_variable(shape=(), initializer="zeros", dtype=self._torch_dtype, name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", dtype=self._torch_dtype, name="count")

    def update_state(self, values: Any, sample_weight: Any = None) -> None:
        raw = self._raw
        if (
            isinstance(values, torch.Tensor)
            and values.dim() == 0
            and (sample_weight is None or type(sample_weight) in (int, float))
            and self._torch_dtype.is_floating_point  # (values is on the state's device: see _follows_device)
        ):
            # The loss tracker's case (a scalar loss, maybe weighted by the batch size): two in-place ops.
            weight = 1 if sample_weight is None else sample_weight
            if values.dtype != raw.total.dtype:
                values = values.to(raw.total.dtype)
            raw.total.add_(values, alpha=weight)
            raw.count.add_(raw._one, alpha=weight)
            return
        values, sample_weight = _reduce_to_samplewise_values(self, values, sample_weight, torch.mean)
        self._raw.total.add_(values.sum())
        if sample_weight is not None:
            self._raw.count.add_(sample_weight.sum())
        else:
            self._raw.count.add_(values.shape[0] if values.dim() >= 1 else 1)

    def result(self) -> torch.Tensor:
        return divide_no_nan(self._raw.total, self._raw.count)


def _is_loss(fn: Any) -> bool:
    module = getattr(fn, "__module__", None) or type(fn).__module__
    return module.startswith("tapefit.losses")


class MeanMetricWrapper(Mean):
    """Average a per-sample function ``fn(y_true, y_pred, **kwargs)`` over everything seen.

    Args:
        fn: the function; it returns one value per sample (or per element).
        name: name of the metric.
        dtype: dtype of the accumulators.
        **kwargs: passed on to ``fn``.

    Example:
        >>> import torch
        >>> m = MeanMetricWrapper(lambda y_true, y_pred: (y_true - y_pred) ** 2, name="se")
        >>> float(m(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0])))
        0.5
    """

    _per_sample_state = True

    def __init__(
        self,
        fn: Callable[..., Any],
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self._fn = fn
        self._fn_kwargs = kwargs
        if _is_loss(fn):
            self._direction = "down"

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        # A mean counts a function's single value for a batch once per update, so the function must
        # be row-local and give a value per row here (the mean-over-last-axis ones do not on 1-D data).
        if not (super()._sums_over_samples(y_true, y_pred) and getattr(self._fn, "_row_local", False)):
            return False
        return _one_value_per_row(
            lambda t, p: self._fn(t, p, **self._fn_kwargs), self._as_tensor(y_true), self._as_tensor(y_pred)
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        mask = get_mask(y_pred)
        y_true, y_pred = self._as_tensor(y_true), self._as_tensor(y_pred)
        values = self._fn(y_true, y_pred, **self._fn_kwargs)
        if sample_weight is not None:
            sample_weight = self._as_tensor(sample_weight, self._torch_dtype)
        sample_weight = apply_mask(sample_weight, mask, self._torch_dtype)
        super().update_state(values, sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        from . import serialize

        return {**super().get_config(), "fn": serialize(self._fn), **self._fn_kwargs}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> MeanMetricWrapper:
        from . import deserialize

        config = dict(config)
        if "fn" in config:
            config["fn"] = deserialize(config["fn"])
        return cls(**config)
