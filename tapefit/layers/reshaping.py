"""Reshaping layers (Keras semantics): ``Flatten``, ``Reshape``, ``Permute``, ``RepeatVector``,
``ZeroPadding1D/2D/3D``, ``Cropping1D/2D/3D`` and ``UpSampling1D/2D/3D``.

Shapes and axes are Keras's (batch first, ``channels_last`` by default); ``Flatten`` of an image
therefore flattens in (H, W, C) order, as Keras does, whatever the tensor's memory format.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
import torch.nn.functional as F

from . import _conv_utils as cu
from .layer import Layer

__all__ = [
    "Cropping1D",
    "Cropping2D",
    "Cropping3D",
    "Flatten",
    "Permute",
    "RepeatVector",
    "Reshape",
    "UpSampling1D",
    "UpSampling2D",
    "UpSampling3D",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "ZeroPadding3D",
]


class _Stateless(Layer):
    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.built = True

    @property
    def _owner(self) -> str:
        return f"{type(self).__name__} {self.name!r}"

    def _check_rank(self, inputs: torch.Tensor, rank: int, layout: str) -> None:
        if inputs.dim() != rank:
            raise ValueError(
                f"{self._owner} expects inputs of rank {rank} {layout}, got shape {tuple(inputs.shape)}."
            )


class Flatten(_Stateless):
    """Flatten every dimension but the batch one, in Keras's order.

    With ``data_format="channels_first"`` the (C, H, W) input is flattened in (H, W, C) order, as
    Keras does, so that a Dense layer after it sees the same features in both layouts.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Flatten()(torch.ones(2, 4, 4, 3)).shape
        torch.Size([2, 48])
    """

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = cu.standardize_data_format(data_format, "Flatten")

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.data_format == "channels_first" and inputs.dim() > 2:
            inputs = inputs.movedim(1, -1)
        return inputs.reshape(inputs.shape[0], -1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class Reshape(_Stateless):
    """Reshape every sample to ``target_shape`` (batch dimension excluded; one -1 may be inferred).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Reshape((-1, 4))(torch.ones(2, 3, 8)).shape
        torch.Size([2, 6, 4])
    """

    def __init__(self, target_shape: Any, **kwargs: Any):
        super().__init__(**kwargs)
        try:
            target = tuple(operator.index(d) for d in target_shape)
        except TypeError:
            message = f"Reshape: `target_shape` must be a tuple of ints, got {target_shape!r}."
            raise ValueError(message) from None
        if any(d < -1 for d in target) or target.count(-1) > 1:
            raise ValueError(
                f"Reshape: `target_shape` entries must be non-negative, with at most one -1 to "
                f"infer; got {target_shape!r}."
            )
        self.target_shape = target

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        try:
            return inputs.reshape(inputs.shape[0], *self.target_shape)
        except RuntimeError as e:
            size = math.prod(inputs.shape[1:])
            raise ValueError(
                f"{self._owner}: cannot reshape samples of shape {tuple(inputs.shape[1:])} "
                f"({size} values) to {self.target_shape}."
            ) from e

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "target_shape": self.target_shape}


class Permute(_Stateless):
    """Permute the non-batch axes; ``dims`` is 1-based like Keras (``(2, 1)`` swaps axes 1 and 2).

    The result is a view (no copy).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Permute((2, 1))(torch.ones(2, 3, 5)).shape
        torch.Size([2, 5, 3])
    """

    def __init__(self, dims: Any, **kwargs: Any):
        super().__init__(**kwargs)
        dims = tuple(dims)
        if sorted(dims) != list(range(1, len(dims) + 1)):
            raise ValueError(
                f"Permute: `dims` must be a permutation of 1..{len(dims)} (1-based, the batch "
                f"axis excluded); got {dims!r}."
            )
        self.dims = tuple(int(d) for d in dims)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        if inputs.dim() != len(self.dims) + 1:
            raise ValueError(
                f"{self._owner} with dims={self.dims} expects inputs of rank "
                f"{len(self.dims) + 1}, got shape {tuple(inputs.shape)}."
            )
        return inputs.permute(0, *self.dims)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "dims": self.dims}


class RepeatVector(_Stateless):
    """Repeat a (batch, features) input ``n`` times: (batch, n, features)."""

    def __init__(self, n: int, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            raise ValueError(f"RepeatVector: `n` must be a positive integer, got {n!r}.")
        self.n = n

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_rank(inputs, 2, "(batch, features)")
        return inputs.unsqueeze(1).repeat(1, self.n, 1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "n": self.n}


_PAIR_FORMS = {
    2: "a tuple (height, width) or ((top, bottom), (left, right))",
    3: "a tuple (depth, height, width) or ((front, back), (top, bottom), (left, right))",
}


def _pairs(value: Any, rank: int, name: str, owner: str) -> tuple[tuple[int, int], ...]:
    """``int`` | one int per axis | one (before, after) pair per axis -> the last form."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * rank
    if not isinstance(value, (tuple, list)) or len(value) != rank:
        raise ValueError(f"{owner}: `{name}` must be an int, {_PAIR_FORMS[rank]}; got {value!r}.")
    return tuple(
        cu.standardize_tuple(v, 2, f"{name}[{i}]", owner, allow_zero=True) for i, v in enumerate(value)
    )


