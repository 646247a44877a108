"""The recurrent cells: ``SimpleRNNCell``, ``LSTMCell``, ``GRUCell``, one timestep each, for
``RNN(cell)``. Their weights and step math are the layers' own (``_gated``), in Keras's layout."""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer
from ._gated import _Gated, _GRUStep, _LSTMStep, _SimpleRNNStep, check_units

__all__ = ["GRUCell", "LSTMCell", "SimpleRNNCell"]


class _Cell(_Gated, Layer):
    """Keras's cell contract for the built-in cells: ``state_size``, ``output_size``,
    ``get_initial_state(batch_size)`` and ``call(inputs, states, training)`` returning
    ``(output, new_states)``; dropout masks drawn once and reused until reset, as Keras's
    ``DropoutRNNCell`` does (``RNN`` resets them around each call, so one mask per sequence)."""

    def __init__(
        self,
        units: int,
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
        **kwargs: Any,
    ):
        check_units(type(self).__name__, units)
        super().__init__(**kwargs)
        self._set_gate_options(
            units,
            activation,
            recurrent_activation,
            use_bias,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            recurrent_regularizer,
            bias_regularizer,
            kernel_constraint,
            recurrent_constraint,
            bias_constraint,
            dropout,
            recurrent_dropout,
            seed,
        )
        count = len(self._state_names())
        self.state_size: int | list[int] = self.units if count == 1 else [self.units] * count
        self.output_size = self.units
        self._dropout_mask: list[torch.Tensor] | None = None
        self._recurrent_dropout_mask: list[torch.Tensor] | None = None

    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        if input_shape is None or len(input_shape) < 2 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} takes one timestep of shape (batch, features), "
                f"got input shape {input_shape}. Wrap the cell in RNN(cell) to run it over sequences."
            )
        self._build_weights(input_shape[-1])
        self.built = True

    def call(self, inputs: torch.Tensor, states: Any, training: bool = False) -> tuple[torch.Tensor, Any]:
        nested = isinstance(states, (list, tuple))
        given = list(states) if nested else [states]
        if len(given) != len(self._state_names()):
            raise ValueError(
                f"{type(self).__name__} {self.name!r} takes {len(self._state_names())} state tensor(s) "
                f"({', '.join(self._state_names())}), got {len(given)}."
            )
        input_masks = rec_masks = None
        if training:
            input_masks = self._cached_masks("_dropout_mask", inputs, self.dropout, self._input_mask_count())
            rec_masks = self._cached_masks(
                "_recurrent_dropout_mask", given[0], self.recurrent_dropout, self._gates
            )
        output, new_states = self._step(self._project(inputs, input_masks), given, rec_masks)
        return output, new_states if nested or len(new_states) > 1 else new_states[0]

    def get_initial_state(self, batch_size: int | None = None) -> list[torch.Tensor]:
        """Zero states, one (batch_size, units) tensor per state, as Keras's cells give them."""
        if batch_size is None:
            raise ValueError(f"{type(self).__name__}.get_initial_state needs the batch_size.")
        dtype = getattr(torch, self.compute_dtype)
        return [
            torch.zeros(int(batch_size), self.units, dtype=dtype, device=self._weight_device())
            for _ in self._state_names()
        ]

    # ------------------------------------------------------------------ dropout masks
    def _cached_masks(self, attr: str, like: torch.Tensor, rate: float, count: int) -> Any:
        masks = getattr(self, attr)
        if masks is None:
            masks = self._dropout_masks(like, rate, count)
            setattr(self, attr, masks)
        return masks

    def get_dropout_mask(self, step_input: torch.Tensor) -> Any:
        """The input dropout mask (one per gate under recurrent dropout, a list then), drawn on first
        use and reused until :meth:`reset_dropout_mask`; None when ``dropout`` drops nothing."""
        masks = self._cached_masks("_dropout_mask", step_input, self.dropout, self._input_mask_count())
        return masks[0] if masks is not None and len(masks) == 1 else masks

    def get_recurrent_dropout_mask(self, step_input: torch.Tensor) -> Any:
        """The recurrent dropout mask(s), as :meth:`get_dropout_mask` for the previous output."""
        masks = self._cached_masks("_recurrent_dropout_mask", step_input, self.recurrent_dropout, self._gates)
        return masks[0] if masks is not None and len(masks) == 1 else masks

    def reset_dropout_mask(self) -> None:
        """Forget the input dropout mask: the next training call draws a new one."""
        self._dropout_mask = None

    def reset_recurrent_dropout_mask(self) -> None:
        """Forget the recurrent dropout mask: the next training call draws a new one."""
        self._recurrent_dropout_mask = None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), **self._gate_config()}


