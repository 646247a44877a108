"""``StackedRNNCells``: several cells run as one, each step's output feeding the next cell; and
what ``RNN`` and the stack ask of any cell (``check_cell``, ``call_cell``)."""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer

__all__ = ["StackedRNNCells"]


def check_cell(cell: Any, where: str) -> None:
    """Raise a clear error unless ``cell`` keeps Keras's cell contract (a ``call`` and a ``state_size``)."""
    if not callable(getattr(cell, "call", None)):
        raise ValueError(
            f"{where}: a cell must have a call(inputs, states) method returning (output, new_states); "
            f"got {cell!r}."
        )
    state_size = getattr(cell, "state_size", None)
    if state_size is None:
        raise ValueError(
            f"{where}: the cell {type(cell).__name__} must have a state_size attribute: an integer (one "
            "state) or a list of integers (one per state), e.g. self.state_size = units in its __init__."
        )
    if not _valid_size(state_size):
        raise ValueError(
            f"{where}: the cell's state_size must be an integer or a list of integers (one per state), "
            f"got {state_size!r}."
        )


def _valid_size(size: Any) -> bool:
    if isinstance(size, (list, tuple)):
        return all(_valid_size(s) for s in size)
    return isinstance(size, int) and not isinstance(size, bool)


def call_cell(cell: Any, inputs: torch.Tensor, states: Any, training: bool) -> tuple[Any, Any]:
    """``cell(inputs, states)``, with ``training`` when the cell's ``call`` takes it (Keras's rule)."""
    if isinstance(cell, Layer):
        if type(cell)._call_has_training():
            return cell(inputs, states, training=training)
        return cell(inputs, states)
    return (cell if callable(cell) else cell.call)(inputs, states)


def cell_output_size(cell: Any) -> Any:
    """The cell's ``output_size``, else its first state's size (as Keras reads it)."""
    size = getattr(cell, "output_size", None)
    if size is not None:
        return size
    return cell.state_size[0] if isinstance(cell.state_size, (list, tuple)) else cell.state_size


def zero_states(state_size: Any, batch_size: int, dtype: torch.dtype, device: Any) -> Any:
    """Zeros shaped as ``state_size`` says: one (batch, size) tensor per integer, nested alike."""
    if isinstance(state_size, (list, tuple)):
        return [zero_states(s, batch_size, dtype, device) for s in state_size]
    return torch.zeros(int(batch_size), state_size, dtype=dtype, device=device)


class StackedRNNCells(Layer):
    """Several cells as one cell: at each step the first cell's output is the second's input, and
    so on; the states are one entry per cell (a list for a cell with several states).

    ``RNN([cell_a, cell_b])`` builds this stack for you.

    Example:
        >>> import torch, tapefit
        >>> from tapefit.layers.recurrent import RNN, LSTMCell, StackedRNNCells
        >>> stack = StackedRNNCells([LSTMCell(8), LSTMCell(4)])
        >>> stack.state_size, stack.output_size
        ([[8, 8], [4, 4]], 4)
        >>> RNN(stack)(torch.ones(2, 5, 3)).shape
        torch.Size([2, 4])
    """

    def __init__(self, cells: list[Any], **kwargs: Any):
        cells = list(cells)
        if not cells:
            raise ValueError("StackedRNNCells needs at least one cell, got an empty list.")
        for cell in cells:
            check_cell(cell, "StackedRNNCells")
        super().__init__(**kwargs)
        self.cells = cells

    @property
    def state_size(self) -> list[Any]:
        return [cell.state_size for cell in self.cells]

    @property
    def output_size(self) -> Any:
        return cell_output_size(self.cells[-1])

    def get_initial_state(self, batch_size: int | None = None) -> list[Any]:
        """Each cell's initial states (its ``get_initial_state``, or zeros)."""
        states = []
        for cell in self.cells:
            get = getattr(cell, "get_initial_state", None)
            if get is not None:
                states.append(get(batch_size=batch_size))
            else:
                dtype = getattr(torch, self.compute_dtype)
                states.append(zero_states(cell.state_size, batch_size, dtype, self._weight_device()))
        return states

    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        shape = tuple(input_shape)
        for cell in self.cells:
            if isinstance(cell, Layer) and not cell.built:
                cell.build(shape)
                cell.built = True
            shape = (shape[0], cell_output_size(cell))
        self.built = True

    def call(
        self, inputs: torch.Tensor, states: Any, training: bool = False
    ) -> tuple[torch.Tensor, list[Any]]:
        states = list(states) if isinstance(states, (list, tuple)) else [states]
        if len(states) != len(self.cells):
            raise ValueError(
                f"StackedRNNCells {self.name!r} takes one state entry per cell ({len(self.cells)}), got "
                f"{len(states)}."
            )
        new_states = []
        for cell, cell_states in zip(self.cells, states):
            is_list = isinstance(cell_states, (list, tuple))
            inputs, cell_states = call_cell(
                cell, inputs, list(cell_states) if is_list else [cell_states], training
            )
            if not isinstance(cell_states, (list, tuple)):
                cell_states = [cell_states]
            new_states.append(cell_states[0] if len(cell_states) == 1 and not is_list else list(cell_states))
        return inputs, new_states

    def get_config(self) -> dict[str, Any]:
        from ...saving.serialization import serialize_layer

        return {**super().get_config(), "cells": [serialize_layer(cell) for cell in self.cells]}

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> StackedRNNCells:
        from ...saving.serialization import deserialize_layer

        config = dict(config)
        cells = [deserialize_layer(c, custom_objects) for c in config.pop("cells")]
        return cls(cells, **config)