class _Spatial(_Stateless):
    """A reshaping layer over 1, 2 or 3 spatial axes of a (batch, ..., channels) tensor."""

    rank = 2

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = cu.standardize_data_format(data_format, type(self).__name__)
        first = 1 if self.data_format == "channels_last" else 2
        self._spatial_axes = tuple(range(first, first + self.rank))

    def _check(self, inputs: torch.Tensor) -> None:
        cu.check_rank(inputs, self.rank, self._owner, self.data_format)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class ZeroPadding1D(_Spatial):
    """Pad the steps axis with zeros: ``padding`` is an int or (before, after)."""

    rank = 1

    def __init__(self, padding: Any = 1, data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format, **kwargs)
        self.padding = cu.standardize_tuple(padding, 2, "padding", "ZeroPadding1D", allow_zero=True)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        if self.data_format == "channels_last":
            return F.pad(inputs, (0, 0, *self.padding))
        return F.pad(inputs, self.padding)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding}


class _ZeroPadding(_Spatial):
    """Zero padding of every spatial axis by its own (before, after) pair."""

    def __init__(self, padding: Any, data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format, **kwargs)
        self.padding = _pairs(padding, self.rank, "padding", type(self).__name__)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        pads = [amount for pair in reversed(self.padding) for amount in pair]  # F.pad: last axis first
        if self.data_format == "channels_last":
            pads = [0, 0, *pads]
        return F.pad(inputs, pads)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding}


class ZeroPadding2D(_ZeroPadding):
    """Pad images with zeros: ``padding`` is an int, (h, w) or ((top, bottom), (left, right)).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.ZeroPadding2D(((1, 0), (2, 3)))(torch.ones(1, 4, 4, 3)).shape
        torch.Size([1, 5, 9, 3])
    """

    def __init__(self, padding: Any = (1, 1), data_format: str | None = None, **kwargs: Any):
        super().__init__(padding, data_format, **kwargs)


class ZeroPadding3D(_ZeroPadding):
    """Pad volumes with zeros: ``padding`` is an int, (d, h, w) or one (before, after) pair per axis.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.ZeroPadding3D(((1, 0), 2, (0, 3)))(torch.ones(1, 4, 4, 4, 3)).shape
        torch.Size([1, 5, 8, 7, 3])
    """

    rank = 3

    def __init__(
        self, padding: Any = ((1, 1), (1, 1), (1, 1)), data_format: str | None = None, **kwargs: Any
    ):
        super().__init__(padding, data_format, **kwargs)


class Cropping1D(_Stateless):
    """Cut (before, after) steps from a (batch, steps, features) input (a view)."""

    def __init__(self, cropping: Any = (1, 1), **kwargs: Any):
        super().__init__(**kwargs)
        self.cropping = cu.standardize_tuple(cropping, 2, "cropping", "Cropping1D", allow_zero=True)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_rank(inputs, 3, "(batch, steps, features)")
        before, after = self.cropping
        if before + after >= inputs.shape[1]:
            raise ValueError(
                f"{self._owner}: cropping {self.cropping} leaves nothing of an input of shape "
                f"{tuple(inputs.shape)}."
            )
        return inputs[:, before : inputs.shape[1] - after]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping}


