"""cache(filename): tf.data's file cache semantics (``Dataset.cache`` docstring), written once,
read by fresh Dataset objects and by another process, never trusted after a partial pass,
checked against the pipeline, and stored as safetensors + JSON only (no pickle)."""

import collections
import json
import os
import pickle
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from tapefit.data import INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, Dataset, TensorSpec, _file_cache

from .dataset_helpers import fast, slow, values

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def squares(make, calls, n=5):
    """tf's docstring pipeline ``range(5).map(lambda x: x**2)``, counting calls of the map."""
    return make(n).map(lambda x: calls.append(1) or x**2)


def files(prefix):
    folder, base = os.path.split(prefix)
    return sorted(name for name in os.listdir(folder) if name.startswith(base))


@pytest.fixture
def prefix(tmp_path):
    return str(tmp_path / "cache")


@pytest.mark.parametrize("make", [fast, slow], ids=["fast", "generic"])
def test_first_pass_writes_later_passes_and_new_objects_read(make, prefix):
    calls = []
    ds = squares(make, calls).cache(prefix)
    assert values(ds) == [0, 1, 4, 9, 16]
    assert files(prefix) == ["cache.data-00000.safetensors", "cache.index"]
    written = len(calls)
    assert values(ds) == [0, 1, 4, 9, 16] and len(calls) == written  # the second pass reads the files
    again = []
    fresh = squares(make, again).cache(prefix)  # a new pipeline object, as in a new run
    assert values(fresh) == [0, 1, 4, 9, 16]
    assert len(again) <= 1  # at most one element is mapped, to check the files against the pipeline
    assert values(fresh) == [0, 1, 4, 9, 16] and len(again) <= 1


def test_a_new_process_reads_what_another_wrote(prefix):
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); from tapefit.data import Dataset;"
        "ds = Dataset.range(6).map(lambda x: (x * 2, str(int(x)))).cache(sys.argv[2]); list(ds)"
    )
    subprocess.run([sys.executable, "-c", script, ROOT, prefix], check=True, timeout=120)
    calls = []
    ds = Dataset.range(6).map(lambda x: calls.append(1) or (x * 2, str(int(x)))).cache(prefix)
    assert values(ds) == [(2 * i, str(i)) for i in range(6)] and len(calls) <= 1


def test_repeat_after_cache_writes_once(prefix):
    calls = []
    assert values(squares(slow, calls).cache(prefix).repeat(3)) == [0, 1, 4, 9, 16] * 3
    assert len(calls) == 5


def test_tf_docstring_changed_pipeline_of_unknown_length_replays_the_cache(prefix):
    values(Dataset.from_generator(lambda: iter(range(5))).cache(prefix))
    # tf: "Changing the input pipeline before the call to .cache() will have no effect until the
    # cache file is removed or the filename is changed."
    assert values(Dataset.from_generator(lambda: iter(range(10))).cache(prefix)) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("stop", ["break", "error"])
def test_a_partial_first_pass_leaves_nothing_trusted(stop, prefix, monkeypatch):
    monkeypatch.setattr(_file_cache, "_SHARD_BYTES", 16)  # every couple of elements is a shard on disk

    def fn(x):
        if stop == "error" and int(x) == 6:
            raise RuntimeError("map failed")
        return x * 10

    ds = slow(10).map(fn).cache(prefix)
    if stop == "break":
        for i, _ in enumerate(ds):
            if i == 6:
                break
    else:
        with pytest.raises(RuntimeError, match="map failed"):
            list(ds)
    assert files(prefix) == []  # no index, no shards, no lock
    complete = slow(10).map(lambda x: x * 10).cache(prefix)
    assert values(complete) == [i * 10 for i in range(10)]
    assert "cache.index" in files(prefix)


def test_files_of_a_killed_writer_are_ignored_and_rewritten(prefix):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(prefix + ".lockfile", "w") as f:
        json.dump({"host": socket.gethostname(), "pid": dead.pid}, f)
    with open(prefix + ".data-00000.safetensors", "wb") as f:
        f.write(b"half a shard")
    assert values(fast(4).cache(prefix)) == [0, 1, 2, 3]
    assert files(prefix) == ["cache.data-00000.safetensors", "cache.index"]
    assert values(fast(4).cache(prefix)) == [0, 1, 2, 3]


def test_a_writer_in_another_live_process_is_an_error(prefix):
    with open(prefix + ".lockfile", "w") as f:
        json.dump({"host": socket.gethostname(), "pid": os.getppid()}, f)
    with pytest.raises(RuntimeError, match="lockfile"):
        list(fast(3).cache(prefix))


