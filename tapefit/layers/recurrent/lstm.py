"""``LSTM``: long short-term memory, Keras's gates and defaults."""

from __future__ import annotations

from typing import Any

import torch

from ._base import _Recurrent
from ._gated import _LSTMStep

__all__ = ["LSTM"]


class LSTM(_LSTMStep, _Recurrent):
    """Long short-term memory (Hochreiter & Schmidhuber, 1997), Keras's gates and defaults.

    ``unit_forget_bias=True`` starts the forget gate's bias at 1. With ``return_state=True`` the
    layer returns ``[output, h, c]``.

    Example:
        >>> import torch, tapefit
        >>> out, h, c = tapefit.layers.LSTM(4, return_sequences=True, return_state=True)(torch.ones(2, 5, 3))
        >>> out.shape, h.shape, c.shape
        (torch.Size([2, 5, 4]), torch.Size([2, 4]), torch.Size([2, 4]))
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
        unit_forget_bias: bool = True,
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
        self.unit_forget_bias = bool(unit_forget_bias)

    def _fused(self, x: torch.Tensor, states: list[torch.Tensor], lengths: torch.Tensor | None) -> Any:
        h0, c0 = (s.unsqueeze(0) for s in states)
        out, h, c = self._run_fused(torch.lstm, x, (h0, c0), lengths)
        return out, [h[0], c[0]]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "use_cudnn": self.use_cudnn,
        }
