"""``model.save("m.tapefit")`` and ``load_model``: one zip holding the architecture (JSON), the
weights and the optimizer state (safetensors). Never pickle.

The zip is written atomically. Reading it checks sizes before decompressing anything (no zip
bombs), resolves classes only from the allowlist, and builds a complete model before returning.
"""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zipfile
import zlib
from typing import Any

import torch

from .._atomic import atomic_write
from . import serialization
from .weights import apply_state, safetensors_to_state, state_to_safetensors

__all__ = ["save_model", "load_model"]

FORMAT_VERSION = 1
MAX_CONFIG_BYTES = 64 * 1024 * 1024
MAX_MEMBER_BYTES = 64 * 1024 * 1024 * 1024
# What a damaged or crafted zip raises while its directory or a member is read (a flipped byte,
# a false CRC or size, a broken deflate stream, an encrypted member).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    zlib.error,
    EOFError,
    struct.error,
    ValueError,
    OverflowError,
    NotImplementedError,
    RuntimeError,
)
_COMPRESSIONS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_CHUNK = 1 << 20


def _compile_config(model: Any) -> dict[str, Any] | None:
    try:
        return model.get_compile_config()
    except (ValueError, TypeError) as e:
        warnings.warn(
            f"The compile() arguments could not be saved ({e}); the loaded model will need compile().",
            stacklevel=3,
        )
        return None


def save_model(model: Any, filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Save ``model`` to a ``.tapefit`` file (architecture, weights, optimizer state).

    In a distributed job only rank 0 writes; a sharded (FSDP) model is gathered whole first, so
    every rank must call it then.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".tapefit"):
        raise ValueError(
            f"model.save: the file name must end in '.tapefit', got {filepath!r}. For weights only, "
            "use save_weights('name.weights.safetensors')."
        )
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"model.save: {filepath} exists and overwrite=False.")
    from .. import __version__

    config = {
        "format_version": FORMAT_VERSION,
        "tapefit_version": __version__,
        "torch_version": torch.__version__,
        "model": serialization.serialize_layer(model),
        "compile": _compile_config(model),
    }
    from ..distribute import checkpointing, environment

    state = model.state_dict()
    sharded = checkpointing.has_sharded(state)
    members = {
        "config.json": json.dumps(config).encode(),
        "model.weights.safetensors": state_to_safetensors(checkpointing.gathered(state)),
    }
    opt = getattr(model, "optimizer", None)
    if opt is not None and hasattr(opt, "state_dict") and getattr(opt, "built", False):
        members["optimizer.safetensors"] = state_to_safetensors(checkpointing.gathered(opt.state_dict()))
    if environment.is_chief():
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, blob in members.items():
                zf.writestr(name, blob)
        try:
            with atomic_write(filepath, "wb") as f:
                f.write(buf.getvalue())
        except OSError as e:
            raise OSError(e.errno, f"Could not save the model to {filepath}: {e.strerror}") from e
    if sharded:
        environment.barrier()  # every rank called it: the file exists when any of them returns


