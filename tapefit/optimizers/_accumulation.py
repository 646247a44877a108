"""Steps that span several calls: gradient accumulation and the moving average of weights (EMA).

Eager steps decide "is this an update step?" from a Python counter (no device read); under
``torch.compile`` the decision is data flow instead (compute the update, keep it or not with
``torch.where``), which Inductor fuses into the update kernels.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ._grouping import on


class AccumulationMixin:
    """``gradient_accumulation_steps`` and ``use_ema`` for ``Optimizer``."""

    def _accumulate(self, idx: tuple[int, ...], grads: list[torch.Tensor]) -> None:
        steps = self.gradient_accumulation_steps
        accumulators = self._slots["gradient_accumulator"]
        accs = [accumulators[i] for i in idx]
        if torch.compiler.is_compiling():
            self._accumulate_branchless(idx, grads, accs)
            self._phase = None
            return
        if self._phase is None:
            self._phase = int(self._iterations) % steps  # one host read, after compiled steps only
        if self._phase == steps - 1:
            mean = torch._foreach_add(grads, accs)
            torch._foreach_div_(mean, steps)
            self._update(idx, mean)
            torch._foreach_zero_(accumulators)
        else:
            torch._foreach_add_(accs, grads)
        self._phase = (self._phase + 1) % steps

    def _accumulate_branchless(
        self, idx: tuple[int, ...], grads: list[torch.Tensor], accs: list[torch.Tensor]
    ) -> None:
        """The accumulation step as data flow (for ``torch.compile``): always compute the update,
        keep it only on update steps. Inductor fuses the selects into the update kernels."""
        steps = self.gradient_accumulation_steps
        is_update = (self._iterations + 1) % steps == 0
        summed = torch._foreach_add(grads, accs)
        own = [n for n, _ in self._slot_specs()]
        touched = [self._trainable_variables[i] for i in idx] + [self._slots[n][i] for n in own for i in idx]
        touched += list(self._global_state.values())
        before = [t.clone() for t in touched]
        self._update(idx, torch._foreach_div(summed, steps))
        for t, old in zip(touched, before):
            t.copy_(torch.where(on(is_update, t.device), t, old))
        position = {i: pos for pos, i in enumerate(idx)}
        for i, acc in enumerate(self._slots["gradient_accumulator"]):
            new = summed[position[i]] if i in position else acc
            acc.copy_(new.masked_fill(on(is_update, acc.device), 0))

    def _update_moving_average(self) -> None:
        step = self.iterations
        averages = self._slots["average"]
        for g in self._groups(tuple(range(len(self._trainable_variables)))):
            momentum = (on(step, g.device) != 0).to(g.dtype) * self.ema_momentum
            avgs = [averages[i] for i in g.indices]
            torch._foreach_mul_(avgs, momentum)
            torch._foreach_add_(avgs, torch._foreach_mul(g.params, 1 - momentum))
        if self.ema_overwrite_frequency:
            overwrite = (step + 1) % self.ema_overwrite_frequency == 0
            for v, avg in zip(self._trainable_variables, averages):
                v.copy_(torch.where(on(overwrite, v.device), avg, v))

    def finalize_variable_values(self, var_list: Iterable[torch.Tensor]) -> None:
        """With ``use_ema``, copy the moving averages into the variables (``fit`` does this at the end)."""
        if not self.use_ema:
            return
        var_list = list(var_list)
        if len(var_list) != len(self._slots.get("average", [])):
            raise ValueError(
                f"The length of model variables ({len(var_list)}) to override does not match the "
                f"length of model variables stored in the optimizer "
                f"({len(self._slots.get('average', []))}). Please check if the optimizer was "
                "called on your model."
            )
        with torch.no_grad():
            for v, avg in zip(var_list, self._slots["average"]):
                v.copy_(avg)
