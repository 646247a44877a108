"""In-memory datasets gathered on the training device: the same batches in the same order as
iterating the dataset, the rows copied once, and no per-batch host-to-device copy in ``fit``.

The "device" here is the CPU (values compared) or the meta device (copies counted): the code
path is the one a GPU takes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit
from tapefit.data import Dataset
from tapefit.data._placement import device_batches

CPU, META = torch.device("cpu"), torch.device("meta")
N = 50


def _arrays():
    rng = np.random.default_rng(0)
    return rng.random((N, 3), dtype=np.float32), rng.integers(0, 4, N)


def _pipelines():
    x, y = _arrays()
    return {
        "shuffle_batch": lambda: Dataset.from_tensor_slices((x, y)).shuffle(N, seed=1).batch(8),
        "prefetch_drop_remainder": lambda: (
            Dataset.from_tensor_slices((x, y)).shuffle(N, seed=2).batch(8, drop_remainder=True).prefetch(2)
        ),
        "zip": lambda: Dataset.zip((Dataset.from_tensor_slices(x), Dataset.from_tensor_slices(y))).batch(16),
        "map_then_cache": lambda: (
            Dataset.from_tensor_slices((x, y))
            .map(lambda a, b: (a * 2, b))
            .cache()
            .shuffle(N, seed=3)
            .batch(7)
        ),
        "repeat_take_skip": lambda: Dataset.from_tensor_slices((x, y)).repeat(3).skip(5).take(120).batch(32),
        "small_shuffle_buffer": lambda: Dataset.from_tensor_slices((x, y)).shuffle(10, seed=4).batch(6),
    }


@pytest.mark.parametrize("name", sorted(_pipelines()))
def test_placed_batches_equal_the_datasets_own_over_several_passes(name):
    make = _pipelines()[name]
    reference, placed_from = make(), make()
    placed = device_batches(placed_from, CPU, float("inf"))
    assert placed is not None
    for _ in range(3):  # reshuffled every pass, the same way
        expected = [tuple(t.clone() for t in b) for b in reference]
        got = list(placed)
        assert len(got) == len(expected) > 0
        for (ex, ey), (gx, gy) in zip(expected, got):
            torch.testing.assert_close(gx, ex)
            assert torch.equal(gy, ey)


@pytest.mark.parametrize("name", sorted(_pipelines()))
def test_on_a_device_the_placed_batches_have_the_datasets_shapes(name):
    """The same pipelines with the rows on the meta device: index chunks go over and every
    batch is gathered there (values cannot be read on meta; the CPU test compares them)."""
    make = _pipelines()[name]
    expected = [tuple((tuple(t.shape), t.dtype) for t in b) for b in make()]
    placed = device_batches(make(), META, float("inf"))
    got = list(placed)
    assert [tuple((tuple(t.shape), t.dtype) for t in b) for b in got] == expected
    assert all(t.device == META for b in got for t in b)


def test_the_rows_are_copied_to_the_device_once():
    x, y = _arrays()
    ds = Dataset.from_tensor_slices((x, y)).shuffle(N).batch(10)
    first = device_batches(ds, META, float("inf"))
    again = device_batches(ds, META, float("inf"))
    assert first.rows is again.rows  # kept with the dataset
    assert all(leaf.device == META for leaf in first.rows.leaves)
    batches = list(first)
    assert len(batches) == 5 and all(t.device == META for b in batches for t in b)
    whole_x, whole_y = first.whole()
    assert whole_x.shape == (N, 3) and whole_y.shape == (N,)
    # Placed by an earlier fit, the copy is used whatever the memory budget is now.
    assert device_batches(ds, META, max_bytes=0).rows is first.rows


def test_pipelines_that_are_not_in_memory_gathers_stay_on_the_host():
    x, y = _arrays()
    sources = Dataset.from_tensor_slices((x, y))

    def generator():
        yield from zip(x, y)

    not_placed = {
        "map_not_cached": sources.map(lambda a, b: (a * 2, b)).batch(8),
        "map_after_batch": sources.batch(8).map(lambda a, b: (a, b)),
        "unbatched": sources,
        "generator": Dataset.from_generator(
            generator,
            output_signature=(
                tapefit.data.TensorSpec((3,), torch.float32),
                tapefit.data.TensorSpec((), torch.int64),
            ),
        ).batch(8),
        "padded_batch": Dataset.from_tensor_slices(x).padded_batch(8),
    }
    for name, ds in not_placed.items():
        assert device_batches(ds, META, float("inf")) is None, name
    assert device_batches(sources.batch(8), META, max_bytes=N * 3 * 4) is None  # over the budget


@pytest.mark.parametrize("class_weight", [None, {0: 1.0, 1: 2.0, 3: 0.5}])
def test_fit_on_a_device_copies_no_batch_from_the_host(on_meta, monkeypatch, class_weight):
    x, y = _arrays()
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(4)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    monkeypatch.setattr(
        "tapefit.trainers.trainer.to_python", lambda logs: {k: 0.0 for k in logs}
    )  # the epoch-end read (meta tensors hold no values)
    copies: list[tuple[int, ...]] = []
    original_to = torch.Tensor.to

    def counting_to(self, *args, **kwargs):
        out = original_to(self, *args, **kwargs)
        if self.device.type == "cpu" and out.device.type != "cpu":
            copies.append(tuple(self.shape))
        return out

    ds = Dataset.from_tensor_slices((x, y)).shuffle(N).batch(10).prefetch(1)
    model.fit(ds, epochs=1, verbose=0, class_weight=class_weight)  # builds the model, places the rows
    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    model.fit(ds, epochs=3, verbose=0, class_weight=class_weight)  # (meta: a host read would raise)
    # One shuffled index per pass (fit peeks at the first batch in one more); no batch crossed.
    # With class_weight, the per-class table goes over once per fit.
    assert copies == ([(4,)] if class_weight else []) + [(N,)] * 4


def test_bad_labels_in_a_placed_dataset_are_named_before_training(on_meta):
    x, y = _arrays()
    y[7] = 9
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(4)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="9"):
        model.fit(Dataset.from_tensor_slices((x, y)).batch(10), epochs=1, verbose=0)


def test_index_chunks_join_on_the_device_that_holds_them():
    from tapefit.data._rows import concat

    joined = concat([range(3, 5), torch.tensor([9, 1], device=META), range(0, 2)])
    assert joined.device == META and joined.shape == (6,)
    assert concat([range(0, 2), range(2, 4)]) == range(0, 4)


def test_bad_labels_in_rows_the_pipeline_never_yields_do_not_stop_training(on_meta, monkeypatch):
    x, y = _arrays()
    y[-1] = 9  # left out by take()
    model = tapefit.Sequential([tapefit.Input((3,)), tapefit.layers.Dense(4)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    monkeypatch.setattr("tapefit.trainers.trainer.to_python", lambda logs: {k: 0.0 for k in logs})
    model.fit(Dataset.from_tensor_slices((x, y)).take(N - 1).batch(10), epochs=1, verbose=0)
