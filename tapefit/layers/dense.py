"""``Dense``: ``activation(inputs @ kernel + bias)`` on the last axis, kernel in Keras layout (in, out)."""

from __future__ import annotations

from typing import Any

import torch

from .. import activations, constraints, initializers, regularizers
from .layer import Layer

__all__ = ["Dense"]


class Dense(Layer):
    """A densely connected layer: ``activation(x @ kernel + bias)`` over the last axis.

    The kernel is stored as (in, out) like Keras, so ``x @ kernel`` needs no transpose.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Dense(4)(torch.ones(2, 3)).shape
        torch.Size([2, 4])
    """

    _masks_by_default = True

    def __init__(
        self,
        units: int,
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
        super().__init__(**kwargs)
        if int(units) <= 0:
            raise ValueError(f"Dense: units must be a positive integer, got {units!r}")
        self.units = int(units)
        self.activation = activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)

    def build(self, input_shape: Any) -> None:
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError(
                f"Dense {self.name!r}: the last dimension of the input must be known, got "
                f"shape {tuple(input_shape)}."
            )
        self.kernel = self.add_weight(
            (in_dim, self.units),
            self.kernel_initializer,
            name="kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = (
            self.add_weight(
                (self.units,),
                self.bias_initializer,
                name="bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
            if self.use_bias
            else None
        )
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        # Weights read from ``_parameters`` directly: nn.Module.__getattr__ would cost about a
        # microsecond each, per call. A weight moved out of it (torch.nn.utils.parametrize) is
        # read as an attribute.
        params = self._parameters
        kernel = params.get("kernel")
        if kernel is None:
            kernel = self.kernel
        bias = params.get("bias") if self.use_bias else None
        if bias is None and self.use_bias:
            bias = self.bias
        if bias is not None and inputs.dim() == 2:
            y = torch.addmm(bias, inputs, kernel)
        else:
            y = torch.matmul(inputs, kernel)
            if bias is not None:
                y = y + bias
        activation = self.activation
        if activation is not activations.linear:
            y = activation(y)
        if self.activity_regularizer is not None:
            self.add_loss(self.activity_regularizer(y) / y.shape[0])
        return y

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
        }
