"""``SimpleRNN``: a fully connected recurrence."""

from __future__ import annotations

from typing import Any

import torch

from ... import activations
from ._base import _Recurrent
from ._gated import _SimpleRNNStep

__all__ = ["SimpleRNN"]


class SimpleRNN(_SimpleRNNStep, _Recurrent):
    """A fully connected recurrence: ``h = activation(x @ kernel + h @ recurrent_kernel + bias)``.

    Example:
        >>> import torch, tapefit
        >>> tapefit.layers.SimpleRNN(4)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(
        self,
        units: int,
        activation: Any = "tanh",
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
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ):
        unknown = sorted({"use_cudnn", "implementation"} & set(kwargs))
        if unknown:  # LSTM's and GRU's options, which Keras's SimpleRNN refuses too
            raise TypeError(f"SimpleRNN() got unexpected keyword argument(s) {unknown}")
        super().__init__(
            units,
            activation=activation,
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
            **kwargs,
        )

    def _fusable(self) -> bool:
        return self.activation in (activations.tanh, activations.relu) and not torch.compiler.is_compiling()

    def _fused(self, x: torch.Tensor, states: list[torch.Tensor], lengths: torch.Tensor | None) -> Any:
        kernel = torch.rnn_tanh if self.activation is activations.tanh else torch.rnn_relu
        out, h = self._run_fused(kernel, x, states[0].unsqueeze(0), lengths)
        return out, [h[0]]
