"""Optimizers with Keras 3's update rules and defaults, running ``torch._foreach_*`` kernels.

``get("adam")``, ``get({"class_name": "SGD", "config": {...}})`` or an instance;
learning rate schedules live in :mod:`tapefit.optimizers.schedules`.
"""

from __future__ import annotations

from typing import Any

from .._naming import unknown_name_error
from . import schedules
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, Adamax, AdamW, Nadam
from .lion import Lion
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = [
    "Optimizer",
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "Nadam",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Lion",
    "schedules",
    "get",
    "serialize",
    "deserialize",
]

ALL_OBJECTS_DICT: dict[str, type[Optimizer]] = {
    cls.__name__.lower(): cls for cls in (SGD, Adam, AdamW, Adamax, Nadam, RMSprop, Adagrad, Adadelta, Lion)
}


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """The optimizer's class and config as ``{"class_name": ..., "config": {...}}`` (Keras's layout)."""
    return {
        "module": "tapefit.optimizers",
        "class_name": type(optimizer).__name__,
        "config": optimizer.get_config(),
        "registered_name": _saved_name(type(optimizer)),
    }


def _saved_name(cls: type) -> str:
    from ..saving.registry import registered_name

    try:
        return registered_name(cls)
    except ValueError:
        return cls.__name__


def deserialize(config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Optimizer:
    """Rebuild an optimizer from :func:`serialize`'s output; class names are case-insensitive.

    Example:
        >>> opt = deserialize({"class_name": "Adam", "config": {"learning_rate": 0.01}})
        >>> type(opt).__name__, round(float(opt.learning_rate), 6)
        ('Adam', 0.01)
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"An optimizer config must be a dict with 'class_name' and 'config'; got {config!r}."
        )
    name = config["class_name"]
    custom = custom_objects or {}
    cls = custom.get(name) or ALL_OBJECTS_DICT.get(str(name).lower())
    if cls is None and str(name).lower() == "lossscaleoptimizer":  # lives in mixed_precision
        from ..mixed_precision import LossScaleOptimizer

        cls = LossScaleOptimizer
    if cls is None:
        cls = _registered(config.get("registered_name") or name, Optimizer)
    if cls is None:
        error = unknown_name_error("optimizer", str(name), sorted(ALL_OBJECTS_DICT) + list(custom))
        raise ValueError(
            f"{error} A custom optimizer must be registered with @tapefit.saving.register_serializable() "
            "or passed in custom_objects= to be loaded."
        )
    return cls.from_config(dict(config.get("config", {})), custom_objects=custom_objects)


def _registered(name: Any, base: type) -> Any:
    """A user-registered subclass of ``base`` named ``name`` (the allowlist), else None."""
    from ..saving.registry import get_registered_object

    obj = get_registered_object(name) if isinstance(name, str) else None
    return obj if isinstance(obj, type) and issubclass(obj, base) else None


def _is_wrapper(obj: Any) -> bool:
    """An optimizer wrapper such as ``LossScaleOptimizer`` (it holds a tapefit optimizer)."""
    return isinstance(getattr(obj, "__dict__", {}).get("inner_optimizer"), Optimizer)


def get(identifier: Any) -> Optimizer | None:
    """An optimizer from a name (``"adam"``), a config dict, or an instance (returned as is).

    Example:
        >>> type(get("rmsprop")).__name__
        'RMSprop'
    """
    if identifier is None or isinstance(identifier, Optimizer) or _is_wrapper(identifier):
        return identifier
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        return deserialize({"class_name": identifier, "config": {}})
    raise ValueError(
        f"Could not interpret optimizer identifier: {identifier!r}. Pass a name such as 'adam', "
        "a config dict, or an optimizer instance."
    )
