"""``UnitNormalization``: scales each sample to unit L2 norm over one or more axes, as Keras 3."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import config
from .layer import Layer

__all__ = ["UnitNormalization"]

# Keras's bound: the inverse norm is capped at 1 / 1e-12, so an all-zero slice stays zero.
_EPSILON = 1e-12


class UnitNormalization(Layer):
    """Divides each sample by its L2 norm over ``axis``: ``x / max(norm(x, axis), 1e-12)``.

    Keras writes it ``x * min(rsqrt(sum(square(x))), 1e12)``, the same number; dividing by the
    clamped norm keeps the gradient finite at an all-zero slice. Masks pass through.

    Args:
        axis: The axis, or list of axes, to normalize across (``-1``: the features).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.UnitNormalization()(torch.tensor([[3.0, 4.0]])).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """

    _preserves_shape = True

    _masks_by_default = True

    def __init__(self, axis: int | Sequence[int] = -1, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, (list, tuple)) and all(
            isinstance(a, int) and not isinstance(a, bool) for a in axis
        ):
            self.axis: int | list[int] = list(axis)
        elif isinstance(axis, int) and not isinstance(axis, bool):
            self.axis = axis
        else:
            raise TypeError(f"UnitNormalization: axis must be an int or a list/tuple of ints, got {axis!r}")
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        axes = self.axis if isinstance(self.axis, list) else [self.axis]
        ndim = inputs.dim()
        for a in axes:
            if not -ndim <= a < ndim:
                raise ValueError(
                    f"UnitNormalization {self.name!r}: axis {a} is out of bounds for input shape "
                    f"{tuple(inputs.shape)}."
                )
        if not inputs.is_floating_point():
            inputs = inputs.to(getattr(torch, config.floatx()))  # Keras: integers give floats
        norm = torch.linalg.vector_norm(inputs, 2, dim=axes, keepdim=True)
        return inputs / norm.clamp_min(_EPSILON)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}
