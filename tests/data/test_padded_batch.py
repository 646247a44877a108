"""padded_batch against the outputs printed in tf.data's ``Dataset.padded_batch`` docstring, on
the fast path (in-memory rows) and the element path, plus tf's errors and element_spec rules."""

import numpy as np
import pytest
import torch

from tapefit.data import UNKNOWN_CARDINALITY, Dataset, TensorSpec

from .dataset_helpers import fast, has_plan, slow, values


def ragged(make=slow):
    """tf's ``A = range(1, 5).map(lambda x: tf.fill([x], x))``: [1], [2, 2], [3, 3, 3], [4, 4, 4, 4]."""
    return make(5).skip(1).map(lambda x: torch.full((int(x),), int(x)))


def test_docstring_examples():
    a = ragged()
    assert values(a.padded_batch(2)) == [[[1, 0], [2, 2]], [[3, 3, 3, 0], [4, 4, 4, 4]]]
    assert values(a.padded_batch(2, padded_shapes=5)) == [
        [[1, 0, 0, 0, 0], [2, 2, 0, 0, 0]],
        [[3, 3, 3, 0, 0], [4, 4, 4, 4, 0]],
    ]
    assert values(a.padded_batch(2, padded_shapes=5, padding_values=-1)) == [
        [[1, -1, -1, -1, -1], [2, 2, -1, -1, -1]],
        [[3, 3, 3, -1, -1], [4, 4, 4, 4, -1]],
    ]
    # "Pad with a single value and multiple components."
    e = Dataset.zip((a, a)).padded_batch(2, padding_values=-1)
    assert values(e) == [
        ([[1, -1], [2, 2]], [[1, -1], [2, 2]]),
        ([[3, 3, 3, -1], [4, 4, 4, 4]], [[3, 3, 3, -1], [4, 4, 4, 4]]),
    ]


def test_nested_components_padded_independently():
    elements = [([1, 2, 3], [10]), ([4, 5], [11, 12])]
    ds = Dataset.from_generator(lambda: iter(elements), output_types=(torch.int32, torch.int32))
    out = list(ds.padded_batch(2, padded_shapes=([4], [None]), padding_values=(-1, 100)))
    assert len(out) == 1
    first, second = out[0]
    assert first.dtype == torch.int32 and second.dtype == torch.int32
    assert first.tolist() == [[1, 2, 3, -1], [4, 5, -1, -1]]
    assert second.tolist() == [[10, 100], [11, 12]]


def test_dicts_strings_multi_dim_and_defaults():
    def gen():
        yield {"ids": torch.ones(2, 3), "mask": torch.ones(2, dtype=torch.bool), "words": np.array(["a"])}
        yield {
            "ids": torch.ones(1, 4) * 2,
            "mask": torch.ones(1, dtype=torch.bool),
            "words": np.array(["b", "c"]),
        }

    (batch,) = list(Dataset.from_generator(gen).padded_batch(2))
    assert batch["ids"].tolist() == [[[1, 1, 1, 0], [1, 1, 1, 0]], [[2, 2, 2, 2], [0, 0, 0, 0]]]
    assert batch["mask"].dtype == torch.bool and batch["mask"].tolist() == [[True, True], [True, False]]
    assert batch["words"].tolist() == [["a", ""], ["b", "c"]]
    (b,) = list(
        Dataset.from_generator(gen).padded_batch(
            2, padded_shapes={"ids": [3, None], "mask": None, "words": [3]}
        )
    )
    assert tuple(b["ids"].shape) == (2, 3, 4) and b["words"].tolist() == [["a", "", ""], ["b", "c", ""]]
    (c,) = list(
        Dataset.from_generator(gen).padded_batch(2, padding_values={"ids": 7.0, "mask": None, "words": "?"})
    )
    assert c["ids"][0, 0].tolist() == [1, 1, 1, 7] and c["ids"][1, 1].tolist() == [7, 7, 7, 7]
    assert c["words"].tolist() == [["a", "?"], ["b", "c"]]


