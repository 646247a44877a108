"""``LossScaleOptimizer``: dynamic loss scaling for float16 training, around any tapefit optimizer.

The loss is multiplied by ``scale`` before the backward pass so that small float16 gradients do
not flush to zero; ``apply`` divides the gradients back, skips the step (and halves the scale)
when any gradient is not finite, and doubles the scale after ``dynamic_growth_steps`` good
steps. The scale and the good-step counter are tensors updated on the device, so a compiled
step neither reads them back nor recompiles when they change. Deciding to skip a step needs the
"all finite" flag on the host: one device sync per step, the price every float16 loss scaler
pays (torch's GradScaler too, outside its fused optimizers). bfloat16 needs no loss scaling.
"""

from __future__ import annotations

import types
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
        from ..jit import _with_own_code
        from ..optimizers import get

        if int(dynamic_growth_steps) < 1:
            raise ValueError(f"dynamic_growth_steps must be at least 1, got {dynamic_growth_steps!r}.")
        self.inner_optimizer = get(inner_optimizer)
        self.dynamic_growth_steps = int(dynamic_growth_steps)
        # The skip decision breaks a compiled step's graph here; dynamo then compiles the rest of
        # ``apply`` on its own, per code object: a private copy keeps each optimizer's graphs apart.
        self.apply = types.MethodType(_with_own_code(type(self).apply), self)
        self.name = name or f"loss_scale_{self.inner_optimizer.name}"
        self.initial_scale = float(initial_scale)
        # Shape (1,), float32 and int32: what torch's unscale and scale-update kernels take.
        self._scale = torch.full((1,), self.initial_scale, dtype=torch.float32)
        self._step_counter = torch.zeros((1,), dtype=torch.int32)

    @property
    def dynamic_scale(self) -> torch.Tensor:
        """The current loss scale (a 0-d view of the device tensor, as Keras's variable)."""
        return self._scale.reshape(())

    @property
    def step_counter(self) -> torch.Tensor:
        """Finite steps since the scale last changed."""
        return self._step_counter.reshape(())

    def _follow(self, device: torch.device) -> None:
        if self._scale.device != device:
            self._scale = self._scale.to(device)
            self._step_counter = self._step_counter.to(device)

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        self._follow(loss.device)
        return loss * self._scale.reshape(())

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
            self._follow(present[0].device)
            found_inf = torch.zeros((1,), dtype=torch.float32, device=self._scale.device)
            inv_scale = torch.reciprocal(self._scale)
            by_dtype: dict[tuple, list[torch.Tensor]] = {}
            for g in present:
                by_dtype.setdefault((g.device, g.dtype), []).append(g)
            for group in by_dtype.values():
                torch._amp_foreach_non_finite_check_and_unscale_(group, found_inf, inv_scale)
            self._update_scale(found_inf)
            if found_inf.item():  # host sync: decides whether this step happens at all
                return
        else:
            self._update_scale(torch.zeros((1,), dtype=torch.float32, device=self._scale.device))
        self.inner_optimizer.apply(grads, variables)

    def _update_scale(self, found_inf: torch.Tensor) -> None:
        """Halve the scale on a non-finite step; double it after ``dynamic_growth_steps`` finite ones."""
        torch._amp_update_scale_(
            self._scale, self._step_counter, found_inf, 2.0, 0.5, self.dynamic_growth_steps
        )

    def apply_gradients(self, grads_and_vars: Iterable[tuple[Any, torch.Tensor]]) -> torch.Tensor:
        pairs = list(grads_and_vars)
        self.apply([g for g, _ in pairs], [v for _, v in pairs])
        return self.inner_optimizer.iterations

    def __getattr__(self, name: str) -> Any:
        # learning_rate, iterations, variables, build, state_dict... come from the inner optimizer.
        if name == "inner_optimizer" or name.startswith("__"):  # copy/pickle protocols are our own
            raise AttributeError(name)
        return getattr(self.inner_optimizer, name)

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = dict(self.inner_optimizer.state_dict())
        state["loss_scale/scale"] = self._scale.detach().reshape(()).to("cpu", torch.float64)
        state["loss_scale/good_steps"] = self._step_counter.detach().reshape(()).to("cpu", torch.int64)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        state = dict(state)
        if "loss_scale/scale" in state:
            self._scale.fill_(float(state.pop("loss_scale/scale")))
        if "loss_scale/good_steps" in state:  # at most one short of growing, as Keras's check allows
            good = int(state.pop("loss_scale/good_steps"))
            self._step_counter.fill_(min(good, self.dynamic_growth_steps - 1))
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
