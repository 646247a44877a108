"""``GRU``: gated recurrent unit, Keras's gates and defaults."""

from __future__ import annotations

from typing import Any

import torch

from ... import activations
from ._base import _Recurrent

__all__ = ["GRU"]


class GRU(_Recurrent):
    """Gated recurrent unit (Cho et al., 2014), Keras's gates (z, r, h) and defaults.

    ``reset_after=True`` (Keras's default, and cuDNN's form) applies the reset gate after the
    recurrent matrix product and keeps separate input and recurrent biases: ``bias`` has shape
    (2, 3 * units).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.GRU(4, return_sequences=True)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 5, 4])
    """

    _gates = 3

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
        recurrent_activation: Any = "sigmoid",
        use_bias: bool = True,
        kernel_initializer: Any = "glorot_uniform",
        recurrent_initializer: Any = "orthogonal",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        recurrent_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        reset_after: bool = True,
        use_cudnn: bool | str = "auto",
        **kwargs: Any,
    ):
        super().__init__(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            activity_regularizer=activity_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            seed=seed,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            use_cudnn=use_cudnn,
            **kwargs,
        )
        self.reset_after = bool(reset_after)

    def _bias_shape(self) -> tuple[int, ...]:
        return (2, 3 * self.units) if self.reset_after else (3 * self.units,)

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

    def _fusable(self) -> bool:
        return super()._fusable() and self.reset_after

    def _cudnn_refusal(self, mask: torch.Tensor | None) -> str | None:
        return super()._cudnn_refusal(mask) or (None if self.reset_after else "reset_after is False")

    def _fused(self, x: torch.Tensor, states: list[torch.Tensor], lengths: torch.Tensor | None) -> Any:
        out, h = self._run_fused(torch.gru, x, states[0].unsqueeze(0), lengths, order=[1, 0, 2])  # r, z, n
        return out, [h[0]]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "recurrent_activation": activations.serialize(self.recurrent_activation),
            "reset_after": self.reset_after,
            "use_cudnn": self.use_cudnn,
        }
