"""Pooling layers (Keras semantics): ``MaxPooling1D/2D/3D``, ``AveragePooling1D/2D/3D`` and the
global poolings ``GlobalAveragePooling1D/2D/3D``, ``GlobalMaxPooling1D/2D/3D``.

``padding="same"`` follows Keras/TF: the output is ``ceil(in / stride)``, padded cells never win a
max and are left out of an average's count. Symmetric padding is handed to torch; asymmetric
padding (the odd cell at the end) is applied with ``F.pad``, with -inf for max pooling and, for
average pooling, a division by the number of real cells in each window.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _conv_utils as cu
from .layer import Layer

__all__ = [
    "AveragePooling1D",
    "AveragePooling2D",
    "AveragePooling3D",
    "AvgPool1D",
    "AvgPool2D",
    "AvgPool3D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAveragePooling3D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalAvgPool3D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPool3D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "GlobalMaxPooling3D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPool3D",
    "MaxPooling1D",
    "MaxPooling2D",
    "MaxPooling3D",
]


class BasePooling(Layer):
    """Max or average pooling over 1, 2 or 3 spatial dimensions."""

    _mode = "max"

    def __init__(
        self,
        rank: int,
        pool_size: Any,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.rank = rank
        self.pool_size = cu.standardize_tuple(pool_size, rank, "pool_size", owner)
        self.strides = cu.standardize_tuple(pool_size if strides is None else strides, rank, "strides", owner)
        self.padding = cu.standardize_padding(padding, owner)
        self.data_format = cu.standardize_data_format(data_format, owner)
        self._op_pool = cu.as_torch_dims(self.pool_size)
        self._op_strides = cu.as_torch_dims(self.strides)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        owner = f"{type(self).__name__} {self.name!r}"
        cu.check_rank(inputs, self.rank, owner, self.data_format)
        x = cu.to_torch_layout(inputs, self.rank, self.data_format)
        dims = len(self._op_pool)
        pads = [(0, 0)] * dims
        if self.padding == "same":
            pads = cu.spatial_pads(x, self._op_pool, self._op_strides, (1,) * dims)
        elif any(x.shape[2 + i] < self._op_pool[i] for i in range(dims)):
            raise ValueError(
                f"{owner}: input of shape {tuple(inputs.shape)} is smaller than pool_size "
                f"{self.pool_size} with padding='valid'; use padding='same' or a larger input."
            )
        y = self._pool(x, pads)
        return cu.from_torch_layout(y, self.rank, self.data_format)

    def _pool(self, x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "pool_size": self.pool_size,
            "padding": self.padding,
            "strides": self.strides,
            "data_format": self.data_format,
        }


class _MaxPool(BasePooling):
    def _pool(self, x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
        low = -float("inf") if x.is_floating_point() else torch.iinfo(x.dtype).min
        x, padding = cu.pad_or_symmetric(x, pads, value=low)
        return cu.torch_op("max_pool", self.rank)(x, self._op_pool, self._op_strides, padding)


class _AvgPool(BasePooling):
    def _pool(self, x: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
        avg_pool = cu.torch_op("avg_pool", self.rank)
        padded, padding = cu.pad_or_symmetric(x, pads)
        if padded is x:
            return avg_pool(x, self._op_pool, self._op_strides, padding, count_include_pad=False)
        # Asymmetric: average the zero-padded input, then rescale by the share of real cells per window.
        ones = torch.ones((1, 1, *x.shape[2:]), dtype=x.dtype, device=x.device)
        share = avg_pool(cu.pad_or_symmetric(ones, pads)[0], self._op_pool, self._op_strides)
        return avg_pool(padded, self._op_pool, self._op_strides) / share


class MaxPooling1D(_MaxPool):
    """Max pooling over steps, Keras's ``MaxPooling1D`` (``strides`` defaults to ``pool_size``)."""

    def __init__(
        self,
        pool_size: Any = 2,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(1, pool_size, strides, padding, data_format, **kwargs)


class MaxPooling2D(_MaxPool):
    """Max pooling over images, Keras's ``MaxPooling2D`` (``strides`` defaults to ``pool_size``).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.MaxPooling2D(padding="same")(torch.ones(1, 5, 5, 3)).shape
        torch.Size([1, 3, 3, 3])
    """

    def __init__(
        self,
        pool_size: Any = (2, 2),
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(2, pool_size, strides, padding, data_format, **kwargs)


class AveragePooling1D(_AvgPool):
    """Average pooling over steps, Keras's ``AveragePooling1D``; "same" padding is not counted."""

    def __init__(
        self,
        pool_size: Any,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(1, pool_size, strides, padding, data_format, **kwargs)


class AveragePooling2D(_AvgPool):
    """Average pooling over images, Keras's ``AveragePooling2D``; "same" padding is not counted."""

    def __init__(
        self,
        pool_size: Any,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(2, pool_size, strides, padding, data_format, **kwargs)


class MaxPooling3D(_MaxPool):
    """Max pooling over volumes, Keras's ``MaxPooling3D`` (``strides`` defaults to ``pool_size``).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.MaxPooling3D(padding="same")(torch.ones(1, 5, 4, 3, 2)).shape
        torch.Size([1, 3, 2, 2, 2])
    """

    def __init__(
        self,
        pool_size: Any = (2, 2, 2),
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(3, pool_size, strides, padding, data_format, **kwargs)


class AveragePooling3D(_AvgPool):
    """Average pooling over volumes, Keras's ``AveragePooling3D``; "same" padding is not counted."""

    def __init__(
        self,
        pool_size: Any,
        strides: Any = None,
        padding: str = "valid",
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(3, pool_size, strides, padding, data_format, **kwargs)


class BaseGlobalPooling(Layer):
    """Reduce every spatial dimension to one value per channel (kept as size 1 if ``keepdims``)."""

    def __init__(self, rank: int, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.rank = rank
        self.data_format = cu.standardize_data_format(data_format, type(self).__name__)
        self.keepdims = bool(keepdims)
        start = 1 if self.data_format == "channels_last" else 2
        self._axes = tuple(range(start, start + rank))
        self.built = True

    def _check(self, inputs: torch.Tensor) -> None:
        cu.check_rank(inputs, self.rank, f"{type(self).__name__} {self.name!r}", self.data_format)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format, "keepdims": self.keepdims}


class _GlobalAverage(BaseGlobalPooling):
    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return inputs.mean(dim=self._axes, keepdim=self.keepdims)


class _GlobalMax(BaseGlobalPooling):
    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return inputs.amax(dim=self._axes, keepdim=self.keepdims)


class GlobalAveragePooling1D(_GlobalAverage):
    """Mean over steps, Keras's ``GlobalAveragePooling1D``; ``mask`` (batch, steps) skips masked steps."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(1, data_format, keepdims, **kwargs)

    def call(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        self._check(inputs)
        if mask is None:
            return inputs.mean(dim=self._axes, keepdim=self.keepdims)
        keep = mask.bool().unsqueeze(2 if self.data_format == "channels_last" else 1)
        total = torch.where(keep, inputs, 0.0).sum(dim=self._axes, keepdim=self.keepdims)
        return total / keep.to(inputs.dtype).sum(dim=self._axes, keepdim=self.keepdims)

    def compute_mask(self, inputs: Any, previous_mask: Any) -> None:
        return None  # the steps are averaged away


class GlobalAveragePooling2D(_GlobalAverage):
    """Mean over height and width, Keras's ``GlobalAveragePooling2D``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.GlobalAveragePooling2D(keepdims=True)(torch.ones(2, 4, 4, 8)).shape
        torch.Size([2, 1, 1, 8])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(2, data_format, keepdims, **kwargs)


class GlobalMaxPooling1D(_GlobalMax):
    """Max over steps, Keras's ``GlobalMaxPooling1D``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(1, data_format, keepdims, **kwargs)


class GlobalMaxPooling2D(_GlobalMax):
    """Max over height and width, Keras's ``GlobalMaxPooling2D``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(2, data_format, keepdims, **kwargs)


class GlobalAveragePooling3D(_GlobalAverage):
    """Mean over depth, height and width, Keras's ``GlobalAveragePooling3D``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.GlobalAveragePooling3D()(torch.ones(2, 3, 4, 4, 8)).shape
        torch.Size([2, 8])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(3, data_format, keepdims, **kwargs)


class GlobalMaxPooling3D(_GlobalMax):
    """Max over depth, height and width, Keras's ``GlobalMaxPooling3D``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(3, data_format, keepdims, **kwargs)


MaxPool1D, MaxPool2D, MaxPool3D = MaxPooling1D, MaxPooling2D, MaxPooling3D
AvgPool1D, AvgPool2D, AvgPool3D = AveragePooling1D, AveragePooling2D, AveragePooling3D
GlobalAvgPool1D, GlobalAvgPool2D, GlobalAvgPool3D = (
    GlobalAveragePooling1D,
    GlobalAveragePooling2D,
    GlobalAveragePooling3D,
)
GlobalMaxPool1D, GlobalMaxPool2D, GlobalMaxPool3D = GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D
