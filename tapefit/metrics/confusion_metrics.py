"""Thresholded confusion counts and the metrics built on them: TruePositives... , Precision, Recall.

Predictions are probabilities; an entry counts as positive when it is strictly above a
threshold (0.5 by default). With a list of thresholds the result is a vector, one value per
threshold. ``top_k`` keeps only each sample's k highest predictions; ``class_id`` restricts
the metric to one column of a multi-class output.
"""

from __future__ import annotations

from typing import Any

import torch

from . import _confusion
from ._utils import divide_no_nan
from .metric import Metric

__all__ = ["TruePositives", "FalsePositives", "TrueNegatives", "FalseNegatives", "Precision", "Recall"]


class _Thresholded(Metric):
    """Shared plumbing: parsed thresholds, a device copy of them, and the count update."""

    _per_sample_state = True

    def _set_thresholds(self, thresholds: Any, default: float) -> None:
        self.init_thresholds = thresholds
        self.thresholds = _confusion.parse_thresholds(thresholds, default)
        self._thresholds_distributed_evenly = _confusion.evenly_distributed(self.thresholds)
        self._thresholds_tensor: torch.Tensor | None = None

    def _counts_variable(self, name: str) -> Any:
        return self.add_variable(shape=(len(self.thresholds),), initializer="zeros", name=name)

    def _update(
        self,
        variables: dict[str, torch.Tensor],
        y_true: Any,
        y_pred: Any,
        sample_weight: Any,
        top_k: int | None = None,
        class_id: int | None = None,
    ) -> None:
        y_true, y_pred = self._as_tensor(y_true), self._as_tensor(y_pred)
        if sample_weight is not None:
            sample_weight = self._as_tensor(sample_weight)
        if self._thresholds_tensor is None or self._thresholds_tensor.device != y_pred.device:
            self._thresholds_tensor = torch.tensor(self.thresholds, device=y_pred.device)
        _confusion.update_confusion_matrix(
            variables,
            y_true,
            y_pred,
            self.thresholds,
            top_k=top_k,
            class_id=class_id,
            sample_weight=sample_weight,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            thresholds_tensor=self._thresholds_tensor,
        )

    def _per_threshold(self, values: torch.Tensor) -> torch.Tensor:
        return values[0] if len(self.thresholds) == 1 else values


class _ConditionCount(_Thresholded):
    _condition = ""

    def __init__(
        self,
        thresholds: float | list[float] | None = None,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self._set_thresholds(thresholds, 0.5)
        self.accumulator = self._counts_variable("accumulator")

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        self._update({self._condition: self._raw.accumulator}, y_true, y_pred, sample_weight)

    def result(self) -> torch.Tensor:
        return self._per_threshold(self._raw.accumulator).clone()

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "thresholds": self.init_thresholds}


class TruePositives(_ConditionCount):
    """The (weighted) number of true positives, per threshold.

    Example:
        >>> float(TruePositives()([0, 1, 1, 1], [1, 0, 1, 1]))
        2.0
    """

    _condition = _confusion.TP


class FalsePositives(_ConditionCount):
    """The (weighted) number of false positives, per threshold.

    Example:
        >>> float(FalsePositives()([0, 1, 0, 0], [0, 0, 1, 1]))
        2.0
    """

    _condition = _confusion.FP


class TrueNegatives(_ConditionCount):
    """The (weighted) number of true negatives, per threshold.

    Example:
        >>> float(TrueNegatives()([0, 1, 0, 0], [1, 1, 0, 0]))
        2.0
    """

    _condition = _confusion.TN


class FalseNegatives(_ConditionCount):
    """The (weighted) number of false negatives, per threshold.

    Example:
        >>> float(FalseNegatives()([0, 1, 1, 1], [0, 1, 0, 0]))
        2.0
    """

    _condition = _confusion.FN


class _PrecisionRecall(_Thresholded):
    _second = ""

    def __init__(
        self,
        thresholds: float | list[float] | None = None,
        top_k: int | None = None,
        class_id: int | None = None,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self.top_k = top_k
        self.class_id = class_id
        self._set_thresholds(thresholds, 0.5 if top_k is None else _confusion.NEG_INF)
        self.true_positives = self._counts_variable("true_positives")
        setattr(self, self._second, self._counts_variable(self._second))

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        # top_k and class_id act on the last axis: on 1-D predictions, that is the batch's rows.
        picks_columns = self.top_k is not None or self.class_id is not None
        spans_rows = picks_columns and self._as_tensor(y_pred).dim() < 2
        return super()._sums_over_samples(y_true, y_pred) and not spans_rows

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate TP and the second count for ``y_true`` (0/1) against ``y_pred`` (probabilities)."""
        second = _confusion.FP if self._second == "false_positives" else _confusion.FN
        self._update(
            {_confusion.TP: self._raw.true_positives, second: getattr(self._raw, self._second)},
            y_true,
            y_pred,
            sample_weight,
            top_k=self.top_k,
            class_id=self.class_id,
        )

    def result(self) -> torch.Tensor:
        tp = self._raw.true_positives
        return self._per_threshold(divide_no_nan(tp, tp + getattr(self._raw, self._second)))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "thresholds": self.init_thresholds,
            "top_k": self.top_k,
            "class_id": self.class_id,
        }


class Precision(_PrecisionRecall):
    """``TP / (TP + FP)``: how many of the predicted positives are right.

    Args:
        thresholds: a float or a list of floats in [0, 1]; a prediction above it is positive.
            Defaults to 0.5 (or to "every top-k prediction" when ``top_k`` is set).
        top_k: only each sample's ``top_k`` highest predictions may count as positive.
        class_id: measure only this column of a multi-class output.
        name: name of the metric.
        dtype: dtype of the result.

    Example:
        >>> float(Precision()([0, 1, 1, 1], [1, 0, 1, 1]))
        0.6666666865348816
    """

    _second = "false_positives"


class Recall(_PrecisionRecall):
    """``TP / (TP + FN)``: how many of the true positives are found.

    Takes the same arguments as :class:`Precision`.

    Example:
        >>> float(Recall()([0, 1, 1, 1], [1, 0, 1, 1]))
        0.6666666865348816
    """

    _second = "false_negatives"
