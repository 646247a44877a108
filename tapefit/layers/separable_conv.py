"""``SeparableConv1D`` / ``SeparableConv2D``: a depthwise convolution followed by a 1x1 pointwise one.

Weights read back in Keras's layouts and order: depthwise_kernel (*kernel_size, in, depth_multiplier),
pointwise_kernel (*ones, in * depth_multiplier, filters), bias (filters,). Both convolutions run in
torch's layout, so the intermediate result never changes layout.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import constraints, initializers, regularizers
from .depthwise_conv import BaseDepthwiseConv

__all__ = ["SeparableConv1D", "SeparableConv2D", "SeparableConvolution1D", "SeparableConvolution2D"]


class BaseSeparableConv(BaseDepthwiseConv):
    """``activation(pointwise(depthwise(x)) + bias)``, Keras's ``BaseSeparableConv``."""

    def __init__(
        self,
        rank: int,
        depth_multiplier: int,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            rank,
            depth_multiplier,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            depthwise_initializer,
            bias_initializer,
            depthwise_regularizer,
            bias_regularizer,
            activity_regularizer,
            depthwise_constraint,
            bias_constraint,
            **kwargs,
        )
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{type(self).__name__}: `filters` must be a positive integer, got {filters!r}.")
        self.filters = filters
        self.pointwise_initializer = initializers.get(pointwise_initializer)
        self.pointwise_regularizer = regularizers.get(pointwise_regularizer)
        self.pointwise_constraint = constraints.get(pointwise_constraint)

    def build(self, input_shape: Any) -> None:
        channels = self._channels(input_shape)
        r = self.rank
        self.depthwise_kernel = self._add_depthwise_kernel(channels, "depthwise_kernel")
        self.pointwise_kernel = self.add_weight(
            (1,) * r + (channels * self.depth_multiplier, self.filters),
            self.pointwise_initializer,
            name="pointwise_kernel",
            regularizer=self.pointwise_regularizer,
            constraint=self.pointwise_constraint,
            storage_perm=(r + 1, r, *range(r)),
        )
        self.bias = self._add_bias(self.filters)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        y4 = self._depthwise(inputs, self.depthwise_kernel, None)
        pointwise = self.pointwise_kernel.unsqueeze(2) if self.rank == 1 else self.pointwise_kernel
        return self._finish(F.conv2d(y4, pointwise, self.bias))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "pointwise_initializer": initializers.serialize(self.pointwise_initializer),
            "pointwise_regularizer": regularizers.serialize(self.pointwise_regularizer),
            "pointwise_constraint": constraints.serialize(self.pointwise_constraint),
        }


class SeparableConv1D(BaseSeparableConv):
    """Depthwise-separable 1D convolution, Keras's ``SeparableConv1D``."""

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            1,
            depth_multiplier,
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            depthwise_initializer,
            pointwise_initializer,
            bias_initializer,
            depthwise_regularizer,
            pointwise_regularizer,
            bias_regularizer,
            activity_regularizer,
            depthwise_constraint,
            pointwise_constraint,
            bias_constraint,
            **kwargs,
        )


class SeparableConv2D(BaseSeparableConv):
    """Depthwise-separable 2D convolution, Keras's ``SeparableConv2D``.

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.SeparableConv2D(16, 3, padding="same")
        >>> layer(torch.ones(1, 8, 8, 4)).shape, [w.shape for w in layer.get_weights()]
        (torch.Size([1, 8, 8, 16]), [(3, 3, 4, 1), (1, 1, 4, 16), (16,)])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = (1, 1),
        depth_multiplier: int = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        pointwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        pointwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        pointwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            2,
            depth_multiplier,
            filters,
            kernel_size,
            strides,
            padding,
            data_format,
            dilation_rate,
            activation,
            use_bias,
            depthwise_initializer,
            pointwise_initializer,
            bias_initializer,
            depthwise_regularizer,
            pointwise_regularizer,
            bias_regularizer,
            activity_regularizer,
            depthwise_constraint,
            pointwise_constraint,
            bias_constraint,
            **kwargs,
        )


SeparableConvolution1D = SeparableConv1D
SeparableConvolution2D = SeparableConv2D
