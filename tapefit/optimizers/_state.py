"""Optimizer checkpoint state and configuration: flat ``state_dict`` I/O and ``get_config``.

The state is a flat ``{str: tensor}`` dict so that it can be written with safetensors as is:
``"iterations"``, ``"learning_rate"`` (when it is a float), ``"{i}/{state}"`` for the i-th
variable of the list the optimizer was built with (Keras's state names: ``momentum``,
``velocity``, ...), and optimizer-wide tensors by name (Nadam's ``u_product``).
"""

from __future__ import annotations

from typing import Any

import torch

from ..variables import Variable
from . import schedules


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    if isinstance(tensor, Variable):
        tensor = tensor.as_subclass(torch.Tensor)
    return tensor.detach()


class StateIOMixin:
    """``state_dict`` / ``load_state_dict`` / ``get_config`` / ``from_config`` of ``Optimizer``."""

    def _scalar_state(self) -> dict[str, torch.Tensor]:
        out = {"iterations": _plain(self._iterations)}
        if isinstance(self._learning_rate, Variable):
            out["learning_rate"] = _plain(self._learning_rate)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The optimizer's state as a flat dict of tensors (sharing memory with it, like torch's).

        Example:
            >>> import torch, tapefit
            >>> w = torch.nn.Parameter(torch.zeros(3))
            >>> opt = tapefit.optimizers.Adam()
            >>> opt.build([w])
            >>> list(opt.state_dict())
            ['iterations', 'learning_rate', '0/momentum', '0/velocity']
        """
        out = self._scalar_state()
        for i in range(len(self._trainable_variables)):
            for name, tensors in self._slots.items():
                out[f"{i}/{name}"] = tensors[i].detach()
        for name, tensor in self._global_state.items():
            out[name] = tensor.detach()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output; continued updates are then identical.

        Raises ``ValueError`` listing missing keys, unexpected keys and shape mismatches. On an
        optimizer that is not built yet, the counter and learning rate load now and the
        per-variable state loads (and is checked) when the optimizer is built.
        """
        state = dict(state_dict)
        if not self.built:
            scalars = self._scalar_state()
            self._check(scalars, {k: v for k, v in state.items() if k in scalars}, defer=True)
            self._copy(scalars, state)
            self._pending_state = state if any(k not in scalars for k in state) else None
        else:
            expected = self.state_dict()
            self._check(expected, state, defer=False)
            self._copy(expected, state)
        if self.gradient_accumulation_steps:
            self._phase = int(self._iterations) % self.gradient_accumulation_steps

    def _check(self, expected: dict[str, torch.Tensor], state: dict[str, Any], defer: bool) -> None:
        problems = []
        missing = [k for k in expected if k not in state]
        unexpected = [] if defer else [k for k in state if k not in expected]
        if missing:
            problems.append(f"missing keys {missing}")
        if unexpected:
            problems.append(f"unexpected keys {unexpected}")
        shapes = [
            f"{k}: saved {tuple(torch.as_tensor(state[k]).shape)}, expected {tuple(t.shape)}"
            for k, t in expected.items()
            if k in state and torch.as_tensor(state[k]).shape != t.shape
        ]
        if shapes:
            problems.append(f"shape mismatches [{'; '.join(shapes)}]")
        if problems:
            raise ValueError(
                f"Cannot load the state of optimizer '{self.name}' ({type(self).__name__}, built on "
                f"{len(self._trainable_variables)} variables): {'; '.join(problems)}. The state was probably "
                "saved from a differently configured optimizer (learning rate schedule, momentum, amsgrad, "
                "centered, ema, gradient accumulation) or for a different list of variables."
            )

    @staticmethod
    def _copy(expected: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        from ..distribute.checkpointing import assign_full

        for key, target in expected.items():  # the state is full; a sharded target takes its shard
            assign_full(target, torch.as_tensor(state[key]))

    def get_config(self) -> dict[str, Any]:
        """The hyperparameters, enough to rebuild the optimizer (without its state) with ``from_config``."""
        lr = self._learning_rate
        if isinstance(lr, schedules.LearningRateSchedule):
            lr = schedules.serialize(lr)
        elif isinstance(lr, Variable):
            lr = float(lr)
        return {
            "name": self.name,
            "learning_rate": lr,
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": self.loss_scale_factor,
            "gradient_accumulation_steps": self.gradient_accumulation_steps,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Any:
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"], custom_objects)
        return cls(**config)
