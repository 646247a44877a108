"""Regularization layers. Noise active only in training: ``Dropout`` (inverted, with Keras's
``noise_shape`` and ``seed``), ``SpatialDropout1D/2D/3D``, ``GaussianNoise``, ``GaussianDropout`` and
``AlphaDropout``; at inference they return their input unchanged. ``ActivityRegularization`` adds an
L1/L2 penalty on its input to ``model.losses``."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .. import config, regularizers
from .layer import Layer

__all__ = [
    "ActivityRegularization",
    "AlphaDropout",
    "Dropout",
    "GaussianDropout",
    "GaussianNoise",
    "SpatialDropout1D",
    "SpatialDropout2D",
    "SpatialDropout3D",
]


def _check_rate(layer: str, name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{layer}: {name} must be a number between 0 and 1, got {value!r}")
    return float(value)


def _check_noise_shape(noise_shape: Any, layer: str = "Dropout") -> tuple[int | None, ...] | None:
    if noise_shape is None:
        return None
    if isinstance(noise_shape, str) or not isinstance(noise_shape, Sequence):
        raise ValueError(
            f"{layer}: noise_shape must be a tuple of ints (or None for the input's size), got "
            f"{noise_shape!r}"
        )
    for i, d in enumerate(noise_shape):
        if d is not None and (isinstance(d, bool) or not isinstance(d, int) or d <= 0):
            raise ValueError(
                f"{layer}: noise_shape entries must be positive ints or None; entry {i} is {d!r}"
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


def _concrete_noise_shape(layer: Layer, noise_shape: Any, inputs: torch.Tensor) -> tuple[int, ...] | None:
    """``noise_shape`` with its ``None`` entries replaced by the input's sizes (Keras's rule)."""
    if noise_shape is None:
        return None
    if len(noise_shape) != inputs.dim():
        raise ValueError(
            f"{type(layer).__name__} {layer.name!r}: noise_shape {noise_shape} has "
            f"{len(noise_shape)} axes but the input has shape {tuple(inputs.shape)}."
        )
    return tuple(s if n is None else n for n, s in zip(noise_shape, inputs.shape))


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
        return _concrete_noise_shape(self, self.noise_shape, inputs)

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


# SELU's constants: AlphaDropout sets dropped units to SELU's negative saturation -alpha * scale.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


class AlphaDropout(_SeededNoise):
    """Dropout for self-normalizing (SELU) networks: keeps the inputs' mean and variance.

    In training each unit is kept with probability ``1 - rate``, otherwise set to SELU's negative
    saturation ``alpha_p = -alpha * scale``; the result goes through ``a * x + b`` with
    ``a = ((1 - rate) * (1 + rate * alpha_p**2)) ** -0.5`` and ``b = -a * alpha_p * rate`` (Keras's
    formula), so zero-mean unit-variance inputs stay so. ``noise_shape`` works as in ``Dropout``.

    Example:
        >>> import torch, tapefit
        >>> y = tapefit.layers.AlphaDropout(0.2, seed=0)(torch.randn(100_000), training=True)
        >>> abs(y.mean().item()) < 0.02 and abs(y.std().item() - 1) < 0.02
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
        rate = _check_rate("AlphaDropout", "rate", rate)
        if rate == 1:
            raise ValueError("AlphaDropout: rate must be below 1 (the scale is ((1 - rate) * ...) ** -0.5).")
        super().__init__(seed=seed, **kwargs)
        self.rate = rate
        self.noise_shape = _check_noise_shape(noise_shape, "AlphaDropout")

    def call(self, inputs: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0:
            return inputs
        shape = _concrete_noise_shape(self, self.noise_shape, inputs) or inputs.shape
        uniform = torch.rand(shape, generator=self._gen(inputs.device), device=inputs.device)
        alpha_p = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - self.rate) * (1 + self.rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * self.rate
        return torch.where(uniform >= self.rate, inputs, alpha_p) * a + b

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "rate": self.rate,
            "seed": self.seed,
            "noise_shape": None if self.noise_shape is None else list(self.noise_shape),
        }


class ActivityRegularization(Layer):
    """Returns its input unchanged and adds ``(l1 * sum(|x|) + l2 * sum(x**2)) / batch_size`` to
    ``losses`` on every call (training or not), as Keras's activity regularizers do.

    Example:
        >>> import torch, tapefit
        >>> layer = tapefit.layers.ActivityRegularization(l2=0.5)
        >>> _ = layer(torch.ones(2, 3))
        >>> [v.item() for v in layer.losses]  # 0.5 * 6 / 2
        [1.5]
    """

    _preserves_shape = True

    _masks_by_default = True

    def __init__(self, l1: float = 0.0, l2: float = 0.0, **kwargs: Any):
        super().__init__(**kwargs)
        for name, value in (("l1", l1), ("l2", l2)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
                raise ValueError(
                    f"ActivityRegularization: {name} must be a non-negative number, got {value!r}"
                )
        self.l1, self.l2 = float(l1), float(l2)
        self.activity_regularizer = regularizers.L1L2(l1=self.l1, l2=self.l2)
        self.built = True

    def call(self, inputs: torch.Tensor) -> torch.Tensor:
        loss = self.activity_regularizer(inputs)
        if inputs.dim() > 0:
            # Keras divides with divide_no_nan: an empty batch adds 0, not nan.
            loss = loss / max(inputs.shape[0], 1)
        self.add_loss(loss)
        return inputs

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "l1": self.l1, "l2": self.l2}