def _read_member(zf: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes:
    """One member's bytes, refused before decompression when it declares more than ``limit``.

    zipfile never yields more than the size a member declares, and checks its CRC at the end, so a
    deflate bomb that lies about its size fails the check after at most ``limit`` bytes.
    """
    try:
        info = zf.getinfo(name)
    except KeyError:
        raise ValueError(f"{where}: not a tapefit model file (no {name} inside).") from None
    if info.file_size > limit:
        raise ValueError(
            f"{where}: {name} declares {info.file_size} bytes, over the limit of {limit}; refusing it."
        )
    if info.compress_type not in _COMPRESSIONS:
        raise ValueError(
            f"{where}: {name} uses zip compression method {info.compress_type}; tapefit model files are "
            "stored or deflated only. Re-save the model with model.save()."
        )
    try:
        with zf.open(info) as f:
            data = _read_exactly(f, info.file_size)
            extra = f.read(1)
    except _ZIP_ERRORS as e:
        raise ValueError(
            f"{where}: {name} is corrupted or truncated ({type(e).__name__}: {e}); nothing was loaded."
        ) from e
    if len(data) != info.file_size or extra:
        raise ValueError(
            f"{where}: {name} holds {len(data)} bytes but declares {info.file_size}; the file is corrupted "
            "or truncated, nothing was loaded."
        )
    return data


def _read_exactly(f: Any, size: int) -> bytes:
    """Up to ``size`` bytes in 1 MiB chunks: the peak stays near ``size`` (one read would hold the
    inflated block and its copy at once)."""
    buf = io.BytesIO()
    while buf.tell() < size and (chunk := f.read(min(_CHUNK, size - buf.tell()))):
        buf.write(chunk)
    return buf.getvalue()


def load_model(
    filepath: str | os.PathLike,
    custom_objects: dict[str, Any] | None = None,
    compile: bool = True,
    safe_mode: bool = True,
) -> Any:
    """Load a model saved with ``model.save`` (``.tapefit``), or a Keras 3 ``.keras`` file.

    Only tapefit's classes and classes registered with ``register_serializable`` (or passed in
    ``custom_objects``) are rebuilt; with ``safe_mode=True`` (the default) Lambda layers are
    refused. Nothing inside the file can change that.
    """
    filepath = os.fspath(filepath)
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No model file at {filepath}.")
    from . import keras_format

    try:
        zf = zipfile.ZipFile(filepath)
    except _ZIP_ERRORS as e:
        raise keras_format.not_a_model_file(filepath, e) from e
    limit = max(MAX_CONFIG_BYTES, os.path.getsize(filepath) * 2)
    with zf:
        if keras_format.is_keras_archive(zf, filepath):
            return keras_format.load_keras_archive(zf, filepath, custom_objects, compile, safe_mode)
        try:
            config = json.loads(_read_member(zf, "config.json", MAX_CONFIG_BYTES, filepath))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{filepath}: config.json is not valid JSON ({e}).") from e
        weights_blob = _read_member(zf, "model.weights.safetensors", min(limit, MAX_MEMBER_BYTES), filepath)
        opt_blob = (
            _read_member(zf, "optimizer.safetensors", min(limit, MAX_MEMBER_BYTES), filepath)
            if "optimizer.safetensors" in zf.namelist()
            else None
        )
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{filepath}: config.json has no model architecture.")
    state, _ = safetensors_to_state(weights_blob, f"{filepath}:model.weights.safetensors")
    with serialization.safe_mode_scope(safe_mode):
        model = serialization.deserialize_layer(config["model"], custom_objects)
    _build_for_state(model, state, filepath)
    apply_state(model, state, filepath)
    if compile and config.get("compile"):
        _restore_compile(model, config["compile"], opt_blob, filepath, custom_objects)
    return model


def _build_for_state(model: Any, state: dict[str, torch.Tensor], where: str) -> None:
    if not model.state_dict() and state:
        raise ValueError(
            f"{where}: the rebuilt model {model.name!r} has no weights (a subclassed model must know "
            "its input shape to be rebuilt: implement build_config/get_config, or use save_weights)."
        )


def _restore_compile(
    model: Any, cfg: dict[str, Any], opt_blob: bytes | None, where: str, custom_objects: dict[str, Any] | None
) -> None:
    if not isinstance(cfg, dict) or not isinstance(cfg.get("optimizer"), dict):
        raise ValueError(f"{where}: the saved compile arguments have no optimizer config.")
    model.compile_from_config(cfg, custom_objects=custom_objects)
    if opt_blob is not None:
        opt_state, _ = safetensors_to_state(opt_blob, f"{where}:optimizer.safetensors")
        model.optimizer.build(model.trainable_variables)
        model.optimizer.load_state_dict(opt_state)
