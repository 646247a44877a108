"""What a recurrent layer and its cell share: the options, the weights in Keras's layout, the
input and recurrent products with their dropout masks, and one step of each family's math.

``SimpleRNN`` and ``SimpleRNNCell`` (and so on) both inherit their family's step class, so the
fused layer's step loop and ``RNN(cell)`` run the very same arithmetic on the same weights.
A step takes ``xw_t``, the step's input already multiplied by ``kernel`` with the input bias
added (the layers project a whole sequence at once, the cells one step), and the states.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ... import activations, constraints, initializers, regularizers


class _Gated:
    """Options, weights, products and dropout masks of a gated recurrence (mixed into a Layer)."""

    _gates = 1

    def _set_gate_options(
        self,
        units: Any,
        activation: Any,
        recurrent_activation: Any,
        use_bias: bool,
        kernel_initializer: Any,
        recurrent_initializer: Any,
        bias_initializer: Any,
        kernel_regularizer: Any,
        recurrent_regularizer: Any,
        bias_regularizer: Any,
        kernel_constraint: Any,
        recurrent_constraint: Any,
        bias_constraint: Any,
        dropout: float,
        recurrent_dropout: float,
        seed: int | None,
    ) -> None:
        self.units = int(units)
        self.activation = activations.get(activation)
        self.recurrent_activation = activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.recurrent_initializer = initializers.get(recurrent_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))  # Keras clips both rates to [0, 1]
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _state_names(self) -> tuple[str, ...]:
        return ("h",)

    def _gate_config(self) -> dict[str, Any]:
        """The config keys of the options above, which a layer and its cell both save."""
        return {
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
        }

    # ------------------------------------------------------------------ weights
    def _build_weights(self, input_dim: int) -> None:
        width = self._gates * self.units
        self.kernel = self.add_weight(  # type: ignore[attr-defined]
            (int(input_dim), width),
            self.kernel_initializer,
            name="kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(  # type: ignore[attr-defined]
            (self.units, width),
            self.recurrent_initializer,
            name="recurrent_kernel",
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(  # type: ignore[attr-defined]
                self._bias_shape(),
                self._bias_initial_value(),
                name="bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None

    def _bias_shape(self) -> tuple[int, ...]:
        return (self._gates * self.units,)

    def _bias_initial_value(self) -> Any:
        return self.bias_initializer

    def _input_bias(self) -> torch.Tensor:
        return self.bias

    def _split_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bias, torch.zeros_like(self.bias)

    # ------------------------------------------------------------------ products
    def _project(self, x: torch.Tensor, input_masks: list[torch.Tensor] | None) -> torch.Tensor:
        """The input contribution, ``x @ kernel + input bias``, for one step (batch, features) or a
        whole sequence (batch, timesteps, features); one dropout mask, or one per gate."""
        if input_masks is None:
            xw = x @ self.kernel
        else:
            masks = [m.unsqueeze(1) for m in input_masks] if x.dim() == 3 else input_masks
            if len(masks) == 1:
                xw = (x * masks[0]) @ self.kernel
            else:
                kernels = self.kernel.chunk(self._gates, dim=1)
                xw = torch.cat([(x * m) @ k for m, k in zip(masks, kernels)], dim=-1)
        return xw + self._input_bias() if self.use_bias else xw

    def _recurrent(self, h: torch.Tensor, rec_masks: list[torch.Tensor] | None) -> torch.Tensor:
        """The recurrent contribution (batch, gates * units), one dropout mask per gate if any."""
        if rec_masks is None:
            return h @ self.recurrent_kernel
        kernels = self.recurrent_kernel.chunk(self._gates, dim=1)
        return torch.cat([(h * m) @ k for m, k in zip(rec_masks, kernels)], dim=-1)

    def _step(
        self, xw_t: torch.Tensor, states: list[torch.Tensor], rec_masks: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    # ------------------------------------------------------------------ dropout
    def _input_mask_count(self) -> int:
        """Keras's implementation 1 (one mask per gate) when recurrent dropout is set, else one."""
        return self._gates if self.recurrent_dropout != 0.0 else 1

    def _dropout_masks(self, like: torch.Tensor, rate: float, count: int) -> list[torch.Tensor] | None:
        """``count`` masks of shape (batch, features) for a sequence, scaled by 1 / (1 - rate)."""
        if not 0.0 < rate < 1.0:
            return None
        shape = (count, like.shape[0], like.shape[-1])
        keep = torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(
            1.0 - rate, generator=self._gen(like)
        )
        return list((keep / (1.0 - rate)).unbind(0))

    def _gen(self, like: torch.Tensor) -> torch.Generator | None:
        if self.seed is None:
            return None
        if self._generator is None or self._generator.device != like.device:
            self._generator = torch.Generator(device=like.device)
            self._generator.manual_seed(int(self.seed))
        return self._generator


