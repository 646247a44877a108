"""``Conv1D``, ``Conv2D`` and ``Conv3D`` (Keras semantics), and ``SpatialConv``, the base the
depthwise, separable and transposed convolutions share: argument checks, padding, layout switch,
activation and config.

Kernels are stored in torch's layout (out, in / groups, *kernel_size) and read back in Keras's
(*kernel_size, in / groups, out) by ``get_weights``; see ``_conv_utils`` for the zero-copy
handling of ``channels_last`` inputs.
"""

from __future__ import annotations

from typing import Any, NoReturn

import torch
import torch.nn.functional as F

from .. import activations, constraints, initializers, regularizers
from . import _conv_utils as cu
from .layer import Layer

__all__ = ["Conv1D", "Conv2D", "Conv3D", "Convolution1D", "Convolution2D", "Convolution3D"]


class SpatialConv(Layer):
    """What every convolution layer shares; subclasses create weights and call the torch op.

    Args:
        rank: 1, 2 or 3, the number of spatial dimensions.
        allow_causal: whether ``padding="causal"`` is accepted (1D convolutions only).
    """

    _kernel_limits_input = True  # a "valid" input smaller than the kernel is an error (not for transposes)

    def __init__(
        self,
        rank: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        activation: Any = None,
        use_bias: bool = True,
        bias_initializer: Any = "zeros",
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        bias_constraint: Any = None,
        allow_causal: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        owner = type(self).__name__
        self.rank = rank
        self.kernel_size = cu.standardize_tuple(kernel_size, rank, "kernel_size", owner)
        self.strides = cu.standardize_tuple(strides, rank, "strides", owner)
        self.dilation_rate = cu.standardize_tuple(dilation_rate, rank, "dilation_rate", owner)
        self.padding = cu.standardize_padding(padding, owner, allow_causal=allow_causal)
        self.data_format = cu.standardize_data_format(data_format, owner)
        self.activation = activations.get(activation)
        self.use_bias = bool(use_bias)
        self.bias_initializer = initializers.get(bias_initializer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.bias_constraint = constraints.get(bias_constraint)
        # Per-dimension arguments of the torch op (rank max(rank, 2); see ``_conv_utils``).
        self._op_kernel = cu.as_torch_dims(self.kernel_size)
        self._op_strides = cu.as_torch_dims(self.strides)
        self._op_dilation = cu.as_torch_dims(self.dilation_rate)

    @property
    def _owner(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _channels(self, input_shape: Any) -> int:
        return cu.channels_of(input_shape, self.data_format, self._owner)

    def _add_bias(self, size: int) -> torch.nn.Parameter | None:
        if not self.use_bias:
            return None
        return self.add_weight(
            (size,),
            self.bias_initializer,
            name="bias",
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _prepare(self, inputs: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        """The input as a torch-layout view plus the symmetric padding to hand to the torch op."""
        cu.check_rank(inputs, self.rank, self._owner, self.data_format)
        x = cu.to_torch_layout(inputs, self.rank, self.data_format)
        no_padding = (0,) * len(self._op_kernel)
        if self.padding == "same":
            pads = cu.spatial_pads(x, self._op_kernel, self._op_strides, self._op_dilation)
            return cu.pad_or_symmetric(x, pads)
        if self.padding == "causal":
            return F.pad(x, ((self.kernel_size[0] - 1) * self.dilation_rate[0], 0)), no_padding
        return x, no_padding

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        y = self.activation(cu.from_torch_layout(y, self.rank, self.data_format))
        if self.activity_regularizer is not None:
            self.add_loss(self.activity_regularizer(y) / y.shape[0])
        return y

    def _explain(self, error: RuntimeError, inputs: torch.Tensor, expected_channels: int) -> NoReturn:
        minimum = None
        if self.padding == "valid" and self._kernel_limits_input:
            minimum = [(k - 1) * d + 1 for k, d in zip(self.kernel_size, self.dilation_rate)]
        better = cu.conv_failure(error, self._owner, inputs, minimum, expected_channels, self.data_format)
        if better is error:
            raise error
        raise better from error

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }


class BaseConv(SpatialConv):
    """A grouped N-D convolution, ``activation(conv(x, kernel) + bias)``, Keras's ``BaseConv``."""

    def __init__(
        self,
        rank: int,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        groups: int = 1,
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
            allow_causal=rank == 1,
            **kwargs,
        )
        owner = type(self).__name__
        if isinstance(filters, bool) or not isinstance(filters, int) or filters <= 0:
            raise ValueError(f"{owner}: `filters` must be a positive integer, got {filters!r}.")
        if isinstance(groups, bool) or not isinstance(groups, int) or groups <= 0:
            raise ValueError(f"{owner}: `groups` must be a positive integer, got {groups!r}.")
        if filters % groups:
            raise ValueError(f"{owner}: `filters` ({filters}) must be divisible by `groups` ({groups}).")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(
                f"{owner}: strides > 1 cannot be combined with dilation_rate > 1 (as in Keras); "
                f"got strides={self.strides}, dilation_rate={self.dilation_rate}."
            )
        self.filters = filters
        self.groups = groups
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)

    def build(self, input_shape: Any) -> None:
        channels = self._channels(input_shape)
        if channels % self.groups:
            raise ValueError(
                f"{self._owner}: the input's {channels} channels must be divisible by groups="
                f"{self.groups} (input shape {tuple(input_shape)})."
            )
        r = self.rank
        self.kernel = self.add_weight(
            self.kernel_size + (channels // self.groups, self.filters),
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
        x, padding = self._prepare(inputs)
        kernel = cu.as_torch_kernel(self.kernel, self.rank)
        conv = cu.torch_op("conv", self.rank)
        try:
            y = conv(x, kernel, self.bias, self._op_strides, padding, self._op_dilation, self.groups)
        except RuntimeError as e:
            self._explain(e, inputs, self._in_channels)
        return self._finish(y)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "groups": self.groups,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
        }


class Conv1D(BaseConv):
    """1D convolution over (batch, steps, channels) inputs (``channels_last``), Keras's ``Conv1D``.

    ``padding`` is "valid", "same" (Keras's arithmetic, odd pixel at the end) or "causal" (zeros on
    the left only, so output ``t`` sees inputs up to ``t``). The kernel reads back as
    (kernel_size, in / groups, filters).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Conv1D(4, 3, padding="causal")(torch.ones(2, 10, 3)).shape
        torch.Size([2, 10, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = 1,
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = 1,
        groups: int = 1,
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
            data_format,
            dilation_rate,
            groups,
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


class Conv2D(BaseConv):
    """2D convolution over images, Keras's ``Conv2D`` (``channels_last`` by default, no copies).

    ``padding="same"`` follows Keras/TF (output ``ceil(in / stride)``, the odd pixel padded at the
    bottom/right). The kernel reads back as (kh, kw, in / groups, filters).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Conv2D(8, 3, strides=2, padding="same")(torch.ones(1, 28, 28, 1)).shape
        torch.Size([1, 14, 14, 8])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = (1, 1),
        groups: int = 1,
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
            data_format,
            dilation_rate,
            groups,
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


class Conv3D(BaseConv):
    """3D convolution over volumes (batch, depth, height, width, channels), Keras's ``Conv3D``.

    ``channels_last`` inputs run as torch ``channels_last_3d`` views (no copies); "same" padding
    follows Keras (the odd cell padded at the end). The kernel reads back as
    (kd, kh, kw, in / groups, filters).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Conv3D(4, 3, strides=2, padding="same")(torch.ones(1, 8, 9, 9, 2)).shape
        torch.Size([1, 4, 5, 5, 4])
    """

    def __init__(
        self,
        filters: int,
        kernel_size: Any,
        strides: Any = (1, 1, 1),
        padding: str = "valid",
        data_format: str | None = None,
        dilation_rate: Any = (1, 1, 1),
        groups: int = 1,
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
            data_format,
            dilation_rate,
            groups,
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


Convolution1D = Conv1D
Convolution2D = Conv2D
Convolution3D = Conv3D
