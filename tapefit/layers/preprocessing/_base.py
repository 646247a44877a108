"""Plumbing shared by the image preprocessing layers: layouts, batching, dtypes and randomness.

``ImageLayer`` accepts batched ``(N, H, W, C)`` or single ``(H, W, C)`` images (channels_first
with ``data_format="channels_first"``) and converts to and from the ``(N, C, H, W)`` layout the
kernels in ``_image_ops`` use. ``RandomImageLayer`` adds Keras's training rule and the random
draws: augmentation runs when ``training`` is True, which is also the default when no caller
says otherwise (``layer(images)`` outside any model call), exactly as Keras's
``call(data, training=True)``; ``predict``/``evaluate`` call with ``training=False``.

Random parameters are drawn on the CPU (a handful of numbers per batch), from a layer-owned
``torch.Generator`` when ``seed`` is given, otherwise from torch's global generator (so that
``tapefit.utils.set_random_seed`` makes runs repeatable), then copied to the images' device.
The same seed therefore gives the same augmentation on every device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ... import config
from .._calling import current_training
from ..layer import Layer

__all__ = [
    "AffineImageLayer",
    "ImageLayer",
    "RandomImageLayer",
    "check_fill_and_interpolation",
    "factor_range",
    "freeze_factor",
]


def _standardize_data_format(data_format: str | None) -> str:
    if data_format is None:
        return config.image_data_format()
    value = str(data_format).lower()
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}.")
    return value


def factor_range(
    factor: Any, name: str, low: float, high: float, *, open_low: bool = False
) -> tuple[float, float]:
    """``(lower, upper)`` from a number ``f`` (giving ``(-|f|, |f|)``) or a pair, each in [low, high]."""
    where = f"({low}, {high}]" if open_low else f"[{low}, {high}]"
    message = f"{name} must be a number or a pair of numbers, each in {where}; got {factor!r}."
    if isinstance(factor, (list, tuple)):
        if len(factor) != 2 or not all(_is_number(f) for f in factor):
            raise ValueError(message)
        values = [float(f) for f in factor]
        lower, upper = sorted(values)
    elif _is_number(factor):
        values = [float(factor)]
        lower, upper = -abs(float(factor)), abs(float(factor))
    else:
        raise ValueError(message)
    for v in values:
        if v > high or v < low or (open_low and v == low):
            raise ValueError(message)
    return lower, upper


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def freeze_factor(factor: Any) -> Any:
    """A factor as it goes into a config: pairs as tuples of floats, numbers as floats."""
    if isinstance(factor, (list, tuple)):
        return tuple(float(f) for f in factor)
    return None if factor is None else float(factor)


def check_fill_and_interpolation(layer: str, fill_mode: str, interpolation: str) -> None:
    from ._image_ops import FILL_MODES, INTERPOLATIONS

    if fill_mode not in FILL_MODES:
        raise ValueError(f"{layer}: unknown fill_mode {fill_mode!r}; use one of {list(FILL_MODES)}.")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(
            f"{layer}: unknown interpolation {interpolation!r}; use one of {list(INTERPOLATIONS)}."
        )


class ImageLayer(Layer):
    """Base of the image layers: ``data_format`` and conversion to batched NCHW float images."""

    def __init__(self, data_format: str | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.data_format = _standardize_data_format(data_format)

    @property
    def _compute_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def _check_rank(self, images: torch.Tensor) -> None:
        if images.dim() not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects images of rank 4 (batch, height, width, "
                f"channels) or rank 3 (one image), got shape {tuple(images.shape)}."
            )

    def _spatial_size(self, images: torch.Tensor) -> tuple[int, int]:
        if self.data_format == "channels_last":
            return images.shape[-3], images.shape[-2]
        return images.shape[-2], images.shape[-1]

    def _to_nchw(self, images: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Batched (N, C, H, W) view of ``images`` and whether a batch dimension was added."""
        self._check_rank(images)
        single = images.dim() == 3
        if single:
            images = images.unsqueeze(0)
        if self.data_format == "channels_last":
            images = images.permute(0, 3, 1, 2)
        return images, single

    def _from_nchw(self, images: torch.Tensor, single: bool) -> torch.Tensor:
        if self.data_format == "channels_last":
            images = images.permute(0, 2, 3, 1)
        return images.squeeze(0) if single else images

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class RandomImageLayer(ImageLayer):
    """Base of the random augmentation layers: the ``training`` default and seeded draws."""

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}.")
        self.seed = seed
        self._generator: torch.Generator | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("training") is None and current_training() is None:
            kwargs["training"] = True
        return super().__call__(*args, **kwargs)

    def _uniform(self, shape: Sequence[int], low: float, high: float, device: torch.device) -> torch.Tensor:
        """Uniform draws in [low, high) of ``shape`` (float32), drawn on the CPU, on ``device``."""
        if self.seed is not None and self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        u = torch.rand(tuple(shape), generator=self._generator)
        return (low + (high - low) * u).to(device, non_blocking=True)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


class AffineImageLayer(RandomImageLayer):
    """Base of the layers that resample images through one random affine transform per image.

    Subclasses implement ``_matrices(n, height, width, device)``: (N, 2, 3) matrices mapping
    output pixel ``(x, y, 1)`` to the input point it reads. Inference is the identity.
    """

    def __init__(
        self,
        fill_mode: str = "reflect",
        interpolation: str = "bilinear",
        seed: int | None = None,
        fill_value: float = 0.0,
        data_format: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(seed=seed, data_format=data_format, **kwargs)
        check_fill_and_interpolation(type(self).__name__, fill_mode, interpolation)
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.fill_value = float(fill_value)

    def _matrices(self, n: int, height: int, width: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def call(self, inputs: torch.Tensor, training: bool = True) -> torch.Tensor:
        from ._image_ops import affine_transform

        x = inputs.to(self._compute_dtype)
        self._check_rank(x)
        if not training:
            return x
        images, single = self._to_nchw(x)
        n, _, height, width = images.shape
        matrix = self._matrices(n, height, width, images.device)
        out = affine_transform(images, matrix, self.interpolation, self.fill_mode, self.fill_value)
        return self._from_nchw(out, single)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "fill_mode": self.fill_mode,
            "interpolation": self.interpolation,
            "fill_value": self.fill_value,
        }
