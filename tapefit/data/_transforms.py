"""Transformation nodes: map, filter, batch, unbatch, shuffle, repeat, take, skip, shard, cache,
prefetch. Each keeps the index fast path (a :class:`~._rows.Plan`) where its input has one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from ._map import MappedRows, call, is_batch_polymorphic, ordered_map
from ._node import Node
from ._rows import Plan, TensorRows, shard_stream, skip_stream, split, take_stream
from ._shuffle import ShuffleSeeds, permute_pass, windowed_index_shuffle, windowed_shuffle
from ._structure import RaggedError, flatten, map_structure, stack, unstack
from .spec import INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, spec_of

_CACHE_CHUNK = 4096


class Map(Node):
    """``map(fn)``: per batch when the probe finds ``fn`` batch-polymorphic, else per element."""

    def __init__(self, up: Node, fn: Callable, workers: int):
        self.up, self.fn, self.workers = up, fn, workers
        self.batched: bool | None = None

    def plan(self) -> Plan | None:
        up = self.up.plan()
        if up is None:
            return None
        if self.batched is None:
            self.batched = is_batch_polymorphic(self.fn, up.rows)
        return Plan(
            MappedRows(up.rows, self.fn, self.batched, self.workers), up.stream, up.cardinality, up.identity
        )

    def generic(self) -> Iterator[Any]:
        fn = self.fn
        return ordered_map(lambda e: call(fn, e), self.up, self.workers)

    def cardinality(self) -> int:
        return self.up.cardinality()

    def spec(self) -> Any:
        """Read off ``fn`` applied to the first input element: one call, no batch probe (the
        file cache asks for it and may never iterate this node)."""
        return spec_of(first_mapped(self))


def first_mapped(node: Node) -> Any:
    """The first element of ``node``, computing a chain of maps on one element only."""
    if isinstance(node, Map):
        return call(node.fn, first_mapped(node.up))
    for element in node:
        return element
    raise ValueError(
        "element_spec: this dataset is empty, so the structure of its elements cannot be inferred."
    )


class Filter(Node):
    """``filter(predicate)``: the elements for which ``predicate`` returns a scalar ``True``."""

    def __init__(self, up: Node, predicate: Callable):
        self.up, self.predicate = up, predicate

    def generic(self) -> Iterator[Any]:
        for element in self.up:
            keep = call(self.predicate, element)
            if not isinstance(keep, torch.Tensor) or keep.dtype != torch.bool or keep.numel() != 1:
                got = (
                    f"a {keep.dtype} tensor of shape {tuple(keep.shape)}"
                    if isinstance(keep, torch.Tensor)
                    else (type(keep).__name__)
                )
                raise TypeError(f"filter: the predicate must return a scalar boolean, got {got}.")
            if keep:
                yield element

    def cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    def spec(self) -> Any:
        return self.up.spec()


class Batch(Node):
    """``batch(size, drop_remainder)``: consecutive elements stacked; gathers by index on a plan."""

    def __init__(self, up: Node, size: int, drop_remainder: bool):
        self.up, self.size, self.drop_remainder = up, size, drop_remainder

    def __iter__(self) -> Iterator[Any]:
        plan = self.up.plan()
        if plan is not None:
            return plan.batches(self.size, self.drop_remainder)
        return self.generic()

    def generic(self) -> Iterator[Any]:
        pending: list = []
        for element in self.up:
            pending.append(element)
            if len(pending) == self.size:
                yield self._combine(pending)
                pending = []
        if pending and not self.drop_remainder:
            yield self._combine(pending)

    def _combine(self, elements: list) -> Any:
        """One batch made of ``elements`` (``padded_batch`` pads instead of stacking)."""
        return stack(elements)

    def cardinality(self) -> int:
        n = self.up.cardinality()
        if n < 0:
            return n
        return n // self.size if self.drop_remainder else -(-n // self.size)

    def spec(self) -> Any:
        size = self.size if self.drop_remainder else None
        return map_structure(lambda s: s.with_batch(size), self.up.spec())


class Unbatch(Node):
    """``unbatch()``: each element split along its first dimension."""

    def __init__(self, up: Node):
        self.up = up

    def generic(self) -> Iterator[Any]:
        for element in self.up:
            yield from unstack(element)

    def cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    def spec(self) -> Any:
        return map_structure(lambda s: s.without_batch(), self.up.spec())


class Shuffle(Node):
    """``shuffle(buffer_size, seed, reshuffle_each_iteration)`` with tf's buffer semantics.

    A buffer at least as large as one pass is a uniform permutation of that pass (drawn in
    one ``randperm``); a smaller buffer is tf's windowed shuffle.
    """

    def __init__(self, up: Node, buffer_size: int, seed: int | None, reshuffle_each_iteration: bool):
        self.up, self.buffer_size = up, buffer_size
        self.seeds = ShuffleSeeds(seed, reshuffle_each_iteration)

    def plan(self) -> Plan | None:
        up = self.up.plan()
        if up is None:
            return None

        def stream() -> Iterator:
            gen = self.seeds.next_generator()
            if 0 <= up.cardinality <= self.buffer_size:
                yield permute_pass(up.stream(), gen)
            else:
                yield from windowed_index_shuffle(up.stream(), self.buffer_size, gen)

        return Plan(up.rows, stream, up.cardinality)

    def generic(self) -> Iterator[Any]:
        return windowed_shuffle(self.up, self.buffer_size, self.seeds.next_generator())

    def state(self) -> dict[str, int]:
        frozen = self.seeds._frozen_seed
        return {"epoch": self.seeds.epoch, "frozen_seed": -1 if frozen is None else frozen}

    def load_state(self, state: dict[str, int]) -> None:
        self.seeds.epoch = int(state["epoch"])
        self.seeds._frozen_seed = None if int(state["frozen_seed"]) < 0 else int(state["frozen_seed"])

    def cardinality(self) -> int:
        return self.up.cardinality()

    def spec(self) -> Any:
        return self.up.spec()


class Repeat(Node):
    """``repeat(count)``: ``count`` passes (forever for ``None``/-1); stops if a pass is empty."""

    def __init__(self, up: Node, count: int):
        self.up, self.count = up, count

    def _passes(self) -> Iterator[int]:
        return itertools.count() if self.count < 0 else iter(range(self.count))

    def plan(self) -> Plan | None:
        up = self.up.plan()
        if up is None:
            return None

        def stream() -> Iterator:
            for _ in self._passes():
                empty = True
                for chunk in up.stream():
                    if len(chunk):
                        empty = False
                        yield chunk
                if empty:
                    return

        return Plan(up.rows, stream, _repeat_cardinality(up.cardinality, self.count))

    def generic(self) -> Iterator[Any]:
        for _ in self._passes():
            empty = True
            for element in self.up:
                empty = False
                yield element
            if empty:
                return

    def cardinality(self) -> int:
        return _repeat_cardinality(self.up.cardinality(), self.count)

    def spec(self) -> Any:
        return self.up.spec()


def _repeat_cardinality(n: int, count: int) -> int:
    if count < 0:
        return 0 if n == 0 else INFINITE_CARDINALITY
    if count == 0 or n == 0:
        return 0
    return n if n < 0 else n * count


class _Slice(Node):
    """Shared shape of take/skip/shard: a rewrite of the index stream or of the element stream."""

    def __init__(self, up: Node):
        self.up = up

    def _stream(self, stream: Iterator) -> Iterator:
        raise NotImplementedError

    def _count(self, n: int) -> int:
        raise NotImplementedError

    def plan(self) -> Plan | None:
        up = self.up.plan()
        if up is None:
            return None
        return Plan(up.rows, lambda: self._stream(up.stream()), self._count(up.cardinality))

    def cardinality(self) -> int:
        return self._count(self.up.cardinality())

    def spec(self) -> Any:
        return self.up.spec()


class Take(_Slice):
    """``take(count)``: the first ``count`` elements (all of them for -1)."""

    def __init__(self, up: Node, count: int):
        super().__init__(up)
        self.count = count

    def _stream(self, stream: Iterator) -> Iterator:
        return stream if self.count < 0 else take_stream(stream, self.count)

    def generic(self) -> Iterator[Any]:
        return iter(self.up) if self.count < 0 else itertools.islice(self.up, self.count)

    def _count(self, n: int) -> int:
        if self.count < 0:
            return n
        if n == INFINITE_CARDINALITY:
            return self.count
        return n if n == UNKNOWN_CARDINALITY else min(n, self.count)


class Skip(_Slice):
    """``skip(count)``: all but the first ``count`` elements (none of them for -1)."""

    def __init__(self, up: Node, count: int):
        super().__init__(up)
        self.count = count

    def _stream(self, stream: Iterator) -> Iterator:
        if self.count < 0:
            return iter(())
        return skip_stream(stream, self.count)

    def generic(self) -> Iterator[Any]:
        if self.count >= 0:
            yield from itertools.islice(self.up, self.count, None)
            return
        for _ in self.up:
            pass

    def _count(self, n: int) -> int:
        if n < 0:
            return n
        return 0 if self.count < 0 else max(0, n - self.count)


class Shard(_Slice):
    """``shard(num_shards, index)``: every ``num_shards``-th element, starting at ``index``."""

    def __init__(self, up: Node, num_shards: int, index: int):
        super().__init__(up)
        self.num_shards, self.index = num_shards, index

    def _stream(self, stream: Iterator) -> Iterator:
        return shard_stream(stream, self.num_shards, self.index)

    def generic(self) -> Iterator[Any]:
        return itertools.islice(self.up, self.index, None, self.num_shards)

    def _count(self, n: int) -> int:
        if n < 0:
            return n
        return n // self.num_shards + (1 if self.index < n % self.num_shards else 0)


class Cache(Node):
    """``cache()``: the first complete pass is kept in memory and replayed afterwards.

    Over an input with a plan (in-memory data, batch-polymorphic maps) the whole input is
    materialised into tensors before the first element is returned, so every pass, the first
    included, is a pure index gather. Otherwise the first pass is recorded as it streams (a
    pass that stops early is discarded, as in tf.data) and, when its elements stack, stored as
    tensors so later passes take the fast path too.
    """

    def __init__(self, up: Node):
        self.up = up
        self.rows: TensorRows | None = None
        self.elements: list | None = None
        self._tried_plan = False

    def plan(self) -> Plan | None:
        if self.rows is None and self.elements is None and not self._tried_plan:
            self._tried_plan = True
            up = self.up.plan()
            if up is not None and up.cardinality >= 0:
                self.rows, self.elements = _materialise(up)
        return Plan.over(self.rows) if self.rows is not None else None

    def generic(self) -> Iterator[Any]:
        if self.elements is not None:
            yield from self.elements
            return
        recorded = []
        for element in self.up:
            recorded.append(element)
            yield element
        self.rows = _rows_of(recorded)
        self.elements = None if self.rows is not None else recorded

    def cardinality(self) -> int:
        return self.up.cardinality()

    def spec(self) -> Any:
        return self.up.spec()


def _materialise(plan: Plan) -> tuple[TensorRows | None, list | None]:
    """One pass of ``plan`` kept in memory: as tensors ``(rows, None)`` when its elements stack,
    else as a list ``(None, elements)``. Dense rows are gathered in large chunks and joined."""
    rows = plan.rows
    if plan.identity and isinstance(rows, TensorRows):
        return rows, None
    if not rows.dense:
        elements = [e for chunk in plan.stream() for e in rows.elements(chunk)]
        stacked = _rows_of(elements)
        return (stacked, None) if stacked is not None else (None, elements)
    batches = [rows.batch(sub) for chunk in plan.stream() for sub in split(chunk, _CACHE_CHUNK)]
    if not batches:
        return None, []
    flats = [flatten(b) for b in batches]
    tree = flats[0][1]
    if all(t == tree for _, t in flats):
        try:
            return TensorRows([_concat_leaves(col) for col in zip(*(f for f, _ in flats))], tree), None
        except RaggedError:
            pass
    return None, [e for b in batches for e in unstack(b)]


def _concat_leaves(column: tuple) -> Any:
    try:
        if isinstance(column[0], torch.Tensor):
            return torch.cat(column)
        return np.concatenate(column)
    except (RuntimeError, TypeError, ValueError) as err:
        raise RaggedError(str(err)) from err


def _rows_of(elements: list) -> TensorRows | None:
    if not elements:
        return None
    try:
        stacked = stack(elements)
    except RaggedError:
        return None
    leaves, tree = flatten(stacked)
    return TensorRows(leaves, tree)


class Prefetch(Node):
    """``prefetch(n)``: a pass-through (see ``Dataset.prefetch`` for why)."""

    def __init__(self, up: Node):
        self.up = up

    def __iter__(self) -> Iterator[Any]:
        return iter(self.up)

    def plan(self) -> Plan | None:
        return self.up.plan()

    def cardinality(self) -> int:
        return self.up.cardinality()

    def spec(self) -> Any:
        return self.up.spec()
