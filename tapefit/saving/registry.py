"""The allowlist that deserialisation resolves names from: tapefit's own classes plus the
user's registered ones. Nothing inside a file can add to it or switch it off.

Example:
    >>> import tapefit
    >>> @tapefit.saving.register_serializable(package="demo")
    ... class Scale(tapefit.layers.Layer):
    ...     def call(self, x):
    ...         return 2 * x
    >>> resolve("demo>Scale") is Scale
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "register_serializable",
    "get_registered_object",
    "get_registered_name",
    "resolve",
    "resolve_subclass",
    "registered_name",
    "serialize_custom",
    "register_builtin",
]

_CUSTOM: dict[str, Any] = {}
_BUILTIN: dict[str, Any] = {}


def register_serializable(package: str = "Custom", name: str | None = None) -> Callable[[Any], Any]:
    """Decorator that lets ``load_model`` rebuild a custom class or function by name.

    Registered objects are saved as ``"package>Name"`` and resolved from this registry only.
    """
    if ">" in package:
        raise ValueError(f"register_serializable: package {package!r} must not contain '>'")

    def decorator(obj: Any) -> Any:
        key = f"{package}>{name or obj.__name__}"
        _CUSTOM[key] = obj
        obj._tapefit_registered_name = key
        return obj

    return decorator


def register_builtin(obj: Any, name: str | None = None) -> Any:
    """Add one of tapefit's own classes to the allowlist (used by tapefit's sub-packages)."""
    _BUILTIN[name or obj.__name__] = obj
    return obj


def registered_name(obj: Any) -> str:
    """The name ``obj`` is saved under; raises if it is neither built in nor registered."""
    key = getattr(obj, "_tapefit_registered_name", None)
    if key is not None and _CUSTOM.get(key) is obj:
        return key
    for k, v in _BUILTIN.items():
        if v is obj:
            return k
    raise ValueError(
        f"{getattr(obj, '__name__', type(obj).__name__)} cannot be saved by name: register it with "
        "@tapefit.saving.register_serializable() so that load_model can find it again."
    )


def get_registered_name(obj: Any) -> str:
    return registered_name(obj)


def get_registered_object(name: str, custom_objects: dict[str, Any] | None = None) -> Any | None:
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    return _CUSTOM.get(name) or _BUILTIN.get(name)


def resolve(name: str, custom_objects: dict[str, Any] | None = None) -> Any:
    """Look ``name`` up in the allowlist; never imports a module path named by a file."""
    obj = get_registered_object(name, custom_objects)
    if obj is None:
        raise ValueError(
            f"Unknown object {name!r} in a saved config: only tapefit's own classes and the classes and "
            "functions you registered with @tapefit.saving.register_serializable() (or passed in "
            "custom_objects=) can be loaded. Register it before loading if it is yours; with "
            "safe_mode=False too, nothing outside that allowlist is ever imported or called."
        )
    return obj


def resolve_subclass(name: str, base: type, what: str, custom_objects: dict[str, Any] | None = None) -> type:
    """:func:`resolve`, and check that ``name`` is a subclass of ``base`` (``what`` names it in errors)."""
    obj = resolve(name, custom_objects)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"{name!r} in a saved config is not {what}; refusing to build it from the config.")
    return obj


def serialize_custom(obj: Any) -> dict[str, Any]:
    """``{"class_name": "pkg>Name", "config": obj.get_config()}`` for a registered custom object."""
    return {"class_name": registered_name(type(obj)), "config": obj.get_config()}
