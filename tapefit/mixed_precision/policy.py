"""Dtype policies (Keras's ``mixed_precision``): which dtype layers compute in and which their
weights are stored in. This module is the one place that turns a policy into ``torch.autocast``.

``"mixed_bfloat16"`` / ``"mixed_float16"``: float32 weights, computation in 16 bits under
autocast (matmuls and convolutions in 16 bits, reductions and softmax kept in float32 by torch),
model outputs cast back to float32. ``"float32"`` (the default) changes nothing.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch

from .._masking import keep_mask

__all__ = ["DTypePolicy", "Policy", "set_global_policy", "global_policy", "set_dtype_policy", "dtype_policy"]

_NAMES = {
    "float32": ("float32", "float32"),
    "float64": ("float64", "float64"),
    "float16": ("float16", "float16"),
    "bfloat16": ("bfloat16", "bfloat16"),
    "mixed_float16": ("float16", "float32"),
    "mixed_bfloat16": ("bfloat16", "float32"),
}


class DTypePolicy:
    """A named pair of dtypes: ``compute_dtype`` for computation, ``variable_dtype`` for weights.

    Example:
        >>> p = DTypePolicy("mixed_bfloat16")
        >>> p.compute_dtype, p.variable_dtype
        ('bfloat16', 'float32')
    """

    def __init__(self, name: str = "float32"):
        if isinstance(name, DTypePolicy):
            name = name.name
        if name not in _NAMES:
            raise ValueError(f"Unknown dtype policy {name!r}: use one of {sorted(_NAMES)}.")
        self.name = name
        self.compute_dtype, self.variable_dtype = _NAMES[name]

    @property
    def is_mixed(self) -> bool:
        return self.compute_dtype != self.variable_dtype

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f'<DTypePolicy "{self.name}">'

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name}


Policy = DTypePolicy
_global = [DTypePolicy("float32")]


def set_global_policy(policy: str | DTypePolicy) -> None:
    """Set the policy for layers created from now on (``"mixed_bfloat16"``, ``"float32"``, ...)."""
    _global[0] = DTypePolicy(policy) if not isinstance(policy, DTypePolicy) else policy


def global_policy() -> DTypePolicy:
    return _global[0]


set_dtype_policy, dtype_policy = set_global_policy, global_policy


def is_policy_name(value: Any) -> bool:
    return isinstance(value, DTypePolicy) or (isinstance(value, str) and value.startswith("mixed_"))


def compute_context(policy: DTypePolicy, device: torch.device) -> contextlib.AbstractContextManager:
    """The autocast region a layer with ``policy`` computes in (a no-op for full precision)."""
    if not policy.is_mixed:
        return contextlib.nullcontext()
    if device.type == "cpu" and policy.compute_dtype == "float16" and not hasattr(torch, "float16"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=getattr(torch, policy.compute_dtype))


def outputs_to_float32(outputs: Any) -> Any:
    """Cast a mixed model's floating outputs back to float32, as Keras's last layers do."""
    if isinstance(outputs, torch.Tensor):
        if not outputs.is_floating_point() or outputs.dtype == torch.float32:
            return outputs
        return keep_mask(outputs, outputs.float())
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_to_float32(o) for o in outputs)
    if isinstance(outputs, dict):
        return {k: outputs_to_float32(v) for k, v in outputs.items()}
    return outputs
