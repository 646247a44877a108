"""The compiled loss and metrics: their single-output paths give the general path's numbers and errors."""

import numpy as np
import pytest
import torch

import tapefit
from tapefit.trainers.compile_utils import CompileLoss, CompileMetrics


def _batch(n=16, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, classes, (n,), generator=g), torch.randn(n, classes, generator=g)


def test_sparse_cross_entropy_on_logits_equals_the_loss_object():
    y, logits = _batch()
    loss = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    compiled = CompileLoss(loss, output_names=["out"])
    assert torch.equal(compiled(y, logits), loss(y, logits))
    assert compiled._fused_sparse is torch.float32
    weights = torch.rand(16)
    assert torch.allclose(compiled(y, logits, weights), loss(y, logits, weights))


@pytest.mark.parametrize("bad", [5, -1, -100])
def test_an_out_of_range_label_is_reported_by_name(bad):
    y, logits = _batch()
    y[3] = bad  # -100 is the label torch ignores silently by default; Keras reports it
    compiled = CompileLoss(tapefit.losses.SparseCategoricalCrossentropy(from_logits=True))
    with pytest.raises(ValueError, match=rf"Sparse label {bad} is out of range for 5 classes"):
        compiled(y, logits)


@pytest.mark.parametrize(
    "loss",
    [
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=False),
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0),
        tapefit.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum"),
        "sparse_categorical_crossentropy",
    ],
)
def test_other_sparse_losses_keep_their_own_path(loss):
    y, logits = _batch()
    probs = torch.softmax(logits, -1)
    compiled = CompileLoss(loss)
    reference = tapefit.losses.SparseCategoricalCrossentropy() if isinstance(loss, str) else loss
    expected = reference(y, probs)
    assert torch.allclose(compiled(y, probs), expected)
    assert compiled._fused_sparse is None


def test_loss_weight_applies_on_the_single_output_path():
    y, logits = _batch()
    loss = tapefit.losses.SparseCategoricalCrossentropy(from_logits=True)
    compiled = CompileLoss(loss, loss_weights=0.5, output_names=["out"])
    assert torch.allclose(compiled(y, logits), 0.5 * loss(y, logits))


def test_single_output_metrics_equal_a_metric_updated_directly():
    y, logits = _batch(n=64)
    weights = torch.rand(64)
    compiled = CompileMetrics(["accuracy"], ["accuracy"], output_names=["out"])
    plain, weighted = tapefit.metrics.SparseCategoricalAccuracy(), tapefit.metrics.SparseCategoricalAccuracy()
    for i in range(0, 64, 16):
        compiled.update_state(y[i : i + 16], logits[i : i + 16], weights[i : i + 16])
        plain.update_state(y[i : i + 16], logits[i : i + 16])
        weighted.update_state(y[i : i + 16], logits[i : i + 16], sample_weight=weights[i : i + 16])
    result = compiled.result()
    assert float(result["accuracy"]) == pytest.approx(float(plain.result()))
    assert float(result["weighted_accuracy"]) == pytest.approx(float(weighted.result()))
    expected = float(((logits.argmax(-1) == y).float() * weights).sum() / weights.sum())
    assert float(result["weighted_accuracy"]) == pytest.approx(expected, rel=1e-6)


def test_metric_updates_inside_a_training_step_build_no_graph():
    y, logits = _batch()
    logits.requires_grad_(True)
    mean, acc = tapefit.metrics.Mean(), tapefit.metrics.SparseCategoricalAccuracy()
    loss = torch.nn.functional.cross_entropy(logits, y)
    mean.update_state(loss, sample_weight=16)
    acc.update_state(y, logits)
    assert not mean.result().requires_grad and not acc.result().requires_grad
    assert torch.is_grad_enabled()
    assert float(mean.result()) == pytest.approx(float(loss.detach()))
    np.testing.assert_allclose(float(acc.result()), float((logits.argmax(-1) == y).float().mean()))
