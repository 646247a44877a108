"""``LossScaleOptimizer``: dynamic loss scaling for float16 training, around any tapefit optimizer.

The loss is multiplied by ``scale`` before the backward pass so that small float16 gradients do
not flush to zero; ``apply`` divides the gradients back, skips the step (and halves the scale)
when any gradient is not finite, and doubles the scale after ``dynamic_growth_steps`` good
steps. Deciding to skip a step needs the "all finite" flag on the host: one device sync per
step, the price every float16 loss scaler pays (torch's GradScaler too). bfloat16 needs no
loss scaling.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

__all__ = ["LossScaleOptimizer"]


class LossScaleOptimizer:
    """Wraps ``inner_optimizer``; use it like any optimizer (also in GradientTape loops).

    Example:
        >>> import torch, tapefit
        >>> opt = LossScaleOptimizer(tapefit.optimizers.SGD(0.1), initial_scale=8.0)
        >>> w = torch.nn.Parameter(torch.tensor(1.0))
        >>> loss = opt.scale_loss(w * 2)
        >>> (g,) = torch.autograd.grad(loss, [w])
        >>> opt.apply([g], [w]); round(w.item(), 4)
        0.8
    """

    def __init__(
        self,
        inner_optimizer: Any,
        initial_scale: float = 2.0**15,
        dynamic_growth_steps: int = 2000,
        name: str | None = None,
    ):
        from ..optimizers import get

        self.inner_optimizer = get(inner_optimizer)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        self.name = name or f"loss_scale_{self.inner_optimizer.name}"
        self.initial_scale = float(initial_scale)
        self._scale = self.initial_scale
        self._good_steps = 0

    @property
    def dynamic_scale(self) -> float:
        return self._scale

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        return loss * self._scale

    def apply(self, grads: Iterable[Any], trainable_variables: Iterable[torch.Tensor] | None = None) -> None:
        grads = list(grads)
        variables = list(trainable_variables) if trainable_variables is not None else None
        present = [g for g in grads if g is not None]
        if present:
            from ..distribute.reduction import all_reduce_gradients

            # Every rank must agree on skipping a step: unscale and check the averaged gradients.
            present = all_reduce_gradients(present)
            it = iter(present)
            grads = [None if g is None else next(it) for g in grads]
            found_inf = torch.zeros(1, device=present[0].device)
            inv_scale = torch.full((1,), 1.0 / self._scale, device=present[0].device)
            by_dtype: dict[tuple, list[torch.Tensor]] = {}
            for g in present:
                by_dtype.setdefault((g.device, g.dtype), []).append(g)
            for group in by_dtype.values():
                torch._amp_foreach_non_finite_check_and_unscale_(group, found_inf, inv_scale)
            if found_inf.item():  # host sync: decides whether this step happens at all
                self._scale /= 2.0
                self._good_steps = 0
                return
        self._good_steps += 1
        if self._good_steps >= self.dynamic_growth_steps:
            self._scale *= 2.0
            self._good_steps = 0
        self.inner_optimizer.apply(grads, variables)

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, torch.Tensor]]) -> torch.Tensor:
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self.inner_optimizer.iterations

    def __getattr__(self, name: str) -> Any:
        # learning_rate, iterations, variables, build, state_dict... come from the inner optimizer.
        if name == "inner_optimizer":
            raise AttributeError(name)
        return getattr(self.inner_optimizer, name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = dict(self.inner_optimizer.state_dict())
        state["loss_scale/scale"] = torch.tensor(self._scale, dtype=torch.float64)
        state["loss_scale/good_steps"] = torch.tensor(self._good_steps)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        self._scale = float(state.pop("loss_scale/scale", self._scale))
        self._good_steps = int(state.pop("loss_scale/good_steps", self._good_steps))
        self.inner_optimizer.load_state_dict(state)

    def get_config(self) -> dict[str, Any]:
        from ..optimizers import serialize

        return {
            "inner_optimizer": serialize(self.inner_optimizer),
            "initial_scale": self.initial_scale,
            "dynamic_growth_steps": self.dynamic_growth_steps,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Any:
        """Rebuild from :meth:`get_config` (the current scale is state: it comes with ``load_state_dict``)."""
        from ..optimizers import deserialize

        config = dict(config)
        inner = config.pop("inner_optimizer")
        if isinstance(inner, dict):
            inner = deserialize(inner, custom_objects=custom_objects)
        return cls(inner, **config)
