"""Weight initialisers with Keras's names, defaults and fan arithmetic (shapes in Keras layout)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from . import config
from ._naming import to_snake_case, unknown_name_error

__all__ = [
    "Initializer",
    "Zeros",
    "Ones",
    "Constant",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "GlorotUniform",
    "GlorotNormal",
    "HeUniform",
    "HeNormal",
    "LecunUniform",
    "LecunNormal",
    "Orthogonal",
    "Identity",
    "get",
    "serialize",
    "deserialize",
    "compute_fans",
]


def compute_fans(
    shape: tuple[int, ...], input_axes: Sequence[int] | None = None, output_axes: Sequence[int] | None = None
) -> tuple[int, int]:
    """Keras's fans: for a conv kernel (kh, kw, in, out), fan_in = kh*kw*in, fan_out = kh*kw*out.

    With ``input_axes`` and ``output_axes`` (an ``EinsumDense`` kernel such as (dim, heads, key_dim)),
    the fans are the products of the sizes on those axes.
    """
    if input_axes is not None and output_axes is not None:
        return math.prod(shape[a] for a in input_axes), math.prod(shape[a] for a in output_axes)
    if len(shape) < 1:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


class Initializer:
    """Base class: ``initializer(shape, dtype)`` returns a new tensor on the configured device."""

    def __call__(
        self, shape: tuple[int, ...], dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        dtype = dtype or getattr(torch, config.floatx())
        with torch.no_grad():
            return self.generate(torch.empty(tuple(shape), dtype=dtype, device=device or config.get_device()))

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _generator(self, device: torch.device) -> torch.Generator | None:
        seed = getattr(self, "seed", None)
        if seed is None:
            return None
        g = torch.Generator(device=device)
        g.manual_seed(int(seed))
        return g

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Initializer:
        return cls(**config)


class Zeros(Initializer):
    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return out.zero_()


class Ones(Initializer):
    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return out.fill_(1)


class Constant(Initializer):
    def __init__(self, value: float = 0.0):
        self.value = value

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return out.copy_(torch.as_tensor(self.value, dtype=out.dtype).expand_as(out))

    def get_config(self) -> dict[str, Any]:
        return {"value": self.value}


class RandomNormal(Initializer):
    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return out.normal_(self.mean, self.stddev, generator=self._generator(out.device))

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


class RandomUniform(Initializer):
    def __init__(self, minval: float = -0.05, maxval: float = 0.05, seed: int | None = None):
        self.minval, self.maxval, self.seed = minval, maxval, seed

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return out.uniform_(self.minval, self.maxval, generator=self._generator(out.device))

    def get_config(self) -> dict[str, Any]:
        return {"minval": self.minval, "maxval": self.maxval, "seed": self.seed}


class TruncatedNormal(Initializer):
    """Normal values redrawn outside two standard deviations, as Keras's."""

    def __init__(self, mean: float = 0.0, stddev: float = 0.05, seed: int | None = None):
        self.mean, self.stddev, self.seed = mean, stddev, seed

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        return _truncated_normal(out, self.mean, self.stddev, self._generator(out.device))

    def get_config(self) -> dict[str, Any]:
        return {"mean": self.mean, "stddev": self.stddev, "seed": self.seed}


def _truncated_normal(
    out: torch.Tensor, mean: float, std: float, gen: torch.Generator | None
) -> torch.Tensor:
    torch.nn.init.trunc_normal_(out, 0.0, 1.0, -2.0, 2.0, generator=gen)
    return out.mul_(std).add_(mean)


class VarianceScaling(Initializer):
    """Scale / fan variance, drawn from a truncated normal, a normal or a uniform distribution."""

    def __init__(
        self,
        scale: float = 1.0,
        mode: str = "fan_in",
        distribution: str = "truncated_normal",
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ):
        if scale <= 0:
            raise ValueError(f"VarianceScaling: scale must be positive, got {scale}")
        if mode not in ("fan_in", "fan_out", "fan_avg"):
            raise ValueError(f"VarianceScaling: mode must be 'fan_in', 'fan_out' or 'fan_avg', got {mode!r}")
        if distribution not in ("truncated_normal", "untruncated_normal", "uniform"):
            raise ValueError(
                "VarianceScaling: distribution must be 'truncated_normal', 'untruncated_normal' "
                f"or 'uniform', got {distribution!r}"
            )
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed
        self.input_axes = None if input_axes is None else list(input_axes)
        self.output_axes = None if output_axes is None else list(output_axes)

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        fan_in, fan_out = compute_fans(tuple(out.shape), self.input_axes, self.output_axes)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0}[self.mode]
        scale = self.scale / max(1.0, fan)
        gen = self._generator(out.device)
        if self.distribution == "truncated_normal":
            return _truncated_normal(out, 0.0, math.sqrt(scale) / 0.87962566103423978, gen)
        if self.distribution == "untruncated_normal":
            return out.normal_(0.0, math.sqrt(scale), generator=gen)
        limit = math.sqrt(3.0 * scale)
        return out.uniform_(-limit, limit, generator=gen)

    def get_config(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "mode": self.mode,
            "distribution": self.distribution,
            "seed": self.seed,
            "input_axes": self.input_axes,
            "output_axes": self.output_axes,
        }


