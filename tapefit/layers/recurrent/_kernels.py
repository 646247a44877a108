"""torch's one-layer RNN kernels as the recurrent layers call them: batch first, optionally
over packed blocks of kept steps."""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

__all__ = ["call_kernel", "kept_blocks", "map_states", "steps_from"]


def map_states(hx: Any, fn: Any) -> Any:
    return tuple(fn(h) for h in hx) if isinstance(hx, tuple) else fn(hx)


def kept_blocks(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Each row's first kept step and count of kept steps (and the counts on the host, which
    packing needs), when every row keeps one unbroken block of steps (padding before and/or after
    it: ``pad_sequences``' "pre" or "post"), else None. One read of the mask's summary on the
    host, as Keras's cuDNN path pays."""
    rises = mask[:, :1].sum(1) + (mask[:, 1:] & ~mask[:, :-1]).sum(1)
    lengths = mask.sum(1)
    host = torch.stack([rises, lengths]).cpu()
    if not bool((host[0] == 1).all()):
        return None
    return mask.int().argmax(1), lengths, host[1]


def steps_from(x: torch.Tensor, starts: torch.Tensor, sign: int) -> torch.Tensor:
    """``x`` (batch, timesteps, ...) with each row's steps moved by ``sign * starts[row]``:
    ``sign=1`` brings each row's block to the front, ``sign=-1`` puts it back (edges repeat)."""
    steps = torch.arange(x.shape[1], device=x.device)
    index = (steps.unsqueeze(0) + sign * starts.unsqueeze(1)).clamp(0, x.shape[1] - 1)
    return x.gather(1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand(x.shape))


def call_kernel(
    op: Any,
    x: torch.Tensor,
    hx: Any,
    weights: list[torch.Tensor],
    use_bias: bool,
    lengths: torch.Tensor | None,
) -> tuple[torch.Tensor, ...]:
    """A one-layer torch RNN kernel on batch-first ``x``; with ``lengths``, on the packed sequences
    (each row stops at its length), its outputs padded back with zeros and states in row order."""
    if lengths is None:
        return op(x, hx, weights, use_bias, 1, 0.0, torch.is_grad_enabled(), False, True)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    hx = map_states(hx, lambda h: h.index_select(1, packed.sorted_indices.to(h.device)))
    data, *states = op(
        packed.data, packed.batch_sizes, hx, weights, use_bias, 1, 0.0, torch.is_grad_enabled(), False
    )
    out, _ = pad_packed_sequence(
        PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
        batch_first=True,
        total_length=x.shape[1],
    )
    unsorted = packed.unsorted_indices
    return (out, *(s.index_select(1, unsorted.to(s.device)) for s in states))
