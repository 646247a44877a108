"""Accuracy metrics and their per-sample functions (Keras's ``accuracy_metrics``).

Each function returns one 0/1 value per sample (in ``floatx``); each class is a
``MeanMetricWrapper`` around it, so sample weights give ``sum(match * w) / sum(w)``.
"""

from __future__ import annotations

from typing import Any

import torch

from .._masking import get_mask
from ..losses.loss import _row_local, squeeze_or_expand_to_same_rank
from ._utils import to_tensor, torch_dtype
from .reduction_metrics import MeanMetricWrapper

__all__ = [
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
    "top_k_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "Accuracy",
    "BinaryAccuracy",
    "CategoricalAccuracy",
    "SparseCategoricalAccuracy",
    "TopKCategoricalAccuracy",
    "SparseTopKCategoricalAccuracy",
]


def _floatx() -> torch.dtype:
    return torch_dtype(None)


def _label_dtype(pred_dtype: torch.dtype) -> torch.dtype:
    """Keras compares labels in the prediction's dtype; float16/bfloat16 cannot hold class ids
    above 2048/256 exactly, so those compare in float32 instead."""
    return torch.float32 if pred_dtype in (torch.float16, torch.bfloat16) else pred_dtype


def _pair(y_true: Any, y_pred: Any, true_like_pred: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, device=y_pred.device)
    return (y_true.to(_label_dtype(y_pred.dtype)) if true_like_pred else y_true), y_pred


@_row_local
def accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1.0 where ``y_true == y_pred`` exactly, else 0.0."""
    y_true, y_pred = _pair(y_true, y_pred)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return (y_true == y_pred).to(_floatx())


@_row_local
def binary_accuracy(y_true: Any, y_pred: Any, threshold: float = 0.5) -> torch.Tensor:
    """1.0 where ``y_pred > threshold`` agrees with the 0/1 label ``y_true``."""
    y_true, y_pred = _pair(y_true, y_pred, true_like_pred=False)
    y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
    return (y_true == (y_pred > threshold).to(y_true.dtype)).to(_floatx())


@_row_local
def categorical_accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1.0 where the arg-max of ``y_pred`` is the arg-max of the one-hot ``y_true``."""
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, device=y_pred.device).argmax(dim=-1).to(_label_dtype(y_pred.dtype))
    original_shape = y_true.shape
    reshape = y_true.dim() == y_pred.dim()
    if reshape:
        y_true = y_true.squeeze(-1)
    matches = (y_true == y_pred.argmax(dim=-1).to(y_true.dtype)).to(_floatx())
    return matches.reshape(original_shape) if reshape else matches


@_row_local
def sparse_categorical_accuracy(y_true: Any, y_pred: Any) -> torch.Tensor:
    """1.0 where the arg-max of ``y_pred`` equals the integer label (``y_true`` of shape (N,) or (N, 1))."""
    y_true, y_pred = _pair(y_true, y_pred)
    original_shape = y_true.shape
    reshape = y_true.dim() == y_pred.dim() and y_true.shape[-1] == 1
    if reshape:
        y_true = y_true.squeeze(-1)
    matches = (y_true == y_pred.argmax(dim=-1).to(y_true.dtype)).to(_floatx())
    if reshape:
        matches = matches.reshape(original_shape)
    if matches.dim() > 1 and matches.shape[-1] == 1:
        matches = matches.squeeze(-1)
    return matches


def _in_top_k(targets: torch.Tensor, predictions: torch.Tensor, k: int) -> torch.Tensor:
    """Whether each target's score is at least the k-th largest score (ties count as hits, as Keras)."""
    kth_largest = torch.topk(predictions, min(k, predictions.shape[-1]), dim=-1).values[..., -1:]
    target_score = torch.take_along_dim(predictions, targets.long()[:, None], dim=-1)
    return (target_score >= kth_largest).squeeze(-1)


