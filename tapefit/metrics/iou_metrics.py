"""Intersection-over-union metrics for segmentation and classification: IoU, MeanIoU, BinaryIoU and
the one-hot variants, built on an accumulated (num_classes, num_classes) confusion matrix.

The confusion matrix is accumulated with a fixed-size ``index_add_`` (no ``bincount``, whose
output size would depend on the data and force a sync). Rows are true classes, columns predictions.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from .. import config
from .metric import Metric

__all__ = ["IoU", "MeanIoU", "BinaryIoU", "OneHotIoU", "OneHotMeanIoU"]


class _IoUBase(Metric):
    _per_sample_state = True

    def __init__(
        self,
        num_classes: int,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ) -> None:
        super().__init__(name=name, dtype=dtype or "int32")
        self._direction = "up"
        self.num_classes = num_classes
        self.ignore_class = ignore_class
        self.sparse_y_true = sparse_y_true
        self.sparse_y_pred = sparse_y_pred
        self.axis = axis
        self.total_cm = self.add_variable(
            shape=(num_classes, num_classes),
            initializer="zeros",
            dtype=self._torch_dtype,
            name="total_confusion_matrix",
        )

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        # One-hot inputs are reduced with an arg-max on ``axis``: along the rows, it spans the batch.
        reduced = [
            t for t, sparse in ((y_true, self.sparse_y_true), (y_pred, self.sparse_y_pred)) if not sparse
        ]
        along_rows = any(self.axis % max(self._as_tensor(t).dim(), 1) == 0 for t in reduced)
        return super()._sums_over_samples(y_true, y_pred) and not along_rows

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the confusion matrix of class ids ``y_true`` against ``y_pred`` (any shape)."""
        dtype = self._torch_dtype
        y_true, y_pred = self._as_tensor(y_true), self._as_tensor(y_pred)
        if not self.sparse_y_true:
            y_true = y_true.argmax(dim=self.axis)
        if not self.sparse_y_pred:
            y_pred = y_pred.argmax(dim=self.axis)
        y_true, y_pred = y_true.to(dtype).reshape(-1), y_pred.to(dtype).reshape(-1)
        if sample_weight is None:
            weight = torch.ones((), dtype=dtype, device=y_true.device)
        else:
            weight = self._as_tensor(sample_weight)
            if weight.is_floating_point() and not dtype.is_floating_point:
                warnings.warn(
                    "You are passing weight as `float`, but dtype is `int`. This may result in an "
                    "incorrect weight due to type casting. Consider using integer weights.",
                    stacklevel=3,
                )
            weight = weight.to(dtype).reshape(-1) if weight.dim() > 1 else weight.to(dtype)
        weight = weight.broadcast_to(y_true.shape)
        valid = (y_true >= 0) & (y_true < self.num_classes) & (y_pred >= 0) & (y_pred < self.num_classes)
        if self.ignore_class is not None:
            valid &= y_true != self.ignore_class
        y_true = torch.where(valid, y_true, 0).long()
        y_pred = torch.where(valid, y_pred, 0).long()
        cm = self._raw.total_confusion_matrix
        weight = torch.where(valid, weight, 0).to(cm.dtype)
        flat = cm.view(-1)
        flat.index_add_(0, y_true * self.num_classes + y_pred, weight)

    def reset_state(self) -> None:
        self._raw.total_confusion_matrix.zero_()


