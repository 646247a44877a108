"""``Variable``: a torch tensor with Keras's ``assign`` family, for metric and optimizer state.

Layer weights are plain ``torch.nn.Parameter``s; state that Keras code mutates with
``assign`` / ``assign_add`` (metric accumulators, ``optimizer.iterations``) is a Variable.
Arithmetic on a Variable returns plain tensors.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from . import config


class Variable(torch.Tensor):
    """A tensor that can be assigned in place, as ``keras.Variable``.

    Example:
        >>> v = Variable(0.0, name="total")
        >>> v.assign_add(2.5)
        >>> float(v)
        2.5
    """

    @staticmethod
    def __new__(
        cls,
        value: Any = 0.0,
        dtype: torch.dtype | str | None = None,
        name: str = "variable",
        device: torch.device | str | None = None,
    ) -> Variable:
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype)
        data = torch.as_tensor(
            np.asarray(value) if not isinstance(value, torch.Tensor) else value,
            dtype=dtype,
            device=device or config.get_device(),
        )
        if dtype is None and data.is_floating_point():
            data = data.to(getattr(torch, config.floatx()))
        plain = data.detach().clone()
        self = torch.Tensor._make_subclass(cls, plain, False)
        self._var_name = name
        # A plain tensor sharing this variable's storage: in-place updates go through it, because
        # torch.compile cannot dispatch in-place ops on the subclass itself.
        self._plain = plain
        return self

    @property
    def name(self) -> str:  # type: ignore[override]
        return self._var_name

    __torch_function__ = torch._C._disabled_torch_function_impl

    def assign(self, value: Any) -> None:
        with torch.no_grad():
            self._plain.copy_(torch.as_tensor(value, device=self._plain.device).detach())

    def assign_add(self, value: Any) -> None:
        with torch.no_grad():
            self._plain.add_(torch.as_tensor(value, device=self._plain.device).detach())

    def assign_sub(self, value: Any) -> None:
        with torch.no_grad():
            self._plain.sub_(torch.as_tensor(value, device=self._plain.device).detach())

    @property
    def value(self) -> torch.Tensor:
        return self._plain

    def numpy(self) -> np.ndarray:  # type: ignore[override]
        """The value as a numpy array (float32 for bfloat16, which numpy cannot hold)."""
        value = self.detach().as_subclass(torch.Tensor)
        return (value.float() if value.dtype == torch.bfloat16 else value).cpu().numpy()

    def __repr__(self) -> str:
        return f"<Variable {self.name} shape={tuple(self.shape)} dtype={self.dtype} value={self.value}>"

    def __deepcopy__(self, memo: dict) -> Variable:
        copy = Variable(self.value, dtype=self.dtype, name=self.name, device=self.device)
        copy.__dict__.update({k: v for k, v in self.__dict__.items() if k not in ("_plain", "_var_name")})
        return copy
