"""What ``compile(loss=..., metrics=...)`` turns into: one loss callable and one metrics container
that understand single outputs, lists and dicts of outputs, and Keras's names for them.

``"accuracy"`` (and ``"crossentropy"``) are resolved on the first batch from the label and
prediction shapes, exactly as Keras 3 does: binary for one output unit, sparse when the labels
have one dimension less (or a trailing 1), categorical otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn import functional as F

from .. import losses as losses_lib
from .. import metrics as metrics_lib
from .._masking import get_mask
from .outputs import batch_size_of

__all__ = ["CompileLoss", "CompileMetrics", "CompiledLossShim", "CompiledMetricsShim"]


def _flat(struct: Any, names: list[str], needed: Any = None) -> list[Any]:
    """``struct``'s entry for each output, in ``names`` order. A dict may leave out the outputs not
    in ``needed`` (default: all are needed), whose entry is then None, as Keras allows targets to
    leave out an output that has no loss."""
    if isinstance(struct, dict):
        missing = [n for n in names if n not in struct and (needed is None or n in needed)]
        if missing:
            raise ValueError(
                f"Expected entries for outputs {names}; missing {missing} in keys {sorted(struct)}."
            )
        return [struct.get(n) for n in names]
    if isinstance(struct, (list, tuple)):
        return list(struct)
    return [struct]


def _one_output(struct: Any, names: list[str], what: str = "targets") -> Any:
    """A single output's target (or weights) given as ``{name: value}`` or ``[value]``, as Keras
    accepts, unwrapped; any other value is returned as it is."""
    if isinstance(struct, dict) and len(struct) == 1:
        if names[0] not in struct:
            raise ValueError(
                f"The {what} are keyed {sorted(struct)}, but the model's output is named {names[0]!r}: "
                "key them by the output's name, or pass the array itself."
            )
        return struct[names[0]]
    if isinstance(struct, (list, tuple)) and len(struct) == 1 and len(getattr(struct[0], "shape", ())) >= 1:
        return struct[0]
    return struct


def _split_outputs(
    y_true: Any, y_pred: Any, names: list[str], needed: Any = None
) -> tuple[list[Any], list[Any]]:
    """The targets and predictions of each output, in ``names`` order (targets of outputs not
    ``needed`` may be left out of a dict: see ``_flat``)."""
    if len(names) == 1:
        return [_one_output(y_true, names)], _flat(y_pred, names)
    if isinstance(y_true, dict):
        _check_keys(y_true, names, "y")
    return _flat(y_true, names, needed), _flat(y_pred, names)


def _split_weights(sample_weight: Any, names: list[str]) -> list[Any]:
    """The sample weights of each output: per output when given as a structure (one per output in
    a list, None for an unweighted one; a dict keyed by output names, which may leave outputs
    out), else shared."""
    if len(names) == 1:
        return [_one_output(sample_weight, names, "sample weights")]
    return _per_output(sample_weight, names, "sample_weight")


def _output_names(y_pred: Any, model_names: list[str]) -> list[str]:
    if isinstance(y_pred, dict):
        return list(y_pred)
    n = len(y_pred) if isinstance(y_pred, (list, tuple)) else 1
    if len(model_names) == n:
        return list(model_names)
    return [f"output_{i}" for i in range(n)] if n > 1 else (model_names[:1] or ["output"])


def _per_output(spec: Any, names: list[str], what: str) -> list[Any]:
    """Spread a per-output argument (``what``: its name, e.g. ``"compile(loss=...)"``) over the
    outputs: one for all, a list in order, or a dict by name (None for the outputs it leaves out)."""
    if isinstance(spec, dict):
        _check_keys(spec, names, what)
        return [spec.get(n) for n in names]
    if isinstance(spec, (list, tuple)) and (len(names) > 1 or len(spec) == 1):
        if len(spec) != len(names):
            raise ValueError(
                f"{what} has {len(spec)} entries, but the model has {len(names)} outputs {names}: "
                "give one per output, or a dict keyed by output name."
            )
        return list(spec)
    return [spec] * len(names)


def _check_keys(struct: dict, names: list[str], what: str) -> None:
    unknown = sorted(k for k in struct if k not in names)
    if unknown:
        raise ValueError(
            f"{what} has entries for {unknown}, which are not outputs of the model {names}: "
            "key it by output name."
        )


def _check_names(spec: Any, resolve: Any, deferred: tuple[str, ...]) -> None:
    """Resolve every name in a compile() argument now, so a misspelt one fails in compile()."""
    if isinstance(spec, str):
        if spec.lower() not in deferred:
            resolve(spec)
    elif isinstance(spec, dict):
        for v in spec.values():
            _check_names(v, resolve, deferred)
    elif isinstance(spec, (list, tuple)):
        for v in spec:
            _check_names(v, resolve, deferred)


def _resolve_loss(identifier: Any, y_true: Any, y_pred: torch.Tensor) -> Any:
    if identifier is None:
        return None
    if isinstance(identifier, str) and identifier.lower() in ("crossentropy", "ce"):
        binary, sparse = _binary_or_sparse(y_true, y_pred)
        identifier = (
            "binary_crossentropy"
            if binary
            else ("sparse_categorical_crossentropy" if sparse else "categorical_crossentropy")
        )
    loss = losses_lib.get(identifier)
    if isinstance(loss, losses_lib.Loss):
        return loss
    return losses_lib.LossFunctionWrapper(loss, name=getattr(loss, "__name__", None))


class CompileLoss:
    """The compiled loss: per-output losses, weighted and summed; per-output trackers when several."""

    def __init__(self, loss: Any, loss_weights: Any = None, output_names: list[str] | None = None):
        _check_names(loss, losses_lib.get, ("crossentropy", "ce"))
        self._spec = loss
        self._weights_spec = loss_weights
        self._model_output_names = output_names or []
        self.built = False
        self.metrics: list[metrics_lib.Metric] = []
        self._single: tuple[Any, float] | None = None
        self._fused_sparse: torch.dtype | None = None

    def build(self, y_true: Any, y_pred: Any) -> None:
        self.names = _output_names(y_pred, self._model_output_names)
        specs = _per_output(self._spec, self.names, "compile(loss=...)")
        # The outputs with a loss: the only ones whose targets must be given.
        self._needed = {n for n, spec in zip(self.names, specs) if spec is not None}
        trues, preds = _split_outputs(y_true, y_pred, self.names, self._needed)
        self.losses = [_resolve_loss(s, t, p) for s, t, p in zip(specs, trues, preds)]
        weights = self._weights_spec
        self.weights = (
            [
                1.0 if w is None else float(w)
                for w in _per_output(weights, self.names, "compile(loss_weights=...)")
            ]
            if weights is not None
            else [1.0] * len(self.names)
        )
        if sum(fn is not None for fn in self.losses) > 1:  # as Keras: per-output losses when several
            self.metrics = [
                metrics_lib.Mean(name=f"{n}_loss") for n, fn in zip(self.names, self.losses) if fn is not None
            ]
        # One output with a loss: the step calls that loss directly (no per-output bookkeeping).
        self._single = (
            (self.losses[0], self.weights[0]) if len(self.names) == 1 and self.losses[0] is not None else None
        )
        # The dtype of a plain sparse cross-entropy's logits, when the single loss is one (else None).
        self._fused_sparse = (
            getattr(torch, self._single[0].dtype)
            if self._single is not None and _is_plain_sparse_ce(self._single[0])
            else None
        )
        self.built = True

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        """Whether every loss sums over samples on batches like this one (``Loss._sums_over_samples``):
        its per-output trackers are means weighted by the row count, which sum over samples too."""
        if not self.built:
            return False
        trues, preds = _split_outputs(y_true, y_pred, self.names, self._needed)
        return all(fn is None or fn._sums_over_samples(t, p) for fn, t, p in zip(self.losses, trues, preds))

    def __call__(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> torch.Tensor | None:
        if not self.built:
            self.build(y_true, y_pred)
        if self._single is not None and isinstance(y_pred, torch.Tensor):
            fn, weight = self._single
            if type(y_true) is not torch.Tensor or sample_weight is not None:
                y_true, sample_weight = (
                    _one_output(y_true, self.names),
                    _one_output(sample_weight, self.names),
                )
            fused = self._fused_sparse
            if fused is not None and sample_weight is None and _plain_sparse_batch(y_true, y_pred, fused):
                value = _checked_cross_entropy(fn, y_true, y_pred)
            else:
                value = fn(y_true, y_pred, sample_weight=sample_weight)
            return value if weight == 1.0 else value * weight
        trues, preds = _split_outputs(y_true, y_pred, self.names, self._needed)
        sws = _split_weights(sample_weight, self.names)
        if len(trues) != len(preds):
            raise ValueError(
                f"The model has {len(preds)} outputs {self.names} but received {len(trues)} targets."
            )
        total = None
        trackers = iter(self.metrics)
        for fn, w, yt, yp, sw in zip(self.losses, self.weights, trues, preds, sws):
            if fn is None:
                continue
            value = fn(yt, yp, sample_weight=sw)
            if self.metrics:
                next(trackers).update_state(value, sample_weight=yp.shape[0])
            value = value * w if w != 1.0 else value
            total = value if total is None else total + value
        return total


# A label no data holds: torch's cross-entropy then ignores none (its default, -100, would be skipped
# silently where Keras reports an out-of-range label).
_NO_IGNORED_LABEL = torch.iinfo(torch.int64).min


def _is_plain_sparse_ce(loss: Any) -> bool:
    """A built-in SparseCategoricalCrossentropy on logits, mean-reduced, with no ignored class."""
    if type(loss) is not losses_lib.SparseCategoricalCrossentropy:
        return False
    config = loss.get_config()
    return (
        config.get("from_logits") is True
        and config.get("ignore_class") is None
        and config.get("axis") == -1
        and loss.reduction in ("sum_over_batch_size", "mean")
    )


def _plain_sparse_batch(y_true: Any, y_pred: torch.Tensor, dtype: torch.dtype) -> bool:
    """(N, C) logits and (N,) int64 labels on the CPU, outside torch.compile: the case where the
    loss would read the labels on the host to check their range before its fused kernel."""
    return (
        y_pred.dim() == 2
        and y_pred.is_cpu  # ``device.type`` would build a string: ten times the cost of this flag
        and y_pred.dtype == dtype
        and isinstance(y_true, torch.Tensor)
        and y_true.is_cpu
        and y_true.dtype == torch.int64
        and y_true.dim() == 1
        and y_true.shape[0] == y_pred.shape[0] > 0
        and get_mask(y_pred) is None
        and not torch.compiler.is_compiling()
    )


def _checked_cross_entropy(loss: Any, y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    """The loss's own value (one fused kernel), with the label check left to the kernel.

    On the CPU, torch's cross-entropy rejects every label outside ``[0, C)`` itself; reading the
    labels' range on the host first, as the loss does, costs about a tenth of an MLP's evaluation
    step. On a rejection the loss runs its own check, which raises Keras's message naming the label.
    """
    try:
        return F.cross_entropy(y_pred, y_true, ignore_index=_NO_IGNORED_LABEL)
    except (IndexError, RuntimeError):
        loss(y_true, y_pred)
        raise


def _binary_or_sparse(y_true: Any, y_pred: torch.Tensor) -> tuple[bool, bool]:
    """Keras's rule: binary for one output unit; sparse when labels have one dim less or a trailing 1."""
    t_shape = tuple(getattr(y_true, "shape", ()))
    p_shape = tuple(y_pred.shape)
    binary = bool(p_shape) and p_shape[-1] == 1
    sparse = len(t_shape) < len(p_shape) or (bool(t_shape) and t_shape[-1] == 1 and p_shape[-1] > 1)
    return binary, sparse


