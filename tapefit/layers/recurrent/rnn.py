"""``RNN``: runs any cell over the timesteps of a sequence, with Keras's masks, initial and
stateful states, ``go_backwards`` and ``return_sequences``/``return_state``."""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer
from ..symbolic import probing_shapes
from ._base import step_loop
from .stacked_rnn_cells import StackedRNNCells, call_cell, cell_output_size, check_cell, zero_states

__all__ = ["RNN"]


def _flat(states: Any) -> list[Any]:
    if isinstance(states, (list, tuple)):
        return [t for s in states for t in _flat(s)]
    return [states]


def _pack(structure: Any, flat: list[Any]) -> Any:
    """``flat`` (in order) in the nesting of ``structure``, lists for every level."""
    items = iter(flat)

    def pack(s: Any) -> Any:
        return [pack(v) for v in s] if isinstance(s, (list, tuple)) else next(items)

    return pack(structure)


def _reset_dropout_masks(cell: Any) -> None:
    for reset in ("reset_dropout_mask", "reset_recurrent_dropout_mask"):
        if callable(getattr(cell, reset, None)):
            getattr(cell, reset)()
    if isinstance(cell, StackedRNNCells):
        for inner in cell.cells:
            _reset_dropout_masks(inner)


class RNN(Layer):
    """Runs a recurrent cell over the timesteps of (batch, timesteps, features) sequences.

    A cell is a layer with a ``state_size`` (an integer, or a list of integers: one per state)
    and ``call(inputs, states)`` returning ``(output, new_states)`` for one timestep; it may
    have an ``output_size`` and a ``get_initial_state(batch_size)`` (zeros otherwise). A list of
    cells is stacked (:class:`StackedRNNCells`). As Keras's ``RNN``: masked timesteps keep the
    states and repeat the previous output (zeros with ``zero_output_for_mask``), dropout cells
    draw one mask per sequence, ``return_state`` returns ``(output, *states)``, and
    ``stateful=True`` starts each call from the previous call's final states until
    :meth:`reset_state`. ``unroll`` is accepted for Keras's sake: the loop is the same.

    Example:
        >>> import torch, tapefit
        >>> from tapefit.layers.recurrent import RNN
        >>> class MinimalRNNCell(tapefit.layers.Layer):
        ...     def __init__(self, units, **kwargs):
        ...         super().__init__(**kwargs)
        ...         self.units = units
        ...         self.state_size = units
        ...     def build(self, input_shape):
        ...         units = self.units
        ...         self.kernel = self.add_weight((input_shape[-1], units), "uniform", name="kernel")
        ...         self.recurrent_kernel = self.add_weight(
        ...             (units, units), "uniform", name="recurrent_kernel"
        ...         )
        ...     def call(self, inputs, states):
        ...         output = inputs @ self.kernel + states[0] @ self.recurrent_kernel
        ...         return output, [output]
        >>> RNN(MinimalRNNCell(32), return_sequences=True)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 5, 32])
    """

    def __init__(
        self,
        cell: Any,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        stateful: bool = False,
        unroll: bool = False,
        zero_output_for_mask: bool = False,
        **kwargs: Any,
    ):
        if isinstance(cell, (list, tuple)):
            cell = StackedRNNCells(cell)
        check_cell(cell, "RNN")
        super().__init__(**kwargs)
        self.cell = cell
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self.unroll = bool(unroll)
        self.zero_output_for_mask = bool(zero_output_for_mask)
        self._kept_states: list[Any] | None = None  # a stateful layer's last states

    @property
    def state_size(self) -> list[Any]:
        """The cell's state sizes, as a list (one entry per top-level state)."""
        size = self.cell.state_size
        return list(size) if isinstance(size, (list, tuple)) else [size]

    def _state_names(self) -> tuple[str, ...]:
        return tuple(f"state_{i}" for i in range(len(self.state_size)))

    def build(self, sequences_shape: Any = None, initial_state_shape: Any = None) -> None:
        if self.built:
            return
        if sequences_shape is None or len(sequences_shape) < 3:
            raise ValueError(
                f"RNN {self.name!r} expects sequences of shape (batch, timesteps, features), got input "
                f"shape {sequences_shape}."
            )
        if isinstance(self.cell, Layer) and not self.cell.built:
            self.cell.build((sequences_shape[0], *sequences_shape[2:]))
            self.cell.built = True
        self.built = True

    def get_initial_state(self, batch_size: int) -> list[Any]:
        """The cell's initial states for ``batch_size`` rows (its ``get_initial_state``, or zeros)."""
        get = getattr(self.cell, "get_initial_state", None)
        if get is None:
            return zero_states(
                self.state_size, batch_size, getattr(torch, self.compute_dtype), self._weight_device()
            )
        states = get(batch_size=batch_size)
        return list(states) if isinstance(states, (list, tuple)) else [states]

    # ------------------------------------------------------------------ the call
    def call(
        self,
        sequences: torch.Tensor,
        initial_state: Any = None,
        mask: torch.Tensor | None = None,
        training: bool = False,
    ) -> Any:
        if sequences.dim() < 3:
            raise ValueError(
                f"RNN {self.name!r} expects sequences of shape (batch, timesteps, features), got shape "
                f"{tuple(sequences.shape)}."
            )
        x = sequences
        if initial_state is not None:
            states = self._given_states(x, initial_state)
        elif self.stateful and not probing_shapes():
            states = self._carried_states(x)
        else:
            states = self.get_initial_state(x.shape[0])
        states = _pack(states, [torch.as_tensor(s).to(x.device, x.dtype) for s in _flat(states)])
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device).bool()
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(
                    f"RNN {self.name!r}: the mask must have shape (batch, timesteps) = {tuple(x.shape[:2])}, "
                    f"got {tuple(mask.shape)}."
                )
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        count = len(_flat(states))

        def step(
            x_t: torch.Tensor, flat_states: list[torch.Tensor]
        ) -> tuple[torch.Tensor, list[torch.Tensor]]:
            output, new_states = call_cell(self.cell, x_t, tuple(_pack(states, flat_states)), training)
            new_flat = _flat(new_states)
            if len(new_flat) != count:
                raise ValueError(
                    f"RNN {self.name!r}: the cell {type(self.cell).__name__} returned {len(new_flat)} state "
                    f"tensor(s) for the {count} it was given; call() must return (output, new_states) with "
                    "one new state per state."
                )
            return output, new_flat

        _reset_dropout_masks(self.cell)  # one dropout mask per sequence, drawn at its first step
        try:
            outputs, last, final = step_loop(step, x, _flat(states), mask, self.zero_output_for_mask)
        finally:
            _reset_dropout_masks(self.cell)
        final_states = _pack(states, final)
        if self.stateful and not probing_shapes():
            self._kept_states = _pack(states, [s.detach() for s in final])
        output = outputs if self.return_sequences else last
        return (output, *final_states) if self.return_state else output

    def _given_states(self, x: torch.Tensor, initial_state: Any) -> list[Any]:
        """``initial_state`` checked against the cell's ``state_size`` (a flat list is nested as it says)."""
        given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        sizes = _flat(self.state_size)
        flat = _flat(given)
        shapes = [tuple(getattr(s, "shape", ())) for s in flat]
        expected = [(x.shape[0], size) for size in sizes]
        if len(flat) != len(sizes) or shapes != expected:
            raise ValueError(
                f"RNN {self.name!r}: initial_state must be {len(sizes)} tensor(s) of shapes {expected} "
                f"(batch, state size) for the cell's state_size {self.cell.state_size}; got {len(flat)} "
                f"of shapes {shapes}."
            )
        return given if len(given) == len(self.state_size) else _pack(self.state_size, flat)

    def _carried_states(self, x: torch.Tensor) -> list[Any]:
        """A stateful layer's states from its last call (initial states at first), same batch size."""
        if self._kept_states is None:
            return self.get_initial_state(x.shape[0])
        expected = _flat(self._kept_states)[0].shape[0]
        if x.shape[0] != expected:
            raise ValueError(
                f"RNN {self.name!r} is stateful: every batch must have the batch size its states were made "
                f"for ({expected}), got {x.shape[0]}. Batch the data so that every batch is full "
                "(drop_remainder=True), or call reset_state() before a new batch size."
            )
        return self._kept_states

    def reset_state(self) -> None:
        """Forget a stateful layer's states: the next call starts from the initial states (Keras's name)."""
        self._kept_states = None

    def reset_states(self) -> None:
        """Older spelling of :meth:`reset_state` (tf.keras 2)."""
        self.reset_state()

    # ------------------------------------------------------------------ shapes, masks, config
    def compute_output_shape(self, sequences_shape: Any, initial_state_shape: Any = None) -> Any:
        batch, length = sequences_shape[0], sequences_shape[1]
        states = [
            [(batch, s) for s in size] if isinstance(size, (list, tuple)) else (batch, size)
            for size in self.state_size
        ]
        size = cell_output_size(self.cell)
        if not isinstance(size, int):
            raise ValueError(f"RNN {self.name!r}: the cell's output_size must be an integer, got {size!r}.")
        output = (batch, length, size) if self.return_sequences else (batch, size)
        return (output, *states) if self.return_state else output

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        mask = previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self.state_size)
        return output_mask

    def get_config(self) -> dict[str, Any]:
        from ...saving.serialization import serialize_layer

        return {
            **super().get_config(),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
            "cell": serialize_layer(self.cell),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> RNN:
        from ...saving.serialization import deserialize_layer

        config = dict(config)
        cell = config.pop("cell")
        if isinstance(cell, dict):
            cell = deserialize_layer(cell, custom_objects)
        return cls(cell, **config)
