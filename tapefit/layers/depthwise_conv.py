"""``DepthwiseConv1D`` / ``DepthwiseConv2D``: one filter bank per input channel (Keras semantics).

The kernel reads back in Keras's layout (*kernel_size, in, depth_multiplier) and is stored as
(in, depth_multiplier, *kernel_size), so reshaping it to torch's grouped-conv weight
(in * depth_multiplier, 1, *kernel_size) is a view; output channel ``c * depth_multiplier + m``
comes from input channel ``c``, as in Keras.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from .. import constraints, initializers, regularizers
from .conv import SpatialConv

__all__ = ["DepthwiseConv1D", "DepthwiseConv2D"]


class BaseDepthwiseConv(SpatialConv):
    """Depthwise convolution: ``activation(depthwise(x, kernel) + bias)``."""

    def __init__(
        self,
        rank: int,
        depth_multiplier: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
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
        multiplier = depth_multiplier
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
            raise ValueError(
                f"{type(self).__name__}: `depth_multiplier` must be a positive integer, got "
                f"{depth_multiplier!r}."
            )
        self.depth_multiplier = depth_multiplier
        self.depthwise_initializer = initializers.get(depthwise_initializer)
        self.depthwise_regularizer = regularizers.get(depthwise_regularizer)
        self.depthwise_constraint = constraints.get(depthwise_constraint)

    def _add_depthwise_kernel(self, channels: int, name: str) -> torch.nn.Parameter:
        r = self.rank
        return self.add_weight(
            self.kernel_size + (channels, self.depth_multiplier),
            self.depthwise_initializer,
            name=name,
            regularizer=self.depthwise_regularizer,
            constraint=self.depthwise_constraint,
            storage_perm=(r, r + 1, *range(r)),
        )

    def _depthwise(
        self, inputs: torch.Tensor, kernel: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        """The depthwise conv of ``inputs`` as a 4D torch-layout tensor (not yet permuted back)."""
        x4, padding = self._prepare(inputs)
        channels = kernel.shape[0]
        weight = kernel.reshape(channels * self.depth_multiplier, 1, *self._op_kernel)
        try:
            return F.conv2d(x4, weight, bias, self._op_strides, padding, self._op_dilation, channels)
        except RuntimeError as e:
            self._explain(e, inputs, channels)

    def build(self, input_shape: Any) -> None:
        channels = self._channels(input_shape)
        self.kernel = self._add_depthwise_kernel(channels, "kernel")
        self.bias = self._add_bias(channels * self.depth_multiplier)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._finish(self._depthwise(inputs, self.kernel, self.bias))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "depth_multiplier": self.depth_multiplier,
            "depthwise_initializer": initializers.serialize(self.depthwise_initializer),
            "depthwise_regularizer": regularizers.serialize(self.depthwise_regularizer),
            "depthwise_constraint": constraints.serialize(self.depthwise_constraint),
        }


class DepthwiseConv1D(BaseDepthwiseConv):
    """Depthwise 1D convolution, Keras's ``DepthwiseConv1D``; kernel (kernel_size, in, depth_multiplier)."""

    def __init__(
        self,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            1,
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


class DepthwiseConv2D(BaseDepthwiseConv):
    """Depthwise 2D convolution, Keras's ``DepthwiseConv2D``; kernel (kh, kw, in, depth_multiplier).

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same")
        >>> layer(torch.ones(1, 8, 8, 4)).shape, layer.get_weights()[0].shape
        (torch.Size([1, 8, 8, 8]), (3, 3, 4, 2))
    """

    def __init__(
        self,
        kernel_size: Any,
        strides: Any = (1, 1),
        padding: str = "valid",
        depth_multiplier: int = 1,
        data_format: str | None = None,
        dilation_rate: Any = (1, 1),
        activation: Any = None,
        use_bias: bool = True,
        depthwise_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        depthwise_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        depthwise_constraint: Any = None,
        bias_constraint: Any = None,
        **kwargs: Any,
    ):
        super().__init__(
            2,
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
