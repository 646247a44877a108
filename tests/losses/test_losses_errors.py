"""Bad labels and shapes get a ValueError that names the problem (issue 7), never a silent broadcast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tapefit.losses as L
from tapefit.losses import _check_sparse_labels

LOGITS = torch.randn(4, 3)


@pytest.mark.parametrize("bad", [3, 7, -1])
def test_out_of_range_sparse_label_names_label_and_classes(bad):
    labels = torch.tensor([0, 1, bad, 2])
    with pytest.raises(ValueError, match=rf"Sparse label {bad} is out of range for 3 classes"):
        L.SparseCategoricalCrossentropy(from_logits=True)(labels, LOGITS)
    with pytest.raises(ValueError, match=rf"label {bad} .*\[0, 3\)"):
        L.sparse_categorical_crossentropy(labels, LOGITS)


def test_out_of_range_check_reports_the_span_of_bad_labels():
    with pytest.raises(ValueError, match=r"2 of 5 labels are outside, from 5 to 9"):
        _check_sparse_labels(np.array([0, 9, 1, 5, 2]), num_classes=3)


def test_ignore_class_may_lie_outside_the_range():
    out = L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(
        torch.tensor([0, 255, 1, 2]), LOGITS
    )
    assert torch.isfinite(out)
    with pytest.raises(ValueError, match="Sparse label 254"):
        L.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)(
            torch.tensor([0, 254, 1, 2]), LOGITS
        )


def test_float_labels_holding_integers_are_accepted():
    as_float = L.sparse_categorical_crossentropy(torch.tensor([0.0, 2.0, 1.0, 1.0]), LOGITS, from_logits=True)
    as_int = L.sparse_categorical_crossentropy(torch.tensor([0, 2, 1, 1]), LOGITS, from_logits=True)
    assert torch.equal(as_float, as_int)


@pytest.mark.parametrize("bad", [0.5, float("nan")])
def test_float_labels_with_fractions_name_the_dtype(bad):
    with pytest.raises(ValueError, match=r"dtype float32 and holds"):
        L.SparseCategoricalCrossentropy()(torch.tensor([0.0, bad, 1.0, 1.0]), torch.softmax(LOGITS, -1))


def test_sparse_labels_of_the_wrong_shape_name_both_shapes():
    with pytest.raises(
        ValueError, match=r"y_true has shape \(4, 3\) and y_pred has shape \(4, 3\).*categorical_cross"
    ):
        L.SparseCategoricalCrossentropy()(torch.eye(3)[[0, 1, 2, 0]], torch.softmax(LOGITS, -1))
    with pytest.raises(ValueError, match=r"\(5,\).*\(4, 3\)"):
        L.sparse_categorical_crossentropy(torch.zeros(5, dtype=torch.long), LOGITS)


def test_integer_labels_to_categorical_crossentropy_suggest_the_sparse_loss():
    with pytest.raises(ValueError, match=r"\(4,\).*\(4, 3\).*sparse_categorical_crossentropy"):
        L.CategoricalCrossentropy()(torch.tensor([0, 1, 2, 0]), torch.softmax(LOGITS, -1))
    with pytest.raises(ValueError, match=r"\(4, 1\).*\(4, 3\).*sparse_categorical_crossentropy"):
        L.categorical_crossentropy(torch.tensor([[0], [1], [2], [0]]), torch.softmax(LOGITS, -1))


@pytest.mark.parametrize(
    "loss",
    [
        L.MeanSquaredError(),
        L.MeanAbsoluteError(),
        L.Huber(),
        L.Poisson(),
        L.KLDivergence(),
        L.Hinge(),
        L.LogCosh(),
        L.BinaryCrossentropy(),
        L.BinaryFocalCrossentropy(),
    ],
)
def test_no_silent_broadcast_of_n_against_n_by_c(loss):
    """(N,) against (N, N) would broadcast to (N, N); it is refused with both shapes named."""
    with pytest.raises(ValueError, match=r"y_true has shape \(3,\) and y_pred has shape \(3, 3\)"):
        loss(torch.rand(3), torch.rand(3, 3))


def test_binary_crossentropy_needs_equal_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2\).*\(4, 3\)"):
        L.binary_crossentropy(torch.zeros(4, 2), torch.rand(4, 3))


def test_same_rank_broadcasting_is_allowed_where_keras_allows_it():
    out = L.mean_squared_error(torch.zeros(4, 1, 2), torch.ones(4, 3, 2))
    assert out.shape == (4, 3) and torch.all(out == 1)


def test_check_sparse_labels_accepts_good_labels_from_numpy_and_torch():
    _check_sparse_labels(np.array([0, 1, 2], dtype=np.uint8), 3)
    _check_sparse_labels(torch.tensor([[0.0], [2.0]]), 3)
    _check_sparse_labels(np.array([True, False]), 2)


@pytest.mark.parametrize("loss", [L.BinaryCrossentropy(), L.BinaryFocalCrossentropy(), L.binary_crossentropy])
def test_class_ids_given_to_a_binary_loss_name_the_dtype_and_the_value(loss):
    probs = torch.full((4, 1), 0.5)
    with pytest.raises(
        ValueError,
        match=r"integer targets \(dtype int64\) must be 0 or 1, but y_true holds 3 .*"
        r"sparse_categorical_crossentropy",
    ):
        loss(torch.tensor([[0], [1], [3], [1]]), probs)
    loss(torch.tensor([[0], [1], [1], [0]]), probs)  # 0/1 integers are fine
    loss(torch.tensor([[0.2], [1.0], [0.7], [0.0]]), probs)  # soft float targets are not checked
