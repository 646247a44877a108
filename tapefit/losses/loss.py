"""The `Loss` base class, the function wrapper, and Keras 3's reduction and sample-weight rules.

A loss turns ``(y_true, y_pred)`` into per-sample values (``call``) and then reduces them with
optional sample weights (``__call__``). The reduction math follows ``keras/src/losses/loss.py``:
``"sum_over_batch_size"`` and ``"mean"`` divide the weighted sum by the number of loss values,
``"mean_with_sample_weight"`` by the sum of the weights, ``"sum"`` does not divide, and
``"none"`` / ``None`` return the weighted per-sample values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from .. import config
from .._masking import get_mask
from .._naming import to_snake_case, unique_name
from ._tensors import as_tensor, resolve_dtype

__all__ = [
    "Loss",
    "LossFunctionWrapper",
    "reduce_values",
    "reduce_weighted_values",
    "squeeze_or_expand_to_same_rank",
    "standardize_reduction",
]

_REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def standardize_reduction(reduction: str | None) -> str | None:
    """Check ``reduction`` against the names Keras accepts and return it unchanged."""
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"Invalid reduction={reduction!r}. Expected one of {list(_REDUCTIONS)}; "
            "'sum_over_batch_size' (the default) is right in almost every case."
        )
    return reduction


def squeeze_or_expand_to_same_rank(
    x1: torch.Tensor, x2: torch.Tensor, expand_rank_1: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Make ranks equal when they differ by one and the longer tensor ends in a size-1 axis.

    This is how Keras matches labels ``(N,)`` with predictions ``(N, 1)``: a rank-1 tensor is
    expanded to ``(N, 1)`` (when ``expand_rank_1``), otherwise the trailing 1 is squeezed away.
    """
    r1, r2 = x1.dim(), x2.dim()
    if r1 == r2 + 1 and x1.shape[-1] == 1:
        if r2 == 1 and expand_rank_1:
            x2 = x2.unsqueeze(-1)
        else:
            x1 = x1.squeeze(-1)
    elif r2 == r1 + 1 and x2.shape[-1] == 1:
        if r1 == 1 and expand_rank_1:
            x1 = x1.unsqueeze(-1)
        else:
            x2 = x2.squeeze(-1)
    return x1, x2


def _divide_no_nan(numerator: torch.Tensor, divisor: torch.Tensor) -> torch.Tensor:
    zero = divisor == 0
    safe = torch.where(zero, torch.ones_like(divisor), divisor)
    return torch.where(zero, torch.zeros_like(numerator), numerator / safe)


def reduce_values(
    values: torch.Tensor,
    sample_weight: torch.Tensor | None = None,
    reduction: str | None = "sum_over_batch_size",
) -> torch.Tensor:
    """Reduce already-weighted loss values; scalars and empty ``(0,)`` tensors pass through, as in Keras."""
    if reduction is None or reduction == "none" or values.dim() == 0 or tuple(values.shape) == (0,):
        return values
    loss = torch.sum(values)
    if reduction == "sum":
        return loss
    if reduction == "mean_with_sample_weight" and sample_weight is not None:
        return _divide_no_nan(loss, torch.sum(sample_weight).to(loss.dtype))
    # A Python divisor: no host-to-device copy (and on CUDA no wait) per step.
    return loss / values.numel() if values.numel() else torch.zeros_like(loss)


def _apply_mask(
    sample_weight: torch.Tensor | None, mask: torch.Tensor | None, reduction: str | None, dtype: torch.dtype
) -> torch.Tensor | None:
    """Fold a validity mask into the sample weights so masked entries do not count (Keras's apply_mask)."""
    if mask is None:
        return sample_weight
    if reduction in ("mean", "sum_over_batch_size"):
        # Valid entries get weight total/valid, so dividing by the element count later
        # amounts to dividing by the number of valid entries.
        total = torch.full((), mask.numel(), dtype=dtype, device=mask.device)
        valid = torch.sum(mask.to(dtype))
        float_mask = torch.where(
            mask.bool(), _divide_no_nan(total, valid), torch.zeros((), dtype=dtype, device=mask.device)
        )
    else:
        float_mask = mask.to(dtype)
    if sample_weight is None:
        return float_mask
    float_mask, sample_weight = _match_weight_shape(float_mask, sample_weight.to(dtype))
    return sample_weight * float_mask


