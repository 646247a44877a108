"""Keras 3 files into tapefit: ``.keras`` models (``load_model``) and ``.weights.h5`` weights.

A ``.keras`` file is a zip of ``config.json`` (the architecture, Keras's serialization),
``metadata.json`` and ``model.weights.h5`` (the weights and the optimizer's variables). The model is
rebuilt from tapefit's own layers (``_keras_config``), its weights are read from the HDF5 file in
Keras's layout (``_keras_weights``), and, when the file was saved compiled, ``compile()`` and the
optimizer's state are restored so that ``fit`` continues where Keras stopped. Reading never runs code
from the file: classes come from tapefit's allowlist and ``custom_objects``, Lambda bytecode is refused.

Example:
    >>> import tapefit
    >>> model = tapefit.saving.load_model("model.keras")  # doctest: +SKIP
    >>> model.load_weights("model.weights.h5")  # doctest: +SKIP
"""

from __future__ import annotations

import io
import json
import os
import warnings
import zipfile
from typing import Any

import torch

from . import serialization
from ._keras_config import KerasFormatError, is_functional, is_op, translate_model
from ._keras_weights import H5Reader, assign, h5py_module, keras_layer_order, stage_model_weights
from .model_file import MAX_CONFIG_BYTES, MAX_MEMBER_BYTES, _read_member
from .weights import _check_built
from .weights import load_weights as _load_tapefit_weights

__all__ = ["KerasFormatError", "is_keras_archive", "load_keras_archive", "load_keras_weights", "load_weights"]

_H5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_COMPILE_KEYS = (
    "optimizer",
    "loss",
    "loss_weights",
    "metrics",
    "weighted_metrics",
    "run_eagerly",
    "steps_per_execution",
    "jit_compile",
)
# The order in which Keras creates each optimizer's per-variable state: one inner list per
# ``add_optimizer_variables`` call, whose names alternate variable by variable.
_SLOT_GROUPS = {
    "Adam": [["momentum", "velocity"], ["velocity_hat"]],
    "AdamW": [["momentum", "velocity"], ["velocity_hat"]],
    "Adamax": [["momentum", "norm"]],
    "SGD": [["momentum"]],
    "RMSprop": [["velocity"], ["momentum"], ["average_gradient"]],
    "Adagrad": [["accumulator"]],
    "Adadelta": [["accumulated_grad", "accumulated_delta_var"]],
    "Lion": [["momentum"]],
    "Nadam": [["momentum", "velocity"]],
}
# Created by Keras's base ``Optimizer.build`` before the optimizer's own state.
_BASE_SLOT_GROUPS = [["average"], ["gradient_accumulator"]]


def is_keras_archive(zf: zipfile.ZipFile, filepath: str) -> bool:
    """Whether an open zip is a Keras 3 ``.keras`` file rather than a ``.tapefit`` one."""
    names = set(zf.namelist())
    return "model.weights.h5" in names or "model.weights.json" in names or filepath.endswith(".keras")


def not_a_model_file(filepath: str, error: Exception) -> ValueError:
    """The error for a file that is not a zip: a legacy Keras HDF5 model gets its own advice."""
    with open(filepath, "rb") as f:
        head = f.read(len(_H5_SIGNATURE))
    if head == _H5_SIGNATURE:
        return ValueError(
            f"{filepath} is a legacy Keras HDF5 (.h5) model, which tapefit does not read. In Keras 3, load "
            "it and re-save it with model.save('model.keras')."
        )
    return ValueError(
        f"{filepath}: not a tapefit model file (.tapefit) nor a Keras one (.keras), or it is "
        f"corrupted/truncated ({error})."
    )


