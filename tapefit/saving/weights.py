"""``save_weights`` / ``load_weights``: a model's state dict in safetensors, written atomically.

Loading checks every name and shape before touching the model, so a wrong file leaves the
model as it was. Torch checkpoints (``.pt``, ``.pth``, ``.ckpt``, ``.bin``) are read with
``torch.load(weights_only=True)`` only: no pickle code can run.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch

from .._atomic import atomic_write

__all__ = ["save_weights", "load_weights", "state_to_safetensors", "safetensors_to_state", "apply_state"]

_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
MAX_HEADER_BYTES = 100 * 1024 * 1024


def state_to_safetensors(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """Serialise a state dict; tensors that share storage are stored once with an alias record."""
    from safetensors.torch import save

    unique: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for k, v in state.items():
        key = (v.data_ptr(), v.dtype, tuple(v.shape), v.device) if v.numel() else None
        if key is not None and key in seen:
            aliases[k] = seen[key]
            continue
        if key is not None:
            seen[key] = k
        unique[k] = v.detach().to("cpu").contiguous().clone() if v.numel() else v.detach().to("cpu")
    meta = dict(metadata or {})
    if aliases:
        meta["tapefit_aliases"] = json.dumps(aliases)
    return save(unique, metadata=meta or None)  # safetensors writes invalid JSON for ({}, {})


def _check_header_length(header_len: int, size: int, where: str) -> None:
    if header_len > MAX_HEADER_BYTES or header_len > size - 8:
        raise ValueError(
            f"{where}: corrupt or truncated safetensors file (its header claims {header_len} bytes, the file "
            f"has {size}; headers are capped at {MAX_HEADER_BYTES}). Nothing was loaded."
        )


def safetensors_to_state(blob: bytes, where: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Parse safetensors bytes; errors name ``where`` (the file)."""
    from safetensors.torch import load

    if len(blob) < 8:
        raise ValueError(f"{where}: not a safetensors file (only {len(blob)} bytes).")
    header_len = int.from_bytes(blob[:8], "little")
    _check_header_length(header_len, len(blob), where)
    try:
        header = json.loads(blob[8 : 8 + header_len])
        if not isinstance(header, dict):
            raise ValueError(f"the header is a {type(header).__name__}, not a JSON object")
        meta = header.get("__metadata__") or {}
        if not isinstance(meta, dict):
            raise ValueError("__metadata__ is not a JSON object")
        aliases = json.loads(meta.get("tapefit_aliases", "{}"))
        if not isinstance(aliases, dict):
            raise ValueError("tapefit_aliases is not a JSON object")
        state = load(blob)
    except Exception as e:  # safetensors raises its own error types
        raise ValueError(f"{where}: corrupt or truncated safetensors file: {e}") from e
    for alias, target in aliases.items():
        if target in state:
            state[alias] = state[target]
    return state, meta


def apply_state(
    model: torch.nn.Module, state: dict[str, torch.Tensor], where: str, skip_mismatch: bool = False
) -> None:
    """Copy ``state`` into ``model`` after checking every name and shape (all or nothing)."""
    own = model.state_dict(keep_vars=True)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: model {tuple(own[k].shape)} vs file {tuple(state[k].shape)}"
        for k in own
        if k in state and tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if (missing or unexpected or mismatched) and not skip_mismatch:
        lines = []
        if missing:
            lines.append(f"missing in the file: {missing[:20]}{' ...' if len(missing) > 20 else ''}")
        if unexpected:
            lines.append(f"not in the model: {unexpected[:20]}{' ...' if len(unexpected) > 20 else ''}")
        if mismatched:
            lines.append("shape mismatches: " + "; ".join(mismatched[:20]))
        raise ValueError(
            f"{where} does not match model {getattr(model, 'name', type(model).__name__)!r} "
            f"(nothing was loaded):\n  " + "\n  ".join(lines)
        )
    from ..distribute.checkpointing import assign_full

    for k, target in own.items():
        if k in state and tuple(target.shape) == tuple(state[k].shape):
            assign_full(target, state[k])


def _check_built(model: Any, what: str) -> None:
    if not getattr(model, "built", True) or not model.state_dict():
        raise ValueError(
            f"{what}: model {getattr(model, 'name', '')!r} has no weights yet. Build it first (call it "
            "on a batch, or model.build(input_shape))."
        )


def save_weights(model: Any, filepath: str | os.PathLike, overwrite: bool = True) -> None:
    """Write the model's weights to ``filepath`` (must end in ``.weights.safetensors``).

    In a distributed job only rank 0 writes. A sharded (FSDP) model's weights are gathered whole
    first, so every rank must call it then, and the file loads on any number of processes.
    """
    filepath = os.fspath(filepath)
    if not filepath.endswith(".safetensors"):
        raise ValueError(f"save_weights: the file name must end in '.weights.safetensors', got {filepath!r}.")
    if not overwrite and os.path.exists(filepath):
        raise FileExistsError(f"save_weights: {filepath} exists and overwrite=False.")
    _check_built(model, "save_weights")
    from .. import __version__
    from ..distribute import checkpointing, environment

    state = model.state_dict()
    sharded = checkpointing.has_sharded(state)
    blob = state_to_safetensors(
        checkpointing.gathered(state),
        {"format": "tapefit", "tapefit_version": __version__, "torch_version": torch.__version__},
    )
    if environment.is_chief():
        try:
            with atomic_write(filepath, "wb") as f:
                f.write(blob)
        except OSError as e:
            raise OSError(e.errno, f"Could not write weights to {filepath}: {e.strerror}") from e
    if sharded:
        environment.barrier()  # every rank called it: the file exists when any of them returns


def read_state_file(filepath: str) -> dict[str, torch.Tensor]:
    """The state dict in a safetensors file or a torch checkpoint (``weights_only=True``)."""
    if not os.path.exists(filepath):
        raise FileNotFoundError(f"No weights file at {filepath}.")
    if filepath.endswith(".safetensors"):
        size = os.path.getsize(filepath)
        with open(filepath, "rb") as f:
            head = f.read(8)
            if len(head) == 8:  # refuse a lying header before reading the body
                _check_header_length(int.from_bytes(head, "little"), size, filepath)
            f.seek(0)
            return safetensors_to_state(f.read(), filepath)[0]
    if filepath.endswith(_TORCH_SUFFIXES):
        try:
            obj = torch.load(filepath, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(
                f"{filepath}: refused or unreadable torch checkpoint (it is only read with "
                f"weights_only=True, so pickled code is never run): {e}"
            ) from e
        if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
            obj = obj["state_dict"]
        if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
            raise ValueError(f"{filepath}: expected a state dict (name -> tensor).")
        return obj
    raise ValueError(
        f"load_weights: unsupported file {filepath!r}; use '.weights.safetensors', a Keras 3 "
        "'.weights.h5' file, or a torch state dict '.pt'/'.pth'."
    )


def load_weights(model: Any, filepath: str | os.PathLike, skip_mismatch: bool = False) -> None:
    """Load weights saved by ``save_weights`` (or a torch state dict) into ``model``."""
    filepath = os.fspath(filepath)
    _check_built(model, "load_weights")
    apply_state(model, read_state_file(filepath), filepath, skip_mismatch)