class SimpleRNNCell(_SimpleRNNStep, _Cell):
    """One step of :class:`~tapefit.layers.SimpleRNN`: ``h = activation(x @ kernel + h @
    recurrent_kernel + bias)``; ``state_size`` is ``units``.

    Example:
        >>> import torch, tapefit
        >>> from tapefit.layers.recurrent import RNN, SimpleRNNCell
        >>> RNN(SimpleRNNCell(4), return_sequences=True)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 5, 4])
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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(
            units,
            activation,
            "sigmoid",
            use_bias,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            recurrent_regularizer,
            bias_regularizer,
            kernel_constraint,
            recurrent_constraint,
            bias_constraint,
            dropout,
            recurrent_dropout,
            seed,
            **kwargs,
        )


class LSTMCell(_LSTMStep, _Cell):
    """One step of :class:`~tapefit.layers.LSTM`: gates (i, f, c, o), states ``[h, c]``
    (``state_size`` is ``[units, units]``); ``unit_forget_bias`` starts the forget gate's bias at 1.

    Example:
        >>> import torch, tapefit
        >>> from tapefit.layers.recurrent import LSTMCell
        >>> cell = LSTMCell(4)
        >>> h, (h, c) = cell(torch.ones(2, 3), cell.get_initial_state(batch_size=2))
        >>> h.shape, c.shape
        (torch.Size([2, 4]), torch.Size([2, 4]))
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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        kwargs.pop("implementation", None)  # Keras's choice of kernel split; results are the same
        super().__init__(
            units,
            activation,
            recurrent_activation,
            use_bias,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            recurrent_regularizer,
            bias_regularizer,
            kernel_constraint,
            recurrent_constraint,
            bias_constraint,
            dropout,
            recurrent_dropout,
            seed,
            **kwargs,
        )
        self.unit_forget_bias = bool(unit_forget_bias)


class GRUCell(_GRUStep, _Cell):
    """One step of :class:`~tapefit.layers.GRU`: gates (z, r, h); ``reset_after=True`` (Keras's
    default) applies the reset gate after the recurrent product, with a (2, 3 * units) bias.

    Example:
        >>> import torch, tapefit
        >>> from tapefit.layers.recurrent import RNN, GRUCell
        >>> out, h = RNN(GRUCell(4), return_state=True)(torch.ones(2, 5, 3))
        >>> out.shape, h.shape
        (torch.Size([2, 4]), torch.Size([2, 4]))
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
        kernel_constraint: Any = None,
        recurrent_constraint: Any = None,
        bias_constraint: Any = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        reset_after: bool = True,
        seed: int | None = None,
        **kwargs: Any,
    ):
        kwargs.pop("implementation", None)
        super().__init__(
            units,
            activation,
            recurrent_activation,
            use_bias,
            kernel_initializer,
            recurrent_initializer,
            bias_initializer,
            kernel_regularizer,
            recurrent_regularizer,
            bias_regularizer,
            kernel_constraint,
            recurrent_constraint,
            bias_constraint,
            dropout,
            recurrent_dropout,
            seed,
            **kwargs,
        )
        self.reset_after = bool(reset_after)
