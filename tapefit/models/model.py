"""``Model``: a Layer that trains. Subclass it with ``call()``, or build it from a graph with
``Model(inputs, outputs)`` (which returns a ``Functional``).

Owns model-level structure (layers, ``get_layer``, input checks, metric tracking, ``build``,
``summary`` and saving entry points); training lives in ``trainers.Trainer``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .._masking import set_mask
from ..jit import _tracing
from ..layers._calling import _call_context
from ..layers.layer import Layer, _structure_cached
from ..layers.symbolic import KerasTensor, _flatten, map_structure, shape_probe
from ..metrics import Metric
from ..trainers.trainer import Trainer
from . import functional as functional_lib

__all__ = ["Model", "Functional"]


def _is_graph_args(args: tuple, kwargs: dict) -> bool:
    candidates = list(args[:2]) + [kwargs.get("inputs"), kwargs.get("outputs")]
    return any(_flatten(c) for c in candidates if c is not None)


class Model(Trainer, Layer):
    """A trainable model: ``compile``, ``fit``, ``evaluate``, ``predict``, ``save`` and the Layer API.

    Example (subclassing):
        >>> import torch, tapefit
        >>> class Net(tapefit.Model):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.hidden = tapefit.layers.Dense(8, activation="relu")
        ...         self.out = tapefit.layers.Dense(2)
        ...     def call(self, x, training=False):
        ...         return self.out(self.hidden(x))
        >>> Net()(torch.ones(4, 3)).shape
        torch.Size([4, 2])
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> Model:
        if cls is Model and _is_graph_args(args, kwargs):
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any):
        graph = _is_graph_args(args, kwargs)
        inputs = kwargs.pop("inputs", args[0] if graph and args else None)
        outputs = kwargs.pop("outputs", args[1] if graph and len(args) > 1 else None)
        if not graph and args:
            raise TypeError(
                f"{type(self).__name__}() takes keyword arguments only (name=, trainable=, ...); "
                f"got positional {args!r}"
            )
        if "name" not in kwargs and type(self) is Functional:
            from .._naming import unique_name

            kwargs["name"] = unique_name("functional")
        Layer.__init__(self, **kwargs)
        Trainer.__init__(self)
        self._tracked_metrics: list[Metric] = []
        self._graph: functional_lib.GraphPlan | None = None
        if graph:
            if outputs is None:
                raise ValueError("Model(inputs, outputs): outputs are missing.")
            functional_lib.build_graph(self, inputs, outputs)

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, Metric) and "_tracked_metrics" in self.__dict__:
            if all(m is not value for m in self._tracked_metrics):
                self._tracked_metrics.append(value)
        super().__setattr__(name, value)

    # ------------------------------------------------------------- structure
    @property
    def layers(self) -> list[Layer]:
        """The model's layers: graph order for functional models, attribute order for subclasses."""
        if self._graph is not None:
            return list(self._graph.layers)
        return [m for m in self._sublayers() if isinstance(m, nn.Module)]

    def get_layer(self, name: str | None = None, index: int | None = None) -> Layer:
        if index is not None:
            layers = self.layers
            if not -len(layers) <= index < len(layers):
                raise ValueError(f"get_layer(index={index}): the model has {len(layers)} layers.")
            return layers[index]
        for layer in self.layers:
            if getattr(layer, "name", None) == name:
                return layer
        raise ValueError(
            f"No layer named {name!r} in model {self.name!r}. Layers: "
            f"{[getattr(x, 'name', type(x).__name__) for x in self.layers]}"
        )

    @property
    def inputs(self) -> list[KerasTensor] | None:
        return self._graph.input_tensors if self._graph is not None else None

    @property
    def outputs(self) -> list[KerasTensor] | None:
        return self._graph.output_tensors if self._graph is not None else None

    @property
    def input_shape(self) -> Any:
        if self._graph is not None:
            shapes = [t.shape for t in self._graph.input_tensors]
            return shapes[0] if len(shapes) == 1 else shapes
        return Layer.input_shape.fget(self)  # type: ignore[attr-defined]

    @property
    def output_shape(self) -> Any:
        if self._graph is not None:
            shapes = [t.shape for t in self._graph.output_tensors]
            return shapes[0] if len(shapes) == 1 else shapes
        raise AttributeError(f"Model {self.name!r} has no static output shape: it is a subclassed model.")

    @property
    def output_names(self) -> list[str]:
        if self._graph is not None:
            outs = self._graph.outputs
            if isinstance(outs, dict):
                return list(outs)
            return [t._keras_history[0].name for t in self._graph.output_tensors]
        return []

    @property
    def metrics(self) -> list[Metric]:
        """Loss tracker, compiled metrics, metrics assigned as attributes, then sub-layers' metrics."""
        out = self._compiled_metric_objects()
        out.extend(self._tracked_metrics)
        for m in self._inner_models():
            if not m.compiled:
                out.extend(x for x in m._tracked_metrics if all(x is not y for y in out))
        return out

    def _inner_models(self) -> list[Model]:
        """The models nested in this one, cached per structure version (custom steps read
        ``self.metrics`` every batch; walking every module each time would cost more than the step's glue)."""
        return _structure_cached(
            self,
            "_inner_models_cache",
            lambda: [m for m in self.modules() if m is not self and isinstance(m, Model)],
        )

    # --------------------------------------------------------------- calling
    def call(self, *args: Any, **kwargs: Any) -> Any:
        if self._graph is None:
            raise NotImplementedError(
                f"{type(self).__name__} must implement call(inputs, training=None), or be "
                "built with Model(inputs, outputs)."
            )
        kwargs.pop("training", None)
        mask = kwargs.pop("mask", None)
        inputs = args[0] if len(args) == 1 else (list(args) if args else kwargs.pop("inputs"))
        flat_inputs = self._flatten_inputs(inputs)
        if mask is not None:  # Keras: ``model(x, mask=m)`` attaches the masks to the inputs
            for x, m in zip(flat_inputs, self._flatten_inputs(mask)):
                if m is not None:
                    set_mask(x, m)
        return self._graph.run(flat_inputs)

    # A model's outputs carry the masks its layers attached; it adds none of its own.
    _masks_by_default = True

    def compute_mask(self, inputs: Any, previous_mask: Any) -> Any:
        return None

    def _flatten_inputs(self, inputs: Any) -> list[torch.Tensor]:
        assert self._graph is not None
        spec = self._graph.inputs
        if isinstance(spec, dict):
            if not isinstance(inputs, dict):
                if len(spec) == 1:
                    return [inputs]
                raise ValueError(
                    f"Model {self.name!r} expects a dict of inputs with keys {sorted(spec)}; got "
                    f"{type(inputs).__name__}."
                )
            missing = [k for k in spec if k not in inputs]
            if missing:
                raise ValueError(f"Model {self.name!r}: missing inputs {missing}; got keys {sorted(inputs)}.")
            return [inputs[k] for k in spec]
        if isinstance(inputs, dict):
            names = [t.name for t in self._graph.input_tensors]
            try:
                return [inputs[n] for n in names]
            except KeyError:
                raise ValueError(
                    f"Model {self.name!r} has inputs named {names}; got a dict with keys {sorted(inputs)}."
                ) from None
        flat = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        if len(flat) != len(self._graph.input_tensors):
            raise ValueError(
                f"Model {self.name!r} expects {len(self._graph.input_tensors)} input(s), but it was "
                f"called on {len(flat)}."
            )
        return flat

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if (
            self._graph is not None
            and _call_context[1] == 0
            and args
            and isinstance(args[0], (torch.Tensor, list, tuple, dict))
        ):
            if len(args) == 1 and type(args[0]) is torch.Tensor and not _tracing():
                # The cache would be a guard in a compiled step: traced, the check runs at trace time.
                shape, checked = args[0].shape, self.__dict__.get("_checked_shape")
                if checked is None or checked[0] is not self._graph or checked[1] != shape:
                    self._check_input_shapes(args[0])  # once per graph and batch shape
                    self.__dict__["_checked_shape"] = (self._graph, shape)
            else:
                self._check_input_shapes(args[0] if len(args) == 1 else list(args))
        return Layer.__call__(self, *args, **kwargs)

    def _check_input_shapes(self, inputs: Any) -> None:
        if not _flatten(inputs) and self._graph is not None:
            flat = self._flatten_inputs(inputs)
            for t, spec in zip(flat, self._graph.input_tensors):
                if hasattr(t, "shape"):
                    _check_shape(self.name, spec, tuple(t.shape))

    def build(self, input_shape: Any = None) -> None:
        """Create the weights for inputs of ``input_shape``; subclassed models run one call on zeros."""
        if self._graph is not None or self.built:
            self.built = True
            return
        if input_shape is None:
            raise ValueError(
                f"{type(self).__name__}.build() needs input_shape, e.g. build((None, 28, 28, 1))."
            )
        shapes = (
            input_shape
            if isinstance(input_shape, (list, tuple))
            and input_shape
            and isinstance(input_shape[0], (list, tuple))
            else [input_shape]
        )
        zeros = [
            torch.zeros(tuple(2 if d is None else int(d) for d in s), device=self._weight_device())
            for s in shapes
        ]
        with torch.no_grad(), shape_probe():
            self._record_output_shapes(lambda: self(zeros[0] if len(zeros) == 1 else zeros, training=False))
        self._build_input_shape = tuple(shapes[0]) if len(shapes) == 1 else [tuple(s) for s in shapes]
        self.built = True

    def _record_output_shapes(self, run: Any) -> Any:
        """Run ``run()`` with hooks that remember each direct sub-layer's output shape (for summary)."""
        handles = []
        for layer in self._sublayers():

            def hook(mod: nn.Module, _inp: Any, out: Any) -> None:
                mod._last_output_shape = map_structure(
                    lambda t: (None, *tuple(t.shape[1:])) if isinstance(t, torch.Tensor) else None, out
                )

            handles.append(layer.register_forward_hook(hook))
        try:
            return run()
        finally:
            for h in handles:
                h.remove()

    def _build_from_call(self, args: tuple, kwargs: dict) -> None:
        if self._graph is None and type(self).build is Model.build:
            self.built = True  # a subclass builds its sub-layers by calling them
            first = args[0] if args else kwargs.get("inputs")
            if isinstance(first, torch.Tensor):
                self._build_input_shape = (None, *tuple(first.shape[1:]))  # lets plot_model trace it later
            return
        Layer._build_from_call(self, args, kwargs)

    # -------------------------------------------------------------- summary
    def summary(
        self,
        line_length: int | None = None,
        positions: Any = None,
        print_fn: Any = None,
        expand_nested: bool = False,
        show_trainable: bool = False,
        layer_range: Any = None,
    ) -> None:
        """Print Keras's table of layers, output shapes and parameter counts."""
        from .summary import summary_text

        text = summary_text(
            self, line_length=line_length, expand_nested=expand_nested, show_trainable=show_trainable
        )
        (print_fn or print)(text)

    # --------------------------------------------------------------- saving
    def save(self, filepath: str, overwrite: bool = True, **kwargs: Any) -> None:
        """Save architecture (JSON), weights (safetensors) and optimizer state to one ``.tapefit`` zip."""
        from ..saving import save_model

        save_model(self, filepath, overwrite=overwrite, **kwargs)

    def save_weights(self, filepath: str, overwrite: bool = True) -> None:
        """Write the weights to ``*.weights.safetensors`` (atomically)."""
        from ..saving import save_weights

        save_weights(self, filepath, overwrite=overwrite)

    def load_weights(self, filepath: str, skip_mismatch: bool = False) -> None:
        """Load weights from safetensors, a Keras 3 ``.weights.h5`` file, or a torch state-dict file
        read with ``weights_only=True``."""
        from ..saving import load_weights

        load_weights(self, filepath, skip_mismatch=skip_mismatch)

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as JSON (``{"class_name", "config"}``), as ``keras.Model.to_json``."""
        import json

        from ..saving.serialization import serialize_layer

        return json.dumps(serialize_layer(self), **kwargs)

    def get_config(self) -> dict[str, Any]:
        if self._graph is not None:
            from ..saving.serialization import functional_config

            return functional_config(self)
        return {"name": self.name, "trainable": self.trainable}

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: dict[str, Any] | None = None) -> Model:
        if "layers" in config and "output_layers" in config:
            from ..saving.serialization import functional_from_config

            return functional_from_config(cls, config, custom_objects)
        return cls(**config)


class Functional(Model):
    """A model defined by a graph of layers: ``tapefit.Model(inputs, outputs)``."""


def _check_shape(model_name: str, spec: KerasTensor, got: tuple[int, ...]) -> None:
    want = spec.shape
    if len(got) != len(want) or any(w is not None and w != g for w, g in zip(want[1:], got[1:])):
        hint = ""
        if len(got) == 4 and len(want) == 4 and got[1] == want[3] and got[1:] != want[1:]:
            hint = (
                " The input looks channels-first (N, C, H, W) while the model is channels-last (N, H, W, C): "
                "transpose it with x.permute(0, 2, 3, 1), or build the model with "
                "data_format='channels_first'."
            )
        raise ValueError(
            f"Model {model_name!r}: input {spec.name!r} expects shape {want}, but received shape {got}.{hint}"
        )
