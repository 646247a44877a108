"""``GRU``: gated recurrent unit, Keras's gates and defaults."""

from __future__ import annotations

from typing import Any

import torch

from ._base import _Recurrent
from ._gated import _GRUStep

__all__ = ["GRU"]


class GRU(_GRUStep, _Recurrent):
    """Gated recurrent unit (Cho et al., 2014), Keras's gates (z, r, h) and defaults.

    ``reset_after=True`` (Keras's default, and cuDNN's form) applies the reset gate after the
    recurrent matrix product and keeps separate input and recurrent biases: ``bias`` has shape
    (2, 3 * units).

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.GRU(4, return_sequences=True)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 5, 4])
    """

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
            "use_cudnn": self.use_cudnn,
        }
