"""``Conv1DTranspose`` / ``Conv2DTranspose`` / ``Conv3DTranspose`` with Keras's output sizes and
``output_padding``.

Keras defines the output as a window of the full transposed convolution (size
``(in - 1) * stride + dilated kernel``); when that window is expressible as torch's symmetric
``padding`` plus right-side ``output_padding`` the torch op computes it directly, otherwise the
full result is sliced (a view) or zero-extended. The kernel reads back in Keras's layout
(*kernel_size, filters, in) and is stored as torch's (in, filters, *kernel_size).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import constraints, initializers, regularizers
from . import _conv_utils as cu
from .conv import SpatialConv

__all__ = [
    "Conv1DTranspose",
    "Conv2DTranspose",
    "Conv3DTranspose",
    "Convolution1DTranspose",
    "Convolution2DTranspose",
    "Convolution3DTranspose",
]


class BaseConvTranspose(SpatialConv):
    """Transposed convolution (the gradient of a convolution), Keras's ``BaseConvTranspose``."""

    _kernel_limits_input = False

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        output_padding: Any = None,
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            rank,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            bias_initializer,
            bias_regularizer,
            activity_regularizer,
            bias_constraint,
            **kwargs,
        )
        owner = type(self).__name__
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{owner}: `filters` must be a positive integer, got {filters!r}.")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{owner}: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras); "
                f"got strides={self.strides}, dilation_rate={self.dilation_rate}."
            )
        self.output_padding = None
        if output_padding is not None:
            self.output_padding = cu.standardize_tuple(
                output_padding, rank, "output_padding", owner, allow_zero=True
            )
            if any(op >= s for op, s in zip(self.output_padding, self.strides)):
                raise ValueError(
                    f"{owner}: every `output_padding` entry must be smaller than the matching "
                    f"stride; got output_padding={self.output_padding}, strides={self.strides}."
                )
        self.filters = filters
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self._plan = self._torch_plan()

    def _torch_plan(self) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int] | None]]:
        """Torch padding, torch output_padding, and the crops left to do by hand, per torch dimension."""
        output_padding = self.output_padding or (None,) * self.rank
        if self.rank == 1:  # the dummy leading dimension: kernel 1, stride 1, nothing to crop
            output_padding = (None, *output_padding)
        pads, extras, crops = [], [], []
        for k, s, d, op in zip(self._op_kernel, self._op_strides, self._op_dilation, output_padding):
            before, after = cu.transpose_crops(k, s, d, self.padding, op)
            if before >= 0 and 0 <= before - after < max(s, d):
                pads.append(before)
                extras.append(before - after)
                crops.append(None)
            else:
                pads.append(0)
                extras.append(0)
                crops.append((before, after))
        return tuple(pads), tuple(extras), crops

    def build(self, input_shape: Any) -> None:
        channels = self._channels(input_shape)
        r = self.rank
        self.kernel = self.add_weight(
            self.kernel_size + (self.filters, channels),
            self.kernel_initializer,
            name="kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
            storage_perm=(r + 1, r, *range(r)),
        )
        self.bias = self._add_bias(self.filters)
        self._in_channels = channels
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        cu.check_rank(inputs, self.rank, self._owner, self.data_format)
        x = cu.to_torch_layout(inputs, self.rank, self.data_format)
        kernel = cu.as_torch_kernel(self.kernel, self.rank)
        conv_transpose = cu.torch_op("conv_transpose", self.rank)
        pads, extras, crops = self._plan
        by_hand = any(c is not None for c in crops)
        try:
            bias = None if by_hand else self.bias
            y = conv_transpose(x, kernel, bias, self._op_strides, pads, extras, 1, self._op_dilation)
        except RuntimeError as e:
            self._explain(e, inputs, self._in_channels)
        if by_hand:
            y = _crop_or_extend(y, crops)
            if self.bias is not None:
                y = y + self.bias.view(1, -1, *(1,) * len(crops))
        return self._finish(y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "output_padding": self.output_padding,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
        }


def _crop_or_extend(y: torch.Tensor, crops: list[tuple[int, int] | None]) -> torch.Tensor:
    """Cut (before, after) from each spatial dimension of a (N, C, *spatial) ``y``; negative amounts
    add zeros instead."""
    index: list[slice] = [slice(None), slice(None)]
    pads: list[int] = []
    for dim, crop in enumerate(crops):
        before, after = crop or (0, 0)
        size = y.shape[2 + dim]
        index.append(slice(max(before, 0), size - max(after, 0)))
        pads = [max(-before, 0), max(-after, 0), *pads]
    y = y[tuple(index)]
    return F.pad(y, pads) if any(pads) else y


class Conv1DTranspose(BaseConvTranspose):
    """1D transposed convolution, Keras's ``Conv1DTranspose``; kernel (kernel_size, filters, in)."""

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        output_padding: Any = None,
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            1,
            filters,
            kernel_size,
            strides,
            padding,
            output_padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )


class Conv2DTranspose(BaseConvTranspose):
    """2D transposed convolution, Keras's ``Conv2DTranspose``; kernel (kh, kw, filters, in).

    With ``padding="same"`` and no ``output_padding`` the output is ``in * stride``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Conv2DTranspose(3, 3, strides=2, padding="same")(torch.ones(1, 7, 7, 8)).shape
        torch.Size([1, 14, 14, 3])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1),
        padding: str = "valid",
        output_padding: Any = None,
        data_format: str | None = None,
        dilation_rate: Any = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            2,
            filters,
            kernel_size,
            strides,
            padding,
            output_padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )


class Conv3DTranspose(BaseConvTranspose):
    """3D transposed convolution, Keras's ``Conv3DTranspose``; kernel (kd, kh, kw, filters, in).

    As in Keras, ``data_format`` comes before ``output_padding`` in this layer's signature.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Conv3DTranspose(2, 3, strides=2, padding="same")(torch.ones(1, 4, 5, 5, 8)).shape
        torch.Size([1, 8, 10, 10, 2])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        output_padding: Any = None,
        dilation_rate: Any = (1, 1, 1),
        activation: Any = None,
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            3,
            filters,
            kernel_size,
            strides,
            padding,
            output_padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            kernel_initializer,
            bias_initializer,
            kernel_regularizer,
            bias_regularizer,
            activity_regularizer,
            kernel_constraint,
            bias_constraint,
            **kwargs,
        )


Convolution1DTranspose = Conv1DTranspose
Convolution2DTranspose = Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose
