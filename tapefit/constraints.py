"""Weight constraints (MaxNorm, MinMaxNorm, NonNeg, UnitNorm): projections the optimizer applies to a
weight after each update, with Keras 3's names, defaults and arithmetic.

A layer attaches its constraint to the weight it creates (``weight.constraint``, as Keras does on
its variables); the optimizer reads it once in ``build`` and applies ``w.copy_(constraint(w))``
after every step. Layers' calls never touch constraints. ``axis`` always refers to Keras's layout
of the weight (a conv kernel as (kh, kw, in, out)), even where tapefit stores it in torch's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import config as _config
from ._naming import unknown_name_error

__all__ = [
    "Constraint",
    "MaxNorm",
    "MinMaxNorm",
    "NonNeg",
    "UnitNorm",
    "max_norm",
    "min_max_norm",
    "non_neg",
    "unit_norm",
    "get",
    "serialize",
    "deserialize",
]

Axis = int | Sequence[int] | None


def _norms(w: torch.Tensor, axis: Axis) -> torch.Tensor:
    dim = list(axis) if isinstance(axis, (list, tuple)) else axis
    return torch.sqrt(torch.sum(torch.square(w), dim=dim, keepdim=True))


class Constraint:
    """Base class: ``constraint(w)`` returns the projected weight (the identity here).

    Subclasses override ``__call__`` and, when they take arguments, ``get_config``.

    Example:
        >>> import torch, tapefit
        >>> class Clip(tapefit.constraints.Constraint):
        ...     def __call__(self, w):
        ...         return w.clamp(-1.0, 1.0)
        >>> Clip()(torch.tensor([-3.0, 0.5])).tolist()
        [-1.0, 0.5]
    """

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Constraint:
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


class MaxNorm(Constraint):
    """Rescales each slice along ``axis`` whose L2 norm exceeds ``max_value`` down to that norm.

    For a Dense kernel (in, out), ``axis=0`` bounds each unit's incoming weight vector; for a
    Conv2D kernel (kh, kw, in, out), ``axis=[0, 1, 2]`` bounds each filter.

    Example:
        >>> import torch, tapefit
        >>> w = tapefit.constraints.MaxNorm(1.0)(torch.tensor([[3.0], [4.0]]))
        >>> [round(v, 4) for v in w.flatten().tolist()]
        [0.6, 0.8]
    """

    def __init__(self, max_value: float = 2, axis: Axis = 0):
        self.max_value = max_value
        self.axis = axis

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = _norms(w, self.axis)
        desired = torch.clamp(norms, 0, self.max_value)
        return w * (desired / (_config.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {"max_value": self.max_value, "axis": self.axis}


class MinMaxNorm(Constraint):
    """Moves each slice's L2 norm along ``axis`` into ``[min_value, max_value]``.

    The new norm is ``rate * clip(norm, min_value, max_value) + (1 - rate) * norm``: ``rate=1``
    enforces the bounds at once, a smaller rate approaches them over several steps.
    """

    def __init__(self, min_value: float = 0.0, max_value: float = 1.0, rate: float = 1.0, axis: Axis = 0):
        self.min_value = min_value
        self.max_value = max_value
        self.rate = rate
        self.axis = axis

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        norms = _norms(w, self.axis)
        desired = self.rate * torch.clamp(norms, self.min_value, self.max_value) + (1 - self.rate) * norms
        return w * (desired / (_config.epsilon() + norms))

    def get_config(self) -> dict[str, Any]:
        return {
            "min_value": self.min_value,
            "max_value": self.max_value,
            "rate": self.rate,
            "axis": self.axis,
        }


class NonNeg(Constraint):
    """Sets negative weights to zero.

    Example:
        >>> import torch, tapefit
        >>> tapefit.constraints.NonNeg()(torch.tensor([-1.0, 2.0])).tolist()
        [0.0, 2.0]
    """

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return torch.clamp_min(w, 0)


class UnitNorm(Constraint):
    """Scales each slice along ``axis`` to unit L2 norm (``w / (epsilon + norm)``)."""

    def __init__(self, axis: Axis = 0):
        self.axis = axis

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return w / (_config.epsilon() + _norms(w, self.axis))

    def get_config(self) -> dict[str, Any]:
        return {"axis": self.axis}


max_norm, min_max_norm, non_neg, unit_norm = MaxNorm, MinMaxNorm, NonNeg, UnitNorm

_BUILTIN = (Constraint, MaxNorm, MinMaxNorm, NonNeg, UnitNorm)
# Keras 3's lookup table: class names and their snake_case forms.
_CLASSES: dict[str, type[Constraint]] = {
    **{cls.__name__: cls for cls in _BUILTIN},
    "constraint": Constraint,
    "max_norm": MaxNorm,
    "min_max_norm": MinMaxNorm,
    "non_neg": NonNeg,
    "unit_norm": UnitNorm,
}


class _InStorageLayout:
    """A constraint for a weight stored permuted (``storage = keras.permute(perm)``): applies it to
    the Keras-layout view, so ``axis`` means what it means in Keras, and returns the storage layout.

    ``constraint`` is the user's object; the layer keeps it for ``get_config``.
    """

    def __init__(self, constraint: Callable[[torch.Tensor], torch.Tensor], perm: Sequence[int]):
        self.constraint = constraint
        self.perm = tuple(perm)
        self.inverse = tuple(sorted(range(len(self.perm)), key=self.perm.__getitem__))

    def __call__(self, w: torch.Tensor) -> torch.Tensor:
        return self.constraint(w.permute(*self.inverse)).permute(*self.perm)

    def __repr__(self) -> str:
        return f"<{self.constraint!r} applied in Keras layout>"


def get(identifier: Any) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Resolve a name (``"max_norm"``, ``"NonNeg"``), a config dict, a Constraint, a class or a callable.

    Example:
        >>> import tapefit
        >>> tapefit.constraints.get("unit_norm").get_config()
        {'axis': 0}
    """
    if identifier is None or isinstance(identifier, Constraint):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _CLASSES:
            raise unknown_name_error("constraint", identifier, list(_CLASSES))
        return _CLASSES[identifier]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(
        f"Could not interpret constraint identifier {identifier!r}: pass a name such as 'max_norm', "
        "a Constraint, or a callable that maps a weight to its projection."
    )


def serialize(constraint: Callable[[torch.Tensor], torch.Tensor] | None) -> dict[str, Any] | None:
    """``{"class_name", "config"}`` for a constraint; custom classes and functions must be registered.

    ``None`` stays ``None`` (as Keras), so layers serialize optional constraints directly.
    """
    if constraint is None:
        return None
    from .saving.registry import registered_name, serialize_custom

    name = type(constraint).__name__
    if _CLASSES.get(name) is type(constraint):
        return {"class_name": name, "config": constraint.get_config()}
    if isinstance(constraint, Constraint):
        return serialize_custom(constraint)
    return {"class_name": "function", "config": registered_name(constraint)}


def deserialize(config: dict[str, Any] | str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A constraint from a saved config or name: ours or a registered one, never a module path."""
    from .saving.registry import resolve, resolve_subclass

    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"Could not deserialize constraint {config!r}: expected a dict with 'class_name'.")
    inner = config.get("config") or {}
    if config["class_name"] == "function":
        fn = resolve(inner) if isinstance(inner, str) else None
        if fn is None or isinstance(fn, type) or not callable(fn):
            raise ValueError(
                f"Could not deserialize constraint {config!r}: 'function' configs must name a function "
                "registered with @tapefit.saving.register_serializable()."
            )
        return fn
    cls = _CLASSES.get(config["class_name"])
    if cls is None:
        cls = resolve_subclass(config["class_name"], Constraint, "a constraint class")
    if not isinstance(inner, dict):
        raise ValueError(f"Could not deserialize constraint {config!r}: its 'config' must be a dict.")
    return cls.from_config(inner)