def test_scalars_and_equal_shapes_batch_like_batch():
    assert values(slow(5).padded_batch(2)) == values(slow(5).batch(2)) == [[0, 1], [2, 3], [4]]
    assert values(slow(5).padded_batch(2, drop_remainder=True)) == [[0, 1], [2, 3]]


def test_fast_path_pads_gathered_batches():
    ds = Dataset.from_tensor_slices(torch.arange(12).reshape(4, 3))
    assert has_plan(ds)
    out = values(ds.padded_batch(3, padded_shapes=[5], padding_values=-1))
    assert out == [[[0, 1, 2, -1, -1], [3, 4, 5, -1, -1], [6, 7, 8, -1, -1]], [[9, 10, 11, -1, -1]]]
    assert values(ds.padded_batch(3)) == values(ds.batch(3))
    assert values(ragged(fast).padded_batch(2)) == values(ragged(slow).padded_batch(2))
    words = Dataset.from_tensor_slices(np.array([["a", "b"], ["c", "d"]]))
    assert values(words.padded_batch(2, padded_shapes=[3], padding_values="-")) == [
        [["a", "b", "-"], ["c", "d", "-"]]
    ]


def test_element_larger_than_padded_shape_names_the_shapes():
    with pytest.raises(ValueError, match=r"shape \(4,\).*padded shape \(3,\)"):
        list(ragged().padded_batch(2, padded_shapes=[3]))
    with pytest.raises(ValueError, match=r"shape \(3,\).*padded shape \(2,\)"):
        list(Dataset.from_tensor_slices(torch.zeros(4, 3)).padded_batch(2, padded_shapes=[2]))
    with pytest.raises(ValueError, match="rank"):
        list(ragged().padded_batch(2, padded_shapes=[4, 4]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="batch_size"):
        slow(3).padded_batch(0)
    with pytest.raises(TypeError, match="structure"):
        list(Dataset.zip((ragged(), ragged())).padded_batch(2, padded_shapes=([4],)))
    with pytest.raises(TypeError, match="dtype"):
        list(ragged().padded_batch(2, padding_values=torch.tensor(1, dtype=torch.int32)))
    with pytest.raises(TypeError, match="does not fit"):
        list(ragged().padded_batch(2, padding_values=0.5))
    with pytest.raises(ValueError, match="scalars"):
        list(ragged().padded_batch(2, padding_values=torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="different ranks"):
        list(Dataset.from_generator(lambda: iter([torch.zeros(2), torch.zeros(2, 2)])).padded_batch(2))


def test_cardinality_and_element_spec():
    assert fast(10).padded_batch(3).cardinality() == 4
    assert fast(10).padded_batch(3, drop_remainder=True).cardinality() == 3
    assert slow(10).padded_batch(3).cardinality() == UNKNOWN_CARDINALITY
    sig = (TensorSpec((None,), torch.int32), TensorSpec((2, None), torch.float32))
    ds = Dataset.from_generator(lambda: iter([]), output_signature=sig)
    assert ds.padded_batch(4).element_spec == (
        TensorSpec((None, None), torch.int32),
        TensorSpec((None, 2, None), torch.float32),
    )
    assert ds.padded_batch(4, padded_shapes=([6], [-1, 5]), drop_remainder=True).element_spec == (
        TensorSpec((4, 6), torch.int32),
        TensorSpec((4, None, 5), torch.float32),
    )
    with pytest.raises(ValueError, match="not compatible"):
        _ = ds.padded_batch(4, padded_shapes=([6], [1, 5])).element_spec
    unknown_rank = Dataset.from_generator(lambda: iter([]), output_types=torch.int64)
    with pytest.raises(ValueError, match="unknown rank"):
        _ = unknown_rank.padded_batch(2).element_spec
