"""Keras 3 ``config.json`` -> tapefit configs: the architecture half of reading a ``.keras`` file.

Keras saves every object as ``{"module", "class_name", "config", "registered_name"}`` plus
``build_config``/``compile_config``; tapefit's layers take Keras's names and arguments, so the work is
to strip that metadata, turn dtype policies into their names, rewrite functional graphs into
tapefit's node format (Keras ops such as ``x + y`` or ``x[:, 0]`` become ``TensorOp`` layers) and
refuse, naming the layer, whatever tapefit cannot rebuild exactly. Classes are resolved only from
tapefit's allowlist and ``custom_objects``; the ``module`` field is never imported.
"""

from __future__ import annotations

import inspect
from typing import Any

from . import registry, serialization
from ._keras_ops import MASK_OPS, KerasFormatError, implied_masks, translate_op

__all__ = ["KerasFormatError", "translate_model", "is_functional", "is_op"]

# Keras arguments that tapefit's classes lack, dropped only at the value that leaves Keras's
# behaviour unchanged; any other value is refused.
_NEUTRAL = {
    "quantization_config": None,
    "zero_output_for_mask": False,
    "ragged": False,
    "optional": False,
    "lora_rank": None,
}
_NESTED_LAYER_KEYS = ("layer", "backward_layer", "cell")


def is_op(entry: dict[str, Any]) -> bool:
    """Whether a functional-graph entry is a Keras op (``keras.ops.add`` ...) rather than a layer."""
    module = str(entry.get("module") or "")
    return module.startswith(("keras.src.ops", "keras.ops"))


def is_functional(entry: dict[str, Any]) -> bool:
    config = entry.get("config")
    return (
        entry.get("class_name") in ("Functional", "Model") and isinstance(config, dict) and "layers" in config
    )


def translate_model(entry: dict[str, Any], custom_objects: dict[str, Any] | None) -> dict[str, Any]:
    """The tapefit ``{"class_name", "config"}`` of a Keras model (or layer) entry of ``config.json``."""
    return _Translator(custom_objects).layer(entry)


def _layer_label(entry: dict[str, Any]) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return f"layer {config.get('name', entry.get('name', '?'))!r} ({entry.get('class_name')})"


