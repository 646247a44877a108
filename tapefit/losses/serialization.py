"""Looking losses up by name (``compile(loss="mse")``) and saving them as configs.

Names resolve only against tapefit's own losses, the caller's ``custom_objects`` and the
user's registered objects: a config can never make us import a module or call an arbitrary
function (see SECURITY notes in issue 7).
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Callable
from typing import Any

from . import crossentropy, margin, probabilistic, regression
from .loss import Loss, LossFunctionWrapper

__all__ = ["get", "serialize", "deserialize"]

_MODULE = "tapefit.losses"

_CLASSES: dict[str, type[Loss]] = {"Loss": Loss, "LossFunctionWrapper": LossFunctionWrapper}
_FUNCTIONS: dict[str, Callable[..., Any]] = {}
for _module in (crossentropy, regression, probabilistic, margin):
    for _name in _module.__all__:
        _obj = getattr(_module, _name)
        (_CLASSES if inspect.isclass(_obj) else _FUNCTIONS)[_name] = _obj

# Keras 3's short names, plus the tf.keras 2 spellings that seeds and old code still use.
_ALIASES: dict[str, Callable[..., Any]] = {
    "bce": crossentropy.binary_crossentropy,
    "kld": probabilistic.kl_divergence,
    "kullback_leibler_divergence": probabilistic.kl_divergence,
    "mae": regression.mean_absolute_error,
    "mse": regression.mean_squared_error,
    "mape": regression.mean_absolute_percentage_error,
    "msle": regression.mean_squared_logarithmic_error,
    "logcosh": regression.log_cosh,
    "huber_loss": regression.huber,
}
_ALIASES.update({name.upper(): fn for name, fn in list(_ALIASES.items()) if len(name) <= 4})


def _known_names() -> list[str]:
    return [*_CLASSES, *_FUNCTIONS, *_ALIASES]


def _unknown(name: str) -> ValueError:
    by_lower = {known.lower(): known for known in _known_names()}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    hint = f" Did you mean {' or '.join(repr(by_lower[c]) for c in close)}?" if close else ""
    return ValueError(
        f"Unknown loss {name!r}.{hint} Pass a loss name such as 'sparse_categorical_crossentropy' or 'mse', "
        "a tapefit.losses.Loss, or a callable loss_fn(y_true, y_pred); custom losses loaded from a config "
        "must be registered with @tapefit.saving.register_serializable() or passed in custom_objects=."
    )


def _registry() -> Any:
    try:
        from ..saving import registry
    except ImportError:
        return None
    return registry


def _lookup(name: str, custom_objects: dict[str, Any] | None) -> Any:
    if custom_objects and name in custom_objects:
        return custom_objects[name]
    found = _CLASSES.get(name) or _FUNCTIONS.get(name) or _ALIASES.get(name)
    if found is not None:
        return found
    registry = _registry()
    if registry is not None:
        try:
            return registry.resolve(name)
        except (KeyError, ValueError):
            pass
    raise _unknown(name)


def get(identifier: Any) -> Any:
    """Resolve a loss identifier the way Keras's ``losses.get`` does.

    A function name gives the function, a class name an instance with default arguments, a
    ``{"class_name": ..., "config": ...}`` dict the configured instance, a class an instance, and
    a callable or `Loss` is returned as is. ``None`` gives ``None``.

    Example:
        >>> get("mse").__name__
        'mean_squared_error'
        >>> get({"class_name": "CategoricalCrossentropy", "config": {"from_logits": True}}).from_logits
        True
    """
    if identifier is None:
        return None
    if isinstance(identifier, dict):
        obj = deserialize(identifier)
    elif isinstance(identifier, str):
        obj = _lookup(identifier, None)
    else:
        obj = identifier
    if inspect.isclass(obj):
        return obj()
    if callable(obj):
        return obj
    raise ValueError(
        f"Could not interpret loss identifier {identifier!r}: pass a name, a Loss, a callable "
        "or a {'class_name': ..., 'config': ...} dict."
    )


def _registered_name(obj: Any) -> str:
    registry = _registry()
    if registry is not None:
        try:
            return registry.registered_name(obj)
        except (KeyError, ValueError):
            pass
    return obj.__name__


def serialize(loss: Any) -> dict[str, Any] | None:
    """A JSON-safe config of a `Loss` or loss function, shaped like Keras's serialized objects.

    Example:
        >>> serialize(get("mse"))["config"]
        'mean_squared_error'
    """
    if loss is None:
        return None
    if isinstance(loss, Loss):
        cls = type(loss)
        builtin = _CLASSES.get(cls.__name__) is cls
        return {
            "module": _MODULE if builtin else cls.__module__,
            "class_name": cls.__name__,
            "config": loss.get_config(),
            "registered_name": None if builtin else _registered_name(cls),
        }
    if callable(loss) and getattr(loss, "__name__", "<lambda>") != "<lambda>":
        builtin = _FUNCTIONS.get(loss.__name__) is loss
        return {
            "module": _MODULE if builtin else loss.__module__,
            "class_name": "function",
            "config": loss.__name__ if builtin else _registered_name(loss),
            "registered_name": "function",
        }
    raise ValueError(
        f"Cannot serialize loss {loss!r}: expected a tapefit.losses.Loss or a named "
        "function (a lambda cannot be found again by name)."
    )


def deserialize(config: Any, custom_objects: dict[str, Any] | None = None) -> Any:
    """Rebuild a loss from `serialize`'s output (or a bare name); only known or registered names resolve.

    Example:
        >>> type(deserialize(serialize(get("Huber")))).__name__
        'Huber'
    """
    if isinstance(config, str):
        return _lookup(config, custom_objects)
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(
            f"Could not deserialize loss {config!r}: expected a name or a dict with 'class_name' "
            "and 'config'."
        )
    class_name = config["class_name"]
    inner = config.get("config")
    if class_name == "function":
        if not isinstance(inner, str):
            raise ValueError(f"A serialized loss function needs its name under 'config'; received {inner!r}.")
        return _lookup(inner, custom_objects)
    name = config.get("registered_name") or class_name
    cls = _lookup(name, custom_objects)
    if not inspect.isclass(cls):
        return cls
    if not issubclass(cls, Loss):
        raise ValueError(
            f"{class_name!r} is not a tapefit.losses.Loss subclass and cannot be built from a config."
        )
    return cls.from_config(dict(inner or {}))
