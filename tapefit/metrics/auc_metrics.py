"""``AUC``: area under the ROC or precision-recall curve, from thresholded confusion counts.

The curve is discretised at ``num_thresholds`` evenly spaced thresholds (with the end points
nudged by ``epsilon`` so that 0 and 1 predictions land inside), exactly as Keras does; the
counts use the bucketed update, so a batch costs one scatter and one cumulative sum.
"""

from __future__ import annotations

from typing import Any

import torch

from .. import config
from . import _confusion
from ._utils import divide_no_nan
from .metric import Metric

__all__ = ["AUC"]

_CURVES = {"roc": "ROC", "pr": "PR", "prgain": "PRGAIN"}
_SUMMATIONS = ("interpolation", "majoring", "minoring")
_COUNTS = ("true_positives", "false_positives", "true_negatives", "false_negatives")


class AUC(Metric):
    """Approximate area under the ROC or PR curve, accumulated over batches.

    Args:
        num_thresholds: number of thresholds discretising the curve (> 1).
        curve: ``"ROC"`` (default), ``"PR"`` or ``"PRGAIN"``.
        summation_method: ``"interpolation"`` (trapezoids; for PR, Davis & Goadrich's
            interpolation), ``"minoring"`` or ``"majoring"``.
        name: name of the metric.
        dtype: dtype of the result.
        thresholds: explicit thresholds in [0, 1] instead of ``num_thresholds``.
        multi_label: treat each column as a separate label and average the per-label AUCs
            (weighted by ``label_weights``) instead of flattening.
        num_labels: number of labels when ``multi_label`` (otherwise learnt on the first update).
        label_weights: per-label weights.
        from_logits: apply a sigmoid to predictions first.

    Example:
        >>> float(AUC(num_thresholds=3)([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]))
        0.75
    """

    _per_sample_state = True

    def __init__(
        self,
        num_thresholds: int = 200,
        curve: str = "ROC",
        summation_method: str = "interpolation",
        name: str | None = None,
        dtype: str | torch.dtype | None = None,
        thresholds: list[float] | None = None,
        multi_label: bool = False,
        num_labels: int | None = None,
        label_weights: Any = None,
        from_logits: bool = False,
    ) -> None:
        if str(curve).lower() not in _CURVES:
            raise ValueError(
                f'Invalid AUC curve value: "{curve}". Expected values are ["PR", "ROC", "PRGAIN"]'
            )
        if str(summation_method).lower() not in _SUMMATIONS:
            raise ValueError(
                f'Invalid AUC summation method value: "{summation_method}". '
                f"Expected values are {list(_SUMMATIONS)}"
            )
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        self._init_from_thresholds = thresholds is not None
        if thresholds is not None:
            self.num_thresholds = len(thresholds) + 2
            thresholds = sorted(float(t) for t in thresholds)
            self._thresholds_distributed_evenly = _confusion.evenly_distributed([0.0, *thresholds, 1.0])
        else:
            if num_thresholds <= 1:
                raise ValueError(
                    f"Argument `num_thresholds` must be an integer > 1. "
                    f"Received: num_thresholds={num_thresholds}"
                )
            self.num_thresholds = num_thresholds
            thresholds = [(i + 1) * 1.0 / (num_thresholds - 1) for i in range(num_thresholds - 2)]
            self._thresholds_distributed_evenly = True
        eps = config.epsilon()
        self._thresholds = [0.0 - eps, *thresholds, 1.0 + eps]
        self._thresholds_tensor: torch.Tensor | None = None
        self.curve = _CURVES[str(curve).lower()]
        self.summation_method = str(summation_method).lower()
        self.multi_label = multi_label
        self.num_labels = num_labels
        self.label_weights = (
            None if label_weights is None else self._as_tensor(label_weights, self._torch_dtype)
        )
        self._from_logits = from_logits
        self._built = False
        if multi_label:
            if num_labels:
                self._build((None, num_labels))
        elif num_labels:
            raise ValueError("`num_labels` is needed only when `multi_label` is True.")
        else:
            self._build(None)

    @property
    def thresholds(self) -> list[float]:
        """The thresholds used to discretise the curve, end points included."""
        return list(self._thresholds)

    def _check_rank(self, shape: tuple) -> None:
        if self.multi_label and len(shape) != 2:
            raise ValueError(
                f"`y_pred` must have rank 2 when `multi_label=True`. Found rank {len(shape)}. "
                f"Full shape received for `y_pred`: {tuple(shape)}"
            )

    def _build(self, shape: tuple | None) -> None:
        if self.multi_label:
            self._check_rank(shape)
            self._num_labels = int(shape[1])
            variable_shape: tuple[int, ...] = (self.num_thresholds, self._num_labels)
        else:
            variable_shape = (self.num_thresholds,)
        for name in _COUNTS:
            setattr(self, name, self.add_variable(shape=variable_shape, initializer="zeros", name=name))
        self._built = True

    def _build_from_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._built and "true_positives" in state_dict:
            self._build(tuple(torch.as_tensor(state_dict["true_positives"]).shape))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate the counts for 0/1 labels ``y_true`` against probabilities (or logits) ``y_pred``."""
        y_true, y_pred = self._as_tensor(y_true), self._as_tensor(y_pred)
        if not self._built:
            self._build(tuple(y_pred.shape))
        else:
            self._check_rank(tuple(y_pred.shape))  # (num_labels= builds at construction)
        if self._from_logits:
            y_pred = torch.sigmoid(y_pred)
        if sample_weight is not None:
            sample_weight = self._as_tensor(sample_weight)
        if self._thresholds_tensor is None or self._thresholds_tensor.device != y_pred.device:
            self._thresholds_tensor = torch.tensor(self._thresholds, device=y_pred.device)
        label_weights = None
        if self.label_weights is not None and not self.multi_label:
            label_weights = self.label_weights.to(y_pred.device)
        _confusion.update_confusion_matrix(
            {
                _confusion.TP: self._raw.true_positives,
                _confusion.TN: self._raw.true_negatives,
                _confusion.FP: self._raw.false_positives,
                _confusion.FN: self._raw.false_negatives,
            },
            y_true,
            y_pred,
            self._thresholds,
            sample_weight=sample_weight,
            multi_label=self.multi_label,
            label_weights=label_weights,
            thresholds_distributed_evenly=self._thresholds_distributed_evenly,
            thresholds_tensor=self._thresholds_tensor,
        )

    def _average_over_labels(self, by_label: torch.Tensor) -> torch.Tensor:
        if self.label_weights is None:
            return by_label.mean()
        weights = self.label_weights.to(by_label.device)
        return divide_no_nan((by_label * weights).sum(), weights.sum())

    def interpolate_pr_auc(self) -> torch.Tensor:
        """PR-AUC with Davis & Goadrich's (2006) interpolation between thresholds."""
        tp, fp, fn = self._raw.true_positives, self._raw.false_positives, self._raw.false_negatives
        dtp = tp[:-1] - tp[1:]
        p = tp + fp
        dp = p[:-1] - p[1:]
        prec_slope = divide_no_nan(dtp, dp.clamp_min(0))
        intercept = tp[1:] - prec_slope * p[1:]
        safe_p_ratio = torch.where(
            (p[:-1] > 0) & (p[1:] > 0), divide_no_nan(p[:-1], p[1:].clamp_min(0)), torch.ones_like(p[1:])
        )
        increments = divide_no_nan(
            prec_slope * (dtp + intercept * torch.log(safe_p_ratio)), (tp[1:] + fn[1:]).clamp_min(0)
        )
        if self.multi_label:
            return self._average_over_labels(increments.sum(dim=0))
        return increments.sum()

    def result(self) -> torch.Tensor:
        if self.curve == "PR" and self.summation_method == "interpolation":
            return self.interpolate_pr_auc()
        tp, fp = self._raw.true_positives, self._raw.false_positives
        tn, fn = self._raw.true_negatives, self._raw.false_negatives
        recall = divide_no_nan(tp, tp + fn)
        if self.curve == "ROC":
            x, y = divide_no_nan(fp, fp + tn), recall
        elif self.curve == "PR":
            x, y = recall, divide_no_nan(tp, tp + fp)
        else:
            scaling = divide_no_nan(tp + fn, tn + fp)
            recall_gain = torch.where(tp == 0, 0.0, 1.0 - scaling * divide_no_nan(fn, tp))
            precision_gain = torch.where(tp == 0, 1.0, 1.0 - scaling * divide_no_nan(fp, tp))
            x, y = recall_gain.clamp_min(0.0), precision_gain
        if self.summation_method == "interpolation":
            heights = (y[:-1] + y[1:]) / 2.0
        elif self.summation_method == "minoring":
            heights = torch.minimum(y[:-1], y[1:])
        else:
            heights = torch.maximum(y[:-1], y[1:])
        riemann_terms = (x[:-1] - x[1:]) * heights
        if self.multi_label:
            return self._average_over_labels(riemann_terms.sum(dim=0))
        return riemann_terms.sum()

    def reset_state(self) -> None:
        if self._built:
            super().reset_state()

    def get_config(self) -> dict[str, Any]:
        label_weights = None if self.label_weights is None else self.label_weights.tolist()
        config = {
            "num_thresholds": self.num_thresholds,
            "curve": self.curve,
            "summation_method": self.summation_method,
            "multi_label": self.multi_label,
            "num_labels": self.num_labels,
            "label_weights": label_weights,
            "from_logits": self._from_logits,
        }
        if self._init_from_thresholds:
            config["thresholds"] = self.thresholds[1:-1]
        return {**super().get_config(), **config}
