"""Layers that merge a list of tensors (``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``,
``Minimum``, ``Concatenate``, ``Dot``) and their functional forms (``add([a, b])``, ...).

Element-wise merges follow Keras: shapes after the batch axis must be equal or 1 on every axis
(aligned from the right); a lower-rank input gains size-1 axes right after the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from .. import config
from .._masking import MASK_ATTR as _MASK
from .layer import Layer

__all__ = [
    "Add",
    "Average",
    "Concatenate",
    "Dot",
    "Maximum",
    "Minimum",
    "Multiply",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "dot",
    "maximum",
    "minimum",
    "multiply",
    "subtract",
]


def _either(masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """Kept where any of ``masks`` keeps."""
    out = masks[0]
    for m in masks[1:]:
        out = torch.logical_or(out, m)
    return out


def _per_element(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
    """A per-timestep mask broadcast over ``x``'s last axis, as Keras's merges use it."""
    return None if mask is None else mask.bool().unsqueeze(-1).expand(x.shape)


def _shapes(inputs: Sequence[Any]) -> list[tuple]:
    return [tuple(x.shape) for x in inputs]


class _Merge(Layer):
    """Base of the element-wise merges: checks the list of inputs, then folds ``_merge`` over it."""

    _min_inputs = 1
    _max_inputs: int | None = None

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)

    def compute_mask(self, inputs: Any, previous_mask: Any) -> torch.Tensor | None:
        """Keras's rule for element-wise merges: when every input is masked, a timestep is kept if
        any input keeps it; when some input is unmasked, the output is unmasked."""
        if previous_mask is None or not isinstance(previous_mask, (list, tuple)):
            return None
        if any(m is None for m in previous_mask):
            return None
        return _either(previous_mask)

    def _check_count(self, n: int, shapes: Any) -> None:
        if n < self._min_inputs or (self._max_inputs is not None and n > self._max_inputs):
            want = (
                f"exactly {self._max_inputs}"
                if self._max_inputs == self._min_inputs
                else f"at least {self._min_inputs}"
            )
            raise ValueError(
                f"A {type(self).__name__} layer should be called on a list of {want} inputs; "
                f"received {n} with shapes {shapes}."
            )

    def build(self, input_shape: Any) -> None:
        if (
            not isinstance(input_shape, (list, tuple))
            or not input_shape
            or not all(isinstance(s, (list, tuple)) for s in input_shape)
        ):
            raise ValueError(
                f"A {type(self).__name__} layer should be called on a list of inputs; received "
                f"input shape {input_shape}."
            )
        shapes = [tuple(s) for s in input_shape]
        self._check_count(len(shapes), shapes)
        self._check_shapes(shapes)
        self.built = True

    def _check_shapes(self, shapes: list[tuple]) -> None:
        batch_sizes = {s[0] for s in shapes if s} - {None}
        if len(batch_sizes) > 1:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: cannot merge tensors with different "
                f"batch sizes; received shapes {shapes}."
            )
        out = shapes[0][1:]
        for s in shapes[1:]:
            out = self._broadcast(out, s[1:], shapes)

    def _broadcast(self, a: tuple, b: tuple, shapes: list[tuple]) -> tuple:
        if len(a) < len(b):
            a, b = b, a
        out = list(a[: len(a) - len(b)])
        for i, j in zip(a[len(a) - len(b) :], b):
            if i is None or j is None:
                out.append(None)
            elif i == 1:
                out.append(j)
            elif j == 1 or i == j:
                out.append(i)
            else:
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: inputs have incompatible shapes "
                    f"{shapes}; after the batch axis, sizes must be equal or 1 on every axis."
                )
        return tuple(out)

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(
                f"A {type(self).__name__} layer should be called on a list of tensors, got "
                f"{type(inputs).__name__}."
            )
        inputs = list(inputs)
        self._check_count(len(inputs), _shapes(inputs))
        masks = [getattr(x, _MASK, None) for x in inputs]
        ranks = [x.dim() for x in inputs]
        if min(ranks) != max(ranks):
            top = max(ranks)
            inputs = [x.reshape(x.shape[:1] + (1,) * (top - x.dim()) + x.shape[1:]) for x in inputs]
        try:
            if masks.count(None) < len(masks):
                return self._merge_masked(inputs, [_per_element(m, x) for m, x in zip(masks, inputs)])
            return self._merge(inputs)
        except RuntimeError as e:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: inputs have incompatible shapes {_shapes(inputs)}: {e}"
            ) from e

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def _merge_masked(self, inputs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        """The merge when some inputs carry masks (expanded to their shapes); sums ignore them."""
        return self._merge(inputs)

    def _merge_keeping_unmasked(self, op: Any, inputs: list[torch.Tensor], masks: list[Any]) -> torch.Tensor:
        """Keras's rule for merges with no identity element (maximum, minimum): a masked entry
        takes the other operand's value, so only kept entries compete."""
        out, out_mask = inputs[0], masks[0]
        for x, mask in zip(inputs[1:], masks[1:]):
            if mask is not None:
                x = torch.where(mask, x, out)
            if out_mask is not None:
                out = torch.where(out_mask, out, x)
            out_mask = torch.logical_or(out_mask, mask) if mask is not None and out_mask is not None else None
            out = op(out, x)
        return out