def _flatten_for_top_k(y_true: torch.Tensor, y_pred: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    if y_pred.dim() > 2:
        y_pred = y_pred.reshape(-1, y_pred.shape[-1])
    reshape = y_true.dim() > 1
    return (y_true.reshape(-1) if reshape else y_true), y_pred, reshape


@_row_local
def top_k_categorical_accuracy(y_true: Any, y_pred: Any, k: int = 5) -> torch.Tensor:
    """1.0 where the one-hot ``y_true``'s class is among the ``k`` highest scores of ``y_pred``."""
    y_true, y_pred = _pair(y_true, y_pred)
    y_true = y_true.argmax(dim=-1)
    original_shape = y_true.shape
    y_true, y_pred, reshape = _flatten_for_top_k(y_true, y_pred)
    matches = _in_top_k(y_true, y_pred, k).to(_floatx())
    return matches.reshape(original_shape) if reshape else matches


@_row_local
def sparse_top_k_categorical_accuracy(
    y_true: Any, y_pred: Any, k: int = 5, from_sorted_ids: bool = False
) -> torch.Tensor:
    """1.0 where the integer label is among the ``k`` highest scores of ``y_pred``.

    With ``from_sorted_ids=True``, ``y_pred`` holds class ids sorted by score instead of scores.
    """
    y_pred = to_tensor(y_pred)
    y_true = to_tensor(y_true, device=y_pred.device)
    y_true = y_true.to(y_pred.dtype) if from_sorted_ids else y_true.to(torch.int32)
    original_shape = y_true.shape
    y_true, y_pred, reshape = _flatten_for_top_k(y_true, y_pred)
    if from_sorted_ids:
        matches = (y_true[:, None] == y_pred[:, :k]).any(dim=1)
    else:
        matches = _in_top_k(y_true, y_pred, k)
    matches = matches.to(_floatx())
    return matches.reshape(original_shape) if reshape else matches


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly.

    Example:
        >>> m = Accuracy()
        >>> float(m([[1], [2], [3], [4]], [[0], [2], [3], [4]]))
        0.75
    """

    def __init__(self, name: str = "accuracy", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(fn=accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class BinaryAccuracy(MeanMetricWrapper):
    """How often ``y_pred > threshold`` matches binary labels.

    Example:
        >>> float(BinaryAccuracy()([[1], [1], [0], [0]], [[0.98], [1], [0], [0.6]]))
        0.75
    """

    def __init__(
        self, name: str = "binary_accuracy", dtype: str | torch.dtype | None = None, threshold: float = 0.5
    ) -> None:
        super().__init__(fn=binary_accuracy, name=name, dtype=dtype, threshold=threshold)
        self.threshold = threshold
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the predicted class (arg-max) matches a one-hot label.

    Example:
        >>> float(CategoricalAccuracy()([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]))
        0.5
    """

    def __init__(self, name: str = "categorical_accuracy", dtype: str | torch.dtype | None = None) -> None:
        super().__init__(fn=categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the predicted class (arg-max) matches an integer label.

    Labels may have shape (N,) or (N, 1) and any integer or float dtype.

    Example:
        >>> float(SparseCategoricalAccuracy()([[2], [1]], [[0.1, 0.6, 0.3], [0.05, 0.95, 0]]))
        0.5
    """

    def __init__(
        self, name: str = "sparse_categorical_accuracy", dtype: str | torch.dtype | None = None
    ) -> None:
        super().__init__(fn=sparse_categorical_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        # (The update_state wrapper has already put every tensor on the state's device.)
        if (
            sample_weight is None
            and isinstance(y_pred, torch.Tensor)
            and y_pred.dim() == 2
            and isinstance(y_true, torch.Tensor)
            and y_true.dim() == 1
            and not y_true.is_floating_point()
            and y_true.shape[0] == y_pred.shape[0]
            and self._torch_dtype.is_floating_point
            and get_mask(y_pred) is None
        ):
            # The training-loop case (logits (N, C), integer labels (N,)): two kernels, same numbers.
            raw = self._raw
            raw.total.add_((y_pred.argmax(dim=-1) == y_true).sum(dtype=raw.total.dtype))  # no mixed-dtype add
            raw.count.add_(raw._one, alpha=y_true.shape[0])
            return
        super().update_state(y_true, y_pred, sample_weight=sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype}


class TopKCategoricalAccuracy(MeanMetricWrapper):
    """How often a one-hot label's class is among the ``k`` highest predictions.

    Example:
        >>> float(TopKCategoricalAccuracy(k=1)([[0, 0, 1], [0, 1, 0]], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]))
        0.5
    """

    def __init__(
        self, k: int = 5, name: str = "top_k_categorical_accuracy", dtype: str | torch.dtype | None = None
    ) -> None:
        super().__init__(fn=top_k_categorical_accuracy, name=name, dtype=dtype, k=k)
        self.k = k
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "k": self.k}


class SparseTopKCategoricalAccuracy(MeanMetricWrapper):
    """How often an integer label is among the ``k`` highest predictions.

    Example:
        >>> float(SparseTopKCategoricalAccuracy(k=1)([2, 1], [[0.1, 0.9, 0.8], [0.05, 0.95, 0]]))
        0.5
    """

    def __init__(
        self,
        k: int = 5,
        name: str = "sparse_top_k_categorical_accuracy",
        dtype: str | torch.dtype | None = None,
        from_sorted_ids: bool = False,
    ) -> None:
        super().__init__(
            fn=sparse_top_k_categorical_accuracy, name=name, dtype=dtype, k=k, from_sorted_ids=from_sorted_ids
        )
        self.k = k
        self.from_sorted_ids = from_sorted_ids
        self._direction = "up"

    def get_config(self) -> dict[str, Any]:
        config = {"name": self.name, "dtype": self.dtype, "k": self.k}
        if self.from_sorted_ids:
            config["from_sorted_ids"] = True
        return config
