"""``interleave``: map every input element to a dataset and take their elements in turns.

The order follows tf.data's ``InterleaveDataset`` exactly: ``cycle_length`` slots, visited in
turn; an empty slot takes the next input element (``map_func`` is called then) and is read at
once; a slot yields up to ``block_length`` elements before the turn passes on; a slot whose
dataset ends is emptied and the turn passes on. With ``num_parallel_calls`` worker threads
read ahead in each open slot's dataset; the order stays the same (tf's ``deterministic=True``).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch

from ._node import Node
from .spec import UNKNOWN_CARDINALITY

_READ_AHEAD = 16


def default_cycle_length(num_parallel_calls: int | None) -> int:
    """tf's default: the number of CPUs this process may run on; with ``num_parallel_calls`` n,
    at most n; with ``AUTOTUNE``, a third of the CPUs (tf also reads ahead two future slots)."""
    if hasattr(os, "sched_getaffinity"):
        cpus = max(1, len(os.sched_getaffinity(0)))
    else:
        cpus = os.cpu_count() or 1
    if num_parallel_calls is None:
        return cpus
    if num_parallel_calls == -1:
        return -(-cpus // 3)
    return min(int(num_parallel_calls), cpus)


class Interleave(Node):
    """The interleave node. Stateless: each pass maps the input afresh and starts a new cycle."""

    def __init__(
        self,
        up: Node,
        fn: Callable,
        as_node: Callable[[Any], Node],
        cycle_length: int,
        block_length: int,
        workers: int,
    ):
        self.up, self.fn, self.as_node = up, fn, as_node
        self.cycle_length, self.block_length, self.workers = cycle_length, block_length, workers

    def _open(self, element: Any) -> Node:
        with torch.no_grad():
            out = self.fn(*element) if type(element) is tuple else self.fn(element)
        return self.as_node(out)

    def generic(self) -> Iterator[Any]:
        return self._parallel() if self.workers > 1 else self._sequential()

    def _sequential(self) -> Iterator[Any]:
        source = iter(self.up)
        slots: list[Iterator | None] = [None] * self.cycle_length
        turn = taken = num_open = 0
        end_of_input = False
        while not end_of_input or num_open:
            slot = slots[turn]
            if slot is not None:
                try:
                    element = next(slot)
                except StopIteration:
                    slots[turn] = None
                    num_open -= 1
                    turn, taken = (turn + 1) % self.cycle_length, 0
                    continue
                taken += 1
                if taken == self.block_length:
                    turn, taken = (turn + 1) % self.cycle_length, 0
                yield element
            elif not end_of_input:
                try:
                    slots[turn] = iter(self._open(next(source)))
                    num_open += 1
                except StopIteration:
                    end_of_input = True
            else:
                turn, taken = (turn + 1) % self.cycle_length, 0

    def _parallel(self) -> Iterator[Any]:
        """:meth:`_sequential`'s order, while threads read ahead in every open slot."""
        workers = min(self.workers, self.cycle_length)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="tapefit-interleave")
        source = iter(self.up)
        slots: list[_Slot | None] = [None] * self.cycle_length
        turn = num_open = 0
        end_of_input = False
        try:
            while not end_of_input or num_open:
                slot = slots[turn]
                if slot is not None:
                    taken = 0
                    while taken < self.block_length and slot.ready(pool):
                        taken += 1
                        yield slot.buffer.popleft()
                    if taken < self.block_length:
                        slots[turn] = None
                        num_open -= 1
                    turn = (turn + 1) % self.cycle_length
                elif not end_of_input:
                    try:
                        slots[turn] = _Slot(iter(self._open(next(source))), pool, self.block_length)
                        num_open += 1
                    except StopIteration:
                        end_of_input = True
                else:
                    turn = (turn + 1) % self.cycle_length
        finally:
            for slot in slots:
                if slot is not None and slot.future is not None:
                    slot.future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def cardinality(self) -> int:
        return UNKNOWN_CARDINALITY

    def spec(self) -> Any:
        for element in self.up:
            return self._open(element).spec()
        raise ValueError(
            "element_spec: the input of interleave is empty, so `map_func` was never called and the "
            "structure of the elements cannot be inferred."
        )


class _Slot:
    """One open dataset of the cycle: elements read ahead by a worker thread, in order.

    At most one read is in flight per slot, so its iterator is never advanced by two threads
    at once. A read that fails keeps the elements read before the error, which is raised once
    they have been handed out, as the sequential order would.
    """

    def __init__(self, iterator: Iterator, pool: ThreadPoolExecutor, block_length: int):
        self.iterator = iterator
        self.buffer: deque = deque()
        self.count = max(block_length, _READ_AHEAD)
        self.ended = False
        self.error: BaseException | None = None
        self.future: Future | None = pool.submit(self._read)

    def _read(self) -> tuple[list, bool, BaseException | None]:
        out: list = []
        try:
            for _ in range(self.count):
                out.append(next(self.iterator))
        except StopIteration:
            return out, True, None
        except Exception as err:  # handed to the consumer thread, raised there in order
            return out, True, err
        return out, False, None

    def ready(self, pool: ThreadPoolExecutor) -> bool:
        """Whether an element is buffered, waiting for the read in flight if needed."""
        while not self.buffer:
            if self.future is None:
                if self.error is not None:
                    error, self.error = self.error, None
                    raise error
                return False
            out, self.ended, self.error = self.future.result()
            self.buffer.extend(out)
            self.future = None if self.ended else pool.submit(self._read)
        return True
