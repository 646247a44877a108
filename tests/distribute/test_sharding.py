"""Which rows each rank gets (checked on one process by giving the adapters a rank of 2 or 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit.distribute.sharding import BatchSharder, distribute_dataset
from tapefit.trainers.data_adapters import get_adapter


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_evaluation_pieces_cover_every_row_once_in_rank_order(world):
    for rows in range(0, 12):
        spans = [BatchSharder(r, world, drop_remainder=False).span(rows) for r in range(world)]
        assert spans[0][0] == 0 and spans[-1][1] == rows
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        sizes = [b - a for a, b in spans]
        assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_training_pieces_are_equal_and_disjoint(world):
    for rows in range(0, 12):
        spans = [BatchSharder(r, world, drop_remainder=True).span(rows) for r in range(world)]
        assert {b - a for a, b in spans} == {rows // world}
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def _rows_seen(world, n, batch_size, shuffle, training):
    """The x values each rank's adapter yields over one epoch (the same seed on every rank)."""
    x = np.arange(n, dtype="float32")[:, None]
    per_rank, indices = [], []
    for rank in range(world):
        adapter = get_adapter(x, np.arange(n), None, batch_size, shuffle, None, torch.device("cpu"))
        adapter.sharder = BatchSharder(rank, world, drop_remainder=training)
        torch.manual_seed(0)
        batches = list(adapter.epoch())
        per_rank.append([b[0][:, 0].long().tolist() for b in batches])
        indices.append(adapter.sharder.global_indices().tolist())
    return per_rank, indices


@pytest.mark.parametrize("shuffle", [False, True, "batch"])
def test_array_adapter_gives_each_rank_its_piece_of_each_global_batch(shuffle):
    world, n, batch_size = 2, 13, 4
    per_rank, _ = _rows_seen(world, n, batch_size, shuffle, training=False)
    torch.manual_seed(0)
    one = get_adapter(np.arange(n, dtype="float32")[:, None], None, None, batch_size, shuffle, None, "cpu")
    global_batches = [b[0][:, 0].long().tolist() for b in one.epoch()]
    for rank in range(world):  # the same global batches, in the same order, each cut at the rank's span
        span = BatchSharder(rank, world, drop_remainder=False).span
        expected = [b[slice(*span(len(b)))] for b in global_batches]
        assert per_rank[rank] == [piece for piece in expected if piece]
    assert sorted(sum(sum(per_rank, []), [])) == list(range(n))


def test_array_adapter_training_drops_only_the_rows_a_short_batch_cannot_split():
    per_rank, _ = _rows_seen(world=2, n=13, batch_size=4, shuffle=False, training=True)
    assert per_rank == [[[0, 1], [4, 5], [8, 9]], [[2, 3], [6, 7], [10, 11]]]  # row 12 has no partner


def test_global_indices_name_the_rows_for_reassembly():
    per_rank, indices = _rows_seen(world=3, n=10, batch_size=4, shuffle=False, training=False)
    for rows, idx in zip(per_rank, indices):
        assert sum(rows, []) == idx


def test_dataset_batches_are_split_the_same_way():
    ds = tapefit.data.Dataset.from_tensor_slices(np.arange(10)).batch(4)
    seen = []
    for rank in range(2):
        adapter = get_adapter(ds, device=torch.device("cpu"))
        adapter.sharder = BatchSharder(rank, 2, drop_remainder=False)
        seen.append([b.tolist() for b in adapter.epoch()])
    assert seen == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [9]]]


def test_training_batches_that_do_not_divide_are_refused():
    ds = tapefit.data.Dataset.from_tensor_slices(np.arange(10)).batch(5)
    with pytest.raises(ValueError, match="batch the data by a multiple of 2"):
        list(BatchSharder(0, 2, drop_remainder=True).pieces(ds))


def test_sharded_models_refuse_batches_too_short_for_every_rank():
    sharder = BatchSharder(2, 3, drop_remainder=False)
    sharder.forbid_empty = True
    with pytest.raises(ValueError, match="cannot give every one of the 3 processes a row"):
        list(sharder.pieces([torch.zeros(2, 1)]))


def test_distribute_dataset_on_one_process_yields_the_batches():
    ds = tapefit.data.Dataset.range(8).batch(4)
    shards = distribute_dataset(ds)
    assert len(shards) == 2
    assert [b.tolist() for b in shards] == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(
    ("rows", "batch_size", "sharded"), [(3, 4, False), (8, 2, False), (8, 4, True), (5, 4, True)]
)
def test_evaluation_data_with_fewer_rows_than_processes_is_left_whole(monkeypatch, rows, batch_size, sharded):
    from tapefit.distribute import environment
    from tapefit.distribute.strategy import DataParallel

    monkeypatch.setattr(environment, "world_size", lambda: 4)
    monkeypatch.setattr(environment, "rank", lambda: 0)
    strategy = DataParallel.__new__(DataParallel)  # no process group needed to decide the split
    for data in (
        np.zeros((rows, 2), "float32"),
        tapefit.data.Dataset.from_tensor_slices(np.zeros((rows, 2), "float32")).batch(batch_size),
    ):
        size = batch_size if isinstance(data, np.ndarray) else None
        adapter = get_adapter(data, None, None, size, False, None, torch.device("cpu"))
        if sharded:
            assert strategy.shard_input(adapter, training=False) is True
            assert adapter.sharder.world == 4
        else:
            with pytest.warns(UserWarning, match="every process evaluates or predicts on all the rows"):
                assert strategy.shard_input(adapter, training=False) is False
            assert adapter.sharder is None