def _accepted_arguments(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` takes through its ``__init__`` chain; None if unbounded."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in klass.__dict__:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names
        if klass.__module__.startswith("tapefit.layers.layer"):
            return names  # Layer.__init__ refuses any other keyword
    return None


class _Translator:
    def __init__(self, custom_objects: dict[str, Any] | None):
        self.custom_objects = custom_objects

    # ------------------------------------------------------------------ layers
    def layer(self, entry: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(entry, dict) or not isinstance(entry.get("class_name"), str):
            raise KerasFormatError(f"Not a Keras layer config: {str(entry)[:200]}")
        if not isinstance(entry.get("config", {}), dict):
            raise KerasFormatError(f"The config of {_layer_label(entry)} is not a dict.")
        if is_functional(entry):
            return self.functional(entry)
        name, cls = self.resolve(entry)
        from ..layers.core import Lambda

        if issubclass(cls, Lambda) and serialization._safe_mode.get():
            raise serialization._lambda_refused(name)
        config = dict(entry.get("config") or {})
        if name == "Sequential":
            return {"class_name": name, "config": self.sequential(config)}
        out = {}
        for key, value in config.items():
            if key in _NESTED_LAYER_KEYS and isinstance(value, dict):
                out[key] = self.layer(value)
            elif key == "cells" and isinstance(value, list):
                out[key] = [self.layer(v) for v in value]
            elif key != "shared_object_id":
                out[key] = self.clean(value, entry)
        self.check_arguments(name, cls, out, entry)
        return {"class_name": name, "config": out}

    def resolve(self, entry: dict[str, Any]) -> tuple[str, type]:
        """The allowlisted name and tapefit class a Keras layer entry stands for."""
        from ..layers.layer import Layer

        serialization._load_builtins()
        class_name = entry["class_name"]
        registered = entry.get("registered_name")
        custom = str(entry.get("module") or "").split(".")[0] != "keras"
        candidates = [registered] if isinstance(registered, str) and registered != class_name else []
        candidates.append(class_name)
        for name in candidates:
            if custom and name == class_name and not (self.custom_objects and name in self.custom_objects):
                continue  # a user's class that happens to share a tapefit name is not that class
            obj = registry.get_registered_object(name, self.custom_objects)
            if obj is not None:
                if not (isinstance(obj, type) and issubclass(obj, Layer)):
                    raise KerasFormatError(
                        f"{name!r} for Keras {_layer_label(entry)} is not a tapefit layer class."
                    )
                return name, obj
        if custom:
            raise KerasFormatError(
                f"Keras {_layer_label(entry)} is a custom class ({entry.get('module')}.{class_name}, "
                f"registered as {registered!r}). Pass its tapefit equivalent as load_model(..., "
                f"custom_objects={{{class_name!r}: YourLayer}}) or register one with "
                "@tapefit.saving.register_serializable(); code named by the file is never imported."
            )
        raise KerasFormatError(
            f"Keras {_layer_label(entry)}: tapefit has no {class_name} layer, so the model cannot be rebuilt "
            "(nothing was loaded)."
        )

    def check_arguments(self, name: str, cls: type, config: dict[str, Any], entry: dict[str, Any]) -> None:
        """Drop the Keras-only arguments at their neutral values; refuse the others, naming the layer.

        An argument missing from the signature may still be taken through ``**kwargs``, so the
        class is tried once with them before anything is refused."""
        accepted = _accepted_arguments(cls)
        unknown = [k for k in config if accepted is not None and k not in accepted]
        if not unknown:
            return
        try:
            serialization.deserialize_layer({"class_name": name, "config": dict(config)}, self.custom_objects)
            return
        except TypeError:
            pass
        for key in unknown:
            if key in _NEUTRAL and config[key] == _NEUTRAL[key]:
                del config[key]
            else:
                raise KerasFormatError(
                    f"Keras {_layer_label(entry)} sets {key}={config[key]!r}, which tapefit's {cls.__name__} "
                    "does not support; the model cannot be rebuilt exactly (nothing was loaded)."
                )

    def clean(self, value: Any, owner: dict[str, Any]) -> Any:
        """A config value with Keras's serialization metadata removed (recursively)."""
        if isinstance(value, list):
            return [self.clean(v, owner) for v in value]
        if not isinstance(value, dict):
            return value
        if "class_name" not in value or not any(k in value for k in ("module", "registered_name", "config")):
            return {k: self.clean(v, owner) for k, v in value.items() if k != "shared_object_id"}
        class_name, inner = value["class_name"], value.get("config")
        registered = value.get("registered_name")
        if class_name.endswith("DTypePolicy"):
            if class_name != "DTypePolicy" and class_name != "FloatDTypePolicy":
                raise KerasFormatError(
                    f"Keras {_layer_label(owner)} uses a {class_name}, which tapefit lacks."
                )
            return inner["name"]
        if class_name == "__tuple__":
            return [self.clean(v, owner) for v in inner["value"]]
        if class_name == "__numpy__":
            return inner["value"]
        if class_name == "__lambda__":
            raise KerasFormatError(
                f"Keras {_layer_label(owner)} holds a Python lambda saved as bytecode; tapefit never runs "
                "code from a file. Rebuild it in code with a registered function."
            )
        if class_name == "function":
            return registered if isinstance(registered, str) and ">" in registered else inner
        if class_name.startswith("__"):
            raise KerasFormatError(f"Keras {_layer_label(owner)}: unsupported serialized value {class_name}.")
        name = registered if isinstance(registered, str) and ">" in registered else class_name
        return {"class_name": name, "config": self.clean(inner or {}, owner)}

    def sequential(self, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": config.get("name"),
            "trainable": config.get("trainable", True),
            "layers": [self.layer(e) for e in config.get("layers", [])],
            "build_input_shape": config.get("build_input_shape"),
        }

    # -------------------------------------------------------------- functional
    def functional(self, entry: dict[str, Any]) -> dict[str, Any]:
        config = entry["config"]
        entries = config["layers"]
        # A nested functional model's node indices start at 1 in input_layers/output_layers (its own
        # first node), but not in the inbound nodes of the layers it feeds.
        self.shift = {e["name"]: 1 for e in entries if is_functional(e)}
        self.ops = {e["name"]: e for e in entries if is_op(e)}
        self.implied_masks = implied_masks(entries, self.ops, config["output_layers"])
        layers = []
        for e in entries:
            if is_op(e) and e["name"] in self.implied_masks:
                continue
            layers.append(self.graph_entry(e))
        return {
            "class_name": "Functional",
            "config": {
                "name": config.get("name"),
                "trainable": config.get("trainable", True),
                "layers": layers,
                "input_layers": self.io(config["input_layers"]),
                "output_layers": self.io(config["output_layers"]),
            },
        }

    def graph_entry(self, e: dict[str, Any]) -> dict[str, Any]:
        nodes = e.get("inbound_nodes", [])
        if any(not isinstance(n, dict) for n in nodes):
            raise KerasFormatError(f"Keras {_layer_label(e)} uses the legacy (Keras 2) node format.")
        if is_op(e):
            return translate_op(e, nodes, lambda value: self.encode(value, e))
        translator = _Translator(self.custom_objects)
        out = translator.layer(e)
        out["name"] = e["name"]
        out["inbound_nodes"] = [self.node(n, e) for n in nodes]
        return out

    def node(self, node: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
        kwargs = {}
        for key, value in node.get("kwargs", {}).items():
            if key == "training" or (key.endswith("mask") and value is None):
                continue  # tapefit passes the training flag down itself
            if key.endswith("mask") and self.history(value) in self.implied_masks:
                continue  # the padding mask tapefit carries on the tensor itself
            kwargs[key] = value
        return {"args": self.encode(node.get("args", []), owner), "kwargs": self.encode(kwargs, owner)}

    def history(self, value: Any) -> str | None:
        if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
            return value["config"]["keras_history"][0]
        return None

    def ref(self, history: list[Any], owner: dict[str, Any], io: bool = False) -> dict[str, Any]:
        name, node_index, tensor_index = history
        if name in self.implied_masks or (name in self.ops and self.ops[name]["class_name"] in MASK_OPS):
            raise KerasFormatError(
                f"Keras {_layer_label(owner)} uses the output of the Keras op {name!r} "
                f"({self.ops[name]['class_name']}) as data; tapefit rebuilds that op only as the padding "
                "mask of an Embedding(mask_zero=True) or a Masking layer."
            )
        return {"__tensor__": [name, node_index - (self.shift.get(name, 0) if io else 0), tensor_index]}

    def encode(self, value: Any, owner: dict[str, Any]) -> Any:
        """Keras's serialized call arguments -> tapefit's ``{"__tensor__"|"__list__"|"__dict__"}`` form."""
        if isinstance(value, list):
            return {"__list__": [self.encode(v, owner) for v in value], "tuple": False}
        if isinstance(value, dict):
            kind = value.get("class_name")
            if kind == "__keras_tensor__":
                return self.ref(value["config"]["keras_history"], owner)
            if kind == "__tuple__":
                return {"__list__": [self.encode(v, owner) for v in value["config"]["value"]], "tuple": True}
            if isinstance(kind, str) and kind.startswith("__"):
                raise KerasFormatError(
                    f"Keras {_layer_label(owner)} is called with an unsupported {kind} value."
                )
            if "class_name" in value and "config" in value:
                return self.clean(value, owner)
            return {"__dict__": {k: self.encode(v, owner) for k, v in value.items()}}
        return value

    def io(self, spec: Any) -> Any:
        if _is_history(spec):
            return self.ref(spec, {"class_name": "Functional", "name": "outputs"}, io=True)
        if isinstance(spec, list):
            return {"__list__": [self.io(s) for s in spec], "tuple": False}
        if isinstance(spec, dict):
            return {"__dict__": {k: self.io(v) for k, v in spec.items()}}
        raise KerasFormatError(f"Unsupported functional input/output spec {spec!r}.")


def _is_history(spec: Any) -> bool:
    return (
        isinstance(spec, list)
        and len(spec) == 3
        and isinstance(spec[0], str)
        and all(isinstance(i, int) for i in spec[1:])
    )
