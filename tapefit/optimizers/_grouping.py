"""The device/dtype groups that ``torch._foreach_*`` kernels run over, and gradient clipping.

``foreach`` kernels need lists of tensors on one device with one dtype; ``GroupingMixin`` splits
the variables updated in a step into such groups (cached per set of variables with gradients)
and decides which of them get weight decay. Kept apart from the optimizer base so that the base
reads as Keras's ``apply`` sequence.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch


def describe(variable: torch.Tensor) -> str:
    name = getattr(variable, "path", None) or getattr(variable, "name", None)
    shape = tuple(variable.shape)
    return f"{name} (shape {shape})" if name else f"<unnamed variable, shape {shape}>"


@dataclass
class Group:
    """Variables of one device and dtype among those updated in a step, with their state.

    ``positions`` index the step's gradient list; ``slots`` hold each optimizer state name's
    tensors in the same order as ``params``.
    """

    device: torch.device
    dtype: torch.dtype
    positions: list[int] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    params: list[torch.Tensor] = field(default_factory=list)
    slots: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    decay_params: list[torch.Tensor] = field(default_factory=list)


def on(value: Any, device: torch.device, dtype: torch.dtype | None = None) -> Any:
    """A tensor moved/cast for a group (a no-op when it already is); Python numbers pass through."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(device=device, dtype=dtype or value.dtype)


def clip_by_norm(grads: list[torch.Tensor], clipnorm: float) -> list[torch.Tensor]:
    """Keras's per-tensor clipping: ``g * clipnorm / max(||g||, clipnorm)``."""
    norms = torch._foreach_norm(grads)
    torch._foreach_clamp_min_(norms, clipnorm)
    return torch._foreach_div(torch._foreach_mul(grads, clipnorm), norms)


def global_norm_scale(grad_lists: list[list[torch.Tensor]], clipnorm: float) -> torch.Tensor:
    """Keras's ``clip_by_global_norm`` factor over every gradient of every group.

    ``clipnorm * min(1 / norm, 1 / clipnorm)``, plus ``norm - norm`` so that an infinite or NaN
    norm gives a NaN factor (as Keras does) rather than silently zeroing the update.
    """
    device = grad_lists[0][0].device
    dtype = torch.float64 if any(gs[0].dtype == torch.float64 for gs in grad_lists) else torch.float32
    norms = [n.to(device=device, dtype=dtype) for gs in grad_lists for n in torch._foreach_norm(gs)]
    norm = torch.linalg.vector_norm(torch.stack(norms))
    scale = clipnorm * torch.clamp_max(1.0 / norm, 1.0 / clipnorm)
    return scale + (norm - norm)


def clip_by_value(grads: list[torch.Tensor], clipvalue: float) -> list[torch.Tensor]:
    clipped = torch._foreach_clamp_min(grads, -clipvalue)
    torch._foreach_clamp_max_(clipped, clipvalue)
    return clipped


class GroupingMixin:
    """Weight-decay exclusion and the cached device/dtype grouping of ``Optimizer``."""

    def exclude_from_weight_decay(
        self, var_list: Iterable[torch.Tensor] | None = None, var_names: Iterable[str] | None = None
    ) -> None:
        """Exempt variables from weight decay: those in ``var_list``, and those whose ``name`` (or
        ``path``) contains one of ``var_names``.

        Plain ``torch.nn.Parameter``s have no name, so ``var_names`` only matches tensors that carry a
        ``name``/``path`` attribute; pass ``var_list`` for the others.
        """
        self._exclude_vars = list(var_list or ())
        self._exclude_ids = {id(v) for v in self._exclude_vars}
        names = list(var_names or ())
        self._exclude_pattern = re.compile("|".join(sorted(set(names)))) if names else None
        self._reset_groups()

    def _use_weight_decay(self, variable: torch.Tensor) -> bool:
        if id(variable) in self._exclude_ids:
            return False
        if self._exclude_pattern is not None:
            name = getattr(variable, "path", None) or getattr(variable, "name", None)
            if name is None and not self._warned_unnamed:
                self._warned_unnamed = True
                warnings.warn(
                    f"exclude_from_weight_decay(var_names=...) cannot match unnamed variables such as "
                    f"{describe(variable)}; pass those in `var_list` to exclude them.",
                    stacklevel=4,
                )
            elif name is not None and self._exclude_pattern.search(str(name)):
                return False
        return True

    def _reset_groups(self) -> None:
        # The all-variables grouping is made eagerly so that compiled steps find it cached.
        self._group_cache = {}
        if self._trainable_variables:
            self._make_groups(tuple(range(len(self._trainable_variables))))

    def _groups(self, idx: tuple[int, ...]) -> list[Group]:
        groups = self._group_cache.get(idx)
        if groups is None:
            groups = self._make_groups(idx)
        return groups

    @torch.compiler.disable
    def _make_groups(self, idx: tuple[int, ...]) -> list[Group]:
        by_key: dict[tuple[torch.device, torch.dtype], Group] = {}
        for pos, i in enumerate(idx):
            v = self._trainable_variables[i]
            group = by_key.setdefault((v.device, v.dtype), Group(v.device, v.dtype))
            group.positions.append(pos)
            group.indices.append(i)
            group.params.append(v)
            for name, tensors in self._slots.items():
                group.slots.setdefault(name, []).append(tensors[i])
            if self.weight_decay is not None and self._use_weight_decay(v):
                group.decay_params.append(v)
        if len(self._group_cache) > 64:
            self._group_cache.clear()
        groups = self._group_cache[idx] = list(by_key.values())
        return groups
