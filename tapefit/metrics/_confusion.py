"""Thresholded confusion-matrix counts (TP, FP, TN, FN per threshold), Keras's ``metrics_utils``.

Two exact paths, as Keras has: a general one that compares every prediction with every
threshold (a ``(thresholds, predictions)`` grid), and, for evenly spaced thresholds such as
AUC's, a bucketed one (one ``scatter_add`` plus a reversed cumulative sum) that costs
``O(predictions + thresholds)``. Both are fixed-shape tensor code: no host sync.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .. import config
from ..losses.loss import squeeze_or_expand_to_same_rank

NEG_INF = -1e10
TP, FP, TN, FN = "tp", "fp", "tn", "fn"


def parse_thresholds(thresholds: Any, default: float) -> list[float]:
    """Thresholds as a list, checked to lie in [0, 1] when given by the user."""
    if thresholds is None:
        return [default]
    values = list(thresholds) if isinstance(thresholds, list | tuple | np.ndarray) else [thresholds]
    invalid = [t for t in values if t is None or t < 0 or t > 1]
    if invalid:
        raise ValueError(f"Threshold values must be in [0, 1]. Received: {invalid}")
    return [float(t) for t in values]


def evenly_distributed(thresholds: Sequence[float]) -> bool:
    """Whether thresholds are ``i / (n - 1)`` for ``i = 0..n-1`` (n >= 3), up to ``epsilon``."""
    n = len(thresholds)
    if n < 3:
        return False
    even = np.arange(n, dtype=np.float32) / (n - 1)
    return bool(np.allclose(np.asarray(thresholds, dtype=np.float64), even, atol=config.epsilon()))


def filter_top_k(x: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest entries of the last axis; push the others to ``NEG_INF``."""
    top_idx = torch.topk(x, k, dim=-1).indices
    keep = torch.zeros_like(x).scatter_(-1, top_idx, 1.0)
    return x * keep + NEG_INF * (1 - keep)


def update_confusion_matrix(
    variables: dict[str, torch.Tensor],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    thresholds: Sequence[float],
    top_k: int | None = None,
    class_id: int | None = None,
    sample_weight: torch.Tensor | None = None,
    multi_label: bool = False,
    label_weights: torch.Tensor | None = None,
    thresholds_distributed_evenly: bool = False,
    thresholds_tensor: torch.Tensor | None = None,
) -> None:
    """Add this batch's weighted counts to the given ``{"tp"|"fp"|"tn"|"fn": variable}``.

    A prediction counts as positive when it is strictly greater than the threshold. Without
    ``multi_label`` every entry of ``y_pred`` is one binary decision; with it, counts are kept
    per label (the variables then have shape ``(thresholds, labels)``). ``thresholds_tensor``
    is the same thresholds already on the device (metrics cache it to save a copy per step).
    """
    dtype = next(iter(variables.values())).dtype
    y_true, y_pred = y_true.to(dtype), y_pred.to(dtype)
    y_pred, y_true = squeeze_or_expand_to_same_rank(y_pred, y_true)
    if sample_weight is not None:
        sample_weight = sample_weight.to(dtype).unsqueeze(-1)
        _, sample_weight = squeeze_or_expand_to_same_rank(y_true, sample_weight, expand_rank_1=False)
    if top_k is not None:
        y_pred = filter_top_k(y_pred, top_k)
    if class_id is not None:
        if y_pred.dim() == 1:
            raise ValueError(
                "When class_id is provided, y_pred must be a 2D array with shape "
                f"(num_samples, num_classes), found shape: {tuple(y_pred.shape)}"
            )
        y_true = y_true[..., class_id, None]
        y_pred = y_pred[..., class_id, None]
    if thresholds_distributed_evenly:
        with_epsilon = thresholds[0] < 0.0 or thresholds[-1] > 1.0
        _update_bucketed(
            variables,
            y_true,
            y_pred,
            len(thresholds),
            multi_label,
            sample_weight,
            label_weights,
            with_epsilon,
        )
        return
    if thresholds_tensor is None or thresholds_tensor.device != y_pred.device:
        thresholds_tensor = torch.as_tensor(np.asarray(thresholds), device=y_pred.device)
    _update_grid(
        variables, y_true, y_pred, thresholds_tensor.to(dtype), multi_label, sample_weight, label_weights
    )


