"""Applying user functions to elements: tf's argument unpacking, the batch probe, thread pools.

``map`` runs a function once per *batch* instead of once per element when the function is
batch-polymorphic. That is decided by a probe on a few rows spread over the data: the function
is applied to each row twice (a function whose two answers differ is random and stays
per element) and once to the stacked rows; if the batched answer equals the stacked per-row
answers in structure, shape, dtype and value, the batched path is used from then on.
A probe cannot prove a function polymorphic: a function that only differs on rows the probe
did not see would be misjudged, so the probe picks rows far apart.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch

from ._rows import Chunk, Rows
from ._structure import RaggedError, allclose, normalize, stack

_PROBE_ROWS = 8
_GROUP = 16
_THREAD_MIN_SECONDS = 2e-4


def call(fn: Callable, element: Any) -> Any:
    """``fn`` applied tf-style: a tuple element is unpacked into positional arguments.

    Runs without autograd (thread-local, so also inside worker threads): dataset functions
    are not part of any model's graph, and cached outputs must not keep graphs alive.
    """
    with torch.no_grad():
        out = fn(*element) if type(element) is tuple else fn(element)
    return normalize(out)


def num_workers(num_parallel_calls: int | None) -> int:
    """Threads for a per-element map: 0 means run in the calling thread."""
    if num_parallel_calls is None or num_parallel_calls == 1:
        return 0
    if num_parallel_calls == -1:
        return min(os.cpu_count() or 1, 8)
    return int(num_parallel_calls)


def ordered_map(fn: Callable[[Any], Any], items: Iterable[Any], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` on up to ``workers`` threads, in input order, a bounded window ahead.

    The first few items run in the calling thread and are timed: when ``fn`` takes less than
    ``_THREAD_MIN_SECONDS`` per item, threads would cost more than they save (hand-offs and
    GIL contention), so the whole pass stays in the calling thread. Otherwise items go to the
    threads in small groups. Torch kernels and image decoders release the GIL, so such
    functions overlap; pure-Python ones do not.
    """
    source = iter(items)
    if workers <= 1:
        yield from map(fn, source)
        return
    start = time.perf_counter()
    first = [fn(item) for item in itertools.islice(source, _GROUP)]
    per_item = (time.perf_counter() - start) / max(len(first), 1)
    yield from first
    if per_item < _THREAD_MIN_SECONDS:
        yield from map(fn, source)
        return

    def run(group: list) -> list:
        return [fn(item) for item in group]

    with ThreadPoolExecutor(workers, thread_name_prefix="tapefit-map") as pool:
        window: deque = deque()
        try:
            while group := list(itertools.islice(source, _GROUP)):
                window.append(pool.submit(run, group))
                if len(window) >= 2 * workers:
                    yield from window.popleft().result()
            while window:
                yield from window.popleft().result()
        finally:
            for future in window:
                future.cancel()


def is_batch_polymorphic(fn: Callable, rows: Rows) -> bool:
    """The probe described in the module docstring.

    It leaves every global random state as it found it: a random ``fn`` drawing here would
    otherwise shift the draws of the pass that triggered the probe (the shuffle order among
    them), and a run resumed mid-training, which probes in a later epoch, would diverge.
    """
    if rows.n == 0:
        return False
    from ..utils.random import get_rng_state, set_rng_state

    state = get_rng_state()
    try:
        return _probe(fn, rows)
    finally:
        set_rng_state(state)


def _probe(fn: Callable, rows: Rows) -> bool:
    picks = torch.linspace(0, rows.n - 1, min(rows.n, _PROBE_ROWS)).round().to(torch.int64)
    picks = picks.clamp_(0, rows.n - 1).unique()
    inputs = list(rows.elements(picks))
    first = [call(fn, e) for e in inputs]
    second = [call(fn, e) for e in inputs]
    if not all(allclose(a, b) for a, b in zip(first, second)):
        return False
    try:
        expected = stack(first)
    except RaggedError:
        return False
    try:
        batched = call(fn, rows.batch(picks))
    except Exception:  # any failure on a batch just means "not batch-polymorphic"
        return False
    return allclose(expected, batched)


class MappedRows(Rows):
    """``fn`` over the rows of another source, per batch or per element."""

    def __init__(self, source: Rows, fn: Callable, batched: bool, workers: int):
        self.source, self.fn, self.batched, self.workers = source, fn, batched, workers
        self.n = source.n
        self.dense = batched and source.dense

    def batch(self, chunk: Chunk) -> Any:
        if self.batched:
            return call(self.fn, self.source.batch(chunk))
        return stack(list(self.elements(chunk)))

    def elements(self, chunk: Chunk) -> Iterator[Any]:
        if self.batched:
            return super().elements(chunk)
        fn = self.fn
        return ordered_map(lambda e: call(fn, e), self.source.elements(chunk), self.workers)
