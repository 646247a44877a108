"""What every rank does when a checkpoint is written or read in a distributed job.

Checkpoints always hold *full* tensors: a sharded tensor (FSDP's ``DTensor``) is gathered
whole on save (:func:`full_tensor`) and cut back into this rank's shard on load
(:func:`assign_full`), so a file saved on 8 processes loads on 1, 2 or 16. Only rank 0 touches
the filesystem: it gathers what other ranks hold alone (:func:`gather_to_chief`), writes, and
hands what it read to the others (:func:`share_from_chief`), so resuming needs no filesystem
shared between nodes. :func:`publish` orders a multi-step save so that a crash at any moment
leaves the last completed checkpoint the one that is found.

On one process every function here is the plain, local operation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from . import environment

__all__ = [
    "assign_full",
    "full_tensor",
    "full_tensors",
    "gather_to_chief",
    "gathered",
    "has_sharded",
    "is_sharded_tensor",
    "publish",
    "share_from_chief",
]

T = TypeVar("T")


def is_sharded_tensor(tensor: Any) -> bool:
    """Whether ``tensor`` is a torch ``DTensor`` (a parameter or optimizer state under FSDP)."""
    return hasattr(tensor, "full_tensor") and hasattr(tensor, "placements")


def has_sharded(state: Mapping[str, Any]) -> bool:
    """Whether any value in ``state`` (a ``state_dict()``) is a sharded tensor."""
    return any(is_sharded_tensor(v) for v in state.values())


def full_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """A detached CPU copy of ``tensor``; a sharded one is gathered whole first (a collective)."""
    if is_sharded_tensor(tensor):
        tensor = tensor.full_tensor()
    return tensor.detach().as_subclass(torch.Tensor).to("cpu", copy=True).contiguous()


def full_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`full_tensor` of every entry, in ``state``'s order.

    When ``state`` holds sharded tensors this is a sequence of collectives: every rank must call
    it with the same keys in the same order (as ``model.state_dict()`` gives them).
    """
    return {k: full_tensor(v) for k, v in state.items()}


def gathered(state: Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    """``state`` itself when nothing in it is sharded, else :func:`full_tensors` (a collective)."""
    if has_sharded(state):
        return full_tensors(state)
    return state


def assign_full(target: torch.Tensor, value: torch.Tensor) -> None:
    """Copy the full tensor ``value`` into ``target``, or into this rank's shard of a sharded ``target``.

    For a sharded ``target`` every rank must call it, in the same order.
    """
    with torch.no_grad():
        if is_sharded_tensor(target):
            from torch.distributed.tensor import distribute_tensor

            local = value.to(device=target.device, dtype=target.dtype)
            target.copy_(distribute_tensor(local, target.device_mesh, target.placements))
        else:
            target.copy_(value.to(device=target.device, dtype=target.dtype))


def share_from_chief(value: T) -> T:
    """Rank 0's ``value`` on every rank (sent through the process group); ``value`` on one process.

    Every rank must call it; only rank 0's argument is used.
    """
    if not environment.is_distributed():
        return value
    box = [value if environment.is_chief() else None]
    dist.broadcast_object_list(box, src=0, device=_object_device())
    return box[0]  # type: ignore[return-value]


def gather_to_chief(value: T) -> list[T] | None:
    """Every rank's ``value`` in rank order, on rank 0 (``None`` elsewhere); ``[value]`` on one process."""
    if not environment.is_distributed():
        return [value]
    out: list[Any] | None = [None] * environment.world_size() if environment.is_chief() else None
    dist.gather_object(value, out, dst=0)
    return out


def publish(write: Callable[[], None], commit: Callable[[], None]) -> None:
    """Save in two phases: rank 0 ``write``s the data, every rank meets at a barrier, then rank 0
    ``commit``s (writes the completion marker that makes the data the checkpoint to resume from).

    A crash before ``commit`` leaves the previous marker, naming the previous, complete
    checkpoint. Every rank must call it.
    """
    if environment.is_chief():
        write()
    environment.barrier()
    if environment.is_chief():
        commit()


def _object_device() -> torch.device | None:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return None