def _update_grid(
    variables: dict[str, torch.Tensor],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    thresholds: torch.Tensor,
    multi_label: bool,
    sample_weight: torch.Tensor | None,
    label_weights: torch.Tensor | None,
) -> None:
    weights = None
    if sample_weight is not None:
        weights = sample_weight.to(y_pred.dtype).broadcast_to(y_pred.shape)
    if label_weights is not None and not multi_label:
        lw = label_weights.to(y_pred.dtype).unsqueeze(0).broadcast_to(y_pred.shape)
        weights = lw if weights is None else weights * lw
    if multi_label:
        # (thresholds, samples, labels); the counts keep the label axis.
        preds = y_pred.reshape(1, y_pred.shape[0], -1)
        labels = y_true.bool().reshape(1, y_pred.shape[0], -1)
        thresh = thresholds.reshape(-1, 1, 1)
        weights = None if weights is None else weights.reshape(1, y_pred.shape[0], -1)
    else:
        preds = y_pred.reshape(1, -1)
        labels = y_true.bool().reshape(1, -1)
        thresh = thresholds.reshape(-1, 1)
        weights = None if weights is None else weights.reshape(1, -1)
    pred_pos = preds > thresh
    label_pos = labels.expand_as(pred_pos)
    conditions = {
        TP: label_pos & pred_pos,
        FN: label_pos & ~pred_pos,
        FP: ~label_pos & pred_pos,
        TN: ~label_pos & ~pred_pos,
    }
    for key, variable in variables.items():
        if weights is None:
            hits = conditions[key].to(variable.dtype)
        else:
            hits = torch.where(conditions[key], weights.to(variable.dtype), 0.0)
        variable.add_(hits.sum(dim=1))


def _update_bucketed(
    variables: dict[str, torch.Tensor],
    y_true: torch.Tensor,
    y_pred: torch.Tensor,
    num_thresholds: int,
    multi_label: bool,
    sample_weight: torch.Tensor | None,
    label_weights: torch.Tensor | None,
    with_epsilon: bool,
) -> None:
    weights: torch.Tensor | float = 1.0
    if sample_weight is not None:
        weights = sample_weight.to(y_pred.dtype).broadcast_to(y_pred.shape)
        if not multi_label:
            weights = weights.reshape(-1)
    if label_weights is not None:
        lw = label_weights.to(y_pred.dtype).unsqueeze(0).broadcast_to(y_pred.shape)
        weights = weights * (lw if multi_label else lw.reshape(-1))
    y_pred = y_pred.clamp(0.0, 1.0)
    y_true = y_true.bool().to(y_true.dtype)
    if not multi_label:
        y_true, y_pred = y_true.reshape(-1), y_pred.reshape(-1)
    true_labels = y_true * weights
    false_labels = (1.0 - y_true) * weights
    # A prediction is positive for a threshold when strictly above it, so the value v falls in
    # bucket ceil(v * (n - 1)) - 1 (bucket -1, below every threshold, is dropped).
    buckets = torch.ceil(y_pred * (num_thresholds - 1)) - 1
    if with_epsilon:
        buckets = torch.relu(buckets)
    buckets = buckets.long()
    if multi_label:
        true_labels, false_labels, buckets = true_labels.T, false_labels.T, buckets.T
    tp = _reverse_cumsum(_segment_sum(true_labels.broadcast_to(buckets.shape), buckets, num_thresholds))
    fp = _reverse_cumsum(_segment_sum(false_labels.broadcast_to(buckets.shape), buckets, num_thresholds))
    if multi_label:
        tp, fp = tp.T, fp.T
    axis = 1 if multi_label else None
    total_true = true_labels.sum() if axis is None else true_labels.sum(dim=axis)
    total_false = false_labels.sum() if axis is None else false_labels.sum(dim=axis)
    counts = {TP: tp, FP: fp, TN: total_false - fp, FN: total_true - tp}
    for key, variable in variables.items():
        variable.add_(counts[key].to(variable.dtype))


def _segment_sum(data: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum ``data`` into ``num_segments`` bins along the last axis; ids outside the range are dropped."""
    ids = torch.where((segment_ids >= 0) & (segment_ids < num_segments), segment_ids, num_segments)
    out = torch.zeros((*data.shape[:-1], num_segments + 1), dtype=data.dtype, device=data.device)
    return out.scatter_add_(-1, ids, data)[..., :num_segments]


def _reverse_cumsum(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-1).cumsum(-1).flip(-1)