def test_a_second_pass_in_this_process_takes_over_an_abandoned_one(prefix, monkeypatch):
    monkeypatch.setattr(_file_cache, "_SHARD_BYTES", 16)  # shards are written along the way
    expected = [i * i for i in range(12)]
    ds = squares(slow, [], n=12).cache(prefix)
    abandoned = iter(ds)
    assert [int(next(abandoned)) for _ in range(5)] == expected[:5]  # two shards written already
    assert values(ds) == expected  # completes the cache although `abandoned` is still open
    assert [int(x) for x in abandoned] == expected[5:]  # it passes the rest through, writing nothing
    del abandoned
    assert "cache.index" in files(prefix) and "cache.lockfile" not in files(prefix)
    assert values(Dataset.from_generator(lambda: iter(expected)).cache(prefix)) == expected

    def fail_at_3(x):
        if int(x) == 3:
            raise RuntimeError("element 3")
        return x

    with pytest.raises(RuntimeError, match="element 3") as info:
        for _ in slow(12).cache(prefix + "2").map(fail_at_3):
            pass
    assert info.traceback and "cache2.lockfile" in files(prefix + "2")  # its writer is still alive
    assert values(slow(4).cache(prefix + "2")) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "other, problem",
    [
        (lambda: Dataset.range(5).map(lambda x: x.float()), "float32"),
        (lambda: Dataset.range(5).map(lambda x: (x, x)), "structure"),
        (lambda: Dataset.range(5).map(lambda x: x.repeat(3)), r"shape \(3,\)"),
        (lambda: Dataset.range(6), "holds 5 elements but the pipeline now has 6"),
    ],
    ids=["dtype", "structure", "shape", "count"],
)
def test_a_changed_pipeline_is_a_clear_error(other, problem, prefix):
    values(Dataset.range(5).cache(prefix))
    with pytest.raises(ValueError, match=problem) as info:
        list(other().cache(prefix))
    message = str(info.value)
    assert prefix + ".index" in message and "delete" in message and "rebuild the cache" in message


def test_a_missing_shard_is_a_clear_error(prefix):
    values(fast(3).cache(prefix))
    os.unlink(prefix + ".data-00000.safetensors")
    with pytest.raises(ValueError, match="cannot read .*data-00000.safetensors.*Delete"):
        list(fast(3).cache(prefix))


Point = collections.namedtuple("Point", ["x", "y"])


def mixed_elements():
    for i in range(7):
        yield {
            "ragged": torch.arange(i, dtype=torch.float32),
            "image": torch.full((2, 3), i, dtype=torch.uint8),
            "flag": torch.tensor(i % 2 == 0),
            "half": torch.tensor([i], dtype=torch.bfloat16),
            "name": f"élément {i}" * (i % 3),
            "words": np.array(["a", "bc"][: i % 3]) if i % 3 else np.array([], dtype=str),
            "point": Point(torch.tensor(i), torch.tensor([i, -i])),
        }


def test_many_shards_ragged_strings_and_structures_round_trip(prefix, monkeypatch):
    monkeypatch.setattr(_file_cache, "_SHARD_BYTES", 40)
    ds = Dataset.from_generator(mixed_elements).cache(prefix)
    first = list(ds)
    assert len([f for f in files(prefix) if f.endswith(".safetensors")]) > 2
    for got, want in zip(list(Dataset.from_generator(mixed_elements).cache(prefix)), mixed_elements()):
        assert isinstance(got["point"], Point) and got["name"] == want["name"]
        assert got["words"].tolist() == want["words"].tolist()
        for key in ("ragged", "image", "flag", "half"):
            assert got[key].dtype == want[key].dtype and torch.equal(got[key], want[key])
        assert torch.equal(got["point"].y, want["point"].y)
    assert len(first) == 7
    index = json.load(open(prefix + ".index"))
    assert index["elements"] == 7 and index["components"][0] == {"dtype": "float32", "shape": [None]}


def test_in_memory_rows_are_written_in_blocks_and_consumers_cannot_corrupt_them(prefix, monkeypatch):
    monkeypatch.setattr(_file_cache, "_SHARD_BYTES", 1000)
    monkeypatch.setattr(_file_cache, "_WRITE_ROWS", 64)
    data = torch.arange(3000 * 3, dtype=torch.float32).reshape(3000, 3)
    ds = Dataset.from_tensor_slices((data, torch.arange(3000))).cache(prefix)
    for x, _ in ds:
        x.mul_(0)  # an in-place change by the consumer of the first pass
    back = list(Dataset.from_tensor_slices((data, torch.arange(3000))).cache(prefix).batch(1000))
    assert torch.equal(torch.cat([x for x, _ in back]), data)
    assert len([f for f in files(prefix) if f.endswith(".safetensors")]) > 10


def test_no_pickle_is_written_or_read(prefix, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("dump", "dumps", "load", "loads", "Pickler", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "save", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    ds = Dataset.from_tensor_slices({"x": torch.ones(4, 2), "s": ["a", "b", "c", "d"]})
    assert values(ds.cache(prefix)) == values(ds.cache(prefix)) == values(ds)
    index = json.load(open(prefix + ".index"))  # the index is plain JSON
    shard = os.path.join(os.path.dirname(prefix), index["shards"][0]["file"])
    with open(shard, "rb") as f:  # the shard is safetensors: a length, a JSON header, raw bytes
        header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
    assert {"c0", "c1.utf8"} <= set(header)
    assert files(prefix) == ["cache.data-00000.safetensors", "cache.index"]


def test_cardinality_spec_state_and_arguments(prefix, tmp_path):
    assert fast(5).cache(prefix).cardinality() == 5
    assert slow(5).cache(prefix).cardinality() == UNKNOWN_CARDINALITY
    assert fast(5).cache(prefix).element_spec == TensorSpec((), torch.int64)
    ds = fast(5).cache(prefix).shuffle(5, seed=0)
    assert set(ds.state_dict()) == {"0/epoch", "0/frozen_seed"}  # the file cache adds no state
    assert Dataset.range(3).cache(prefix).state_dict() == {}
    with pytest.raises(ValueError, match="infinite"):
        fast(3).repeat().cache(prefix)
    assert fast(3).cache(prefix).repeat().cardinality() == INFINITE_CARDINALITY
    with pytest.raises(ValueError, match="directory"):
        fast(3).cache(str(tmp_path))
    with pytest.raises(TypeError, match="filename"):
        fast(3).cache(3)
    assert values(fast(3).cache(tmp_path / "as_path")) == [0, 1, 2]
