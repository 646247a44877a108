"""interleave against tf.data: the ``Dataset.interleave`` docstring example and the hand-computed
expected outputs of tf's ``interleave_test.py`` (``testPythonImplementation``), sequential and
with worker threads, on the fast and the element-by-element path."""

import itertools
import os
import warnings

import pytest
import torch

from tapefit.data import AUTOTUNE, UNKNOWN_CARDINALITY, Dataset, TensorSpec

from .dataset_helpers import fast, slow, values

parallel = pytest.mark.parametrize("calls", [None, 1, 2, AUTOTUNE], ids=["seq", "one", "two", "auto"])


@parallel
def test_docstring_example(calls):
    ds = Dataset.range(1, 6).interleave(
        lambda x: Dataset.from_tensors(x).repeat(6), cycle_length=2, block_length=4, num_parallel_calls=calls
    )
    assert values(ds) == [
        1,
        1,
        1,
        1,
        2,
        2,
        2,
        2,
        1,
        1,
        2,
        2,
        3,
        3,
        3,
        3,
        4,
        4,
        4,
        4,
        3,
        3,
        4,
        4,
        5,
        5,
        5,
        5,
        5,
        5,
    ]


# (input values, cycle_length, block_length, expected): each x becomes [x] * x, input repeated twice.
TF_CASES = [
    ([4, 5, 6], 1, 1, [4] * 4 + [5] * 5 + [6] * 6 + [4] * 4 + [5] * 5 + [6] * 6),
    (
        [4, 5, 6],
        2,
        1,
        [4, 5, 4, 5, 4, 5, 4, 5, 5, 6, 6, 4, 6, 4, 6, 4, 6, 4, 6, 5, 6, 5, 6, 5, 6, 5, 6, 5, 6, 6],
    ),
    (
        [4, 5, 6],
        2,
        3,
        [4, 4, 4, 5, 5, 5, 4, 5, 5, 6, 6, 6, 4, 4, 4, 6, 6, 6, 4, 5, 5, 5, 6, 6, 6, 5, 5, 6, 6, 6],
    ),
    (
        [4, 5, 6],
        7,
        2,
        [4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 4, 4, 5, 5, 6, 6, 5, 6, 6, 5, 6, 6],
    ),
    ([4, 0, 6], 2, 1, [4, 4, 6, 4, 6, 4, 6, 6, 4, 6, 4, 6, 4, 4, 6, 6, 6, 6, 6, 6]),
    ([], 2, 3, []),
    ([0, 0, 0], 2, 3, []),
]


@parallel
@pytest.mark.parametrize("case", TF_CASES, ids=[str(i) for i in range(len(TF_CASES))])
@pytest.mark.parametrize("inner", ["fast", "generic"])
def test_tf_reference_orders(case, inner, calls):
    inputs, cycle, block, expected = case
    if inner == "fast":
        fn = lambda x: Dataset.from_tensors(x).repeat(int(x))  # noqa: E731
    else:
        fn = lambda x: Dataset.from_generator(lambda: itertools.repeat(x, int(x)))  # noqa: E731
    source = Dataset.from_tensor_slices(torch.tensor(inputs, dtype=torch.int64)).repeat(2)
    ds = source.interleave(fn, cycle_length=cycle, block_length=block, num_parallel_calls=calls)
    assert values(ds) == expected
    assert values(ds) == expected  # a second pass starts a new cycle


@pytest.mark.parametrize("make", [fast, slow], ids=["fast", "generic"])
def test_cycle_length_one_is_flat_map_and_tuples_are_unpacked(make):
    pairs = Dataset.zip((make(3), make(3)))
    ds = pairs.interleave(lambda a, b: Dataset.range(int(a) * 10, int(a) * 10 + int(b) + 1), cycle_length=1)
    assert values(ds) == [0, 10, 11, 20, 21, 22]


def test_default_cycle_length_is_the_cpu_count(monkeypatch):
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no sched_getaffinity here")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    fn = lambda x: Dataset.from_tensors(x).repeat(2)  # noqa: E731
    expected = [0, 1, 2, 0, 1, 2, 3, 4, 5, 3, 4, 5]
    assert values(fast(6).interleave(fn)) == expected
    assert values(fast(6).interleave(fn, cycle_length=AUTOTUNE)) == expected
    assert values(fast(6).interleave(fn, cycle_length=3)) == expected
    # tf's parallel defaults: min(num_parallel_calls, cpus), or ceil(cpus / 3) for AUTOTUNE.
    assert values(fast(6).interleave(fn, num_parallel_calls=2)) == values(
        fast(6).interleave(fn, cycle_length=2)
    )
    assert values(fast(6).interleave(fn, num_parallel_calls=AUTOTUNE)) == values(
        fast(6).interleave(fn, cycle_length=1)
    )


def test_map_func_runs_when_a_slot_opens():
    calls = []

    def fn(x):
        calls.append(int(x))
        return Dataset.from_tensors(x).repeat(3)

    it = iter(fast(4).interleave(fn, cycle_length=2))
    next(it)
    assert calls == [0]
    next(it)
    assert calls == [0, 1]
    assert [int(x) for x in it] == [0, 1, 0, 1, 2, 3, 2, 3, 2, 3] and calls == [0, 1, 2, 3]


@parallel
def test_an_error_in_an_inner_dataset_comes_after_the_elements_before_it(calls):
    def inner(x):
        def gen():
            yield int(x)
            if int(x) == 1:
                raise RuntimeError("bad element 1")
            yield int(x) + 100

        return Dataset.from_generator(gen)

    ds = fast(3).interleave(inner, cycle_length=2, num_parallel_calls=calls)
    seen = []
    with pytest.raises(RuntimeError, match="bad element 1"):
        for x in ds:
            seen.append(int(x))
    assert seen == [0, 1, 100]


def test_cardinality_spec_and_state():
    ds = fast(4).interleave(lambda x: Dataset.from_tensors((x, x * 1.0)).repeat(2), cycle_length=2)
    assert ds.cardinality() == UNKNOWN_CARDINALITY  # tf's InterleaveDataset does not know it either
    assert ds.element_spec == (TensorSpec((), torch.int64), TensorSpec((), torch.float32))
    assert ds.state_dict() == {}  # interleave keeps no pass-dependent state of its own
    shuffled = fast(4).shuffle(4, seed=3).interleave(lambda x: Dataset.from_tensors(x), cycle_length=2)
    first = values(shuffled)
    saved = shuffled.state_dict()
    second = values(shuffled)
    assert sorted(first) == sorted(second) == [0, 1, 2, 3]
    shuffled.load_state_dict(saved)
    assert values(shuffled) == second  # the upstream shuffle's epoch is what resumes


def test_argument_errors():
    with pytest.raises(TypeError, match="must return a Dataset"):
        list(fast(2).interleave(lambda x: x, cycle_length=1))
    with pytest.raises(TypeError, match="callable"):
        fast(2).interleave(3)
    with pytest.raises(ValueError, match="cycle_length"):
        fast(2).interleave(Dataset.from_tensors, cycle_length=0)
    with pytest.raises(ValueError, match="block_length"):
        fast(2).interleave(Dataset.from_tensors, block_length=0)
    with pytest.raises(ValueError, match="num_parallel_calls"):
        fast(2).interleave(Dataset.from_tensors, num_parallel_calls=0)
    with pytest.warns(UserWarning, match="deterministic"):
        fast(2).interleave(Dataset.from_tensors, deterministic=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(2).interleave(Dataset.from_tensors, num_parallel_calls=2, deterministic=False)
