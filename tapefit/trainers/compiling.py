"""``CompileMixin``: what ``compile()`` configures on a model, and the metric bookkeeping around it.

Owns: resolving the optimizer (wrapped for loss scaling under ``mixed_float16``), the compiled
loss and metrics, the loss tracker, ``steps_per_execution`` and the other compile options, and
the tf.keras 2 ``compiled_loss`` / ``compiled_metrics`` shims. The loops that use them live in
``trainer.py``.
"""

from __future__ import annotations

from typing import Any

from .. import distribute
from .. import metrics as metrics_lib
from .. import optimizers as optimizers_lib
from ..jit import _forget_compiled
from ..mixed_precision import LossScaleOptimizer
from .compile_utils import CompiledLossShim, CompiledMetricsShim, CompileLoss, CompileMetrics

__all__ = ["CompileMixin"]


class CompileMixin:
    """The ``compile()`` half of ``Trainer`` (its state is initialised by ``Trainer.__init__``)."""

    def compile(
        self,
        optimizer: Any = "rmsprop",
        loss: Any = None,
        loss_weights: Any = None,
        metrics: Any = None,
        weighted_metrics: Any = None,
        run_eagerly: bool = False,
        steps_per_execution: int = 1,
        jit_compile: bool | str = "auto",
        auto_scale_loss: bool = True,
        check_numerics: bool = False,
    ) -> None:
        """Configure the model for training (Keras 3's signature and string names).

        ``steps_per_execution=N`` runs N batches per execution in ``fit``, ``evaluate`` and
        ``predict``: the batch-level callbacks are called once per N batches (``on_*_batch_begin``
        with the first batch's index, ``on_*_batch_end`` with the last one's and that step's logs),
        which removes their cost from the other batches, as in Keras.

        ``check_numerics=True`` (tapefit's addition) checks every training batch for NaN and Inf
        before its step and names the batch; it costs a device sync per step.

        Example:
            >>> import tapefit
            >>> model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(3)])
            >>> model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        """
        if (
            isinstance(steps_per_execution, bool)
            or not isinstance(steps_per_execution, int)
            or steps_per_execution < 1
        ):
            raise ValueError(
                f"steps_per_execution must be a positive integer (the batches run between two calls of "
                f"the batch-level callbacks), got {steps_per_execution!r}."
            )
        self.optimizer = optimizers_lib.get(optimizer)
        if (
            auto_scale_loss
            and self.dtype_policy.name == "mixed_float16"  # the model's policy, as Keras checks
            and not isinstance(self.optimizer, LossScaleOptimizer)
        ):
            self.optimizer = LossScaleOptimizer(self.optimizer)  # as Keras does for float16
        names = self._output_names_for_compile()
        self._compile_loss = CompileLoss(loss, loss_weights, names) if loss is not None else None
        # Stored past Model.__setattr__ so that compile's own metrics are not tracked as the user's.
        self.__dict__["_compile_metrics"] = (
            CompileMetrics(metrics, weighted_metrics, names)
            if metrics is not None or weighted_metrics is not None
            else None
        )
        self.__dict__["_loss_tracker"] = metrics_lib.Mean(name="loss")
        self.loss = loss
        self._loss_tracker_listed = loss is not None
        self.run_eagerly = run_eagerly
        self.jit_compile = False if run_eagerly else jit_compile
        self.steps_per_execution = steps_per_execution
        self.check_numerics = check_numerics
        self.stop_training = False
        self.compiled = True
        self.__dict__["_strategy"] = distribute.current_strategy()
        self._compile_config = {
            "optimizer": optimizer,
            "loss": loss,
            "loss_weights": loss_weights,
            "metrics": metrics,
            "weighted_metrics": weighted_metrics,
            "run_eagerly": run_eagerly,
            "steps_per_execution": steps_per_execution,
            "jit_compile": jit_compile,
        }
        _forget_compiled(self)

    def get_compile_config(self) -> dict[str, Any] | None:
        """The ``compile()`` arguments as a JSON-able dict, or None before ``compile()``, as Keras's.

        The optimizer is saved by its config (not its state); losses and metrics by name or config.
        Raises ValueError or TypeError for an argument that cannot be saved by name (an
        unregistered function as loss: register it with ``tapefit.saving.register_serializable``).
        """
        if not getattr(self, "compiled", False):
            return None
        from .. import losses as losses_lib

        cfg = self._compile_config
        return {
            "optimizer": optimizers_lib.serialize(self.optimizer),
            "loss": _serialize(cfg.get("loss"), losses_lib),
            "loss_weights": cfg.get("loss_weights"),
            "metrics": _serialize(cfg.get("metrics"), metrics_lib),
            "weighted_metrics": _serialize(cfg.get("weighted_metrics"), metrics_lib),
            "run_eagerly": cfg.get("run_eagerly", False),
            "steps_per_execution": cfg.get("steps_per_execution", 1),
            "jit_compile": cfg.get("jit_compile", "auto"),
        }

    def compile_from_config(
        self, config: dict[str, Any], custom_objects: dict[str, Any] | None = None
    ) -> None:
        """``compile()`` with the arguments of a :meth:`get_compile_config` dict (a new optimizer,
        built for the model's weights when the model is built)."""
        from .. import losses as losses_lib

        if not isinstance(config, dict) or not isinstance(config.get("optimizer"), dict):
            raise ValueError(
                "compile_from_config needs a dict from get_compile_config() with an 'optimizer' config; "
                f"got {config!r}."
            )
        options = {k: config[k] for k in ("run_eagerly", "steps_per_execution", "jit_compile") if k in config}
        self.compile(
            optimizer=optimizers_lib.deserialize(config["optimizer"], custom_objects=custom_objects),
            loss=_deserialize(config.get("loss"), losses_lib, custom_objects),
            loss_weights=config.get("loss_weights"),
            metrics=_deserialize(config.get("metrics"), metrics_lib, custom_objects),
            weighted_metrics=_deserialize(config.get("weighted_metrics"), metrics_lib, custom_objects),
            **options,
        )
        if self.built:  # type: ignore[attr-defined]
            self.optimizer.build(self.trainable_variables)  # type: ignore[attr-defined]

    def _output_names_for_compile(self) -> list[str]:
        try:
            return list(self.output_names)  # type: ignore[attr-defined]
        except (AttributeError, IndexError):
            return []

    @property
    def compiled_loss(self) -> CompiledLossShim:
        return CompiledLossShim(self)

    @property
    def compiled_metrics(self) -> CompiledMetricsShim:
        return CompiledMetricsShim(self)

    def _compiled_metric_objects(self) -> list[metrics_lib.Metric]:
        out: list[metrics_lib.Metric] = []
        if self.compiled:
            if self._loss_tracker is not None and self._loss_tracker_listed:
                out.append(self._loss_tracker)
            if self._compile_metrics is not None:
                out.append(self._compile_metrics)
            if self._compile_loss is not None:
                out.extend(self._compile_loss.metrics)
        return out

    @property
    def metrics_names(self) -> list[str]:
        return [m.name for m in self.metrics]  # type: ignore[attr-defined]

    def reset_metrics(self) -> None:
        for m in self.metrics:  # type: ignore[attr-defined]
            m.reset_state()


def _serialize(obj: Any, module: Any) -> Any:
    """Names and numbers as they are; objects by ``module.serialize``; lists and dicts item by item."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_serialize(o, module) for o in obj]
    if isinstance(obj, dict):
        return {k: _serialize(v, module) for k, v in obj.items()}
    return module.serialize(obj)


def _deserialize(obj: Any, module: Any, custom_objects: dict[str, Any] | None) -> Any:
    if isinstance(obj, dict) and "class_name" in obj:
        return module.deserialize(obj, custom_objects=custom_objects)
    if isinstance(obj, list):
        return [_deserialize(o, module, custom_objects) for o in obj]
    if isinstance(obj, dict):
        return {k: _deserialize(v, module, custom_objects) for k, v in obj.items()}
    return obj
