"""``OnBatchMixin``: Keras's ``train_on_batch``, ``test_on_batch`` and ``predict_on_batch``.

Each runs the model's own step once on all the rows it is given, as one batch on the model's
device, outside the callbacks and the progress bar.
"""

from __future__ import annotations

from typing import Any

import torch

from .data_adapters import get_adapter
from .logs import flatten_logs, to_python
from .outputs import concat_to_numpy, format_logs

__all__ = ["OnBatchMixin"]


class OnBatchMixin:
    """The single-batch half of ``Trainer`` (its steps and metrics come from ``Trainer``)."""

    def _whole_batch(self, x: Any, y: Any = None, sample_weight: Any = None, class_weight: Any = None) -> Any:
        """All the rows given as one batch on the model's device (the ``*_on_batch`` methods)."""
        device = self._device()  # type: ignore[attr-defined]
        adapter = get_adapter(x, y, sample_weight, None, False, class_weight, device)
        adapter.batch_size = adapter.n
        return next(adapter.epoch())

    def train_on_batch(
        self,
        x: Any,
        y: Any = None,
        sample_weight: Any = None,
        class_weight: dict | None = None,
        return_dict: bool = False,
    ) -> Any:
        self._assert_compiled("train_on_batch")
        batch = self._whole_batch(x, y, sample_weight, class_weight)
        self.reset_metrics()
        return format_logs(to_python(flatten_logs(self.train_step(batch))), return_dict)

    def test_on_batch(
        self, x: Any, y: Any = None, sample_weight: Any = None, return_dict: bool = False
    ) -> Any:
        self._assert_compiled("test_on_batch")
        batch = self._whole_batch(x, y, sample_weight)
        self.reset_metrics()
        with torch.no_grad():
            return format_logs(to_python(flatten_logs(self.test_step(batch))), return_dict)

    def predict_on_batch(self, x: Any) -> Any:
        batch = self._whole_batch(x)
        with torch.no_grad():
            return concat_to_numpy([self.predict_step(batch)])
