"""Learning rate schedules: Keras 3's ``keras.optimizers.schedules`` on torch tensors.

A schedule maps the optimizer's step (``optimizer.iterations``, an int64 tensor on the
device) to a learning rate. Everything is computed with torch ops on that tensor, so
evaluating a schedule inside a training step never copies a value to the host and works
under ``torch.compile``. Called with a Python number, a schedule computes on the CPU.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .._naming import unknown_name_error

__all__ = [
    "LearningRateSchedule",
    "ExponentialDecay",
    "PiecewiseConstantDecay",
    "PolynomialDecay",
    "InverseTimeDecay",
    "CosineDecay",
    "CosineDecayRestarts",
    "serialize",
    "deserialize",
]


def _float_dtype(value: Any) -> torch.dtype:
    if isinstance(value, torch.Tensor) and value.is_floating_point():
        return value.dtype
    return torch.float32


def _step_tensor(step: Any, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(step, torch.Tensor):
        return step.detach().to(dtype)
    return torch.as_tensor(step, dtype=dtype)


def _check_decay_steps(name: str, value: Any) -> None:
    if value <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")


class LearningRateSchedule:
    """Base class: subclasses implement ``__call__(step)`` and ``get_config()``.

    Example:
        >>> class Halving(LearningRateSchedule):
        ...     def __call__(self, step):
        ...         return 0.1 * 0.5 ** (torch.as_tensor(step) // 100).float()
        ...     def get_config(self):
        ...         return {}
        >>> round(float(Halving()(250)), 6)
        0.025
    """

    def __call__(self, step: Any) -> torch.Tensor:
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' must override `__call__(self, step)`."
        )

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError(
            f"Learning rate schedule '{self.__class__.__name__}' must override `get_config()` "
            "in order to be serializable."
        )

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LearningRateSchedule:
        return cls(**config)


class _RateDecay(LearningRateSchedule):
    """The shared form of the two ``decay_rate`` schedules: their arguments, config, and progress
    ``step / decay_steps`` (floored when ``staircase``)."""

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        decay_rate: float,
        staircase: bool = False,
        name: str | None = None,
    ) -> None:
        _check_decay_steps("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.decay_rate = decay_rate
        self.staircase = staircase
        self.name = name or type(self).__name__

    def _progress(self, step: Any) -> torch.Tensor:
        p = _step_tensor(step, _float_dtype(self.initial_learning_rate)) / self.decay_steps
        return torch.floor(p) if self.staircase else p

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "decay_rate": self.decay_rate,
            "staircase": self.staircase,
            "name": self.name,
        }


class ExponentialDecay(_RateDecay):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)`` (floored when ``staircase``).

    Example:
        >>> lr = ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
        >>> round(float(lr(20)), 6)
        0.025
    """

    def __call__(self, step: Any) -> torch.Tensor:
        return self.initial_learning_rate * torch.pow(self.decay_rate, self._progress(step))


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` up to ``boundaries[0]`` (inclusive), ``values[1]`` up to ``boundaries[1]``, ...

    Example:
        >>> lr = PiecewiseConstantDecay([100, 200], [1.0, 0.5, 0.1])
        >>> [float(lr(s)) for s in (100, 101, 201)]
        [1.0, 0.5, 0.10000000149011612]
    """

    def __init__(self, boundaries: list[Any], values: list[Any], name: str = "PiecewiseConstant") -> None:
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. Received: "
                f"boundaries={boundaries} of length {len(boundaries)}, and values={values} "
                f"of length {len(values)}."
            )
        self.boundaries = boundaries
        self.values = values
        self.name = name

    def __call__(self, step: Any) -> torch.Tensor:
        step = step.detach() if isinstance(step, torch.Tensor) else torch.as_tensor(step)
        # Keras casts the boundaries to the step's dtype (an int step truncates float boundaries).
        cast = int if not step.is_floating_point() else float
        bounds = [cast(b) for b in self.boundaries]
        first = self.values[0]
        dtype = first.dtype if isinstance(first, torch.Tensor) else torch.as_tensor(first).dtype
        result = (step <= bounds[0]).to(dtype) * self.values[0]
        result = result + (step > bounds[-1]).to(dtype) * self.values[-1]
        for low, high, value in zip(bounds[:-1], bounds[1:], self.values[1:-1]):
            result = result + ((step > low) & (step <= high)).to(dtype) * value
        return result

    def get_config(self) -> dict[str, Any]:
        return {"boundaries": self.boundaries, "values": self.values, "name": self.name}


class PolynomialDecay(LearningRateSchedule):
    """Polynomial decay from ``initial_learning_rate`` to ``end_learning_rate`` over ``decay_steps``.

    ``(initial - end) * (1 - step / decay_steps) ** power + end``, with the step clipped at
    ``decay_steps``; with ``cycle=True`` the horizon grows to the next multiple of ``decay_steps``.

    Example:
        >>> lr = PolynomialDecay(1.0, decay_steps=10, end_learning_rate=0.0)
        >>> float(lr(5)), float(lr(50))
        (0.5, 0.0)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        end_learning_rate: float = 0.0001,
        power: float = 1.0,
        cycle: bool = False,
        name: str = "PolynomialDecay",
    ) -> None:
        _check_decay_steps("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.end_learning_rate = end_learning_rate
        self.power = power
        self.cycle = cycle
        self.name = name

    def __call__(self, step: Any) -> torch.Tensor:
        s = _step_tensor(step, _float_dtype(self.initial_learning_rate))
        if self.cycle:
            multiplier = torch.where(s == 0, torch.ones_like(s), torch.ceil(s / self.decay_steps))
            decay_steps = multiplier * self.decay_steps
        else:
            s = torch.clamp_max(s, self.decay_steps)
            decay_steps = self.decay_steps
        p = s / decay_steps
        span = self.initial_learning_rate - self.end_learning_rate
        return span * torch.pow(1 - p, self.power) + self.end_learning_rate

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "end_learning_rate": self.end_learning_rate,
            "power": self.power,
            "cycle": self.cycle,
            "name": self.name,
        }


class InverseTimeDecay(_RateDecay):
    """``initial_learning_rate / (1 + decay_rate * step / decay_steps)`` (floored when ``staircase``).

    Example:
        >>> lr = InverseTimeDecay(1.0, decay_steps=1, decay_rate=0.5)
        >>> float(lr(2))
        0.5
    """

    def __call__(self, step: Any) -> torch.Tensor:
        return self.initial_learning_rate / (1 + self.decay_rate * self._progress(step))


def _cosine(fraction: torch.Tensor, alpha: float) -> torch.Tensor:
    cosine_decayed = 0.5 * (1.0 + torch.cos(math.pi * fraction))
    return (1 - alpha) * cosine_decayed + alpha


class CosineDecay(LearningRateSchedule):
    """Cosine decay over ``decay_steps`` down to ``alpha * initial``, after an optional linear warmup.

    Without ``warmup_target``: ``initial * ((1 - alpha) * 0.5 * (1 + cos(pi * t / decay_steps)) + alpha)``.
    With it, the rate first rises linearly from ``initial_learning_rate`` to ``warmup_target`` over
    ``warmup_steps``, then decays from ``warmup_target``.

    Example:
        >>> lr = CosineDecay(0.0, decay_steps=100, warmup_target=1.0, warmup_steps=10)
        >>> float(lr(5)), float(lr(10)), round(float(lr(60)), 6)
        (0.5, 1.0, 0.5)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        decay_steps: int,
        alpha: float = 0.0,
        name: str = "CosineDecay",
        warmup_target: float | None = None,
        warmup_steps: int = 0,
    ) -> None:
        _check_decay_steps("decay_steps", decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.decay_steps = decay_steps
        self.alpha = alpha
        self.name = name
        self.warmup_steps = warmup_steps
        self.warmup_target = warmup_target

    def __call__(self, step: Any) -> torch.Tensor:
        s = _step_tensor(step, _float_dtype(self.initial_learning_rate))
        if self.warmup_target is None:
            s = torch.clamp_max(s, self.decay_steps)
            return self.initial_learning_rate * _cosine(s / self.decay_steps, self.alpha)
        s = torch.clamp_max(s, self.decay_steps + self.warmup_steps)
        warm = (self.warmup_target - self.initial_learning_rate) * (s / self.warmup_steps)
        warm = warm + self.initial_learning_rate
        decayed = self.warmup_target * _cosine((s - self.warmup_steps) / self.decay_steps, self.alpha)
        return torch.where(s < self.warmup_steps, warm, decayed)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "decay_steps": self.decay_steps,
            "alpha": self.alpha,
            "name": self.name,
            "warmup_target": self.warmup_target,
            "warmup_steps": self.warmup_steps,
        }


class CosineDecayRestarts(LearningRateSchedule):
    """Cosine decay with warm restarts (SGDR): period ``first_decay_steps``, times ``t_mul`` after
    each restart, peak times ``m_mul`` after each restart, floor ``alpha * initial``.

    Example:
        >>> lr = CosineDecayRestarts(1.0, first_decay_steps=10, t_mul=1.0)
        >>> float(lr(0)), round(float(lr(5)), 6), float(lr(10))
        (1.0, 0.5, 1.0)
    """

    def __init__(
        self,
        initial_learning_rate: float,
        first_decay_steps: int,
        t_mul: float = 2.0,
        m_mul: float = 1.0,
        alpha: float = 0.0,
        name: str = "SGDRDecay",
    ) -> None:
        _check_decay_steps("first_decay_steps", first_decay_steps)
        self.initial_learning_rate = initial_learning_rate
        self.first_decay_steps = first_decay_steps
        self._t_mul = t_mul
        self._m_mul = m_mul
        self.alpha = alpha
        self.name = name

    def __call__(self, step: Any) -> torch.Tensor:
        dtype = _float_dtype(self.initial_learning_rate)
        s = _step_tensor(step, dtype)
        fraction = s / self.first_decay_steps
        if self._t_mul == 1.0:
            i_restart = torch.floor(fraction)
            fraction = fraction - i_restart
        else:
            # Logs in the schedule's float type, as Keras computes them: a float64 log would move
            # the restart points by one step wherever the float32 ratio rounds below an integer.
            t_mul = torch.full((), self._t_mul, dtype=dtype, device=s.device)
            i_restart = torch.floor(torch.log(1.0 - fraction * (1.0 - t_mul)) / torch.log(t_mul))
            sum_r = (1.0 - torch.pow(t_mul, i_restart)) / (1.0 - t_mul)
            fraction = (fraction - sum_r) / torch.pow(t_mul, i_restart)
        m_fac = torch.pow(self._m_mul, i_restart)
        cosine_decayed = 0.5 * m_fac * (1.0 + torch.cos(math.pi * fraction))
        return self.initial_learning_rate * ((1 - self.alpha) * cosine_decayed + self.alpha)

    def get_config(self) -> dict[str, Any]:
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "first_decay_steps": self.first_decay_steps,
            "t_mul": self._t_mul,
            "m_mul": self._m_mul,
            "alpha": self.alpha,
            "name": self.name,
        }


_BUILTINS = {
    cls.__name__: cls
    for cls in (
        ExponentialDecay,
        PiecewiseConstantDecay,
        PolynomialDecay,
        InverseTimeDecay,
        CosineDecay,
        CosineDecayRestarts,
    )
}


def serialize(learning_rate_schedule: LearningRateSchedule) -> dict[str, Any]:
    """The schedule as ``{"class_name": ..., "config": {...}}`` (Keras's layout)."""
    return {
        "module": "tapefit.optimizers.schedules",
        "class_name": learning_rate_schedule.__class__.__name__,
        "config": learning_rate_schedule.get_config(),
        "registered_name": _registered_name(learning_rate_schedule.__class__),
    }


def _registered_name(cls: type) -> str | None:
    from ..saving.registry import registered_name

    try:
        return registered_name(cls)
    except ValueError:
        return None


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> LearningRateSchedule:
    """Rebuild a schedule from :func:`serialize`'s output (Keras's layout is accepted too).

    Example:
        >>> s = deserialize(serialize(ExponentialDecay(0.1, 1000, 0.96)))
        >>> type(s).__name__, s.decay_rate
        ('ExponentialDecay', 0.96)
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"A schedule config must be a dict with 'class_name' and 'config'; got {config!r}.")
    name = config["class_name"]
    known = {**_BUILTINS, **(custom_objects or {})}
    cls = known.get(name)
    if cls is None and isinstance(config.get("registered_name") or name, str):
        from ..saving.registry import get_registered_object

        found = get_registered_object(config.get("registered_name") or name)
        cls = found if isinstance(found, type) and issubclass(found, LearningRateSchedule) else None
    if cls is None:
        error = unknown_name_error("learning rate schedule", str(name), list(known))
        raise ValueError(
            f"{error} A custom schedule must be registered with @tapefit.saving.register_serializable() "
            "or passed in custom_objects= to be loaded."
        )
    return cls.from_config(dict(config.get("config", {})))