def _match_weight_shape(
    values: torch.Tensor, sample_weight: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    values, sample_weight = squeeze_or_expand_to_same_rank(values, sample_weight)
    if 0 < sample_weight.dim() < values.dim() and sample_weight.shape == values.shape[: sample_weight.dim()]:
        # Per-sample weights (N,) against per-timestep losses (N, T): weight whole samples.
        # Broadcasting would align N with T instead (Keras's behaviour), which is never meant.
        sample_weight = sample_weight.reshape(
            sample_weight.shape + (1,) * (values.dim() - sample_weight.dim())
        )
    try:
        torch.broadcast_shapes(values.shape, sample_weight.shape)
    except RuntimeError as err:
        raise ValueError(
            f"sample_weight of shape {tuple(sample_weight.shape)} does not fit the loss values of shape "
            f"{tuple(values.shape)}: pass one weight per sample, shaped (batch,) or like the loss values."
        ) from err
    return values, sample_weight


def reduce_weighted_values(
    values: torch.Tensor,
    sample_weight: Any = None,
    mask: torch.Tensor | None = None,
    reduction: str | None = "sum_over_batch_size",
    dtype: torch.dtype | str | None = None,
) -> torch.Tensor:
    """Weight per-sample loss values, fold in ``mask``, then reduce them.

    Example:
        >>> reduce_weighted_values(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 0.0]))
        tensor(0.5000)
    """
    reduction = standardize_reduction(reduction)
    values = as_tensor(values, dtype=resolve_dtype(dtype) if dtype is not None else None)
    if sample_weight is not None:
        sample_weight = as_tensor(sample_weight, device=values.device, dtype=values.dtype)
    sample_weight = _apply_mask(sample_weight, mask, reduction, values.dtype)
    if sample_weight is not None:
        values, sample_weight = _match_weight_shape(values, sample_weight)
        values = values * sample_weight
    return reduce_values(values, sample_weight, reduction)


def _row_local(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """Mark a built-in loss or metric function whose value for each row of a batch depends on that
    row alone (``hinge`` does not: it looks at every label to choose their encoding), so that it may
    run on several batches joined together (see ``Loss._sums_over_samples``)."""
    fn._row_local = True  # type: ignore[attr-defined]
    return fn


def _one_value_per_row(values_of: Callable[[Any, Any], Any], y_true: Any, y_pred: Any) -> bool:
    """Whether ``values_of(y_true, y_pred)`` gives one value (or row of values) per row of the batch,
    and one for its first row alone: not one value for the whole batch (as a mean over the last axis
    gives on 1-D data), nor a reduction over the rows (``axis=0``) that has as many entries."""
    if not all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in (y_true, y_pred)):
        return False
    for t, p in ((y_true, y_pred), (y_true[:1], y_pred[:1])):
        values = values_of(t, p)
        if not isinstance(values, torch.Tensor) or values.dim() == 0 or values.shape[0] != p.shape[0]:
            return False
    return True


class Loss:
    """Base class of every loss: subclasses implement ``call(y_true, y_pred)`` returning per-sample losses.

    ``__call__`` converts ``y_pred`` (and float ``y_true``) to the loss dtype (``floatx()``,
    float32 by default, as Keras computes losses), calls ``call`` and reduces. Integer labels keep
    their dtype so ``call`` can index with them; the built-in losses cast them where Keras does.

    Args:
        name: Name of the instance; defaults to the snake_case class name, made unique.
        reduction: ``"sum_over_batch_size"`` (default), ``"sum"``, ``"mean"``,
            ``"mean_with_sample_weight"``, ``"none"`` or ``None``.
        dtype: Computation dtype (``"float32"``, ``torch.float64``, ``"mixed_bfloat16"``, ...).

    Example:
        >>> class MyMSE(Loss):
        ...     def call(self, y_true, y_pred):
        ...         return torch.mean((y_pred - y_true) ** 2, dim=-1)
        >>> MyMSE()(torch.zeros(2, 3), torch.ones(2, 3))
        tensor(1.)
    """

    def __init__(
        self, name: str | None = None, reduction: str | None = "sum_over_batch_size", dtype: Any = None
    ) -> None:
        self.name = name or unique_name(to_snake_case(type(self).__name__))
        self.reduction = standardize_reduction(reduction)
        self._dtype_arg = dtype
        self._torch_dtype = resolve_dtype(dtype if dtype is not None else config.floatx())

    @property
    def dtype(self) -> str:
        """The computation dtype's name, as Keras reports it (``"float32"``)."""
        return str(self._torch_dtype).removeprefix("torch.")

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        """Whether this loss on a concatenation of batches like ``(y_true, y_pred)``, times its row
        count, equals the sum of each batch's loss times its row count, so that an evaluation may
        compute it once per chunk of batches. True only of built-in per-sample losses (see
        LossFunctionWrapper), which run on the batch and on its first row to see their values' shape."""
        return False

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor:
        padding = get_mask(y_pred)  # a layer's mask on the predictions: those entries do not count
        y_pred, y_true = _convert_inputs(y_true, y_pred, self._torch_dtype)
        losses, mask = self._call_with_mask(y_true, y_pred)
        if padding is not None:
            padding = padding.to(losses.device, torch.bool)
            mask = padding if mask is None else mask & padding
        if (
            sample_weight is None
            and mask is None
            and self.reduction in ("sum_over_batch_size", "mean")
            and losses.numel()
            and losses.dtype == self._torch_dtype
        ):
            return losses.mean()  # Keras's sum / number of elements, in one kernel
        return reduce_weighted_values(losses, sample_weight, mask, self.reduction, self._torch_dtype)

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        """Per-sample losses; subclasses must implement it."""
        raise NotImplementedError(f"{type(self).__name__} must implement call(y_true, y_pred).")

    def _call_with_mask(
        self, y_true: torch.Tensor, y_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Per-sample losses and a mask of the entries that count (None: all of them)."""
        return self.call(y_true, y_pred), None

    def get_config(self) -> dict[str, Any]:
        cfg: dict[str, Any] = {"name": self.name, "reduction": self.reduction}
        if self._dtype_arg is not None:
            cfg["dtype"] = self.dtype
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} name={self.name!r} reduction={self.reduction!r}>"


def _convert_inputs(y_true: Any, y_pred: Any, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    device = None
    if not isinstance(y_pred, torch.Tensor):
        device = y_true.device if isinstance(y_true, torch.Tensor) else config.get_device()
    y_pred = as_tensor(y_pred, device=device, dtype=dtype)
    y_true = as_tensor(y_true, device=y_pred.device)
    if y_true.is_floating_point() and y_true.dtype != dtype:
        y_true = y_true.to(dtype)
    return y_pred, y_true


class LossFunctionWrapper(Loss):
    """A `Loss` around a function ``fn(y_true, y_pred, **kwargs)`` returning per-sample losses.

    Labels ``(N,)`` against predictions ``(N, 1)`` are matched first, as Keras does.

    Example:
        >>> from tapefit.losses import mean_absolute_error
        >>> LossFunctionWrapper(mean_absolute_error)(torch.zeros(2, 1), torch.ones(2, 1))
        tensor(1.)
    """

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        reduction: str | None = "sum_over_batch_size",
        name: str | None = None,
        dtype: Any = None,
        **kwargs: Any,
    ) -> None:
        if not callable(fn):
            raise TypeError(f"LossFunctionWrapper needs a callable fn(y_true, y_pred); received {fn!r}.")
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._fn_kwargs = kwargs

    def call(self, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
        return self._call_with_mask(y_true, y_pred)[0]

    def _call_with_mask(
        self, y_true: torch.Tensor, y_pred: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        with_mask = getattr(self.fn, "_with_mask", None)
        if with_mask is not None:
            return with_mask(y_true, y_pred, **self._fn_kwargs)
        return self.fn(y_true, y_pred, **self._fn_kwargs), None

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        # A row-local function with one value per row, averaged over the elements: each batch's
        # value times its rows is its per-sample sum over the trailing size. Not "sum" (per batch)
        # nor a weighted mean, and no mask (ignored labels): it rescales each batch by its own count.
        if not (
            type(self).__module__.startswith("tapefit.losses")
            and getattr(self.fn, "_row_local", False)
            and self.reduction in ("sum_over_batch_size", "mean")
            and self._fn_kwargs.get("ignore_class") is None
        ):
            return False

        def values_of(y_true: Any, y_pred: Any) -> torch.Tensor | None:
            y_pred, y_true = _convert_inputs(y_true, y_pred, self._torch_dtype)
            values, mask = self._call_with_mask(y_true, y_pred)
            return values if mask is None else None

        return _one_value_per_row(values_of, y_true, y_pred)

    def get_config(self) -> dict[str, Any]:
        from .serialization import serialize

        cfg = super().get_config()
        cfg["fn"] = serialize(self.fn)
        cfg.update(self._fn_kwargs)
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        from .serialization import deserialize

        config = dict(config)
        if "fn" in config:
            config["fn"] = deserialize(config["fn"])
        return cls(**config)

    def __repr__(self) -> str:
        return f"<LossFunctionWrapper({getattr(self.fn, '__name__', self.fn)}, kwargs={self._fn_kwargs})>"


class _BuiltinLoss(LossFunctionWrapper):
    """A built-in loss class: its config lists its own arguments, not the wrapped function (as in Keras)."""

    def __init__(
        self,
        fn: Callable[..., torch.Tensor],
        reduction: str | None,
        name: str | None,
        dtype: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(fn, reduction=reduction, name=name, dtype=dtype, **kwargs)
        for key, value in kwargs.items():
            setattr(self, key, value)

    def get_config(self) -> dict[str, Any]:
        cfg = Loss.get_config(self)
        cfg.update({key: getattr(self, key) for key in self._fn_kwargs})
        return cfg

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Loss:
        return cls(**config)