class IoU(_IoUBase):
    """Mean intersection-over-union, ``TP / (TP + FP + FN)``, over the classes in ``target_class_ids``.

    Classes that never occur (in labels or predictions) are left out of the mean.

    Args:
        num_classes: number of classes.
        target_class_ids: the classes to average over.
        name: name of the metric.
        dtype: dtype of the confusion matrix (``"int32"`` by default, as Keras: float sample weights
            are truncated; pass ``dtype="float32"`` for fractional weights).
        ignore_class: a label (e.g. a "void" class) whose pixels are skipped.
        sparse_y_true: labels are class ids (``False``: one-hot, reduced with arg-max on ``axis``).
        sparse_y_pred: predictions are class ids (``False``: scores, reduced with arg-max on ``axis``).
        axis: the class axis for non-sparse inputs.

    Example:
        >>> round(float(IoU(num_classes=2, target_class_ids=[0])([0, 0, 1, 1], [0, 1, 0, 1])), 4)
        0.3333
    """

    def __init__(
        self,
        num_classes: int,
        target_class_ids: list[int] | tuple[int, ...],
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=sparse_y_true,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )
        if max(target_class_ids) >= num_classes:
            raise ValueError(
                f"Target class id {max(target_class_ids)} is out of range, which is [0, {num_classes})."
            )
        self.target_class_ids = list(target_class_ids)
        self._target_ids: torch.Tensor | None = None

    def result(self) -> torch.Tensor:
        cm = self._raw.total_confusion_matrix.to(torch.float32)
        true_positives = torch.diagonal(cm)
        denominator = cm.sum(dim=0) + cm.sum(dim=1) - true_positives
        if self._target_ids is None or self._target_ids.device != cm.device:
            self._target_ids = torch.tensor(self.target_class_ids, dtype=torch.long, device=cm.device)
        true_positives = true_positives[self._target_ids]
        denominator = denominator[self._target_ids]
        valid = denominator > 1e-9
        iou = torch.where(valid, true_positives / (denominator + config.epsilon()), 0.0)
        return iou.sum(dim=self.axis) / (valid.to(torch.float32).sum() + config.epsilon())

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "target_class_ids": self.target_class_ids,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


class BinaryIoU(IoU):
    """IoU for binary problems: predictions at or above ``threshold`` are class 1.

    Example:
        >>> float(BinaryIoU(target_class_ids=[0, 1], threshold=0.3)([0, 1, 0, 1], [0.1, 0.2, 0.4, 0.7]))
        0.3333333432674408
    """

    def __init__(
        self,
        target_class_ids: list[int] | tuple[int, ...] = (0, 1),
        threshold: float = 0.5,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__(num_classes=2, target_class_ids=target_class_ids, name=name, dtype=dtype)
        self.threshold = threshold

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        y_pred = self._as_tensor(y_pred, torch.float32) >= self.threshold
        super().update_state(self._as_tensor(y_true), y_pred.to(self._torch_dtype), sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {
            "target_class_ids": self.target_class_ids,
            "threshold": self.threshold,
            "name": self.name,
            "dtype": self.dtype,
        }


class MeanIoU(IoU):
    """IoU averaged over all ``num_classes`` classes.

    Example:
        >>> float(MeanIoU(num_classes=2)([0, 0, 1, 1], [0, 1, 0, 1]))
        0.3333333432674408
    """

    def __init__(
        self,
        num_classes: int,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        ignore_class: int | None = None,
        sparse_y_true: bool = True,
        sparse_y_pred: bool = True,
        axis: int = -1,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            target_class_ids=list(range(num_classes)),
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=sparse_y_true,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_true": self.sparse_y_true,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


class OneHotIoU(IoU):
    """IoU over ``target_class_ids`` for one-hot labels and score predictions."""

    def __init__(
        self,
        num_classes: int,
        target_class_ids: list[int] | tuple[int, ...],
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        ignore_class: int | None = None,
        sparse_y_pred: bool = False,
        axis: int = -1,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            target_class_ids=target_class_ids,
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "target_class_ids": self.target_class_ids,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }


class OneHotMeanIoU(MeanIoU):
    """Mean IoU over all classes for one-hot labels and score predictions."""

    def __init__(
        self,
        num_classes: int,
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        ignore_class: int | None = None,
        sparse_y_pred: bool = False,
        axis: int = -1,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            name=name,
            dtype=dtype,
            ignore_class=ignore_class,
            sparse_y_true=False,
            sparse_y_pred=sparse_y_pred,
            axis=axis,
        )

    def get_config(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "name": self.name,
            "dtype": self.dtype,
            "ignore_class": self.ignore_class,
            "sparse_y_pred": self.sparse_y_pred,
            "axis": self.axis,
        }
