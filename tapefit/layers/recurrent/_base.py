"""``_Recurrent``, what SimpleRNN, LSTM and GRU share: their weights, the call over a sequence
(torch's fused kernel or the step loop, see the package docstring), dropout and masks."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ... import activations, constraints, initializers, regularizers
from ..layer import Layer
from ..symbolic import probing_shapes
from ._kernels import call_kernel, kept_blocks, map_states, steps_from


class _Recurrent(Layer):
    """A whole-sequence recurrent layer; subclasses define the gates and one step."""

    _gates = 1

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
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units <= 0:
            raise ValueError(f"{name}: units must be a positive integer, got {units!r}.")
        if use_cudnn not in ("auto", True, False):
            raise ValueError(f"{name}: use_cudnn must be 'auto', True or False, got {use_cudnn!r}.")
        kwargs.pop("implementation", None)  # Keras's choice of kernel split; results are the same
        zero_output_for_mask = bool(kwargs.pop("zero_output_for_mask", False))
        super().__init__(**kwargs)
        # Keras's RNN option: masked steps output zeros instead of repeating the last output.
        self.zero_output_for_mask = zero_output_for_mask
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
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.recurrent_constraint = constraints.get(recurrent_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self.dropout = min(1.0, max(0.0, float(dropout)))  # Keras clips both rates to [0, 1]
        self.recurrent_dropout = min(1.0, max(0.0, float(recurrent_dropout)))
        self.seed = seed
        self._generator: torch.Generator | None = None
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
        width = self._gates * self.units
        self.kernel = self.add_weight(
            (int(input_shape[-1]), width),
            self.kernel_initializer,
            name="kernel",
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            (self.units, width),
            self.recurrent_initializer,
            name="recurrent_kernel",
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                self._bias_shape(),
                self._bias_initial_value(),
                name="bias",
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.built = True

    def _bias_shape(self) -> tuple[int, ...]:
        return (self._gates * self.units,)

    def _bias_initial_value(self) -> Any:
        return self.bias_initializer

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
        gates = self._gates if self.recurrent_dropout != 0.0 else 1  # Keras's implementation 1
        input_masks = self._dropout_masks(x, self.dropout, gates) if training else None
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

    def _state_names(self) -> tuple[str, ...]:
        return ("h",)

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

    def _project(self, x: torch.Tensor, input_masks: list[torch.Tensor] | None) -> torch.Tensor:
        """Every step's input contribution at once: (batch, timesteps, gates * units)."""
        if input_masks is None:
            xw = x @ self.kernel
        elif len(input_masks) == 1:
            xw = (x * input_masks[0].unsqueeze(1)) @ self.kernel
        else:
            kernels = self.kernel.chunk(self._gates, dim=1)
            xw = torch.cat([(x * m.unsqueeze(1)) @ k for m, k in zip(input_masks, kernels)], dim=-1)
        return xw + self._input_bias() if self.use_bias else xw

    def _input_bias(self) -> torch.Tensor:
        return self.bias

    def _recurrent(self, h: torch.Tensor, rec_masks: list[torch.Tensor] | None) -> torch.Tensor:
        """The recurrent contribution (batch, gates * units), one dropout mask per gate if any."""
        if rec_masks is None:
            return h @ self.recurrent_kernel
        kernels = self.recurrent_kernel.chunk(self._gates, dim=1)
        return torch.cat([(h * m) @ k for m, k in zip(rec_masks, kernels)], dim=-1)

    def _loop(
        self,
        xw: torch.Tensor,
        states: list[torch.Tensor],
        mask: torch.Tensor | None,
        rec_masks: list[torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        outputs = []
        previous = None
        for t in range(xw.shape[1]):
            output, new_states = self._step(xw[:, t], states, rec_masks)
            if mask is not None:
                keep = mask[:, t, None]
                fill = torch.zeros_like(output) if previous is None or self.zero_output_for_mask else previous
                output = torch.where(keep, output, fill)
                new_states = [torch.where(keep, new, old) for new, old in zip(new_states, states)]
            outputs.append(output)
            states, previous = new_states, output
        return torch.stack(outputs, dim=1), outputs[-1], states

    def _step(
        self, xw_t: torch.Tensor, states: list[torch.Tensor], rec_masks: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError

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

    def _split_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.bias, torch.zeros_like(self.bias)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "units": self.units,
            "activation": activations.serialize(self.activation),
            "use_bias": self.use_bias,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "recurrent_constraint": constraints.serialize(self.recurrent_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "dropout": self.dropout,
            "recurrent_dropout": self.recurrent_dropout,
            "seed": self.seed,
            "return_sequences": self.return_sequences,
            "return_state": self.return_state,
            "go_backwards": self.go_backwards,
            "stateful": self.stateful,
            "unroll": self.unroll,
            "zero_output_for_mask": self.zero_output_for_mask,
        }
