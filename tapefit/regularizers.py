"""Weight regularisers (L1, L2, L1L2): penalties collected in ``model.losses`` and added to the loss."""

from __future__ import annotations

from typing import Any

import torch

from ._naming import unknown_name_error

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize", "deserialize"]


class Regularizer:
    """Base class: ``regularizer(weight)`` returns a scalar penalty tensor."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def get_config(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regularizer:
        return cls(**config)


class L1L2(Regularizer):
    """``l1 * sum(|x|) + l2 * sum(x**2)`` (Keras's L2 has no factor 1/2)."""

    def __init__(self, l1: float = 0.0, l2: float = 0.0):
        self.l1, self.l2 = float(l1), float(l2)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(())
        if self.l1:
            total = total + self.l1 * x.abs().sum()
        if self.l2:
            total = total + self.l2 * x.square().sum()
        return total

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    def __init__(self, l1: float = 0.01):
        super().__init__(l1=l1)

    def get_config(self) -> dict[str, Any]:
        return {"l1": self.l1}


class L2(L1L2):
    def __init__(self, l2: float = 0.01):
        super().__init__(l2=l2)

    def get_config(self) -> dict[str, Any]:
        return {"l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2
_CLASSES = {"L1": L1, "L2": L2, "L1L2": L1L2, "l1": L1, "l2": L2, "l1_l2": L1L2}


def get(identifier: Any) -> Regularizer | None:
    if identifier is None or isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier not in _CLASSES:
            raise unknown_name_error("regularizer", identifier, list(_CLASSES))
        return _CLASSES[identifier]()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if callable(identifier):
        return identifier
    raise TypeError(f"Could not interpret regularizer {identifier!r}: pass 'l2' or a Regularizer.")


def serialize(reg: Regularizer | None) -> dict[str, Any] | None:
    """``{"class_name", "config"}`` for a regularizer; ``None`` stays ``None`` (as Keras)."""
    if reg is None:
        return None
    if type(reg).__name__ not in _CLASSES:
        from .saving.registry import serialize_custom

        return serialize_custom(reg)
    return {"class_name": type(reg).__name__, "config": reg.get_config()}


def deserialize(config: dict[str, Any] | str) -> Regularizer:
    """A regularizer from a saved config or name: ours or a registered class, never a module path."""
    if isinstance(config, str):
        config = {"class_name": config, "config": {}}
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"Could not deserialize regularizer {config!r}: expected a dict with 'class_name'.")
    cls = _CLASSES.get(config["class_name"])
    if cls is None:
        from .saving.registry import resolve_subclass

        cls = resolve_subclass(config["class_name"], Regularizer, "a regularizer class")
    return cls.from_config(config.get("config") or {})