def _resolve_metric(identifier: Any, y_true: Any, y_pred: torch.Tensor) -> metrics_lib.Metric:
    if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
        binary, sparse = _binary_or_sparse(y_true, y_pred)
        cls = (
            metrics_lib.BinaryAccuracy
            if binary
            else (metrics_lib.SparseCategoricalAccuracy if sparse else metrics_lib.CategoricalAccuracy)
        )
        metric = cls(name=identifier)
    else:
        metric = metrics_lib.get(identifier)
    if not isinstance(metric, metrics_lib.Metric):
        metric = metrics_lib.MeanMetricWrapper(metric)
    if isinstance(identifier, str):
        metric.name = identifier
    return metric


class CompileMetrics(metrics_lib.Metric):
    """All compiled metrics as one Metric whose ``result()`` is a dict, as in Keras 3.

    Its ``update_state`` is not wrapped for devices and ``no_grad``: each metric it holds does that.
    """

    def __init__(
        self, metrics: Any = None, weighted_metrics: Any = None, output_names: list[str] | None = None
    ):
        super().__init__(name="compile_metrics")
        for spec in (metrics, weighted_metrics):
            _check_names(spec, metrics_lib.get, ("accuracy", "acc"))
        self._metrics_spec = metrics
        self._weighted_spec = weighted_metrics
        self._model_output_names = output_names or []
        self.built = False
        self.metrics: list[metrics_lib.Metric] = []
        self._plan: list[tuple[int, metrics_lib.Metric, bool]] = []
        self._single_plan: list[tuple[metrics_lib.Metric, bool]] | None = None

    def build(self, y_true: Any, y_pred: Any) -> None:
        names = _output_names(y_pred, self._model_output_names)
        trues, preds = _split_outputs(y_true, y_pred, names, needed=())
        multi = len(names) > 1
        for spec, weighted in ((self._metrics_spec, False), (self._weighted_spec, True)):
            if spec is None:
                continue
            if (
                multi
                and isinstance(spec, (list, tuple))
                and not all(isinstance(s, (list, tuple, dict, type(None))) for s in spec)
            ):
                per_output = [list(spec)] * len(names)
            else:
                per_output = _per_output(
                    spec, names, f"compile({'weighted_metrics' if weighted else 'metrics'}=...)"
                )
            for i, items in enumerate(per_output):
                if items is None:
                    continue
                if trues[i] is None:
                    what = "weighted_metrics" if weighted else "metrics"
                    raise ValueError(
                        f"compile({what}=...) gives output {names[i]!r} metrics, but the targets have no "
                        f"entry for it: add its targets, or give {what} per output in a dict that "
                        "leaves it out."
                    )
                for ident in items if isinstance(items, (list, tuple)) else [items]:
                    m = _resolve_metric(ident, trues[i], preds[i])
                    if multi:
                        m.name = f"{names[i]}_{m.name}"
                    if weighted and any(p.name == m.name for _, p, _ in self._plan):
                        m.name = f"weighted_{m.name}"
                    self._plan.append((i, m, weighted))
                    self.metrics.append(m)
        self.names = names
        self._needed = {names[i] for i, _, _ in self._plan}  # the outputs whose targets metrics read
        self._single_plan = [(m, weighted) for _, m, weighted in self._plan] if not multi else None
        self.built = True
        deferred = self.__dict__.pop("_deferred_state", None)
        if deferred is not None:
            self.load_state_dict(deferred)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if not self.built:
            self.build(y_true, y_pred)
        if self._single_plan is not None and isinstance(y_pred, torch.Tensor):
            if type(y_true) is not torch.Tensor or sample_weight is not None:
                y_true, sample_weight = (
                    _one_output(y_true, self.names),
                    _one_output(sample_weight, self.names),
                )
            for m, weighted in self._single_plan:
                m.update_state(y_true, y_pred, sample_weight=sample_weight if weighted else None)
            return
        trues, preds = _split_outputs(y_true, y_pred, self.names, self._needed)
        sws = _split_weights(sample_weight, self.names)
        for i, m, weighted in self._plan:
            m.update_state(trues[i], preds[i], sample_weight=sws[i] if weighted else None)

    update_state._tapefit_follows_device = True  # type: ignore[attr-defined]

    def _sums_over_samples(self, y_true: Any, y_pred: Any) -> bool:
        if not self.built:
            return False
        trues, preds = _split_outputs(y_true, y_pred, self.names, self._needed)
        return all(m._sums_over_samples(trues[i], preds[i]) for i, m, _ in self._plan)

    def result(self) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {m.name: m.result() for m in self.metrics}

    def reset_state(self) -> None:
        for m in self.metrics:
            m.reset_state()

    @property
    def variables(self) -> list[Any]:
        return [v for m in self.metrics for v in m.variables]

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {f"{m.name}/{k}": v for m in self.metrics for k, v in m.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> None:
        """Restore :meth:`state_dict`; before the first batch builds the metrics, it is kept until then."""
        if not self.built:
            self._deferred_state = dict(state)
            return
        for m in self.metrics:
            prefix = f"{m.name}/"
            m.load_state_dict(
                {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=strict
            )


class CompiledLossShim:
    """tf.keras 2's ``model.compiled_loss(y, y_pred, sample_weight, regularization_losses)``.

    It computes the compiled loss plus the model's added losses and feeds the loss tracker,
    as tf.keras 2 did, so that ``{m.name: m.result() for m in self.metrics}`` shows it.
    """

    def __init__(self, model: Any):
        self._model = model

    def __call__(
        self, y_true: Any, y_pred: Any, sample_weight: Any = None, regularization_losses: Any = None
    ) -> torch.Tensor:
        model = self._model
        loss = model.compute_loss(y=y_true, y_pred=y_pred, sample_weight=sample_weight)
        if model._loss_tracker is not None:
            model._loss_tracker_listed = True
            model._loss_tracker.update_state(loss, sample_weight=batch_size_of(y_pred))
        return loss

    @property
    def metrics(self) -> list[metrics_lib.Metric]:
        m = self._model
        return ([m._loss_tracker] if m._loss_tracker is not None else []) + (
            m._compile_loss.metrics if m._compile_loss is not None else []
        )


class CompiledMetricsShim:
    """tf.keras 2's ``model.compiled_metrics.update_state(y, y_pred, sample_weight)``."""

    def __init__(self, model: Any):
        self._model = model

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        if self._model._compile_metrics is not None:
            self._model._compile_metrics.update_state(y_true, y_pred, sample_weight)

    def reset_state(self) -> None:
        if self._model._compile_metrics is not None:
            self._model._compile_metrics.reset_state()

    @property
    def metrics(self) -> list[metrics_lib.Metric]:
        cm = self._model._compile_metrics
        return list(cm.metrics) if cm is not None else []