def load_keras_archive(
    zf: zipfile.ZipFile,
    filepath: str,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> Any:
    """Rebuild the tapefit model that an open ``.keras`` zip describes (see the module docstring)."""
    names = set(zf.namelist())
    if "model.weights.json" in names:
        raise KerasFormatError(f"{filepath}: sharded Keras weights (model.weights.json) are not supported.")
    missing = sorted({"config.json", "model.weights.h5"} - names)
    if missing:
        raise KerasFormatError(f"{filepath}: not a Keras 3 model file (no {', '.join(missing)} inside).")
    entry = _json_member(zf, "config.json", filepath)
    metadata = _json_member(zf, "metadata.json", filepath) if "metadata.json" in names else {}
    version = str(metadata.get("keras_version", "3")) if isinstance(metadata, dict) else "3"
    if not version.startswith("3"):
        raise KerasFormatError(f"{filepath} was saved by Keras {version}; tapefit reads Keras 3 files only.")
    if not isinstance(entry, dict) or "class_name" not in entry:
        raise KerasFormatError(f"{filepath}: config.json has no model architecture.")
    limit = min(max(MAX_CONFIG_BYTES, os.path.getsize(filepath) * 2), MAX_MEMBER_BYTES)
    blob = _read_member(zf, "model.weights.h5", limit, filepath)
    h5py = h5py_module()
    try:
        with serialization.safe_mode_scope(safe_mode):
            model = serialization.deserialize_layer(translate_model(entry, custom_objects), custom_objects)
        shape = (entry.get("build_config") or {}).get("input_shape")
        if not model.built and shape is not None:
            model.build(tuple(shape))
    except serialization.SafeModeError:
        raise
    except KerasFormatError as e:
        raise KerasFormatError(str(e) if str(e).startswith(filepath) else f"{filepath}: {e}") from e
    except (KeyError, TypeError, ValueError, IndexError, RecursionError, RuntimeError) as e:
        raise KerasFormatError(
            f"{filepath}: the model in config.json cannot be rebuilt ({type(e).__name__}: {e}); nothing "
            "was loaded."
        ) from e
    orders: dict[int, list[Any]] = {}
    _config_orders(entry, model, orders)
    where = f"{filepath}:model.weights.h5"
    with _open_h5(h5py, io.BytesIO(blob), where) as f:
        reader = H5Reader(f, where, max_bytes=8 * len(blob) + (1 << 20))
        assign(_staged(lambda: stage_model_weights(model, reader, orders)))
        compile_config = entry.get("compile_config")
        if compile and compile_config:
            _restore_compile(model, compile_config, reader, orders, filepath, custom_objects)
    return model


def load_keras_weights(model: Any, filepath: str | os.PathLike, skip_mismatch: bool = False) -> None:
    """Load a Keras 3 ``.weights.h5`` file (``keras_model.save_weights``) into a matching model.

    The model must have the Keras model's structure: the same layer classes in the same order
    (nested models and wrappers included). Everything is checked before any weight changes; with
    ``skip_mismatch=True`` layers whose weights do not match are skipped with a warning.
    """
    filepath = os.fspath(filepath)
    h5py = h5py_module()
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"No weights file at {filepath}.")
    _check_built(model, "load_weights")
    with _open_h5(h5py, filepath, filepath) as f:
        if "layer_names" in f.attrs or "model_weights" in f:
            raise KerasFormatError(
                f"{filepath} is a legacy Keras 2 HDF5 weights file; load it in Keras 3 and re-save it with "
                "model.save_weights('model.weights.h5')."
            )
        reader = H5Reader(f, filepath, max_bytes=8 * os.path.getsize(filepath) + (1 << 20))
        assign(_staged(lambda: stage_model_weights(model, reader, skip_mismatch=skip_mismatch)))


def load_weights(model: Any, filepath: str | os.PathLike, skip_mismatch: bool = False) -> None:
    """``model.load_weights``: Keras ``.h5`` weights by Keras's layout, anything else as tapefit's."""
    if os.fspath(filepath).endswith(".h5"):
        load_keras_weights(model, filepath, skip_mismatch)
    else:
        _load_tapefit_weights(model, filepath, skip_mismatch)


def _staged(stage: Any) -> Any:
    """``stage()``'s checked weights; its refusal says that the model was left as it was."""
    try:
        return stage()
    except KerasFormatError as e:
        raise KerasFormatError(f"{e} Nothing was loaded: the model is unchanged.") from e


def _json_member(zf: zipfile.ZipFile, name: str, filepath: str) -> Any:
    try:
        return json.loads(_read_member(zf, name, MAX_CONFIG_BYTES, filepath))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise ValueError(f"{filepath}: {name} is not valid JSON or nests too deeply ({e}).") from e


class _open_h5:
    """``h5py.File(source)`` whose read errors (a truncated or damaged file) name ``where``."""

    def __init__(self, h5py: Any, source: Any, where: str):
        try:
            self.f = h5py.File(source, "r")
        except OSError as e:
            raise ValueError(
                f"{where} cannot be read as HDF5 (truncated or corrupted; nothing was loaded): {e}"
            ) from e
        self.where = where

    def __enter__(self) -> Any:
        return self.f

    def __exit__(self, kind: Any, error: Any, tb: Any) -> None:
        self.f.close()
        if isinstance(error, (OSError, KeyError)) and not isinstance(error, FileNotFoundError):
            raise ValueError(
                f"{self.where} is corrupted or truncated (nothing was loaded): {error}"
            ) from error


def _config_orders(entry: dict[str, Any], model: Any, orders: dict[int, list[Any]]) -> None:
    """Each (nested) model's layers in the order of Keras's config, which names its weight groups."""
    config = entry.get("config") or {}
    if is_functional(entry):
        by_name = {layer.name: layer for layer in model._graph.layers}
        children = [(e, by_name[e["name"]]) for e in config["layers"] if not is_op(e)]
    elif entry.get("class_name") == "Sequential":
        children = list(
            zip([e for e in config["layers"] if e.get("class_name") != "InputLayer"], model.layers)
        )
    else:
        return
    orders[id(model)] = [layer for _, layer in children]
    for child_entry, layer in children:
        _config_orders(child_entry, layer, orders)


