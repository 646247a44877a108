"""Activation functions with Keras names and defaults, usable as strings (``activation="relu"``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ._naming import unknown_name_error

__all__ = [
    "celu",
    "elu",
    "exponential",
    "gelu",
    "glu",
    "hard_sigmoid",
    "hard_silu",
    "hard_swish",
    "hard_tanh",
    "leaky_relu",
    "linear",
    "log_sigmoid",
    "log_softmax",
    "mish",
    "relu",
    "relu6",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softplus",
    "softsign",
    "swish",
    "tanh",
    "get",
    "serialize",
    "deserialize",
]


def relu(
    x: torch.Tensor, negative_slope: float = 0.0, max_value: float | None = None, threshold: float = 0.0
) -> torch.Tensor:
    """Keras's relu: ``max(x, 0)``, with an optional leak below ``threshold`` and a ceiling."""
    if negative_slope == 0.0 and max_value is None and threshold == 0.0:
        return F.relu(x)
    y = torch.where(x > threshold, x, negative_slope * (x - threshold))
    if max_value is not None:
        y = torch.clamp(y, max=max_value)
    return y


def relu6(x: torch.Tensor) -> torch.Tensor:
    return F.relu6(x)


def leaky_relu(x: torch.Tensor, negative_slope: float = 0.2) -> torch.Tensor:
    return F.leaky_relu(x, negative_slope)


def elu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    return F.elu(x, alpha)


def celu(x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    return F.celu(x, alpha)


def selu(x: torch.Tensor) -> torch.Tensor:
    return F.selu(x)


def gelu(x: torch.Tensor, approximate: bool = False) -> torch.Tensor:
    return F.gelu(x, approximate="tanh" if approximate else "none")


def glu(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    return F.glu(x, dim=axis)


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x)


def hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``relu6(x + 3) / 6``, Keras 3's piecewise-linear sigmoid."""
    return F.hardsigmoid(x)


def hard_silu(x: torch.Tensor) -> torch.Tensor:
    return F.hardswish(x)


hard_swish = hard_silu


def hard_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(x)


def log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.logsigmoid(x)


def silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x)


swish = silu


def mish(x: torch.Tensor) -> torch.Tensor:
    return F.mish(x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x)


def softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    return torch.softmax(x, dim=axis)


def log_softmax(x: torch.Tensor, axis: int = -1) -> torch.Tensor:
    return torch.log_softmax(x, dim=axis)


def softplus(x: torch.Tensor) -> torch.Tensor:
    return F.softplus(x)


def softsign(x: torch.Tensor) -> torch.Tensor:
    return F.softsign(x)


def exponential(x: torch.Tensor) -> torch.Tensor:
    return torch.exp(x)


def linear(x: torch.Tensor) -> torch.Tensor:
    return x


_ALL: dict[str, Callable[..., torch.Tensor]] = {
    f.__name__: f
    for f in (
        celu,
        elu,
        exponential,
        gelu,
        glu,
        hard_sigmoid,
        hard_silu,
        hard_tanh,
        leaky_relu,
        linear,
        log_sigmoid,
        log_softmax,
        mish,
        relu,
        relu6,
        selu,
        sigmoid,
        silu,
        softmax,
        softplus,
        softsign,
        tanh,
    )
}
_ALIASES = {"swish": silu, "hard_swish": hard_silu, None: linear}


def get(identifier: str | Callable | None) -> Callable[..., torch.Tensor]:
    """Resolve ``"relu"``, ``None`` (linear), a callable or a serialized dict to a function.

    Example:
        >>> get("relu")(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """
    if identifier is None or callable(identifier):
        return identifier or linear
    if isinstance(identifier, dict):
        identifier = identifier.get("config", identifier.get("class_name"))
    if isinstance(identifier, str):
        fn = _ALL.get(identifier) or _ALIASES.get(identifier) or _registered(identifier)
        if fn is None:
            error = unknown_name_error("activation", identifier, list(_ALL) + ["swish", "hard_swish"])
            raise ValueError(
                f"{error} A custom activation saved by name must be registered with "
                "@tapefit.saving.register_serializable() before loading."
            )
        return fn
    raise TypeError(f"Could not interpret activation {identifier!r}: pass a name like 'relu' or a callable.")


def serialize(fn: Callable) -> str:
    """The name an activation is saved under; custom functions must be registered to be saved."""
    name = getattr(fn, "__name__", None)
    if name in _ALL or name in ("swish", "hard_swish"):
        return name
    from .saving.registry import registered_name

    return registered_name(fn)


def _registered(name: str) -> Callable[..., torch.Tensor] | None:
    """A function the user registered under ``name`` (the allowlist; never a module path)."""
    from .saving.registry import get_registered_object

    fn = get_registered_object(name)
    return fn if callable(fn) and not isinstance(fn, type) else None


def deserialize(config: str | dict) -> Callable[..., torch.Tensor]:
    """The activation a saved config names: one of ours or a registered function, never a module path."""
    name = config
    if isinstance(config, dict):
        name = config.get("config") if isinstance(config.get("config"), str) else config.get("class_name")
    if not isinstance(name, str):
        raise ValueError(f"Could not deserialize activation {config!r}: expected a name or a config dict.")
    return get(name)
