"""Activation layers with Keras's arguments and checks: ``ReLU``, ``LeakyReLU``, ``Softmax``, ``ELU``,
``PReLU`` (the only one with a weight)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from .. import activations, constraints, initializers, regularizers
from .layer import Layer

__all__ = ["ELU", "LeakyReLU", "PReLU", "ReLU", "Softmax"]


class ReLU(Layer):
    """Rectified linear unit with Keras's options.

    ``f(x) = min(x, max_value)`` for ``x > threshold``, else ``negative_slope * (x - threshold)``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.ReLU(max_value=6.0)(torch.tensor([-1.0, 3.0, 9.0]))
        tensor([0., 3., 6.])
    """

    _preserves_shape = True
    _masks_by_default = True

    def __init__(
        self,
        max_value: float | None = None,
        negative_slope: float = 0.0,
        threshold: float = 0.0,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if max_value is not None and max_value < 0.0:
            raise ValueError(f"ReLU: max_value cannot be negative, got max_value={max_value}")
        if negative_slope is None or negative_slope < 0.0:
            raise ValueError(f"ReLU: negative_slope must be a non-negative number, got {negative_slope!r}")
        if threshold is None or threshold < 0.0:
            raise ValueError(f"ReLU: threshold must be a non-negative number, got {threshold!r}")
        self.max_value = None if max_value is None else float(max_value)
        self.negative_slope = float(negative_slope)
        self.threshold = float(threshold)
        # Pick torch's fused kernel for the common cases (relu, relu6, leaky relu).
        if self.negative_slope == 0.0 and self.threshold == 0.0 and self.max_value in (None, 6.0):
            self._fn = F.relu if self.max_value is None else F.relu6
        elif self.threshold == 0.0 and self.max_value is None:
            self._fn = partial(F.leaky_relu, negative_slope=self.negative_slope)
        else:
            self._fn = partial(
                activations.relu,
                negative_slope=self.negative_slope,
                max_value=self.max_value,
                threshold=self.threshold,
            )
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return self._fn(inputs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }


class LeakyReLU(Layer):
    """``x`` for ``x >= 0``, else ``negative_slope * x`` (Keras 3 default slope 0.3).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.LeakyReLU()(torch.tensor([-1.0, 2.0]))
        tensor([-0.3000,  2.0000])
    """

    _preserves_shape = True
    _masks_by_default = True

    def __init__(self, negative_slope: float = 0.3, **kwargs: Any):
        if "alpha" in kwargs:  # Keras 2's name, still accepted by Keras 3
            negative_slope = kwargs.pop("alpha")
        super().__init__(**kwargs)
        if negative_slope is None or negative_slope < 0:
            raise ValueError(
                f"LeakyReLU: negative_slope must be a non-negative number, got {negative_slope!r}"
            )
        self.negative_slope = float(negative_slope)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(inputs, self.negative_slope)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "negative_slope": self.negative_slope}


def _large_negative(dtype: torch.dtype) -> float:
    return -3e4 if dtype == torch.float16 else -1e9


class Softmax(Layer):
    """Softmax over ``axis`` (an int or several axes); an optional ``mask`` (True = keep) gives
    masked positions zero probability.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Softmax()(torch.zeros(1, 4))
        tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """

    _preserves_shape = True
    _masks_by_default = True

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)):
            if not axis or not all(isinstance(a, int) for a in axis):
                raise ValueError(f"Softmax: axis must be an int or a non-empty list of ints, got {axis!r}")
            axis = list(axis)
        elif not isinstance(axis, int):
            raise ValueError(f"Softmax: axis must be an int or a list of ints, got {axis!r}")
        self.axis = axis
        self.built = True

    def call(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            if mask.dim() > inputs.dim() or any(
                m not in (1, i) for m, i in zip(reversed(mask.shape), reversed(inputs.shape))
            ):
                raise ValueError(
                    f"Softmax: the mask must broadcast to the inputs (each of its axes, from the last, 1 or "
                    f"the input's size); got inputs of shape {tuple(inputs.shape)} and a mask of shape "
                    f"{tuple(mask.shape)}."
                )
            mask = mask if mask.dtype == torch.bool else mask > 0.5
            inputs = torch.where(mask, inputs, _large_negative(inputs.dtype))
        if isinstance(self.axis, list) and len(self.axis) > 1:
            outputs = torch.exp(inputs - torch.logsumexp(inputs, dim=self.axis, keepdim=True))
        else:
            outputs = torch.softmax(inputs, dim=self.axis[0] if isinstance(self.axis, list) else self.axis)
        if mask is not None:
            outputs = torch.where(mask, outputs, 0.0)
        return outputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class ELU(Layer):
    """Exponential linear unit: ``x`` for ``x > 0``, else ``alpha * (exp(x) - 1)``."""

    _preserves_shape = True
    _masks_by_default = True

    def __init__(self, alpha: float = 1.0, **kwargs: Any):
        super().__init__(**kwargs)
        self.alpha = float(alpha)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.elu(inputs, self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "alpha": self.alpha}


class PReLU(Layer):
    """Leaky ReLU with a learned slope per input element: ``x`` for ``x >= 0``, else ``alpha * x``.

    ``alpha`` has the input's shape without the batch axis; ``shared_axes`` (1-based, as in Keras)
    share one slope along those axes, e.g. ``shared_axes=[1, 2]`` for one slope per image channel.
    """

    _preserves_shape = True
    _masks_by_default = True

    def __init__(
        self,
        alpha_initializer: Any = "Zeros",
        alpha_regularizer: Any = None,
        alpha_constraint: Any = None,
        shared_axes: int | Sequence[int] | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.alpha_initializer = initializers.get(alpha_initializer)
        self.alpha_regularizer = regularizers.get(alpha_regularizer)
        self.alpha_constraint = constraints.get(alpha_constraint)
        if shared_axes is None:
            self.shared_axes = None
        else:
            self.shared_axes = [
                int(a) for a in (shared_axes if isinstance(shared_axes, (list, tuple)) else [shared_axes])
            ]

    def build(self, input_shape: Any) -> None:
        param_shape = list(input_shape[1:])
        for a in self.shared_axes or ():
            if not 1 <= a < len(input_shape):
                raise ValueError(
                    f"PReLU {self.name!r}: shared_axes {self.shared_axes} must be input axes "
                    f"other than the batch axis (1 to {len(input_shape) - 1}) for input shape "
                    f"{tuple(input_shape)}."
                )
            param_shape[a - 1] = 1
        if any(d is None for d in param_shape):
            raise ValueError(
                f"PReLU {self.name!r}: every non-shared axis must have a known size, got input "
                f"shape {tuple(input_shape)}; share the unknown axes with shared_axes=."
            )
        self.alpha = self.add_weight(
            param_shape,
            self.alpha_initializer,
            name="alpha",
            regularizer=self.alpha_regularizer,
            constraint=self.alpha_constraint,
        )
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        return F.relu(inputs) - self.alpha * F.relu(-inputs)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "alpha_initializer": initializers.serialize(self.alpha_initializer),
            "alpha_regularizer": regularizers.serialize(self.alpha_regularizer),
            "alpha_constraint": constraints.serialize(self.alpha_constraint),
            "shared_axes": self.shared_axes,
        }
