"""``RMSNormalization``: Keras 3's root-mean-square normalization (Zhang & Sennrich, 2019) with a
learned ``scale``, on torch's ``F.rms_norm`` when the axes are the trailing ones."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import config
from .layer import Layer

__all__ = ["RMSNormalization"]

_HALF = (torch.float16, torch.bfloat16)


class RMSNormalization(Layer):
    """Scales each sample by the inverse root mean square over ``axis``:
    ``x * rsqrt(mean(square(x), axis) + epsilon) * scale``.

    There is no centering and no offset (unlike ``LayerNormalization``). As in Keras, half-precision
    inputs are normalized in float32 and the result is cast back; integer inputs give ``floatx()``
    (Keras casts the result back to the integer dtype).

    Args:
        axis: The axis, or list of axes, to normalize over (``scale`` has their sizes).
        epsilon: Added to the mean square before the square root.

    Example:
        >>> import torch, tapefit
        >>> y = tapefit.layers.RMSNormalization()(torch.tensor([[3.0, 4.0]]))
        >>> [round(v, 4) for v in y[0].tolist()]
        [0.8485, 1.1314]
    """

    _preserves_shape = True

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-6, **kwargs: Any):
        super().__init__(**kwargs)
        message = f"RMSNormalization: axis must be an int or a list of ints, got {axis!r}"
        if isinstance(axis, (list, tuple)):
            if not axis or not all(isinstance(a, int) and not isinstance(a, bool) for a in axis):
                raise TypeError(message)
            axis = list(axis)
        elif not isinstance(axis, int) or isinstance(axis, bool):
            raise TypeError(message)
        self.axis = axis
        self.epsilon = float(epsilon)

    def build(self, input_shape: Any) -> None:
        ndim = len(input_shape)
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"RMSNormalization {self.name!r}: axis {a} is out of bounds for input shape "
                    f"{tuple(input_shape)}."
                )
        self._axes = sorted({a % ndim for a in axes})
        shape = tuple(input_shape[a] for a in self._axes)
        if None in shape:
            raise ValueError(
                f"RMSNormalization {self.name!r}: the normalized axes {self.axis} must have known "
                f"sizes, got input shape {tuple(input_shape)}."
            )
        self._trailing = self._axes == list(range(ndim - len(shape), ndim))
        self._broadcast = [input_shape[d] if d in self._axes else 1 for d in range(ndim)]
        self.scale = self.add_weight(shape, "ones", name="scale")
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if not inputs.is_floating_point():
            inputs = inputs.to(getattr(torch, config.floatx()))
        x = inputs.float() if inputs.dtype in _HALF else inputs
        scale = self.scale.to(x.dtype)
        if self._trailing:
            # F.rms_norm computes x / sqrt(mean(x**2) + eps) * weight: Keras's formula, eps inside.
            y = F.rms_norm(x, scale.shape, scale, self.epsilon)
        else:
            y = x * torch.rsqrt(x.square().mean(dim=self._axes, keepdim=True) + self.epsilon)
            y = y * scale.reshape(self._broadcast)
        return y.to(inputs.dtype)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}