class _Cropping(_Spatial):
    """Cut (before, after) cells from every spatial axis (a view)."""

    def __init__(self, cropping: Any, data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format, **kwargs)
        self.cropping = _pairs(cropping, self.rank, "cropping", type(self).__name__)

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        index: list[slice] = [slice(None)] * inputs.dim()
        for axis, (before, after) in zip(self._spatial_axes, self.cropping):
            size = inputs.shape[axis]
            if before + after >= size:
                raise ValueError(
                    f"{self._owner}: cropping {self.cropping} leaves nothing of an input of "
                    f"shape {tuple(inputs.shape)} (data_format={self.data_format!r})."
                )
            index[axis] = slice(before, size - after)
        return inputs[tuple(index)]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "cropping": self.cropping}


class Cropping2D(_Cropping):
    """Cut rows and columns from images (a view): ``cropping`` as in ``ZeroPadding2D``."""

    def __init__(self, cropping: Any = ((0, 0), (0, 0)), data_format: str | None = None, **kwargs: Any):
        super().__init__(cropping, data_format, **kwargs)


class Cropping3D(_Cropping):
    """Cut cells from the three spatial axes of volumes (a view): ``cropping`` as in ``ZeroPadding3D``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.Cropping3D(((1, 0), 1, (0, 2)))(torch.ones(1, 4, 4, 4, 3)).shape
        torch.Size([1, 3, 2, 2, 3])
    """

    rank = 3

    def __init__(
        self, cropping: Any = ((1, 1), (1, 1), (1, 1)), data_format: str | None = None, **kwargs: Any
    ):
        super().__init__(cropping, data_format, **kwargs)


class UpSampling1D(_Stateless):
    """Repeat every step ``size`` times along the steps axis of a (batch, steps, features) input."""

    def __init__(self, size: int = 2, **kwargs: Any):
        super().__init__(**kwargs)
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ValueError(f"UpSampling1D: `size` must be a positive integer, got {size!r}.")
        self.size = size

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check_rank(inputs, 3, "(batch, steps, features)")
        return inputs.repeat_interleave(self.size, dim=1)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


_TORCH_MODES = {"nearest": "nearest-exact", "bilinear": "bilinear"}


def _resize(inputs: torch.Tensor, factors: tuple[int, ...], data_format: str, mode: str) -> torch.Tensor:
    """Scale every spatial axis by its integer factor; in the input's memory format (no NHWC copy)."""
    rank = len(factors)
    x = cu.to_torch_layout(inputs, rank, data_format)
    out_size = tuple(n * f for n, f in zip(x.shape[2:], factors))
    align = False if mode == "bilinear" else None
    y = F.interpolate(x, size=out_size, mode=_TORCH_MODES[mode], align_corners=align)
    return cu.from_torch_layout(y, rank, data_format)


class UpSampling2D(_Spatial):
    """Enlarge images by integer factors ``size`` with "nearest" (repeat) or "bilinear" interpolation.

    "bilinear" uses half-pixel centres without antialiasing, Keras's ``ops.image.resize`` numbers.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.UpSampling2D((2, 3))(torch.ones(1, 4, 4, 3)).shape
        torch.Size([1, 8, 12, 3])
    """

    def __init__(
        self,
        size: Any = (2, 2),
        data_format: str | None = None,
        interpolation: str = "nearest",
        **kwargs: Any,
    ):
        super().__init__(data_format, **kwargs)
        self.size = cu.standardize_tuple(size, 2, "size", "UpSampling2D")
        mode = interpolation.lower() if isinstance(interpolation, str) else interpolation
        if mode not in _TORCH_MODES:
            raise ValueError(
                f"UpSampling2D: `interpolation` must be 'nearest' or 'bilinear', got {interpolation!r}."
            )
        self.interpolation = mode

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return _resize(inputs, self.size, self.data_format, self.interpolation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size, "interpolation": self.interpolation}


class UpSampling3D(_Spatial):
    """Enlarge volumes by integer factors ``size`` (depth, height, width), repeating every cell.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.UpSampling3D((1, 2, 3))(torch.ones(1, 2, 4, 4, 3)).shape
        torch.Size([1, 2, 8, 12, 3])
    """

    rank = 3

    def __init__(self, size: Any = (2, 2, 2), data_format: str | None = None, **kwargs: Any):
        super().__init__(data_format, **kwargs)
        self.size = cu.standardize_tuple(size, 3, "size", "UpSampling3D")

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        self._check(inputs)
        return _resize(inputs, self.size, self.data_format, "nearest")

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}