def check_units(owner: str, units: Any) -> None:
    if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
        raise ValueError(f"{owner}: units must be a positive integer, got {units!r}.")


class _SimpleRNNStep(_Gated):
    """``h = activation(x @ kernel + h @ recurrent_kernel + bias)``."""

    def _step(self, xw_t: torch.Tensor, states: list[torch.Tensor], rec_masks: Any) -> Any:
        h = self.activation(xw_t + self._recurrent(states[0], rec_masks))
        return h, [h]


class _LSTMStep(_Gated):
    """Keras's LSTM gates (i, f, c, o); states ``[h, c]``; the forget gate's bias starts at 1
    with ``unit_forget_bias``."""

    _gates = 4

    def _state_names(self) -> tuple[str, ...]:
        return ("h", "c")

    def _gate_config(self) -> dict[str, Any]:
        return {
            **super()._gate_config(),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "unit_forget_bias": self.unit_forget_bias,
        }

    def _bias_initial_value(self) -> Any:
        if not self.unit_forget_bias:
            return self.bias_initializer
        units, init = self.units, self.bias_initializer

        def forget_gate_at_one(shape: tuple[int, ...], dtype: Any = None) -> torch.Tensor:
            parts = [init((units,), dtype), torch.ones(units, dtype=dtype), init((2 * units,), dtype)]
            return torch.cat([p.cpu() for p in parts])

        return forget_gate_at_one

    def _step(self, xw_t: torch.Tensor, states: list[torch.Tensor], rec_masks: Any) -> Any:
        h, c = states
        i, f, g, o = (xw_t + self._recurrent(h, rec_masks)).chunk(4, dim=-1)
        c = self.recurrent_activation(f) * c + self.recurrent_activation(i) * self.activation(g)
        h = self.recurrent_activation(o) * self.activation(c)
        return h, [h, c]


class _GRUStep(_Gated):
    """Keras's GRU gates (z, r, h); with ``reset_after`` the reset gate follows the recurrent
    product and ``bias`` is (2, 3 * units): input bias, then recurrent bias."""

    _gates = 3

    def _bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

    def _gate_config(self) -> dict[str, Any]:
        return {
            **super()._gate_config(),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
        }

    def _input_bias(self) -> torch.Tensor:
        return self.bias[0] if self.reset_after else self.bias

    def _split_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bias[0], self.bias[1]

    def _step(self, xw_t: torch.Tensor, states: list[torch.Tensor], rec_masks: Any) -> Any:
        h = states[0]
        x_z, x_r, x_h = xw_t.chunk(3, dim=-1)
        if self.reset_after:
            recurrent = self._recurrent(h, rec_masks)
            if self.use_bias:
                recurrent = recurrent + self.bias[1]
            r_z, r_r, r_h = recurrent.chunk(3, dim=-1)
            z = self.recurrent_activation(x_z + r_z)
            r = self.recurrent_activation(x_r + r_r)
            candidate = self.activation(x_h + r * r_h)
        else:
            k_z, k_r, k_h = self.recurrent_kernel.chunk(3, dim=1)
            m_z, m_r, m_h = rec_masks if rec_masks is not None else (1.0, 1.0, 1.0)
            z = self.recurrent_activation(x_z + (h * m_z) @ k_z)
            r = self.recurrent_activation(x_r + (h * m_r) @ k_r)
            candidate = self.activation(x_h + (r * h * m_h) @ k_h)
        h = z * h + (1.0 - z) * candidate
        return h, [h]
