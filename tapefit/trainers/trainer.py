"""``Trainer``: fit / evaluate / predict and the overridable steps (``compile`` is in ``compiling.py``).

One step path: ``train_step`` / ``test_step`` / ``predict_step`` are plain methods that the loops
call once per batch (forward, loss, backward, ``optimizer.apply``, metrics, as in Keras's torch
trainer). ``fit`` and ``evaluate`` are plain loops over ``EpochIterator``; the logs a step
returns stay on the device until an epoch ends (or a callback asks), so a step has no
host-device synchronisation.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

from .. import config, distribute
from .. import metrics as metrics_lib
from ..callbacks import CallbackList
from ..jit import _compiled_method
from ..utils.random import get_rng_state, set_rng_state
from .compile_utils import CompileLoss, CompileMetrics
from .compiling import CompileMixin
from .data_adapters import (
    get_adapter,
    train_validation_split,
    unpack_x_y_sample_weight,
)
from .epoch_iterator import EpochIterator
from .eval_chunks import eval_chunks
from .fit_state import FitState, ResumePoint
from .inference import inference_is_safe
from .logs import EpochLogs, MetricResults, flatten_logs, to_python
from .on_batch import OnBatchMixin
from .outputs import (
    batch_size_of,
    check_finite,
    concat_tensors,
    concat_to_numpy,
    group_outputs,
)
from .target_check import check_batches_on_the_host, check_targets_up_front

__all__ = ["Trainer"]


class Trainer(CompileMixin, OnBatchMixin):
    """The training half of ``Model`` (mixed in; see ``tapefit.Model``)."""

    def __init__(self) -> None:
        self.compiled = False
        self.check_numerics = False
        self.optimizer: Any = None
        self.loss: Any = None
        self._compile_loss: CompileLoss | None = None
        self._compile_metrics: CompileMetrics | None = None
        self._loss_tracker: metrics_lib.Mean | None = None
        self._loss_tracker_listed = False
        self.stop_training = False
        self.history: Any = None
        self.jit_compile: bool | str = "auto"
        self.run_eagerly = False
        self.steps_per_execution = 1
        self._compile_config: dict[str, Any] = {}

    # ------------------------------------------------------------ the steps
    def compute_loss(
        self,
        x: Any = None,
        y: Any = None,
        y_pred: Any = None,
        sample_weight: Any = None,
        training: bool = True,
    ) -> torch.Tensor:
        """The compiled loss of ``(y, y_pred)`` plus the model's added and regularisation losses."""
        total = None
        if self._compile_loss is not None:
            total = self._compile_loss(y, y_pred, sample_weight)
        extra = self.losses if self._loss_layers() else None  # type: ignore[attr-defined]
        if extra:
            reg = torch.stack([torch.as_tensor(v).to(torch.float32).sum() for v in extra]).sum()
            total = reg if total is None else total + reg
        if total is None:
            raise ValueError(
                "No loss to compute: pass loss= to compile(), or compute the loss yourself in train_step."
            )
        return total

    def compute_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any = None) -> dict[str, Any]:
        """Update the compiled metrics and return every metric's result (loss tracker included)."""
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        return self.get_metrics_result()

    def get_metrics_result(self) -> dict[str, Any]:
        return flatten_logs({m.name: m.result() for m in self.metrics})  # type: ignore[attr-defined]

    def _trainable_for_step(self) -> list[torch.Tensor]:
        return self.trainable_weights  # type: ignore[attr-defined]

    def train_step(self, data: Any) -> dict[str, Any]:
        """One optimisation step on a batch; returns the logs (metric results) for that step."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        forward = self.__dict__.get("_ddp_forward", self)  # DistributedDataParallel in a distributed fit
        y_pred = forward(x, training=True)
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=True)
        self._loss_tracker.update_state(loss, sample_weight=batch_size_of(x))  # type: ignore[union-attr]
        variables = self._trainable_for_step()
        if variables:
            for v in variables:
                v.grad = None
            self.optimizer.scale_loss(loss).backward() if hasattr(
                self.optimizer, "scale_loss"
            ) else loss.backward()
            grads = [v.grad for v in variables]
            if forward is not self:
                distribute.mark_synchronized(grads)  # DDP averaged them over the ranks during backward
            self.optimizer.apply(grads, variables)
        return self._lazy_metrics(x, y, y_pred, sample_weight)

    def test_step(self, data: Any) -> dict[str, Any]:
        """Forward pass, loss and metrics on a batch, with ``training=False``."""
        x, y, sample_weight = unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)  # type: ignore[operator]
        loss = self.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight, training=False)
        self._loss_tracker.update_state(loss, sample_weight=batch_size_of(x))  # type: ignore[union-attr]
        return self._lazy_metrics(x, y, y_pred, sample_weight)

    def _lazy_metrics(self, x: Any, y: Any, y_pred: Any, sample_weight: Any) -> Any:
        """Update the compiled metrics; their results are computed only when read. A subclass's own
        ``compute_metrics`` (what Keras's default steps return) is called instead."""
        if getattr(self.compute_metrics, "__func__", None) is not Trainer.compute_metrics:
            return self.compute_metrics(x, y, y_pred, sample_weight)  # overridden, or set on the model
        if self._compile_metrics is not None:
            self._compile_metrics.update_state(y, y_pred, sample_weight)
        results = self._lazy_metrics_object()
        results.invalidate()
        return results

    def _lazy_metrics_object(self) -> MetricResults:
        results = self.__dict__.get("_metric_results")
        if results is None:
            results = self.__dict__["_metric_results"] = MetricResults(self)
        return results

    def predict_step(self, data: Any) -> Any:
        x, _, _ = unpack_x_y_sample_weight(data)
        return self(x, training=False)  # type: ignore[operator]

    def _step_function(self, kind: str) -> Any:
        step = {"train": self.train_step, "test": self.test_step, "predict": self.predict_step}[kind]
        if kind == "train":
            if self.jit_compile is True or (
                self.jit_compile == "auto"
                and self._device().type == "cuda"
                and type(self).train_step is Trainer.train_step
            ):
                return _compiled_method(self, "train_step")
        return step  # evaluate/predict run their whole loop under one torch.no_grad()

    # ----------------------------------------------------------------- fit
    def _device(self) -> torch.device:
        return self._weight_device()  # type: ignore[attr-defined]

    def _assert_compiled(self, what: str) -> None:
        if not self.compiled:
            raise ValueError(
                f"You must call compile() before {what}(): e.g. model.compile(optimizer='adam', "
                "loss='sparse_categorical_crossentropy', metrics=['accuracy'])."
            )

    def _callbacks(self, callbacks: Any, verbose: Any, epochs: int, steps: int | None) -> CallbackList:
        if isinstance(callbacks, CallbackList):
            return callbacks
        verbose = 1 if verbose == "auto" else verbose
        return CallbackList(
            callbacks,
            add_history=True,
            add_progbar=verbose != 0,
            model=self,
            verbose=verbose,
            epochs=epochs,
            steps=steps,
        )

    @distribute.guard
    def fit(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        epochs: int = 1,
        verbose: int | str = "auto",
        callbacks: Any = None,
        validation_split: float = 0.0,
        validation_data: Any = None,
        shuffle: bool | str = True,
        class_weight: dict | None = None,
        sample_weight: Any = None,
        initial_epoch: int = 0,
        steps_per_epoch: int | None = None,
        validation_steps: int | None = None,
        validation_batch_size: int | None = None,
        validation_freq: int = 1,
    ) -> Any:
        """Train for ``epochs`` epochs; returns a ``History`` (``.history`` dict of per-epoch values)."""
        self._assert_compiled("fit")
        strategy = self._begin_run()
        if validation_split and validation_data is None:
            (x, y, sample_weight), validation_data = train_validation_split(
                (x, y, sample_weight), validation_split
            )
        device = self._device()
        train_iter = EpochIterator(
            get_adapter(x, y, sample_weight, batch_size, shuffle, class_weight, device), steps_per_epoch
        )
        if strategy is not None:
            strategy.shard_input(train_iter.adapter, training=True)
        val_iter = None
        if validation_data is not None:
            vx, vy, vsw = (
                unpack_x_y_sample_weight(validation_data)
                if isinstance(validation_data, tuple)
                else (validation_data, None, None)
            )
            val_iter = EpochIterator(
                get_adapter(vx, vy, vsw, validation_batch_size or batch_size, False, None, device),
                validation_steps,
            )
            val_strategy = strategy
            if strategy is not None and not strategy.shard_input(val_iter.adapter, training=False):
                val_strategy = None  # too few rows to split: every rank validates on all of them
        cbs = self._callbacks(callbacks, verbose, epochs, train_iter.num_batches)
        self.stop_training = False
        self._build_for_training(train_iter, strategy)
        check_targets_up_front(self, x, y)
        check_batches_on_the_host(self, train_iter.adapter)
        train_fn = self._step_function("train")
        state = FitState(callbacks=list(cbs.callbacks), exact=train_iter.replayable)
        self._fit_state = state
        self._resume_point = None
        cbs.on_train_begin()
        resume = self._resume_point
        initial_epoch = max(
            [initial_epoch] + [int(getattr(c, "initial_epoch", 0) or 0) for c in cbs.callbacks]
        )
        epoch_logs: dict[str, float] = {}
        for epoch in range(initial_epoch, epochs):
            skip = 0
            if resume is not None and resume.epoch == epoch and resume.step > 0:
                skip = self._begin_resumed_epoch(resume, train_iter, state)
            else:
                self.reset_metrics()
                state.epoch_rng, state.data_state = get_rng_state(), train_iter.adapter.state_dict()
                state.logs = EpochLogs(self)
            state.epoch, state.step = epoch, skip
            logs = state.logs
            cbs.on_epoch_begin(epoch)
            batches = train_iter.epoch(skip)
            if skip:
                set_rng_state(resume.rng_now)  # the batches were replayed; now continue the random streams
            step_fn, timer = train_fn, cbs.time_split
            if timer is not None:  # the loop is timed only when a TimeSplit callback asks
                batches, step_fn = timer.begin_loop(batches, train_fn, device)
            # Batch hooks run once per execution of ``steps_per_execution`` batches, as in Keras.
            hooks, per_execution, in_group = cbs.needs_train_batch_hooks, self.steps_per_execution, 0
            for step, batch in batches:
                if hooks and not in_group:
                    cbs.on_train_batch_begin(step)
                if self.check_numerics:
                    check_finite(batch, epoch, step)
                logs.add(step_fn(batch))
                state.step = step + 1
                in_group += 1
                if in_group == per_execution:
                    in_group = 0
                    if hooks:
                        self._end_train_batch(cbs, step, logs, strategy)
                    if self.stop_training:
                        break
            if in_group and hooks:  # the epoch's last execution was short
                self._end_train_batch(cbs, step, logs, strategy)
            if timer is not None:
                timer.end_loop()
            if logs.steps == 0:
                raise ValueError(
                    "The training data produced no batches this epoch: it is empty, or a generator "
                    "is exhausted (give steps_per_epoch, or use a Dataset that can be re-iterated)."
                )
            epoch_logs = self._read_logs(logs, strategy, "The training data")
            if val_iter is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_loop(val_iter, cbs, val_strategy)
                epoch_logs.update({f"val_{k}": v for k, v in val_logs.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            if strategy is not None:  # rank 0 decides, so every rank runs the same epochs
                self.stop_training = distribute.broadcast_flag(self.stop_training)
            if self.stop_training:
                break
        if getattr(self.optimizer, "use_ema", False):
            self.optimizer.finalize_variable_values(self._trainable_for_step())
        cbs.on_train_end(epoch_logs)
        self._fit_state = None
        if strategy is not None:
            strategy.end_fit(self)
        return self.history

    def _end_train_batch(self, cbs: CallbackList, step: int, logs: EpochLogs, strategy: Any) -> None:
        cbs.on_train_batch_end(step, logs.current(dict_copy=cbs.wants_batch_dicts))
        if strategy is not None and cbs.wants_batch_dicts:  # a callback may stop on one rank
            self.stop_training = distribute.any_rank(self.stop_training)

    def _begin_resumed_epoch(self, resume: ResumePoint, train_iter: EpochIterator, state: FitState) -> int:
        """Replay the start of an interrupted epoch: its random states and data order; the metrics
        and log accumulators were restored from the backup. Returns the batches to skip."""
        if not train_iter.replayable:
            warnings.warn(
                "BackupAndRestore: this input (a generator, or steps_per_epoch over a carried-over "
                "iterator) cannot be replayed, so the epoch resumes with the next batches it yields.",
                stacklevel=3,
            )
        if resume.epoch_rng is not None:
            set_rng_state(resume.epoch_rng)
        train_iter.adapter.load_state_dict(resume.data_state)
        state.epoch_rng, state.data_state = resume.epoch_rng, resume.data_state
        state.logs = EpochLogs(self)
        if resume.logs_meta is not None:
            state.logs.load_state_dict(resume.logs_tensors, resume.logs_meta, self._device())
        return resume.step

    def _begin_run(self) -> Any:
        """Set up a fit/evaluate/predict: cuDNN autotuning on CUDA (``config.set_cudnn_autotune``)
        and the distribution strategy, which is returned (None on one process)."""
        strategy = distribute.strategy_for(self)
        if strategy is not None:
            strategy.prepare_model(self)  # may move the model to its rank's GPU
        config._autotune_for(self._device())
        return strategy

    def _read_logs(self, logs: EpochLogs, strategy: Any, what: str) -> dict[str, Any]:
        """An epoch's logs as Python values; when distributed, over every rank's data."""
        if strategy is None:
            return to_python(logs.current())
        distribute.check_all_ranks_stepped(logs.steps, what)
        with distribute.reduced_metrics(self.metrics):  # type: ignore[attr-defined]
            values, averaged = logs.current_from_metrics(self.get_metrics_result())
            values.update(distribute.mean_over_ranks({k: values[k] for k in averaged}))
            return to_python(values)

    def _build_for_training(self, iterator: EpochIterator, strategy: Any = None) -> None:
        """Build the model (on one batch) and its optimizer before training starts, as Keras does,
        so callbacks that restore state (BackupAndRestore) find every weight in place."""
        unbuilt = any(getattr(m, "built", True) is False for m in self.modules())  # type: ignore[attr-defined]
        if unbuilt:
            batch = iterator.adapter.peek()
            if batch is not None:
                x, _, _ = unpack_x_y_sample_weight(batch)
                with torch.no_grad():
                    try:
                        self(x, training=False)  # type: ignore[operator]
                    except NotImplementedError:
                        pass  # no call() (a wrapper whose train_step calls an inner model): built in the step
        if strategy is not None:
            strategy.begin_fit(self, wrap_forward=type(self).train_step is Trainer.train_step)
        if (
            self.optimizer is not None
            and hasattr(self.optimizer, "build")
            and not getattr(self.optimizer, "built", False)
        ):
            variables = self._trainable_for_step()
            if variables:
                self.optimizer.build(variables)

    # ------------------------------------------------------------ evaluate
    def _evaluate_loop(
        self, iterator: EpochIterator, cbs: CallbackList, strategy: Any = None
    ) -> dict[str, float]:
        test_fn = self._step_function("test")
        self.reset_metrics()
        cbs.on_test_begin()
        logs = EpochLogs(self)
        hooks, per_execution, in_group = cbs.needs_test_batch_hooks, self.steps_per_execution, 0
        infer = inference_is_safe(self, iterator.adapter, "test_step", Trainer.test_step)
        first, chunks = True, None
        with torch.no_grad(), contextlib.ExitStack() as inference:
            for step, batch in iterator.epoch():
                if hooks and not in_group:
                    cbs.on_test_batch_begin(step)
                logs.add(test_fn(batch) if chunks is None else chunks.step(batch))
                if first:  # the first step built whatever builds lazily
                    first = False
                    if infer:  # the rest need no autograd at all
                        inference.enter_context(torch.inference_mode())
                    if cbs.test_batches_read_lazily:  # metrics are read through the logs only
                        chunks = eval_chunks(self, iterator.adapter, Trainer)
                        if chunks is not None:
                            inference.callback(chunks.detach)
                if hooks:
                    in_group += 1
                    if in_group == per_execution:
                        in_group = 0
                        cbs.on_test_batch_end(step, logs.current(dict_copy=cbs.wants_batch_dicts))
            if in_group:  # the last execution was short
                cbs.on_test_batch_end(step, logs.current(dict_copy=cbs.wants_batch_dicts))
            if chunks is not None:
                chunks.flush()
        if logs.steps == 0 and strategy is None:
            raise ValueError("The evaluation data is empty: it produced no batches.")
        result = self._read_logs(logs, strategy, "The evaluation data")
        cbs.on_test_end(result)
        return result

    @distribute.guard
    def evaluate(
        self,
        x: Any = None,
        y: Any = None,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        sample_weight: Any = None,
        steps: int | None = None,
        callbacks: Any = None,
        return_dict: bool = False,
    ) -> Any:
        """Loss and metrics on the data: a scalar, ``[loss, *metrics]``, or a dict with return_dict."""
        self._assert_compiled("evaluate")
        strategy = self._begin_run()
        iterator = EpochIterator(
            get_adapter(x, y, sample_weight, batch_size, False, None, self._device()), steps
        )
        if strategy is not None and not strategy.shard_input(iterator.adapter, training=False):
            strategy = None  # too few rows to split: every rank evaluates all of them
        cbs = self._callbacks(callbacks, verbose, 1, iterator.num_batches)
        logs = self._evaluate_loop(iterator, cbs, strategy)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    # ------------------------------------------------------------- predict
    @distribute.guard
    def predict(
        self,
        x: Any,
        batch_size: int | None = None,
        verbose: int | str = "auto",
        steps: int | None = None,
        callbacks: Any = None,
    ) -> Any:
        """Outputs for every input row, as numpy arrays (with the model's output structure)."""
        strategy = self._begin_run()
        iterator = EpochIterator(get_adapter(x, None, None, batch_size, False, None, self._device()), steps)
        if strategy is not None and not strategy.shard_input(iterator.adapter, training=False):
            strategy = None  # too few rows to split: every rank predicts all of them
        cbs = self._callbacks(callbacks, verbose, 1, iterator.num_batches)
        predict_fn = self._step_function("predict")
        cbs.on_predict_begin()
        outputs: list[Any] = []
        hooks, per_execution, in_group = cbs.needs_predict_batch_hooks, self.steps_per_execution, 0
        infer = inference_is_safe(self, iterator.adapter, "predict_step", Trainer.predict_step)
        with torch.no_grad(), contextlib.ExitStack() as inference:
            for step, batch in iterator.epoch():
                if hooks and not in_group:
                    cbs.on_predict_batch_begin(step)
                outputs.append(predict_fn(batch))
                if infer:  # as in _evaluate_loop
                    inference.enter_context(torch.inference_mode())
                    infer = False
                if hooks:
                    in_group += 1
                    if in_group == per_execution:
                        cbs.on_predict_batch_end(step, {"outputs": group_outputs(outputs[-in_group:])})
                        in_group = 0
            if in_group:  # the last execution was short
                cbs.on_predict_batch_end(step, {"outputs": group_outputs(outputs[-in_group:])})
        cbs.on_predict_end()
        if strategy is not None:  # every rank's rows, in the input's order, on every rank
            rows = iterator.adapter.sharder.global_indices()
            return concat_to_numpy([distribute.gather_rows(concat_tensors(outputs), rows)])
        if not outputs:
            raise ValueError("predict() got no data: the input is empty.")
        return concat_to_numpy(outputs)
