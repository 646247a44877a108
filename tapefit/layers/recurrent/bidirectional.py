"""``Bidirectional``: a recurrent layer run over the sequence both ways, the outputs merged."""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer
from ._base import _Recurrent
from .rnn import RNN

__all__ = ["Bidirectional"]


class Bidirectional(Layer):
    """Runs a recurrent layer over the sequence forwards and a copy of it backwards, then merges.

    ``merge_mode`` is ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``None`` (the two
    outputs as a tuple). With ``return_sequences`` the backward outputs are put back in time order
    and masked steps output zeros, as Keras's wrapper sets its layers up. ``initial_state`` is the
    forward layer's states followed by the backward one's; ``return_state`` returns them so too.

    Example:
        >>> import torch, tapefit
        >>> both_ways = tapefit.layers.Bidirectional(tapefit.layers.LSTM(4, return_sequences=True))
        >>> both_ways(torch.ones(2, 5, 3)).shape
        torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        layer: _Recurrent | RNN,
        merge_mode: str | None = "concat",
        weights: Any = None,
        backward_layer: _Recurrent | RNN | None = None,
        **kwargs: Any,
    ):
        for what, candidate in (("layer", layer), ("backward_layer", backward_layer)):
            if candidate is not None and not isinstance(candidate, (_Recurrent, RNN)):
                raise ValueError(
                    f"Bidirectional: {what} must be a recurrent layer (SimpleRNN, LSTM, GRU or RNN), got "
                    f"{type(candidate).__name__}."
                )
        if merge_mode not in ("sum", "mul", "ave", "concat", None):
            raise ValueError(
                "Bidirectional: merge_mode must be 'sum', 'mul', 'ave', 'concat' or None, got "
                f"{merge_mode!r}."
            )
        super().__init__(**kwargs)
        config = layer.get_config()
        base = layer.name.removeprefix("forward_").removeprefix("backward_")
        self.forward_layer = type(layer).from_config({**config, "name": f"forward_{base}"})
        if backward_layer is None:
            backward_layer = type(layer).from_config(
                {**config, "go_backwards": True, "name": f"backward_{base}"}
            )
        self.backward_layer = backward_layer
        if self.forward_layer.go_backwards == self.backward_layer.go_backwards:
            raise ValueError(
                "Bidirectional: the forward and backward layers must differ in go_backwards; both have "
                f"go_backwards={self.forward_layer.go_backwards}."
            )
        for attr in ("return_sequences", "return_state", "stateful"):
            if getattr(self.forward_layer, attr) != getattr(self.backward_layer, attr):
                raise ValueError(
                    f"Bidirectional: the forward and backward layers must have the same {attr}; got "
                    f"{getattr(self.forward_layer, attr)} and {getattr(self.backward_layer, attr)}."
                )
        for inner in (self.forward_layer, self.backward_layer):
            inner.zero_output_for_mask = inner.return_sequences
        self.merge_mode = merge_mode
        self.return_sequences = layer.return_sequences
        self.return_state = layer.return_state
        self.stateful = layer.stateful
        self._initial_weights = weights

    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        self.forward_layer.build(input_shape)
        self.backward_layer.build(input_shape)
        self.built = True
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def call(
        self,
        sequences: torch.Tensor,
        initial_state: Any = None,
        mask: torch.Tensor | None = None,
        training: bool = False,
    ) -> Any:
        kwargs: dict[str, Any] = {"training": training}
        if mask is not None:
            kwargs["mask"] = mask
        forward_state = backward_state = None
        if initial_state is not None:
            want = 2 * len(self.forward_layer._state_names())
            got = len(initial_state) if isinstance(initial_state, (list, tuple)) else "a single tensor"
            if got != want:
                raise ValueError(
                    f"Bidirectional {self.name!r}: initial_state must be a list of {want} tensors, the "
                    f"forward layer's states then the backward layer's; got {got}."
                )
            half = len(initial_state) // 2
            forward_state, backward_state = list(initial_state[:half]), list(initial_state[half:])
        y = self.forward_layer(sequences, initial_state=forward_state, **kwargs)
        y_rev = self.backward_layer(sequences, initial_state=backward_state, **kwargs)
        states: tuple = ()
        if self.return_state:
            states = (*y[1:], *y_rev[1:])
            y, y_rev = y[0], y_rev[0]
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        if self.merge_mode == "concat":
            output: Any = torch.cat([y, y_rev], dim=-1)
        elif self.merge_mode == "sum":
            output = y + y_rev
        elif self.merge_mode == "ave":
            output = (y + y_rev) / 2
        elif self.merge_mode == "mul":
            output = y * y_rev
        else:
            output = (y, y_rev)
        if self.return_state:
            return (*output, *states) if self.merge_mode is None else (output, *states)
        return output

    def reset_state(self) -> None:
        """Forget both layers' states (stateful layers only)."""
        self.forward_layer.reset_state()
        self.backward_layer.reset_state()

    def reset_states(self) -> None:
        """Older spelling of :meth:`reset_state` (tf.keras 2)."""
        self.reset_state()

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        mask = previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask
        mask = mask if self.return_sequences else None
        return (mask, mask) if self.merge_mode is None else mask

    def get_config(self) -> dict[str, Any]:
        from ...saving.serialization import serialize_layer

        return {
            **super().get_config(),
            "merge_mode": self.merge_mode,
            "layer": serialize_layer(self.forward_layer),
            "backward_layer": serialize_layer(self.backward_layer),
        }

    @classmethod
    def from_config(
        cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> Bidirectional:
        from ...saving.serialization import deserialize_layer

        config = dict(config)
        config["layer"] = deserialize_layer(config["layer"], custom_objects)
        if config.get("backward_layer") is not None:
            config["backward_layer"] = deserialize_layer(config["backward_layer"], custom_objects)
        return cls(**config)
