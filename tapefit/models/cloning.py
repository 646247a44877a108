"""``clone_model``: the same architecture with new layers and freshly initialised weights, as Keras's."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

from ..layers.layer import Layer
from ..layers.symbolic import Input, InputLayer, KerasTensor, _flatten, map_structure
from .model import Functional, Model
from .sequential import Sequential

__all__ = ["clone_model"]


def clone_model(
    model: Model,
    input_tensors: Any = None,
    clone_function: Callable[[Layer], Layer] | None = None,
    call_function: Callable[..., Any] | None = None,
    recursive: bool = False,
) -> Model:
    """A copy of ``model`` with new layers: the same architecture, new (not copied) weights.

    Sequential and functional models are rebuilt layer by layer: each layer (never an ``Input``)
    goes through ``clone_function`` (default: ``type(layer).from_config(layer.get_config())``),
    a layer shared by several calls is cloned once, and, for functional models, each call of a
    cloned layer goes through ``call_function(layer, *args, **kwargs)`` (default: the call).
    ``input_tensors`` replaces the model's inputs with other ``tapefit.Input`` tensors of the
    same structure. With ``recursive=True`` nested Sequential and functional models are cloned
    by ``clone_model`` too instead of by ``clone_function``. A subclassed model is rebuilt from
    its ``get_config()``. A compiled model's clone is compiled with the same arguments (a new
    optimizer).

    Example:
        >>> import tapefit
        >>> model = tapefit.Sequential([tapefit.Input((4,)), tapefit.layers.Dense(3)])
        >>> clone = tapefit.models.clone_model(model)
        >>> clone.layers[0] is model.layers[0], clone.output_shape
        (False, (None, 3))
    """
    clone = _cached(clone_function, call_function, recursive)
    if isinstance(model, Sequential):
        if call_function is not None:
            raise ValueError(
                "clone_model: call_function applies to functional models only: a Sequential model's "
                "layers are listed, not called, when it is built. Clone it without call_function."
            )
        cloned = _clone_sequential(model, clone, input_tensors)
    elif getattr(model, "_graph", None) is not None and (
        type(model).get_config is Model.get_config or clone_function is not None or input_tensors is not None
    ):
        cloned = _clone_functional(model, clone, call_function, input_tensors)
    else:
        if clone_function is not None or input_tensors is not None or call_function is not None:
            raise ValueError(
                f"clone_model: clone_function, call_function and input_tensors need a Sequential or "
                f"functional model; {type(model).__name__} is a subclassed model, which is cloned from "
                "its get_config(). Clone it without those arguments."
            )
        cloned = type(model).from_config(model.get_config())
    if getattr(model, "compiled", False):
        _compile_like(cloned, model)
    return cloned


def _cached(
    clone_function: Callable[[Layer], Layer] | None, call_function: Callable[..., Any] | None, recursive: bool
) -> Callable[[Layer], Layer]:
    """``clone_function`` with a cache, so a layer used twice is cloned once, and the recursion."""
    base = clone_function or (lambda layer: type(layer).from_config(layer.get_config()))
    cache: dict[int, Layer] = {}

    def clone(layer: Layer) -> Layer:
        if id(layer) not in cache:
            if recursive and isinstance(layer, Sequential):
                cache[id(layer)] = clone_model(layer, clone_function=clone_function, recursive=True)
            elif recursive and getattr(layer, "_graph", None) is not None:
                cache[id(layer)] = clone_model(
                    layer, clone_function=clone_function, call_function=call_function, recursive=True
                )
            else:
                cache[id(layer)] = base(layer)
        return cache[id(layer)]

    return clone


def _clone_sequential(model: Sequential, clone: Callable[[Layer], Layer], input_tensors: Any) -> Sequential:
    layers: list[Any] = [clone(layer) for layer in model.layers]
    if input_tensors is not None:
        if isinstance(input_tensors, (list, tuple)):
            if len(input_tensors) != 1:
                raise ValueError(
                    "clone_model: a Sequential model has one input; input_tensors holds "
                    f"{len(input_tensors)}."
                )
            input_tensors = input_tensors[0]
        _check_inputs(input_tensors)
        layers.insert(0, input_tensors)
    elif model._input is not None:
        spec = model._input
        layers.insert(0, Input(batch_shape=spec.shape, dtype=spec.dtype, name=spec._keras_history[0].name))
    return Sequential(layers, name=model.name, trainable=model.trainable)


def _clone_functional(
    model: Model,
    clone: Callable[[Layer], Layer],
    call_function: Callable[..., Any] | None,
    input_tensors: Any,
) -> Model:
    plan = model._graph
    if input_tensors is None:
        inputs = map_structure(
            lambda t: Input(batch_shape=t.shape, dtype=t.dtype, name=t._keras_history[0].name), plan.inputs
        )
    else:
        if isinstance(plan.inputs, (list, tuple)) and isinstance(input_tensors, KerasTensor):
            input_tensors = [input_tensors]
        inputs = input_tensors
        given = _flatten(inputs)
        if len(given) != len(plan.input_tensors):
            raise ValueError(
                f"clone_model: input_tensors must match the model's {len(plan.input_tensors)} input(s); "
                f"got {len(given)}."
            )
        for t in given:
            _check_inputs(t)
    new: dict[int, Any] = {id(old): t for old, t in zip(plan.input_tensors, _flatten(inputs))}
    lookup = lambda t: new[id(t)] if isinstance(t, KerasTensor) else t  # noqa: E731
    for node in plan.nodes:
        layer = clone(node.layer)
        args, kwargs = map_structure(lookup, node.args), map_structure(lookup, node.kwargs)
        out = call_function(layer, *args, **kwargs) if call_function else layer(*args, **kwargs)
        for old, t in zip(node.output_tensors, _flatten(out)):
            new[id(old)] = t
    return Functional(inputs, map_structure(lookup, plan.outputs), name=model.name)


def _check_inputs(tensor: Any) -> None:
    if not isinstance(tensor, KerasTensor) or not isinstance(tensor._keras_history[0], InputLayer):
        raise ValueError(
            "clone_model: input_tensors must be tapefit.Input(...) tensors; got "
            f"{type(tensor).__name__}{'' if not isinstance(tensor, KerasTensor) else ' (a layer output)'}."
        )


def _compile_like(clone: Model, model: Model) -> None:
    try:
        config = model.get_compile_config()
    except (ValueError, TypeError) as e:
        warnings.warn(
            f"clone_model: the compile() arguments could not be copied ({e}); compile the clone yourself.",
            stacklevel=3,
        )
        return
    clone.compile_from_config(config)
