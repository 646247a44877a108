"""Model architecture <-> JSON-able config, resolving classes only from the allowlist.

Layers are saved as ``{"class_name", "config"}``; functional graphs also record each layer's
inbound nodes as references ``[layer_name, node_index, tensor_index]``, and are rebuilt by
calling the layers on symbolic inputs again, in order.
"""

from __future__ import annotations

import contextvars
from typing import Any

from . import registry

__all__ = [
    "serialize_layer",
    "deserialize_layer",
    "functional_config",
    "functional_from_config",
    "sequential_config",
    "sequential_from_config",
]

_builtins_loaded = False
# Set for the duration of one load by load_model's argument; never read from a file. A context
# variable, so a load in one thread cannot switch safe mode off for a load in another.
_safe_mode: contextvars.ContextVar[bool] = contextvars.ContextVar("tapefit_safe_mode", default=True)


class safe_mode_scope:
    """Within the block, layer deserialisation uses ``safe_mode=value``."""

    def __init__(self, value: bool):
        self.value = bool(value)

    def __enter__(self) -> None:
        self._token = _safe_mode.set(self.value)

    def __exit__(self, *exc: Any) -> None:
        _safe_mode.reset(self._token)


def _load_builtins() -> None:
    """Put tapefit's own layer and model classes on the allowlist (once)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    from .. import layers, models

    for module in (layers, models):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type):
                registry.register_builtin(obj, name)
    _builtins_loaded = True


class SafeModeError(ValueError):
    """Raised when a file asks for something that ``safe_mode=True`` refuses to load."""


def serialize_layer(layer: Any) -> dict[str, Any]:
    _load_builtins()
    return {"class_name": registry.registered_name(_own_class(layer)), "config": layer.get_config()}


def _own_class(layer: Any) -> type:
    """The layer's class, seen through the subclass that FSDP's ``fully_shard`` swaps in
    (``FSDPDense`` for a ``Dense``), so a sharded model saves as the model it is."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch < 2.6: no fully_shard
        return type(layer)
    return next(c for c in type(layer).__mro__ if not issubclass(c, FSDPModule))


def deserialize_layer(
    config: dict[str, Any], custom_objects: dict[str, Any] | None = None, safe_mode: bool | None = None
) -> Any:
    _load_builtins()
    safe_mode = _safe_mode.get() if safe_mode is None else safe_mode
    if not isinstance(config, dict) or "class_name" not in config:
        raise ValueError(f"Not a layer config: {str(config)[:200]}")
    name = config["class_name"]
    if safe_mode and name == "Lambda":
        raise _lambda_refused(name)
    cls = registry.resolve(name, custom_objects)
    if not isinstance(cls, type):
        raise ValueError(f"{name!r} in the saved config is not a layer class.")
    from ..layers.core import Lambda
    from ..layers.layer import Layer

    if not issubclass(cls, Layer):
        raise ValueError(f"{name!r} in the saved config is not a tapefit layer.")
    if safe_mode and issubclass(cls, Lambda):
        raise _lambda_refused(name)
    if not isinstance(config.get("config", {}), dict):
        raise ValueError(f"The saved config of {name!r} is not a dict: {str(config.get('config'))[:200]}")
    inner = dict(config.get("config", {}))
    if hasattr(cls, "from_config") and "custom_objects" in cls.from_config.__code__.co_varnames:
        return cls.from_config(inner, custom_objects=custom_objects)
    return cls.from_config(inner)


def _lambda_refused(name: str) -> SafeModeError:
    return SafeModeError(
        f"The file contains a Lambda layer ({name!r}), which runs arbitrary code; it is refused because "
        "safe_mode=True. If you trust the file as you would trust its author's code, load it with "
        "load_model(..., safe_mode=False); its functions must still be registered with "
        "@tapefit.saving.register_serializable()."
    )


def _tensor_ref(t: Any, node_index: dict[int, int]) -> list[Any]:
    layer, idx, ti = t._keras_history
    node = layer._inbound_nodes[idx]
    return [layer.name, node_index.get(id(node), 0), ti]


def _encode(struct: Any, node_index: dict[int, int]) -> Any:
    from ..layers.symbolic import KerasTensor

    if isinstance(struct, KerasTensor):
        return {"__tensor__": _tensor_ref(struct, node_index)}
    if isinstance(struct, (list, tuple)):
        return {"__list__": [_encode(s, node_index) for s in struct], "tuple": isinstance(struct, tuple)}
    if isinstance(struct, dict):
        return {"__dict__": {k: _encode(v, node_index) for k, v in struct.items()}}
    return struct


