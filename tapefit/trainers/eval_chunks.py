"""An evaluation's loss and metrics, computed once per chunk of batches instead of per batch.

A small model's evaluation step is mostly fixed costs: the loss, the loss tracker and each
metric launch a few kernels per batch, whatever its size (on the MLP of ``bench`` they take
about a fifth of the step). When they all sum over samples (a mean over the rows weighted by
the row count, a count of correct rows, a confusion matrix), their state after K batches equals
their state after one update on the K batches concatenated, up to the order of float additions.
The evaluation loop then runs the model on each batch as before, keeps its labels and outputs,
and updates the loss and metrics once per chunk.

Used only where the result cannot differ and nothing reads the metrics between batches:
tapefit's own ``test_step`` and ``compute_loss``; built-in losses and metrics whose functions
are row-local and give one value per row on these batches (checked on the second batch); no
layer that adds losses of its own; batches that are fresh tensors (arrays, a ``Dataset``, a
``DataLoader``: a generator may refill the arrays it yields); and no callback called per batch
other than tapefit's progress bar, whose reads of the batch logs first bring the deferred
updates in. A model's outputs are kept until their chunk is done, so a module must not
overwrite what it returned (torch's CUDA graphs raise if a replaced output is read).
"""

from __future__ import annotations

from typing import Any

import torch

from .._masking import get_mask
from ..layers import layer as _layer
from ..utils.data_utils import unpack_x_y_sample_weight
from .data_adapters import ArrayAdapter, IterableAdapter, is_dataset_like, leaves
from .logs import MetricResults
from .outputs import batch_size_of, concat_tensors

__all__ = ["EvalChunks", "eval_chunks"]

_MAX_BATCHES = 32
# Labels, outputs and weights kept per chunk: small enough to stay in cache on a CPU.
_MAX_BYTES = 4 << 20


def eval_chunks(model: Any, adapter: Any, trainer: type) -> EvalChunks | None:
    """The chunked evaluation of ``model`` on ``adapter``'s batches, or None where per-batch
    updates are needed.

    Called after the first batch, which builds the compiled loss and metrics. ``trainer`` is the
    ``Trainer`` class (this module cannot import it), whose step and loss and metric methods the
    model must not override.
    """
    for method in ("test_step", "compute_loss", "compute_metrics"):
        if getattr(getattr(model, method), "__func__", None) is not getattr(trainer, method):
            return None  # overridden, or set on the model
    fresh = isinstance(adapter, ArrayAdapter) or (
        type(adapter) is IterableAdapter and is_dataset_like(adapter.data)
    )
    if not fresh or _adds_losses(model):
        return None
    return EvalChunks(model)


def _adds_losses(model: Any) -> bool:
    """Whether a layer adds losses of its own (activity losses depend on each batch; the weights'
    penalties are the same for every batch, which sums over samples)."""
    return any(layer.__dict__.get("_adds_losses") for layer in model._loss_layers())


class EvalChunks:
    """Runs the forward pass of each batch and the loss and metric updates once per chunk."""

    def __init__(self, model: Any):
        self._model = model
        self._results: MetricResults = model._lazy_metrics_object()
        self._pending: list[tuple[Any, Any, Any, int]] = []
        self._capacity: int | None = None
        self._structure = _layer._structure_version[0]
        self._results.before_read = self.flush

    def detach(self) -> None:
        """Stop serving reads of the model's batch logs (at the end of the evaluation)."""
        self._results.before_read = None

    def step(self, data: Any) -> MetricResults:
        """``test_step(data)``, with the loss and metric updates deferred to the chunk's end."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self._model(x, training=False)
        if self._structure != _layer._structure_version[0]:  # a layer may have added its first loss
            self._structure = _layer._structure_version[0]
            if _adds_losses(self._model):
                self.flush()  # the batches before this one added none
                self._capacity = 1
        if self._capacity is None:
            self._capacity = self._first_capacity(y, y_pred, sample_weight)
        self._pending.append((y, y_pred, sample_weight, batch_size_of(x)))
        self._results.invalidate()
        if len(self._pending) >= self._capacity:
            self.flush()
        return self._results

    def flush(self) -> None:
        """Update the loss and metrics with the batches run since the last flush."""
        pending, self._pending = self._pending, []
        if len(pending) > 1:
            try:
                y, y_pred = (concat_tensors([p[i] for p in pending]) for i in range(2))
                weights = [p[2] for p in pending]
                sample_weight = None if all(w is None for w in weights) else concat_tensors(weights)
                loss = self._model.compute_loss(
                    y=y, y_pred=y_pred, sample_weight=sample_weight, training=False
                )
            except (RuntimeError, TypeError, ValueError, IndexError, KeyError):
                # The batches differ beyond their row count (padded sequences), or the loss rejects
                # a label: one batch at a time, so that an error names its batch's own counts.
                pass
            else:
                self._update(loss, y, y_pred, sample_weight, sum(p[3] for p in pending))
                return
        for y, y_pred, sample_weight, rows in pending:
            loss = self._model.compute_loss(y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
            self._update(loss, y, y_pred, sample_weight, rows)

    def _update(self, loss: torch.Tensor, y: Any, y_pred: Any, sample_weight: Any, rows: int) -> None:
        self._model._loss_tracker.update_state(loss, sample_weight=rows)
        self._model._lazy_metrics(None, y, y_pred, sample_weight)

    def _first_capacity(self, y: Any, y_pred: Any, sample_weight: Any) -> int:
        """Batches per chunk: up to ``_MAX_BATCHES`` and ``_MAX_BYTES``; 1 where the loss or a metric
        does not sum over samples on batches like this one, or an output carries a mask (a masked
        mean divides each batch by its own count of unmasked entries)."""
        model = self._model
        if any(get_mask(t) is not None for t in leaves(y_pred)):
            return 1
        loss, metrics = model._compile_loss, model._compile_metrics
        if loss is not None and not loss._sums_over_samples(y, y_pred):
            return 1
        if metrics is not None and not metrics._sums_over_samples(y, y_pred):
            return 1
        return _capacity(y, y_pred, sample_weight)


def _capacity(y: Any, y_pred: Any, sample_weight: Any) -> int:
    tensors = [t for t in leaves((y, y_pred, sample_weight)) if isinstance(t, torch.Tensor)]
    size = sum(t.numel() * t.element_size() for t in tensors)
    return max(1, min(_MAX_BATCHES, _MAX_BYTES // max(size, 1)))
