"""The index fast path: random-access rows plus a stream of index chunks.

A :class:`Plan` says "this dataset is ``rows`` visited in the order of ``stream()``". Sources
held in memory have rows (a gather by index costs one ``index_select`` per leaf); ``map``,
``shuffle``, ``repeat``, ``take``, ``skip``, ``shard``, ``cache``, ``zip`` and ``concatenate``
keep a plan when their input has one, rewriting the rows or the index stream. ``batch`` then
gathers whole batches by index, with no per-element Python, and element-wise iteration
gathers chunks and splits them.

Index streams yield chunks: a ``range`` with step 1 (contiguous rows) or a 1-D int64 tensor (on
the CPU, or on the device that holds the rows when they are placed there).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._structure import Tree, flatten, unstack

Chunk = range | torch.Tensor

_ELEMENT_CHUNK = 512


class Rows:
    """``n`` rows that can be fetched by index, as one batched element or as elements.

    ``dense`` rows always batch (their rows share shapes); others may hold ragged elements.
    """

    n: int
    dense = True

    def batch(self, chunk: Chunk) -> Any:
        """The rows in ``chunk`` as one element whose leaves have a leading batch dimension."""
        raise NotImplementedError

    def elements(self, chunk: Chunk) -> Iterator[Any]:
        """The rows in ``chunk``, one element at a time (never views of the source storage)."""
        for sub in split(chunk, _ELEMENT_CHUNK):
            yield from unstack(self.batch(sub))


class TensorRows(Rows):
    """Rows of in-memory leaves (tensors and numpy string arrays) sharing a first dimension.

    Gathers always copy (``index_select`` or a sliced ``clone``), so an element handed out is
    never a view that a caller's in-place op could use to corrupt the dataset.
    """

    def __init__(self, leaves: Sequence[Any], tree: Tree):
        self.leaves = list(leaves)
        self.tree = tree
        self.n = len(self.leaves[0])
        self._all_cpu_tensors = all(
            isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in self.leaves
        )

    def batch(self, chunk: Chunk) -> Any:
        if type(chunk) is range:
            a, b = chunk.start, chunk.stop
            return self.tree.unflatten([_slice_copy(leaf, a, b) for leaf in self.leaves])
        if self._all_cpu_tensors:
            return self.tree.unflatten([leaf.index_select(0, chunk) for leaf in self.leaves])
        return self.tree.unflatten([_gather(leaf, chunk) for leaf in self.leaves])


def _slice_copy(leaf: Any, a: int, b: int) -> Any:
    return leaf[a:b].clone() if isinstance(leaf, torch.Tensor) else leaf[a:b].copy()


def _gather(leaf: Any, idx: torch.Tensor) -> Any:
    if isinstance(leaf, np.ndarray):
        return leaf[idx.numpy()]
    if leaf.device != idx.device:
        idx = idx.to(leaf.device, non_blocking=True)
    return leaf.index_select(0, idx)


class RangeRows(Rows):
    """The values ``start + i * step``, computed on demand (``Dataset.range`` holds no memory)."""

    def __init__(self, start: int, step: int, n: int, dtype: torch.dtype):
        self.start, self.step, self.n, self.dtype = start, step, n, dtype

    def batch(self, chunk: Chunk) -> torch.Tensor:
        if type(chunk) is range:
            first = self.start + chunk.start * self.step
            return torch.arange(first, first + len(chunk) * self.step, self.step, dtype=torch.int64).to(
                self.dtype
            )
        return (chunk * self.step + self.start).to(self.dtype)


class ZipRows(Rows):
    """Rows of several row sources read at the same index (``Dataset.zip`` of plain sources)."""

    def __init__(self, parts: Sequence[Rows], tree: Tree):
        self.parts, self.tree = list(parts), tree
        self.n = min(p.n for p in self.parts)
        self.dense = all(p.dense for p in self.parts)

    def batch(self, chunk: Chunk) -> Any:
        return self.tree.unflatten([p.batch(chunk) for p in self.parts])

    def elements(self, chunk: Chunk) -> Iterator[Any]:
        return map(self.tree.unflatten, zip(*(p.elements(chunk) for p in self.parts)))


class ConcatRows(Rows):
    """The rows of ``first`` followed by those of ``second``: ``concatenate`` of two in-memory
    sources whose components agree in structure, dtype and row shape (see :func:`can_concat`)."""

    def __init__(self, first: TensorRows, second: TensorRows):
        self.first, self.second = first, second
        self.n = first.n + second.n

    def batch(self, chunk: Chunk) -> Any:
        n1 = self.first.n
        if type(chunk) is range and (chunk.stop <= n1 or chunk.start >= n1):
            if chunk.stop <= n1:
                return self.first.batch(chunk)
            return self.second.batch(range(chunk.start - n1, chunk.stop - n1))
        idx = as_index(chunk)
        in_first = idx < n1
        a = flatten(self.first.batch(idx[in_first]))[0]
        b = flatten(self.second.batch(idx[~in_first] - n1))[0]
        # Rows came back first-part-then-second-part; put them in the order asked for.
        order = torch.cat([in_first.nonzero().flatten(), (~in_first).nonzero().flatten()]).argsort()
        return self.first.tree.unflatten([_reorder(_join(x, y), order) for x, y in zip(a, b)])


def can_concat(first: Rows, second: Rows) -> bool:
    if not (isinstance(first, TensorRows) and isinstance(second, TensorRows)) or first.tree != second.tree:
        return False
    for a, b in zip(first.leaves, second.leaves):
        if isinstance(a, torch.Tensor) != isinstance(b, torch.Tensor) or a.shape[1:] != b.shape[1:]:
            return False
        if isinstance(a, torch.Tensor) and (a.dtype != b.dtype or a.device != b.device):
            return False
    return True


def _join(a: Any, b: Any) -> Any:
    return torch.cat([a, b]) if isinstance(a, torch.Tensor) else np.concatenate([a, b])


def _reorder(leaf: Any, order: torch.Tensor) -> Any:
    if isinstance(leaf, np.ndarray):
        return leaf[order.numpy()]
    return leaf.index_select(0, order.to(leaf.device))


@dataclass(frozen=True)
class Plan:
    """A dataset expressed as ``rows`` visited in the order of one pass of ``stream()``.

    ``cardinality`` is the number of indices one pass yields (or INFINITE). ``identity`` means a
    pass is exactly ``range(0, rows.n)``: plans that zip or cache may rely on it.
    """

    rows: Rows
    stream: Callable[[], Iterator[Chunk]]
    cardinality: int
    identity: bool = False

    @classmethod
    def over(cls, rows: Rows) -> Plan:
        n = rows.n
        return cls(rows, lambda: iter((range(0, n),) if n else ()), n, identity=True)

    def elements(self) -> Iterator[Any]:
        rows = self.rows
        for chunk in self.stream():
            yield from rows.elements(chunk)

    def batches(self, size: int, drop_remainder: bool) -> Iterator[Any]:
        """Whole batches gathered by index; batches span chunk (and so epoch) boundaries."""
        gather = self.rows.batch
        carry: Chunk | None = None
        for chunk in self.stream():
            if carry is not None:
                need = size - len(carry)
                carry = concat((carry, chunk[:need]))
                chunk = chunk[need:]
                if len(carry) < size:
                    continue
                yield gather(carry)
                carry = None
            n = len(chunk)
            full = n - n % size
            for start in range(0, full, size):
                yield gather(chunk[start : start + size])
            if full < n:
                carry = chunk[full:]
        if carry is not None and not drop_remainder:
            yield gather(carry)


def as_index(chunk: Chunk, device: torch.device | None = None) -> torch.Tensor:
    if type(chunk) is range:
        return torch.arange(chunk.start, chunk.stop, dtype=torch.int64, device=device)
    return chunk


def concat(chunks: Sequence[Chunk]) -> Chunk:
    chunks = [c for c in chunks if len(c)]
    if not chunks:
        return range(0)
    if all(type(c) is range for c in chunks) and all(a.stop == b.start for a, b in zip(chunks, chunks[1:])):
        return range(chunks[0].start, chunks[-1].stop)
    if len(chunks) == 1:
        return chunks[0]
    device = next((c.device for c in chunks if type(c) is not range), None)  # placed: the device's
    return torch.cat([as_index(c, device) for c in chunks])


def split(chunk: Chunk, size: int) -> Iterator[Chunk]:
    n = len(chunk)
    if n <= size:
        if n:
            yield chunk
        return
    for start in range(0, n, size):
        yield chunk[start : start + size]


def take_stream(stream: Iterator[Chunk], count: int) -> Iterator[Chunk]:
    """The first ``count`` indices of ``stream``."""
    if count <= 0:
        return
    for chunk in stream:
        if len(chunk) >= count:
            yield chunk[:count]
            return
        count -= len(chunk)
        yield chunk


def skip_stream(stream: Iterator[Chunk], count: int) -> Iterator[Chunk]:
    """``stream`` without its first ``count`` indices."""
    for chunk in stream:
        if count >= len(chunk):
            count -= len(chunk)
            continue
        yield chunk[count:] if count else chunk
        count = 0


def shard_stream(stream: Iterator[Chunk], num_shards: int, index: int) -> Iterator[Chunk]:
    """The indices at positions ``index, index + num_shards, ...`` of ``stream``."""
    position = 0
    for chunk in stream:
        first = (index - position) % num_shards
        picked = as_index(chunk)[first::num_shards].contiguous()
        position += len(chunk)
        if len(picked):
            yield picked
