"""Which rows each rank sees: every global batch split into one piece per rank.

``batch_size`` is the global batch, as in Keras and ``tf.distribute``: every rank walks the
same sequence of global batches (the same order, drawn on rank 0 and shared) and takes its own
contiguous piece of each. In training the pieces are equal (``rows // world`` each; the
``rows % world`` left-over rows of a short last batch are dropped), so the gradients averaged
over ranks are the gradient of the global batch, as on one process. For evaluation and
prediction the pieces cover every row exactly once (sizes differ by at most one), and
:func:`gather_rows` puts the predictions of all ranks back in the original order.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from ..utils.random import input_stream
from . import environment

_END = object()

__all__ = [
    "BatchSharder",
    "distribute_dataset",
    "DistributedBatches",
    "gather_rows",
    "same_on_all_ranks",
    "share_random_state",
]


def _map(fn: Any, struct: Any) -> Any:
    if isinstance(struct, (list, tuple)):
        return type(struct)(_map(fn, s) for s in struct)
    if isinstance(struct, dict):
        return {k: _map(fn, v) for k, v in struct.items()}
    return None if struct is None else fn(struct)


def _leaves(struct: Any) -> list[Any]:
    if isinstance(struct, (list, tuple)):
        return [v for s in struct for v in _leaves(s)]
    if isinstance(struct, dict):
        return [v for s in struct.values() for v in _leaves(s)]
    return [] if struct is None else [struct]


def batch_rows(batch: Any) -> int | None:
    """The number of rows of ``batch`` (its first leaf's length); ``None`` for no batch or no leaf."""
    leaves = _leaves(batch)
    return len(leaves[0]) if leaves else None


def _comm_device(tensor_device: torch.device) -> torch.device:
    """Where a tensor goes for the group's backend: NCCL, the current GPU; gloo, the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return tensor_device if tensor_device.type == "cpu" else torch.device("cpu")


def same_on_all_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's ``tensor`` on every rank (e.g. a random permutation); unchanged on one process.

    Every rank must call it with a tensor of the same shape and dtype.
    """
    if not environment.is_distributed():
        return tensor
    buffer = tensor.to(_comm_device(tensor.device), copy=True).contiguous()
    dist.broadcast(buffer, src=0)
    return buffer.to(tensor.device)


def share_random_state() -> None:
    """Give every rank rank 0's random states (Python, numpy, torch; and this GPU's).

    Shuffles that draw from the global generators (``Dataset.shuffle`` without a seed, a
    generator using numpy) then produce the same order on every rank, which sharding by
    batch relies on. ``fit`` then splits the input pipeline's torch stream off
    (:func:`tapefit.utils.random.split_input_stream`), so dropout masks differ per rank.
    """
    if not environment.is_distributed():
        return
    torch.set_rng_state(same_on_all_ranks(torch.get_rng_state()))
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.set_rng_state(same_on_all_ranks(torch.cuda.get_rng_state()))
    name, keys, pos, has_gauss, cached = np.random.get_state()
    ints = same_on_all_ranks(torch.from_numpy(np.append(keys.astype(np.int64), [pos, has_gauss])))
    cached = float(same_on_all_ranks(torch.tensor([cached], dtype=torch.float64)))
    ints_np = ints.numpy()
    np.random.set_state((name, ints_np[:-2].astype(np.uint32), int(ints_np[-2]), int(ints_np[-1]), cached))
    version, state, gauss = random.getstate()
    gauss_code = torch.tensor([0.0 if gauss is None else 1.0, gauss or 0.0], dtype=torch.float64)
    state = same_on_all_ranks(torch.tensor(state, dtype=torch.int64)).tolist()
    gauss_code = same_on_all_ranks(gauss_code).tolist()
    random.setstate((version, tuple(state), gauss_code[1] if gauss_code[0] else None))


class BatchSharder:
    """Cuts this rank's piece out of each global batch, and remembers where its rows came from.

    Args:
        rank: This process's rank.
        world: The number of ranks.
        drop_remainder: ``True`` for training (equal pieces of ``rows // world``); ``False`` for
            evaluation and prediction (pieces that cover every row).

    Example:
        >>> s = BatchSharder(rank=1, world=2, drop_remainder=False)
        >>> s.span(5), BatchSharder(1, 2, drop_remainder=True).span(5)
        ((3, 5), (2, 4))
    """

    def __init__(self, rank: int, world: int, drop_remainder: bool):
        if not 0 <= rank < world:
            raise ValueError(f"rank must be in [0, {world}), got {rank}.")
        self.rank = rank
        self.world = world
        self.drop_remainder = drop_remainder
        self.forbid_empty = False  # FSDP: every rank must run every forward (it gathers the weights)
        self.positions: list[tuple[int, int]] = []  # global [start, stop) of the rows yielded this pass
        self._offset = 0

    def span(self, rows: int) -> tuple[int, int]:
        """``[start, stop)`` of this rank's piece of a global batch of ``rows`` rows."""
        if self.drop_remainder:
            per = rows // self.world
            return self.rank * per, (self.rank + 1) * per
        base, extra = divmod(rows, self.world)
        start = self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def start_pass(self) -> None:
        self.positions = []
        self._offset = 0

    def record(self, global_start: int, rows: int) -> tuple[int, int]:
        """This rank's span of the global batch at ``global_start``; remembers its global rows."""
        start, stop = self.span(rows)
        if self.forbid_empty and stop == start:
            raise ValueError(
                f"A batch of {rows} rows cannot give every one of the {self.world} processes a row, "
                "which sharded (FSDP) models need: use batches of at least that many rows "
                "(e.g. drop or pad a short last batch)."
            )
        if stop > start:
            self.positions.append((global_start + start, global_start + stop))
        return start, stop

    def pieces(self, batches: Iterable[Any]) -> Iterator[Any]:
        """This rank's piece of every batch of ``batches`` (batches whose piece is empty are skipped)."""
        self.start_pass()
        with input_stream():
            it = iter(batches)
        while True:
            with input_stream():
                batch = next(it, _END)
            if batch is _END:
                return
            first = _leaves(batch)
            if not first:
                raise ValueError("A distributed batch must hold at least one array or tensor.")
            rows = len(first[0])
            if self.drop_remainder and self._offset == 0 and rows % self.world:
                raise ValueError(
                    f"The dataset's batches hold {rows} rows, which do not divide evenly among the "
                    f"{self.world} processes: each batch is a global batch, so batch the data by a "
                    f"multiple of {self.world}."
                )
            start, stop = self.record(self._offset, rows)
            self._offset += rows
            if stop > start:
                yield _map(lambda t, a=start, b=stop: t[a:b], batch)

    def global_indices(self) -> torch.Tensor:
        """The global row index of each row this rank produced in the last pass, in order."""
        if not self.positions:
            return torch.zeros(0, dtype=torch.int64)
        return torch.cat([torch.arange(a, b) for a, b in self.positions])


class DistributedBatches:
    """This rank's piece of every batch of a batched Dataset, DataLoader or re-iterable.

    Made by :func:`distribute_dataset`. Iterating it iterates the underlying data (each rank
    reads every batch, in the same order, and keeps its piece), so shuffled pipelines must
    draw the same order on every rank: give ``Dataset.shuffle`` a ``seed`` or seed every rank
    alike (``fit`` shares rank 0's random state for you).
    """

    def __init__(self, data: Any, drop_remainder: bool = True):
        self.data = data
        self._sharder = BatchSharder(environment.rank(), environment.world_size(), drop_remainder)

    def __iter__(self) -> Iterator[Any]:
        return self._sharder.pieces(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def state_dict(self) -> dict[str, int]:
        getter = getattr(self.data, "state_dict", None)
        return dict(getter()) if callable(getter) else {}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self.data.load_state_dict(state)


def distribute_dataset(data: Any, drop_remainder: bool = True) -> DistributedBatches:
    """Split each batch of a batched ``Dataset`` / ``DataLoader`` among the ranks (for custom loops).

    Each element of ``data`` is a *global* batch; this rank gets its contiguous piece of
    every one. With ``drop_remainder=True`` (training) the pieces are equal, so averaging
    the ranks' gradients gives the global batch's gradient; with ``False`` (evaluation) every
    row goes to exactly one rank. On one process it yields the batches unchanged.

    Example:
        >>> import tapefit
        >>> ds = tapefit.data.Dataset.range(8).batch(4)
        >>> [b.tolist() for b in distribute_dataset(ds)]  # one process: everything
        [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    return DistributedBatches(data, drop_remainder)


def gather_rows(local: Any, indices: torch.Tensor) -> Any:
    """Every rank's rows of ``local`` (a structure of ``[rows, ...]`` tensors), on every rank, in order.

    ``indices`` gives the global position of each local row (:meth:`BatchSharder.global_indices`).
    Ranks may hold different numbers of rows; none may hold zero.
    """
    world = environment.world_size()
    leaves = _leaves(local)
    device = leaves[0].device if leaves else torch.device("cpu")
    comm = _comm_device(device)
    counts = [torch.zeros(1, dtype=torch.int64, device=comm) for _ in range(world)]
    dist.all_gather(counts, torch.tensor([len(indices)], dtype=torch.int64, device=comm))
    sizes = [int(c) for c in counts]
    empty = [r for r, n in enumerate(sizes) if n == 0]
    if empty:
        raise ValueError(
            f"predict: rank(s) {empty} received no rows ({sum(sizes)} rows over {world} processes). "
            "Give at least one row per process, or predict on one process."
        )
    longest = max(sizes)

    def gather(tensor: torch.Tensor) -> torch.Tensor:
        padded = torch.zeros((longest, *tensor.shape[1:]), dtype=tensor.dtype, device=comm)
        padded[: len(tensor)] = tensor.to(comm)
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded)
        return torch.cat([p[:n] for p, n in zip(parts, sizes)])

    order = gather(indices.to(torch.int64))
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(len(order), device=order.device)
    return _map(lambda t: gather(t.detach())[inverse].to(device), local)
