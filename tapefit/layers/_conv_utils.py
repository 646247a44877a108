"""Shared arithmetic for convolution and pooling layers: argument checks, Keras's "same" padding,
transposed-convolution crops, and the zero-copy switch between Keras and PyTorch layouts.

A layer of ``rank`` spatial dimensions runs the torch op of rank ``max(rank, 2)``: a 1D input of
shape (N, L, C) is viewed as (N, 1, L, C), since torch has no channels_last 1D format. For
``channels_last`` the (N, *spatial, C) tensor is handed to torch as ``x.movedim(-1, 1)``, a view in
torch's ``channels_last`` (2D) or ``channels_last_3d`` (3D) memory format; torch's conv and pooling
kernels then produce a result in that format, and ``movedim(1, -1)`` turns it back into a contiguous
(N, *spatial, C) tensor. (Torch's CPU ``avg_pool3d`` has no ``channels_last_3d`` kernel: there the
result comes back as a strided view of an (N, C, D, H, W) tensor.)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import config

_PADDINGS = ("valid", "same")

_LAYOUTS = {
    1: ("(batch, steps, channels)", "(batch, channels, steps)"),
    2: ("(batch, height, width, channels)", "(batch, channels, height, width)"),
    3: ("(batch, depth, height, width, channels)", "(batch, channels, depth, height, width)"),
}

_TORCH_OPS = {
    "conv": {2: F.conv2d, 3: F.conv3d},
    "conv_transpose": {2: F.conv_transpose2d, 3: F.conv_transpose3d},
    "max_pool": {2: F.max_pool2d, 3: F.max_pool3d},
    "avg_pool": {2: F.avg_pool2d, 3: F.avg_pool3d},
}


def standardize_tuple(value: Any, n: int, name: str, owner: str, allow_zero: bool = False) -> tuple[int, ...]:
    """``3`` -> ``(3, 3)``; checks length, integer type and sign, with an error naming ``owner``."""
    message = f"{owner}: `{name}` must be an int or a tuple of {n} ints, got {value!r}."
    if isinstance(value, bool):
        raise ValueError(message)
    if isinstance(value, int):
        values = (value,) * n
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise ValueError(message) from None
        if len(values) != n or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ValueError(message)
    low = 0 if allow_zero else 1
    if any(v < low for v in values):
        need = "non-negative" if allow_zero else "positive"
        raise ValueError(f"{owner}: every entry of `{name}` must be {need}, got {value!r}.")
    return tuple(int(v) for v in values)


def standardize_padding(value: Any, owner: str, allow_causal: bool = False) -> str:
    allowed = _PADDINGS + (("causal",) if allow_causal else ())
    padding = value.lower() if isinstance(value, str) else value
    if padding not in allowed:
        raise ValueError(
            f"{owner}: `padding` must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}."
        )
    return padding


def standardize_data_format(value: str | None, owner: str) -> str:
    if value is None:
        return config.image_data_format()
    data_format = str(value).lower()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(
            f"{owner}: `data_format` must be 'channels_last' or 'channels_first', got {value!r}."
        )
    return data_format


def check_rank(x: torch.Tensor, rank: int, owner: str, data_format: str) -> None:
    if x.dim() != rank + 2:
        expected = _LAYOUTS[rank][0 if data_format == "channels_last" else 1]
        raise ValueError(f"{owner} expects inputs of rank {rank + 2} {expected}, got shape {tuple(x.shape)}.")


def channels_of(input_shape: Sequence[int | None], data_format: str, owner: str) -> int:
    channels = input_shape[-1] if data_format == "channels_last" else input_shape[1]
    if channels is None:
        raise ValueError(
            f"{owner}: the channel dimension of the input must be known, got shape {tuple(input_shape)}."
        )
    return int(channels)


def torch_op(kind: str, rank: int) -> Any:
    """The torch function (``"conv"``, ``"conv_transpose"``, ``"max_pool"``, ``"avg_pool"``) that runs
    a ``rank``-D layer: the 2D one for ranks 1 and 2, the 3D one for rank 3."""
    return _TORCH_OPS[kind][max(rank, 2)]


def to_torch_layout(x: torch.Tensor, rank: int, data_format: str) -> torch.Tensor:
    """A (N, C, *spatial) view of a Keras-layout input, channels-last in memory if it was (N, *spatial, C);
    1D inputs gain a leading spatial dimension of size 1."""
    if rank == 1:
        x = x.unsqueeze(1 if data_format == "channels_last" else 2)
    return x.movedim(-1, 1) if data_format == "channels_last" else x


def from_torch_layout(y: torch.Tensor, rank: int, data_format: str) -> torch.Tensor:
    """Undo ``to_torch_layout`` on the torch op's result (a view: no data moves)."""
    if data_format == "channels_last":
        y = y.movedim(1, -1)
    if rank == 1:
        y = y.squeeze(1 if data_format == "channels_last" else 2)
    return y