def _decode(struct: Any, tensors: dict[tuple, Any]) -> Any:
    if isinstance(struct, dict):
        if "__tensor__" in struct:
            return tensors[tuple(struct["__tensor__"])]
        if "__list__" in struct:
            items = [_decode(s, tensors) for s in struct["__list__"]]
            return tuple(items) if struct.get("tuple") else items
        if "__dict__" in struct:
            return {k: _decode(v, tensors) for k, v in struct["__dict__"].items()}
    return struct


def _refs(struct: Any) -> list[tuple]:
    if isinstance(struct, dict):
        if "__tensor__" in struct:
            return [tuple(struct["__tensor__"])]
        return [r for v in struct.values() for r in _refs(v)]
    if isinstance(struct, list):
        return [r for v in struct for r in _refs(v)]
    return []


def _io_spec(struct: Any, node_index: dict[int, int]) -> Any:
    return _encode(struct, node_index)


def functional_config(model: Any) -> dict[str, Any]:
    plan = model._graph
    node_index: dict[int, int] = {}
    per_layer: dict[int, int] = {}
    for node in plan.nodes:
        node_index[id(node)] = per_layer.get(id(node.layer), 0)
        per_layer[id(node.layer)] = node_index[id(node)] + 1
    layers = []
    for layer in plan.layers:
        entry = serialize_layer(layer)
        entry["name"] = layer.name
        entry["inbound_nodes"] = [
            {"args": _encode(list(n.args), node_index), "kwargs": _encode(n.kwargs, node_index)}
            for n in plan.nodes
            if n.layer is layer
        ]
        layers.append(entry)
    return {
        "name": model.name,
        "trainable": model.trainable,
        "layers": layers,
        "input_layers": _io_spec(plan.inputs, node_index),
        "output_layers": _io_spec(plan.outputs, node_index),
    }


def functional_from_config(
    cls: type,
    config: dict[str, Any],
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool | None = None,
) -> Any:
    from ..layers.symbolic import InputLayer

    created: dict[str, Any] = {}
    tensors: dict[tuple, Any] = {}
    pending: list[tuple[Any, int, dict]] = []
    for entry in config["layers"]:
        layer = deserialize_layer(entry, custom_objects, safe_mode)
        created[entry["name"]] = layer
        if isinstance(layer, InputLayer):
            tensors[(entry["name"], 0, 0)] = layer.output
        for i, node in enumerate(entry.get("inbound_nodes", [])):
            pending.append((layer, i, node))
    while pending:
        progressed = False
        for item in list(pending):
            layer, i, node = item
            needed = _refs(node["args"]) + _refs(node["kwargs"])
            if all(r in tensors for r in needed):
                out = layer(*_decode(node["args"], tensors), **_decode(node["kwargs"], tensors))
                flat = (
                    out
                    if isinstance(out, (list, tuple))
                    else list(out.values())
                    if isinstance(out, dict)
                    else [out]
                )
                for ti, t in enumerate(flat):
                    tensors[(layer.name, i, ti)] = t
                pending.remove(item)
                progressed = True
        if not progressed:
            raise ValueError(
                "The saved functional config cannot be rebuilt: some layers' inputs are never "
                f"produced ({[p[0].name for p in pending]})."
            )
    inputs = _decode(config["input_layers"], tensors)
    outputs = _decode(config["output_layers"], tensors)
    from ..models.model import Functional, Model

    target = Functional if cls in (Model, Functional) else cls
    return target(inputs, outputs, name=config.get("name"), trainable=config.get("trainable", True))


def sequential_config(model: Any) -> dict[str, Any]:
    shape = list(model._input.shape) if model._input is not None else None
    return {
        "name": model.name,
        "trainable": model.trainable,
        "build_input_shape": shape,
        "layers": [serialize_layer(layer) for layer in model.layers],
    }


def sequential_from_config(
    cls: type,
    config: dict[str, Any],
    custom_objects: dict[str, Any] | None = None,
    safe_mode: bool | None = None,
) -> Any:
    model = cls(name=config.get("name"), trainable=config.get("trainable", True))
    for entry in config.get("layers", []):
        model.add(deserialize_layer(entry, custom_objects, safe_mode), rebuild=False)
    if config.get("build_input_shape") is not None:
        model.build(tuple(config["build_input_shape"]))
    return model