class Add(_Merge):
    """Adds a list of tensors of the same (or broadcastable) shape.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Add()([torch.ones(2, 3), torch.ones(2, 3)])[0]
        tensor([2., 2., 2.])
    """

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out


class Subtract(_Merge):
    """Subtracts the second of exactly two tensors from the first."""

    _min_inputs = _max_inputs = 2

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        return inputs[0] - inputs[1]


class Multiply(_Merge):
    """Multiplies a list of tensors element-wise."""

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out * x
        return out

    def _merge_masked(self, inputs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        # Keras: masked entries count as 1; where every input is masked the product is 0.
        out = self._merge([x if m is None else torch.where(m, x, 1.0) for x, m in zip(inputs, masks)])
        if all(m is not None for m in masks):
            out = torch.where(_either(masks), out, 0.0)
        return out


class Average(_Merge):
    """Averages a list of tensors element-wise."""

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out / len(inputs)


class Maximum(_Merge):
    """Element-wise maximum of a list of tensors."""

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = torch.maximum(out, x)
        return out

    def _merge_masked(self, inputs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        return self._merge_keeping_unmasked(torch.maximum, inputs, masks)


class Minimum(_Merge):
    """Element-wise minimum of a list of tensors."""

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = torch.minimum(out, x)
        return out

    def _merge_masked(self, inputs: list[torch.Tensor], masks: list[torch.Tensor | None]) -> torch.Tensor:
        return self._merge_keeping_unmasked(torch.minimum, inputs, masks)


class Concatenate(_Merge):
    """Concatenates a list of tensors along ``axis``; all other sizes must match.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Concatenate()([torch.ones(2, 3), torch.ones(2, 4)]).shape
        torch.Size([2, 7])
    """

    def __init__(self, axis: int = -1, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"Concatenate: axis must be an int, got {axis!r}")
        self.axis = axis

    def _check_shapes(self, shapes: list[tuple]) -> None:
        ranks = {len(s) for s in shapes}
        if len(ranks) == 1:
            rank = ranks.pop()
            if -rank <= self.axis < rank:
                axis = self.axis % rank
                if all(len({s[d] for s in shapes} - {None}) <= 1 for d in range(rank) if d != axis):
                    return
        raise ValueError(
            f"Concatenate {self.name!r} needs inputs of one rank with matching sizes except on "
            f"the concatenation axis {self.axis}; received shapes {shapes}."
        )

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, (list, tuple)) or not inputs:
            raise ValueError(f"Concatenate {self.name!r} should be called on a non-empty list of tensors.")
        try:
            return torch.cat(list(inputs), dim=self.axis)
        except (RuntimeError, IndexError) as e:
            raise ValueError(
                f"Concatenate {self.name!r}: cannot concatenate shapes {_shapes(inputs)} on "
                f"axis {self.axis}: {e}"
            ) from e

    def compute_mask(self, inputs: Any, previous_mask: Any) -> torch.Tensor | None:
        """The inputs' masks joined along ``axis`` (all-True for an unmasked input), as in Keras."""
        if not isinstance(previous_mask, (list, tuple)) or all(m is None for m in previous_mask):
            return None
        masks = []
        for x, m in zip(inputs, previous_mask):
            if m is None:
                m = torch.ones(x.shape, dtype=torch.bool, device=x.device)
            elif m.dim() < x.dim():
                m = m.unsqueeze(-1).expand(x.shape)
            masks.append(m.bool())
        return torch.cat(masks, dim=self.axis).any(dim=-1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axis": self.axis}


class Dot(_Merge):
    """Batched dot product of two tensors along ``axes`` (an int or a pair), Keras's ``batch_dot``.

    ``normalize=True`` L2-normalizes both inputs along those axes first (cosine similarity).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Dot(axes=1)([torch.ones(2, 3), torch.ones(2, 3)])
        tensor([[3.],
                [3.]])
    """

    _min_inputs = _max_inputs = 2

    def __init__(self, axes: int | Sequence[int], normalize: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(axes, (list, tuple)):
            if len(axes) != 2 or not all(isinstance(a, int) for a in axes):
                raise ValueError(f"Dot: axes must be an int or a pair of ints, got {axes!r}")
            axes = list(axes)
        elif isinstance(axes, bool) or not isinstance(axes, int):
            raise TypeError(f"Dot: axes must be an int or a pair of ints, got {axes!r}")
        self.axes = axes
        self.normalize = bool(normalize)

    def compute_mask(self, inputs: Any, previous_mask: Any) -> None:
        return None

    def _axes_for(self, ranks: Sequence[int]) -> list[int]:
        axes = self.axes if isinstance(self.axes, list) else [self.axes, self.axes]
        return [a % r if a < 0 else a for a, r in zip(axes, ranks)]

    def _check_shapes(self, shapes: list[tuple]) -> None:
        s1, s2 = shapes
        a1, a2 = self._axes_for([len(s1), len(s2)])
        if len(s1) < 2 or len(s2) < 2 or 0 in (a1, a2) or a1 >= len(s1) or a2 >= len(s2):
            raise ValueError(
                f"Dot {self.name!r}: axes {self.axes} must name a non-batch axis of each input; "
                f"received shapes {s1} and {s2}."
            )
        if None not in (s1[a1], s2[a2]) and s1[a1] != s2[a2]:
            raise ValueError(
                f"Dot {self.name!r}: incompatible sizes {s1[a1]} (axis {a1}) and {s2[a2]} "
                f"(axis {a2}) for input shapes {s1} and {s2}."
            )

    def _merge(self, inputs: list[torch.Tensor]) -> torch.Tensor:
        x, y = inputs
        a1, a2 = self._axes_for([x.dim(), y.dim()])
        if self.normalize:
            x, y = _l2_normalize(x, a1), _l2_normalize(y, a2)
        xm = x.movedim(a1, -1)
        ym = y.movedim(a2, 1)
        batch, x_mid, y_rest = x.shape[0], xm.shape[1:-1], ym.shape[2:]
        out = torch.bmm(xm.reshape(batch, -1, xm.shape[-1]), ym.reshape(batch, ym.shape[1], -1))
        shape = (batch, *x_mid, *y_rest)
        return out.reshape(shape if len(shape) > 1 else (batch, 1))

    def call(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"Dot {self.name!r} should be called on a list of 2 tensors.")
        self._check_count(len(inputs), _shapes(inputs))
        self._check_shapes(_shapes(inputs))
        return self._merge(list(inputs))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "axes": self.axes, "normalize": self.normalize}


def _l2_normalize(x: torch.Tensor, axis: int) -> torch.Tensor:
    inv = torch.rsqrt(x.square().sum(dim=axis, keepdim=True)).clamp(max=1.0 / config.epsilon())
    return x * inv


def add(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Add``: ``add([a, b])``."""
    return Add(**kwargs)(inputs)


def subtract(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Subtract``: ``subtract([a, b])`` is ``a - b``."""
    return Subtract(**kwargs)(inputs)


def multiply(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Multiply``."""
    return Multiply(**kwargs)(inputs)


def average(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Average``."""
    return Average(**kwargs)(inputs)


def maximum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Maximum``."""
    return Maximum(**kwargs)(inputs)


def minimum(inputs: Sequence[Any], **kwargs: Any) -> Any:
    """Functional form of ``Minimum``."""
    return Minimum(**kwargs)(inputs)


def concatenate(inputs: Sequence[Any], axis: int = -1, **kwargs: Any) -> Any:
    """Functional form of ``Concatenate``: ``concatenate([a, b], axis=-1)``."""
    return Concatenate(axis=axis, **kwargs)(inputs)


def dot(inputs: Sequence[Any], axes: int | Sequence[int] = -1, normalize: bool = False, **kwargs: Any) -> Any:
    """Functional form of ``Dot``."""
    return Dot(axes=axes, normalize=normalize, **kwargs)(inputs)