def _strip(value: Any) -> Any:
    """A compile argument without Keras's serialization metadata (registered names kept)."""
    if isinstance(value, list):
        return [_strip(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "class_name" in value and "config" in value:
        registered = value.get("registered_name")
        custom = registered if isinstance(registered, str) and ">" in registered else None
        if value["class_name"].endswith("DTypePolicy"):
            return value["config"]["name"]
        if value["class_name"] == "function":
            return custom or value["config"]
        return {"class_name": custom or value["class_name"], "config": _strip(value["config"])}
    return {k: _strip(v) for k, v in value.items() if k != "shared_object_id"}


def _restore_compile(
    model: Any,
    compile_config: dict[str, Any],
    reader: H5Reader,
    orders: dict[int, list[Any]],
    filepath: str,
    custom_objects: dict[str, Any] | None,
) -> None:
    extra = sorted(k for k in compile_config if k not in _COMPILE_KEYS)
    try:
        if extra:
            raise ValueError(f"unknown compile() arguments {extra}")
        model.compile_from_config(_strip(compile_config), custom_objects=custom_objects)
    except (ValueError, TypeError) as e:
        warnings.warn(
            f"{filepath} was saved compiled, but tapefit cannot honour its compile() arguments ({e}); the "
            "model is loaded uncompiled: call compile() before fit().",
            stacklevel=4,
        )
        return
    problem = _restore_optimizer_state(model, reader, orders)
    if problem:
        warnings.warn(
            f"{filepath}: the optimizer's state was not restored ({problem}); training continues from a "
            f"fresh {type(model.optimizer).__name__} state (step 0, zero moments).",
            stacklevel=4,
        )


def _keras_trainable(layer: Any, orders: dict[int, list[Any]]) -> list[torch.Tensor]:
    """The trainable weights in Keras's order (its optimizer's variable order)."""
    if id(layer) in orders or getattr(layer, "_graph", None) is not None:
        children = orders.get(id(layer)) or keras_layer_order(layer)
        out = [w for child in children for w in _keras_trainable(child, orders)]
    else:
        out = list(layer.trainable_weights)
    unique: dict[int, torch.Tensor] = {}
    for w in out:
        unique.setdefault(id(w), w)
    return list(unique.values())


def _restore_optimizer_state(model: Any, reader: H5Reader, orders: dict[int, list[Any]]) -> str | None:
    """Copy Keras's optimizer variables into the tapefit optimizer; a reason when it cannot."""
    arrays = reader.arrays("optimizer")
    if not arrays:
        return None
    opt = model.optimizer
    groups = _SLOT_GROUPS.get(type(opt).__name__)
    if groups is None:
        return f"reading {type(opt).__name__} state from Keras files is not supported"
    opt.build(model.trainable_variables)
    state = opt.state_dict()
    scalars = [k for k in ("iterations", "learning_rate") if k in state]
    slots = {k.split("/", 1)[1] for k in state if "/" in k}
    groups = [[s for s in group if s in slots] for group in _BASE_SLOT_GROUPS + groups]
    globals_ = [k for k in state if k not in scalars and "/" not in k]  # Nadam's u_product, saved last
    if slots != {s for group in groups for s in group}:
        return f"the optimizer keeps state {sorted(slots)} that Keras saves differently"
    if len(arrays) == len(scalars):  # Keras compiled the model but never built its optimizer
        opt.load_state_dict({**state, **{k: torch.as_tensor(arrays[i]) for i, k in enumerate(scalars)}})
        return None
    variables = _keras_trainable(model, orders)
    index = {id(v): i for i, v in enumerate(model.trainable_variables)}
    expected = len(scalars) + len(variables) * len(slots) + len(globals_)
    if len(arrays) != expected or {id(v) for v in variables} != set(index):
        return f"the file has {len(arrays)} optimizer variables, tapefit expects {expected}"
    perms = _storage_perms(model)
    new, position = {k: torch.as_tensor(arrays[i]) for i, k in enumerate(scalars)}, len(scalars)
    for group in [g for g in groups if g]:
        for v in variables:
            for slot in group:
                value = torch.as_tensor(arrays[position])
                perm = perms.get(id(v))
                new[f"{index[id(v)]}/{slot}"] = (
                    value.permute(*perm) if perm and value.dim() == len(perm) else value
                )
                position += 1
    for name in globals_:
        new[name] = torch.as_tensor(arrays[position])
        position += 1
    try:
        opt.load_state_dict(new)
    except (ValueError, RuntimeError) as e:
        return str(e)
    return None


def _storage_perms(model: Any) -> dict[int, tuple[int, ...]]:
    from ..layers.layer import Layer

    out: dict[int, tuple[int, ...]] = {}
    for m in model.modules():
        if isinstance(m, Layer):
            for attr, perm in m._storage_perms.items():
                out[id(getattr(m, attr))] = perm
    return out