def as_torch_dims(values: tuple[int, ...]) -> tuple[int, ...]:
    """Per-dimension arguments for the torch op: those of a 1D layer gain the dummy leading dimension."""
    return (1, *values) if len(values) == 1 else values


def as_torch_kernel(kernel: torch.Tensor, rank: int) -> torch.Tensor:
    """A torch-layout (out, in, *kernel_size) kernel with the dummy dimension a 1D op needs."""
    return kernel.unsqueeze(2) if rank == 1 else kernel


def same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TF "same" padding for one dimension: (before, after), the odd pixel after."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def spatial_pads(
    x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int], dilation: Sequence[int]
) -> list[tuple[int, int]]:
    """Keras "same" pads for every spatial dimension of a torch-layout (N, C, *spatial) tensor."""
    return [same_pads(x.shape[2 + i], kernel[i], strides[i], dilation[i]) for i in range(len(kernel))]


def pad_or_symmetric(
    x: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0
) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Symmetric pads go to the torch op (no copy); asymmetric ones are applied with ``F.pad``."""
    if all(before == after for before, after in pads):
        return x, tuple(before for before, _ in pads)
    flat = [amount for pair in reversed(pads) for amount in pair]  # F.pad lists the last dimension first
    return F.pad(x, flat, value=value), (0,) * len(pads)


def transpose_crops(
    kernel: int, stride: int, dilation: int, padding: str, output_padding: int | None
) -> tuple[int, int]:
    """How much of the full transposed convolution ((in - 1) * stride + effective kernel) to cut on each
    side so the output matches Keras (negative: zeros to add). Keras sizes are ``in * stride`` for
    "same" and ``(in - 1) * stride + max(kernel, stride)`` for "valid" when output_padding is None."""
    effective = (kernel - 1) * dilation + 1
    if padding == "valid":
        extra = max(effective, stride) - effective if output_padding is None else output_padding
        before, after = effective - 1, effective - 1 + extra
    else:
        if output_padding is None:
            total = stride + effective - 2
        else:
            total = effective + effective % 2 - 2 + output_padding
        before = min(total // 2 + total % 2, effective - 1)
        after = total - before
    return effective - 1 - before, effective - 1 - after


def conv_failure(
    error: RuntimeError,
    owner: str,
    x: torch.Tensor,
    min_spatial: Sequence[int] | None,
    expected_channels: int,
    data_format: str,
) -> Exception:
    """Turn torch's error for an input that is too small or has the wrong channels into a ValueError
    that names the layer and the shapes; any other error is returned unchanged.

    ``min_spatial`` is the smallest spatial size the op accepts (the dilated kernel for "valid")."""
    shape = tuple(x.shape)
    channels = shape[-1] if data_format == "channels_last" else shape[1]
    spatial = shape[1:-1] if data_format == "channels_last" else shape[2:]
    if channels != expected_channels:
        return ValueError(
            f"{owner} was built for inputs with {expected_channels} channels, got input of "
            f"shape {shape} ({channels} channels, data_format={data_format!r})."
        )
    if min_spatial is not None and any(s < m for s, m in zip(spatial, min_spatial)):
        return ValueError(
            f"{owner}: input of shape {shape} is smaller than the (dilated) kernel "
            f"{tuple(min_spatial)} with padding='valid'; use padding='same' or a larger input."
        )
    return error
