"""``_Recurrent``, what SimpleRNN, LSTM and GRU share: the call over a sequence (torch's fused
kernel or the step loop, see the package docstring), dropout, masks and stateful states. The
weights and the step math are ``_gated``'s, shared with the cells."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ... import activations, regularizers
from ..layer import Layer
from ..symbolic import probing_shapes
from ._gated import _Gated, check_units
from ._kernels import call_kernel, kept_blocks, map_states, steps_from


def step_loop(
    step: Callable[[torch.Tensor, list[torch.Tensor]], tuple[torch.Tensor, list[torch.Tensor]]],
    inputs: torch.Tensor,
    states: list[torch.Tensor],
    mask: torch.Tensor | None,
    zero_output_for_mask: bool,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Keras's ``backend.rnn`` loop over ``inputs`` (batch, timesteps, ...): ``step(inputs[:, t],
    states)`` gives ``(output, new_states)``; a masked step keeps the states and repeats the
    previous output (zeros before the first, or always with ``zero_output_for_mask``).

    Returns the stacked outputs (batch, timesteps, ...), the last output and the final states.
    """

    def where(keep: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return torch.where(keep if new.dim() == 2 else keep.view(-1, *([1] * (new.dim() - 1))), new, old)

    keeps = None if mask is None else mask.unsqueeze(-1).unbind(1)  # (batch, 1) per step, made once
    outputs = []
    previous = None
    for t in range(inputs.shape[1]):
        output, new_states = step(inputs[:, t], states)
        if keeps is not None:
            keep = keeps[t]
            fill = torch.zeros_like(output) if previous is None or zero_output_for_mask else previous
            output = where(keep, output, fill)
            new_states = [where(keep, new, old) for new, old in zip(new_states, states)]
        outputs.append(output)
        states, previous = new_states, output
    return torch.stack(outputs, dim=1), outputs[-1], states


class _Recurrent(_Gated, Layer):
    """A whole-sequence recurrent layer; a ``_gated`` step class before it gives the gates and step."""

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
        use_cudnn: bool | str = "auto",
        **kwargs: Any,
    ):
        name = type(self).__name__
        check_units(name, units)
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{name}: use_cudnn must be 'auto', True or False, got {use_cudnn!r}.")
        kwargs.pop("implementation", None)  # Keras's choice of kernel split; results are the same
        zero_output_for_mask = bool(kwargs.pop("zero_output_for_mask", False))
        super().__init__(**kwargs)
        # Keras's RNN option: masked steps output zeros instead of repeating the last output.
        self.zero_output_for_mask = zero_output_for_mask
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
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.return_sequences = bool(return_sequences)
        self.return_state = bool(return_state)
        self.go_backwards = bool(go_backwards)
        self.stateful = bool(stateful)
        self._kept_states: list[torch.Tensor] | None = None  # a stateful layer's last states
        self.unroll = bool(unroll)
        self.use_cudnn = use_cudnn

    # ------------------------------------------------------------------ weights
    def build(self, input_shape: Any = None) -> None:
        if self.built:
            return
        if input_shape is None or len(input_shape) != 3 or input_shape[-1] is None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects sequences of shape (batch, timesteps, "
                f"features), got input shape {input_shape}."
            )
        self._build_weights(input_shape[-1])
        self.built = True

    # ------------------------------------------------------------------ the call
    def call(
        self,
        sequences: torch.Tensor,
        initial_state: Any = None,
        mask: torch.Tensor | None = None,
        training: bool = False,
    ) -> Any:
        if sequences.dim() != 3:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} expects sequences of shape (batch, timesteps, "
                f"features), got shape {tuple(sequences.shape)}."
            )
        x = sequences
        states = self._initial_states(x, initial_state)
        if self.stateful and initial_state is None and not probing_shapes():
            states = self._carried_states(x)
        if mask is not None:
            mask = torch.as_tensor(mask, device=x.device).bool()
            if tuple(mask.shape) != tuple(x.shape[:2]):
                raise ValueError(
                    f"{type(self).__name__} {self.name!r}: the mask must have shape (batch, timesteps) = "
                    f"{tuple(x.shape[:2])}, got {tuple(mask.shape)}."
                )
        if self.use_cudnn is True and self._cudnn_refusal(mask) is not None:
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: use_cudnn=True, but {self._cudnn_refusal(mask)}. "
                "Use use_cudnn='auto' to fall back to the step loop."
            )
        if self.go_backwards:
            x = x.flip(1)
            mask = None if mask is None else mask.flip(1)
        rec_dropping = training and 0.0 < self.recurrent_dropout < 1.0
        input_masks = self._dropout_masks(x, self.dropout, self._input_mask_count()) if training else None
        rec_masks = (
            self._dropout_masks(states[0], self.recurrent_dropout, self._gates) if rec_dropping else None
        )
        fusable = rec_masks is None and self._fusable()
        blocks = kept_blocks(mask) if fusable and mask is not None else None
        if fusable and (mask is None or blocks is not None):
            if input_masks is not None:
                x = x * input_masks[0].unsqueeze(1)
            if blocks is None:
                outputs, states = self._fused(x, states, None)
            else:
                outputs, states = self._fused_blocks(x, states, mask, *blocks)
            last = outputs[:, -1]
        else:
            outputs, last, states = self._loop(self._project(x, input_masks), states, mask, rec_masks)
        if self.stateful and not probing_shapes():
            self._kept_states = [s.detach() for s in states]
        output = outputs if self.return_sequences else last
        if self.activity_regularizer is not None:
            for t in (output, *states) if self.return_state else (output,):
                self.add_loss(self.activity_regularizer(t) / t.shape[0])
        return (output, *states) if self.return_state else output

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        mask = previous_mask[0] if isinstance(previous_mask, (list, tuple)) else previous_mask
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask] + [None] * len(self._state_names())
        return output_mask

    def _carried_states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """A stateful layer's states from its last call (zeros at first), for a batch of the same size."""
        if self._kept_states is None:
            return [x.new_zeros(x.shape[0], self.units) for _ in self._state_names()]
        expected = self._kept_states[0].shape[0]
        if x.shape[0] != expected:
            raise ValueError(
                f"{type(self).__name__} {self.name!r} is stateful: every batch must have the batch size "
                f"its states were made for ({expected}), got {x.shape[0]}. Batch the data so that every "
                "batch is full (drop_remainder=True), or call reset_state() before a new batch size."
            )
        return [s.to(x.device, x.dtype) for s in self._kept_states]

    def reset_state(self) -> None:
        """Forget a stateful layer's states: the next call starts from zeros (Keras's name)."""
        self._kept_states = None

    def reset_states(self) -> None:
        """Older spelling of :meth:`reset_state` (tf.keras 2)."""
        self.reset_state()

    def _initial_states(self, x: torch.Tensor, initial_state: Any) -> list[torch.Tensor]:
        n = len(self._state_names())
        if initial_state is None:
            zeros = x.new_zeros(x.shape[0], self.units)
            return [zeros] * n
        given = list(initial_state) if isinstance(initial_state, (list, tuple)) else [initial_state]
        if len(given) != n or any(tuple(s.shape) != (x.shape[0], self.units) for s in given):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: initial_state must be {n} tensor(s) of shape "
                f"(batch, units) = ({x.shape[0]}, {self.units}); got shapes "
                f"{[tuple(getattr(s, 'shape', ())) for s in given]}."
            )
        return [torch.as_tensor(s, dtype=x.dtype, device=x.device) for s in given]

    def _loop(
        self,
        xw: torch.Tensor,
        states: list[torch.Tensor],
        mask: torch.Tensor | None,
        rec_masks: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        return step_loop(
            lambda xw_t, s: self._step(xw_t, s, rec_masks), xw, states, mask, self.zero_output_for_mask
        )

    def _cudnn_refusal(self, mask: torch.Tensor | None) -> str | None:
        """Why Keras refuses ``use_cudnn=True`` for this call (None when it accepts it)."""
        if mask is not None:
            return "the input has a mask"
        if self.recurrent_dropout > 0.0:
            return "recurrent_dropout is set"
        return None

    def _fusable(self) -> bool:
        # torch.compile cannot trace torch's fused RNN ops (nn.LSTM is skipped by dynamo): loop there.
        return (
            self.use_cudnn is not False
            and self.activation is activations.tanh
            and self.recurrent_activation is activations.sigmoid
            and not torch.compiler.is_compiling()
        )

    def _fused(
        self, x: torch.Tensor, states: list[torch.Tensor], lengths: torch.Tensor | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

    def _fused_blocks(
        self,
        x: torch.Tensor,
        states: list[torch.Tensor],
        mask: torch.Tensor,
        starts: torch.Tensor,
        lengths: torch.Tensor,
        host_lengths: torch.Tensor,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The fused kernel over each row's kept block (packed to its length), with the outputs
        the masked loop gives around it: zeros before the block (the loop starts from a zero
        output), the block's last output after it (zeros with ``zero_output_for_mask``)."""
        outputs, states = self._fused(steps_from(x, starts, 1), states, host_lengths)
        rows = torch.arange(x.shape[0], device=x.device)
        last_kept = outputs[rows, lengths - 1]
        outputs = steps_from(outputs, starts, -1)
        after = torch.zeros_like(last_kept) if self.zero_output_for_mask else last_kept
        before = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < starts.unsqueeze(1)
        fill = torch.where(before.unsqueeze(-1), torch.zeros_like(outputs), after.unsqueeze(1))
        return torch.where(mask.unsqueeze(-1), outputs, fill), states

    def _run_fused(
        self, op: Any, x: torch.Tensor, hx: Any, lengths: torch.Tensor | None, order: list[int] | None = None
    ) -> tuple[torch.Tensor, ...]:
        """``op`` (torch.lstm, torch.gru, torch.rnn_tanh/relu) over the batch-first sequences, packed
        to their ``lengths`` when given: (outputs (batch, timesteps, units), final states...).

        Under autocast it runs in the autocast dtype with autocast off: torch's CPU kernel refuses
        the mixed float32/bfloat16 arguments autocast would give it. ``train`` follows autograd, as
        cuDNN's backward requires a forward run in training mode.
        """
        weights = self._torch_weights(order)
        device = x.device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            x, hx, weights = (
                x.to(dtype),
                map_states(hx, lambda h: h.to(dtype)),
                [w.to(dtype) for w in weights],
            )
            with torch.autocast(device, enabled=False):
                return call_kernel(op, x, hx, weights, self.use_bias, lengths)
        return call_kernel(op, x, hx, weights, self.use_bias, lengths)

    def _torch_weights(self, order: list[int] | None = None) -> list[torch.Tensor]:
        """The weights as torch's RNN kernels take them: (gates * units, features), biases input-side
        then recurrent-side, gate blocks reordered by ``order`` when torch's order differs."""

        def gates(w: torch.Tensor) -> torch.Tensor:
            if order is None:
                return w
            blocks = w.chunk(self._gates, dim=-1)
            return torch.cat([blocks[i] for i in order], dim=-1)

        weights = [gates(self.kernel).t(), gates(self.recurrent_kernel).t()]
        if self.use_bias:
            input_bias, recurrent_bias = self._split_bias()
            weights += [gates(input_bias), gates(recurrent_bias)]
        return weights

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            **self._gate_config(),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }
