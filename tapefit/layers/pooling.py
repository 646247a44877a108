"""Pooling layers (Keras semantics): ``MaxPooling1D/2D``, ``AveragePooling1D/2D`` and the global
poolings ``GlobalAveragePooling1D/2D``, ``GlobalMaxPooling1D/2D``.

``padding="same"`` follows Keras/TF: the output is ``ceil(in / stride)``, padded cells never win a
max and are left out of an average's count. Symmetric padding is handed to torch; asymmetric
padding (the odd cell at the end) is applied with ``F.pad``, with -inf for max pooling and, for
average pooling, a division by the number of real cells in each window.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from . import _conv_utils as cu
from .layer import Layer

__all__ = [
    "AveragePooling1D",
    "AveragePooling2D",
    "AvgPool1D",
    "AvgPool2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalAvgPool1D",
    "GlobalAvgPool2D",
    "GlobalMaxPool1D",
    "GlobalMaxPool2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "MaxPool1D",
    "MaxPool2D",
    "MaxPooling1D",
    "MaxPooling2D",
]


class BasePooling(Layer):
    """Max or average pooling over 1 or 2 spatial dimensions."""

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
        self._pool_2d = cu.as_2d(self.pool_size)
        self._strides_2d = cu.as_2d(self.strides)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        owner = f"{type(self).__name__} {self.name!r}"
        cu.check_rank(inputs, self.rank, owner, self.data_format)
        x4 = cu.to_torch_layout(inputs, self.rank, self.data_format)
        pads = [(0, 0), (0, 0)]
        if self.padding == "same":
            pads = cu.spatial_pads(x4, self._pool_2d, self._strides_2d, (1, 1))
        elif any(x4.shape[2 + i] < self._pool_2d[i] for i in range(2)):
            raise ValueError(
                f"{owner}: input of shape {tuple(inputs.shape)} is smaller than pool_size "
                f"{self.pool_size} with padding='valid'; use padding='same' or a larger input."
            )
        y4 = self._pool(x4, pads)
        return cu.from_torch_layout(y4, self.rank, self.data_format)

    def _pool(self, x4: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
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
    def _pool(self, x4: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
        low = -float("inf") if x4.is_floating_point() else torch.iinfo(x4.dtype).min
        x4, padding = cu.pad_or_symmetric(x4, pads, value=low)
        return F.max_pool2d(x4, self._pool_2d, self._strides_2d, padding)


class _AvgPool(BasePooling):
    def _pool(self, x4: torch.Tensor, pads: list[tuple[int, int]]) -> torch.Tensor:
        padded, padding = cu.pad_or_symmetric(x4, pads)
        if padded is x4:
            return F.avg_pool2d(x4, self._pool_2d, self._strides_2d, padding, count_include_pad=False)
        # Asymmetric: average the zero-padded input, then rescale by the share of real cells per window.
        ones = torch.ones((1, 1, *x4.shape[2:]), dtype=x4.dtype, device=x4.device)
        share = F.avg_pool2d(cu.pad_or_symmetric(ones, pads)[0], self._pool_2d, self._strides_2d)
        return F.avg_pool2d(padded, self._pool_2d, self._strides_2d) / share


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


class GlobalAveragePooling1D(BaseGlobalPooling):
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


class GlobalAveragePooling2D(BaseGlobalPooling):
    """Mean over height and width, Keras's ``GlobalAveragePooling2D``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.GlobalAveragePooling2D(keepdims=True)(torch.ones(2, 4, 4, 8)).shape
        torch.Size([2, 1, 1, 8])
    """

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(2, data_format, keepdims, **kwargs)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return inputs.mean(dim=self._axes, keepdim=self.keepdims)


class GlobalMaxPooling1D(BaseGlobalPooling):
    """Max over steps, Keras's ``GlobalMaxPooling1D``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(1, data_format, keepdims, **kwargs)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return inputs.amax(dim=self._axes, keepdim=self.keepdims)


class GlobalMaxPooling2D(BaseGlobalPooling):
    """Max over height and width, Keras's ``GlobalMaxPooling2D``."""

    def __init__(self, data_format: str | None = None, keepdims: bool = False, **kwargs: Any):
        super().__init__(2, data_format, keepdims, **kwargs)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return inputs.amax(dim=self._axes, keepdim=self.keepdims)


MaxPool1D, MaxPool2D = MaxPooling1D, MaxPooling2D
AvgPool1D, AvgPool2D = AveragePooling1D, AveragePooling2D
GlobalAvgPool1D, GlobalAvgPool2D = GlobalAveragePooling1D, GlobalAveragePooling2D
GlobalMaxPool1D, GlobalMaxPool2D = GlobalMaxPooling1D, GlobalMaxPooling2D
