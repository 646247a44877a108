"""Noise layers active only in training: ``Dropout`` (inverted, with Keras's ``noise_shape`` and
``seed``), ``SpatialDropout1D/2D/3D``, ``GaussianNoise`` and ``GaussianDropout``. At inference they
return their input unchanged."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import config
from .layer import Layer

__all__ = [
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
]


def _check_rate(layer: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"{layer}: {name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _check_noise_shape(noise_shape: Any) -> tuple[int | None, ...] | None:
    if noise_shape is None:
        return None
    if isinstance(noise_shape, str) or not isinstance(noise_shape, Sequence):
        raise ValueError(
            f"Dropout: noise_shape must be a tuple of ints (or None for the input's size), got "
            f"{noise_shape!r}"
        )
    for i, d in enumerate(noise_shape):
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d <= 0):
            raise ValueError(
                f"Dropout: noise_shape entries must be positive ints or None; entry {i} is {d!r}"
            )
    return tuple(noise_shape)


class _SeededNoise(Layer):
    """Owns the optional seeded generator: a fixed ``seed`` gives the same noise sequence every run."""

    _masks_by_default = True

    def __init__(self, seed: int | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"{type(self).__name__}: seed must be an int or None, got {seed!r}")
        self.seed = seed
        self._generator: torch.Generator | None = None
        self.built = True

    def _gen(self, device: torch.device) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator


class Dropout(_SeededNoise):
    """Sets a fraction ``rate`` of inputs to zero in training and scales the rest by ``1 / (1 - rate)``.

    ``noise_shape`` (Keras semantics) drops the same positions along the axes where it is 1, e.g.
    ``(batch, 1, features)`` keeps one mask for every timestep; ``None`` entries take the input's size.

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.Dropout(0.5)
        >>> bool((layer(torch.ones(4, 4)) == 1).all())  # inference: identity
        True
    """

    _preserves_shape = True

    def __init__(
        self,
        rate: float,
        noise_shape: Sequence[int | None] | None = None,
        seed: int | None = None,
        **kwargs: Any,
    ):
        rate = _check_rate("Dropout", "rate", rate)
        super().__init__(seed=seed, **kwargs)
        self.rate = rate
        self.noise_shape = _check_noise_shape(noise_shape)

    def _noise_shape(self, inputs: torch.Tensor) -> tuple[int, ...] | None:
        if self.noise_shape is None:
            return None
        if len(self.noise_shape) != inputs.dim():
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: noise_shape {self.noise_shape} has "
                f"{len(self.noise_shape)} axes but the input has shape {tuple(inputs.shape)}."
            )
        return tuple(s if n is None else n for n, s in zip(self.noise_shape, inputs.shape))

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        if self.rate == 1:
            return torch.zeros_like(inputs)
        shape = self._noise_shape(inputs)
        if shape is None and self.seed is None:
            return F.dropout(inputs, self.rate, training=True)
        keep = 1.0 - self.rate
        mask = torch.empty(shape or inputs.shape, dtype=inputs.dtype, device=inputs.device)
        mask.bernoulli_(keep, generator=self._gen(inputs.device))
        return inputs * mask.div_(keep)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
        }


class SpatialDropout1D(Dropout):
    """Drops whole feature maps of (batch, steps, features) inputs: one mask per sample and feature."""

    _preserves_shape = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        super().__init__(rate, seed=seed, **kwargs)

    def _noise_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        if inputs.dim() != 3:
            raise ValueError(
                f"SpatialDropout1D {self.name!r} needs 3D inputs (batch, steps, features), got "
                f"shape {tuple(inputs.shape)}."
            )
        return (inputs.shape[0], 1, inputs.shape[2])

    def get_config(self) -> dict[str, Any]:
        out = super().get_config()
        del out["noise_shape"]
        return out


class SpatialDropout2D(SpatialDropout1D):
    """Drops whole channels of images (channels_last by default): one mask per sample and channel.

    Example:
        >>> import torch, tapefit
        >>> y = tapefit.layers.SpatialDropout2D(0.5)(torch.ones(2, 4, 4, 8), training=True)
        >>> bool(((y == 0).all(dim=(1, 2)) | (y == 2).all(dim=(1, 2))).all())
        True
    """

    _preserves_shape = True

    _rank = 4

    def __init__(self, rate: float, data_format: str | None = None, seed: int | None = None, **kwargs: Any):
        super().__init__(rate, seed=seed, **kwargs)
        data_format = data_format or config.image_data_format()
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(
                f"{type(self).__name__}: data_format must be 'channels_last' or "
                f"'channels_first', got {data_format!r}"
            )
        self.data_format = data_format

    def _noise_shape(self, inputs: torch.Tensor) -> tuple[int, ...]:
        if inputs.dim() != self._rank:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} needs {self._rank}D inputs, got shape "
                f"{tuple(inputs.shape)}."
            )
        spatial = (1,) * (self._rank - 2)
        if self.data_format == "channels_first":
            return (inputs.shape[0], inputs.shape[1], *spatial)
        return (inputs.shape[0], *spatial, inputs.shape[-1])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "data_format": self.data_format}


class SpatialDropout3D(SpatialDropout2D):
    """Drops whole channels of volumes (batch, d1, d2, d3, channels) or channels_first equivalents."""

    _preserves_shape = True

    _rank = 5


class GaussianNoise(_SeededNoise):
    """Adds zero-centred Gaussian noise of standard deviation ``stddev`` in training."""

    _preserves_shape = True

    def __init__(self, stddev: float, seed: int | None = None, **kwargs: Any):
        stddev = _check_rate("GaussianNoise", "stddev", stddev)
        super().__init__(seed=seed, **kwargs)
        self.stddev = stddev

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.stddev == 0:
            return inputs
        noise = torch.empty_like(inputs).normal_(0.0, self.stddev, generator=self._gen(inputs.device))
        return inputs + noise

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "stddev": self.stddev, "seed": self.seed}


class GaussianDropout(_SeededNoise):
    """Multiplies inputs by Gaussian noise of mean 1 and variance ``rate / (1 - rate)`` in training."""

    _preserves_shape = True

    def __init__(self, rate: float, seed: int | None = None, **kwargs: Any):
        rate = _check_rate("GaussianDropout", "rate", rate)
        if rate == 1:
            raise ValueError(
                "GaussianDropout: rate must be below 1 (the noise variance is rate / (1 - rate))."
            )
        super().__init__(seed=seed, **kwargs)
        self.rate = rate

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        noise = torch.empty_like(inputs).normal_(1.0, stddev, generator=self._gen(inputs.device))
        return inputs * noise

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rate": self.rate, "seed": self.seed}