def _preset(name: str, scale: float, mode: str, distribution: str) -> type[VarianceScaling]:
    def __init__(
        self: VarianceScaling,
        seed: int | None = None,
        input_axes: Sequence[int] | None = None,
        output_axes: Sequence[int] | None = None,
    ) -> None:
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self: VarianceScaling) -> dict[str, Any]:
        return {"seed": self.seed, "input_axes": self.input_axes, "output_axes": self.output_axes}

    return type(
        name,
        (VarianceScaling,),
        {
            "__init__": __init__,
            "get_config": get_config,
            "__doc__": f"VarianceScaling({scale}, {mode!r}, {distribution!r}).",
        },
    )


GlorotUniform = _preset("GlorotUniform", 1.0, "fan_avg", "uniform")
GlorotNormal = _preset("GlorotNormal", 1.0, "fan_avg", "truncated_normal")
HeUniform = _preset("HeUniform", 2.0, "fan_in", "uniform")
HeNormal = _preset("HeNormal", 2.0, "fan_in", "truncated_normal")
LecunUniform = _preset("LecunUniform", 1.0, "fan_in", "uniform")
LecunNormal = _preset("LecunNormal", 1.0, "fan_in", "truncated_normal")


class Orthogonal(Initializer):
    def __init__(self, gain: float = 1.0, seed: int | None = None):
        self.gain, self.seed = gain, seed

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        flat = torch.empty(math.prod(out.shape[:-1]), out.shape[-1], dtype=torch.float32)
        torch.nn.init.orthogonal_(flat, self.gain, generator=self._generator(torch.device("cpu")))
        return out.copy_(flat.reshape(out.shape))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain, "seed": self.seed}


class Identity(Initializer):
    def __init__(self, gain: float = 1.0):
        self.gain = gain

    def generate(self, out: torch.Tensor) -> torch.Tensor:
        if out.dim() != 2:
            raise ValueError(f"Identity initializer needs a 2D shape, got {tuple(out.shape)}")
        return out.copy_(self.gain * torch.eye(*out.shape, dtype=out.dtype))

    def get_config(self) -> dict[str, Any]:
        return {"gain": self.gain}


_CLASSES: dict[str, type[Initializer]] = {
    c.__name__: c
    for c in (
        Zeros,
        Ones,
        Constant,
        RandomNormal,
        RandomUniform,
        TruncatedNormal,
        VarianceScaling,
        GlorotUniform,
        GlorotNormal,
        HeUniform,
        HeNormal,
        LecunUniform,
        LecunNormal,
        Orthogonal,
        Identity,
    )
}
_BY_SNAKE = {to_snake_case(n): c for n, c in _CLASSES.items()}
_BY_SNAKE.update({"uniform": RandomUniform, "normal": RandomNormal, "one": Ones, "zero": Zeros})


def get(identifier: Any) -> Initializer:
    """Resolve ``"glorot_uniform"``, ``"GlorotUniform"``, a config dict, an instance or a callable."""
    if isinstance(identifier, Initializer):
        return identifier
    if isinstance(identifier, str):
        cls = _CLASSES.get(identifier) or _BY_SNAKE.get(identifier)
        if cls is None:
            raise unknown_name_error("initializer", identifier, list(_BY_SNAKE))
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return _CallableInitializer(identifier)
    raise TypeError(f"Could not interpret initializer {identifier!r}: pass a name like 'glorot_uniform'.")


class _CallableInitializer(Initializer):
    """A user function ``fn(shape, dtype=None)`` used as an initializer."""

    def __init__(self, fn: Any):
        self.fn = fn

    def __call__(
        self, shape: tuple[int, ...], dtype: torch.dtype | None = None, device: torch.device | None = None
    ) -> torch.Tensor:
        value = torch.as_tensor(self.fn(tuple(shape), dtype=dtype))
        return value.to(device=device or config.get_device(), dtype=dtype or getattr(torch, config.floatx()))


def serialize(initializer: Initializer) -> dict[str, Any]:
    if type(initializer).__name__ not in _CLASSES:
        from .saving.registry import serialize_custom

        return serialize_custom(initializer)
    return {"class_name": type(initializer).__name__, "config": initializer.get_config()}


def deserialize(config: dict[str, Any] | str) -> Initializer:
    """An initializer from a saved config or name: ours or a registered class, never a module path."""
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"Could not deserialize initializer {config!r}: expected a dict with 'class_name'.")
    name = config["class_name"]
    cls = _CLASSES.get(name) or _BY_SNAKE.get(name)
    if cls is None:
        from .saving.registry import resolve_subclass

        cls = resolve_subclass(name, Initializer, "an initializer class")
    return cls.from_config(config.get("config") or {})
