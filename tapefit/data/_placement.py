"""Batches of an in-memory dataset gathered on the device that trains on them.

``fit`` moves in-memory arrays to the device once and gathers every batch there. This module
does the same for a ``Dataset`` whose batches are index gathers of in-memory rows:
``from_tensor_slices`` (and ``zip`` of such sources, or a ``cache`` after maps), then any of
``shuffle``, ``repeat``, ``take``, ``skip``, ``shard``, then ``batch`` and ``prefetch``. The rows
are copied to the device once and kept with the dataset; each pass's index stream goes over
once per chunk (one permutation per shuffled pass); every batch is then one ``index_select``
per leaf on the device, with no host-to-device copy. Pipelines with maps that are not cached,
or with transformations after ``batch`` (other than ``prefetch``), run as written, on the host,
and their batches are copied over one by one.

The copy is taken by the first ``fit`` on the device and lives as long as the dataset: later
changes to the arrays the dataset was built from are not seen (tf.data copies them when the
dataset is built).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ._rows import Chunk, Plan, Rows, TensorRows, ZipRows
from ._transforms import Batch, Prefetch

__all__ = ["device_batches"]


class Placed:
    """The batches of one dataset on one device: iterable once per pass, like the dataset.

    ``rows`` holds the placed leaves as one structure (no copy), e.g. to check labels once.
    """

    def __init__(self, plan: Plan, rows: Rows, batch: Batch, device: torch.device):
        self._plan, self._batch, self._device = plan, batch, device
        self.rows = rows

    def __iter__(self) -> Iterator[Any]:
        stream, device = self._plan.stream, self._device

        def placed_stream() -> Iterator[Chunk]:
            for chunk in stream():
                yield chunk if type(chunk) is range else chunk.to(device, non_blocking=True)

        plan = Plan(self.rows, placed_stream, self._plan.cardinality, self._plan.identity)
        return plan.batches(self._batch.size, self._batch.drop_remainder)

    def whole(self) -> Any:
        """Every row as one element (the placed tensors themselves, not a copy)."""
        return _whole(self.rows)

    def host_whole(self) -> Any:
        """Every row as one element, from the rows in host memory (not a copy)."""
        return _whole(self._plan.rows)


def device_batches(dataset: Any, device: torch.device, max_bytes: float) -> Placed | None:
    """``dataset``'s batches gathered on ``device``, or ``None`` when its batches are not index
    gathers of in-memory tensors or those tensors exceed ``max_bytes``."""
    node = dataset._node
    while isinstance(node, Prefetch):
        node = node.up
    if type(node) is not Batch:
        return None
    plan = node.up.plan()
    size = None if plan is None else _nbytes(plan.rows)
    if size is None:
        return None
    if device not in plan.rows.__dict__.get("_placed", {}) and size > max_bytes:
        return None  # (placed by an earlier fit: kept, whatever memory is free now)
    return Placed(plan, _placed(plan.rows, device), node, device)


def _nbytes(rows: Rows) -> int | None:
    """Bytes of in-memory tensor rows; ``None`` for rows that are computed or hold other data."""
    if type(rows) is TensorRows:
        if not all(isinstance(leaf, torch.Tensor) for leaf in rows.leaves):
            return None
        return sum(leaf.numel() * leaf.element_size() for leaf in rows.leaves)
    if type(rows) is ZipRows:
        sizes = [_nbytes(p) for p in rows.parts]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]
    return None


def _placed(rows: Rows, device: torch.device) -> Rows:
    """``rows`` with their tensors on ``device``, copied once and kept on ``rows``."""
    cache: dict[torch.device, Rows] = rows.__dict__.setdefault("_placed", {})
    if device not in cache:
        if type(rows) is ZipRows:
            cache[device] = ZipRows([_placed(p, device) for p in rows.parts], rows.tree)
        else:
            assert type(rows) is TensorRows
            cache[device] = TensorRows([leaf.to(device) for leaf in rows.leaves], rows.tree)
    return cache[device]


def _whole(rows: Rows) -> Any:
    if type(rows) is ZipRows:
        return rows.tree.unflatten([_whole(p) for p in rows.parts])
    assert type(rows) is TensorRows
    return rows.tree.unflatten(list(rows.leaves))
