"""``FBetaScore`` and ``F1Score`` for multi-class and multi-label outputs of shape (N, classes)."""

from __future__ import annotations

from typing import Any

import torch

from .. import config
from .metric import Metric

__all__ = ["FBetaScore", "F1Score"]

_COUNTS = ("true_positives", "false_positives", "false_negatives", "intermediate_weights")


class FBetaScore(Metric):
    """The F-beta score, ``(1 + b^2) * P * R / (b^2 * P + R)``, per class or averaged.

    Args:
        average: ``None`` (one score per class), ``"micro"`` (global counts), ``"macro"`` (plain
            mean of the per-class scores) or ``"weighted"`` (mean weighted by class support).
        beta: weight of recall against precision (a float > 0).
        threshold: a prediction above it is positive; with ``None`` each sample's highest
            prediction(s) is positive.
        name: name of the metric.
        dtype: dtype of the accumulators and the result.

    Example:
        >>> import torch
        >>> m = FBetaScore(beta=2.0, threshold=0.5)
        >>> [round(v, 4) for v in m([[1, 1, 1], [1, 0, 0], [1, 1, 0]],
        ...                         [[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]]).tolist()]
        [0.3846, 0.9091, 0.8333]
    """

    _per_sample_state = True

    def __init__(
        self,
        average: str | None = None,
        beta: float = 1.0,
        threshold: float | None = None,
        name: str = "fbeta_score",
        dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__(name=name, dtype=dtype)
        self._direction = "up"
        if average not in (None, "micro", "macro", "weighted"):
            raise ValueError(
                "Invalid `average` argument value. Expected one of: "
                f"{{None, 'micro', 'macro', 'weighted'}}. Received: average={average}"
            )
        if not isinstance(beta, float):
            raise ValueError(
                f"Invalid `beta` argument value. It should be a Python float. "
                f"Received: beta={beta} of type '{type(beta)}'"
            )
        if beta <= 0.0:
            raise ValueError(f"Invalid `beta` argument value. It should be > 0. Received: beta={beta}")
        if threshold is not None:
            if not isinstance(threshold, float):
                raise ValueError(
                    f"Invalid `threshold` argument value. It should be a Python float. "
                    f"Received: threshold={threshold} of type '{type(threshold)}'"
                )
            if threshold > 1.0 or threshold <= 0.0:
                raise ValueError(
                    f"Invalid `threshold` argument value. It should verify 0 < threshold <= 1. "
                    f"Received: threshold={threshold}"
                )
        self.average = average
        self.beta = beta
        self.threshold = threshold
        self.axis = None if average == "micro" else 0
        self._built = False

    def _build(self, y_true_shape: tuple, y_pred_shape: tuple) -> None:
        if len(y_pred_shape) != 2 or len(y_true_shape) != 2:
            raise ValueError(
                "FBetaScore expects 2D inputs with shape (batch_size, output_dim). Received input "
                f"shapes: y_pred.shape={tuple(y_pred_shape)} and y_true.shape={tuple(y_true_shape)}."
            )
        shape = () if self.average == "micro" else (int(y_pred_shape[-1]),)
        for name in _COUNTS:
            setattr(
                self,
                name,
                self.add_variable(shape=shape, initializer="zeros", dtype=self._torch_dtype, name=name),
            )
        self._built = True

    def _build_from_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._built and "true_positives" in state_dict:
            shape = tuple(torch.as_tensor(state_dict["true_positives"]).shape)
            classes = shape[0] if shape else 1
            self._build((None, classes), (None, classes))

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Accumulate counts for 0/1 labels ``y_true`` (N, C) against scores ``y_pred`` (N, C)."""
        y_true = self._as_tensor(y_true, self._torch_dtype)
        y_pred = self._as_tensor(y_pred, self._torch_dtype)
        if not self._built:
            self._build(tuple(y_true.shape), tuple(y_pred.shape))
        if self.threshold is None:
            row_max = y_pred.amax(dim=-1, keepdim=True)
            y_pred = (y_pred >= row_max) & (y_pred.abs() > 1e-9)
        else:
            y_pred = y_pred > self.threshold
        y_pred = y_pred.to(self._torch_dtype)
        weight = None
        if sample_weight is not None:
            weight = self._as_tensor(sample_weight, self._torch_dtype)
            # Keras expands (N,) weights to (N, 1); (N, 1) weights are used as they are.
            weight = weight.unsqueeze(1) if weight.dim() == 1 else weight

        def weighted_sum(values: torch.Tensor) -> torch.Tensor:
            if weight is not None:
                values = values * weight
            return values.sum() if self.axis is None else values.sum(dim=self.axis)

        raw = self._raw
        raw.true_positives.add_(weighted_sum(y_pred * y_true))
        raw.false_positives.add_(weighted_sum(y_pred * (1 - y_true)))
        raw.false_negatives.add_(weighted_sum((1 - y_pred) * y_true))
        raw.intermediate_weights.add_(weighted_sum(y_true))

    def result(self) -> torch.Tensor:
        eps = config.epsilon()
        tp = self._raw.true_positives
        precision = tp / (tp + self._raw.false_positives + eps)
        recall = tp / (tp + self._raw.false_negatives + eps)
        beta_sq = self.beta**2
        f_score = precision * recall / (beta_sq * precision + recall + eps) * (1 + beta_sq)
        if self.average == "weighted":
            support = self._raw.intermediate_weights
            return (f_score * (support / (support.sum() + eps))).sum()
        if self.average is not None:
            return f_score.mean()
        return f_score

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "average": self.average,
            "beta": self.beta,
            "threshold": self.threshold,
        }


class F1Score(FBetaScore):
    """The F1 score, ``2 * P * R / (P + R)`` (``FBetaScore`` with ``beta=1``).

    Example:
        >>> m = F1Score(threshold=0.5)
        >>> [round(v, 4) for v in m([[1, 1, 1], [1, 0, 0], [1, 1, 0]],
        ...                         [[0.2, 0.6, 0.7], [0.2, 0.6, 0.6], [0.6, 0.8, 0.0]]).tolist()]
        [0.5, 0.8, 0.6667]
    """

    def __init__(
        self,
        average: str | None = None,
        threshold: float | None = None,
        name: str = "f1_score",
        dtype: str | torch.dtype | None = None,
    ) -> None:
        super().__init__(average=average, beta=1.0, threshold=threshold, name=name, dtype=dtype)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        del config["beta"]
        return config
