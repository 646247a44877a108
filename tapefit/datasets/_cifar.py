"""Reading CIFAR files: the python-pickle batches (through a restricted unpickler) and the binary format.

Both come as a ``.tar.gz`` or as its extracted folder. Archives are read member by member in one
sequential pass, never extracted, and every member's size is bounded before it is read; links
and entries pointing outside the archive's folder are refused. The
python batches are pickles: :class:`RestrictedUnpickler` only admits the globals that rebuild a
numpy array (plus latin-1 byte strings and plain containers), so a crafted file cannot run code.
Images are reshaped once per split with numpy (no per-image Python), so all of CIFAR-10 loads in
seconds.
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Iterable

import numpy as np

from ._validate import format_error

_MAX_MEMBER_BYTES = 1 << 30
_BATCH = "CIFAR python batch"
_IMAGE_BYTES = 32 * 32 * 3

_NUMPY_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
})
_CONTAINERS = frozenset({"list", "dict", "tuple", "set", "frozenset", "bytearray"})


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """What ``_codecs.encode`` does for the byte strings a protocol-2 pickle stores, and no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(
            f"Refusing _codecs.encode({type(text).__name__}, {encoding!r}) while reading a CIFAR batch: "
            "only latin-1 byte strings occur in real CIFAR files.")
    return text.encode("latin-1")


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays, byte strings and containers, and refuses all else.

    Example:
        >>> import io, pickle, numpy as np
        >>> blob = pickle.dumps({b"data": np.zeros((2, 3), np.uint8)}, protocol=2)
        >>> RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()[b"data"].shape
        (2, 3)
    """

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _NUMPY_GLOBALS:
            return super().find_class(module, name)
        if module in ("builtins", "__builtin__") and name in _CONTAINERS:
            return super().find_class(module, name)
        if (module, name) == ("_codecs", "encode"):
            return _latin1_encode
        raise pickle.UnpicklingError(
            f"Refusing to load the global {module}.{name} from a CIFAR batch: only numpy arrays, "
            "lists, dicts and byte strings are allowed. The file is corrupt or was crafted to run "
            "code; delete it and download a fresh copy.")


def unpickle(blob: bytes, path: str) -> dict[str, object]:
    """Unpickle a CIFAR python batch safely; keys are returned as ``str``."""
    try:
        obj = RestrictedUnpickler(io.BytesIO(blob), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise pickle.UnpicklingError(f"{path}: {e}") from e
    except Exception as e:
        problem = f"it cannot be unpickled ({type(e).__name__}: {e})"
        raise format_error(path, "CIFAR python batch", problem) from e
    if not isinstance(obj, dict):
        raise format_error(path, "CIFAR python batch", f"it holds a {type(obj).__name__}, not a dict")
    return {k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_members(source: str, folder: str, names: Iterable[str]) -> dict[str, bytes]:
    """The bytes of each file in ``names`` from ``source``: an extracted folder or a ``.tar.gz``.

    In an archive, a member matches when its path ends with ``folder/name`` (so an archive
    written with a leading ``./`` or the bare folder both work).
    """
    names = list(names)
    if os.path.isdir(source):
        out = {}
        for name in names:
            path = os.path.join(source, name)
            if not os.path.isfile(path):
                raise format_error(source, f"{folder} folder", f"the file {name!r} is missing")
            if os.path.getsize(path) > _MAX_MEMBER_BYTES:
                raise format_error(path, "CIFAR batch", "it is larger than any CIFAR batch")
            with open(path, "rb") as f:
                out[name] = f.read()
        return out
    wanted = {f"{folder}/{name}": name for name in names}
    out = {}
    try:
        with tarfile.open(source, "r:*") as tar:
            for member in tar:
                parts = member.name.replace("\\", "/").split("/")
                if member.name.startswith(("/", "\\")) or ".." in parts:
                    raise format_error(source, "CIFAR archive", f"the entry {member.name!r} points outside "
                                                                "the folder")
                key = next((k for k in wanted if member.name == k or member.name.endswith("/" + k)), None)
                if key is None or wanted[key] in out:
                    continue
                if not member.isfile():
                    raise format_error(source, "CIFAR archive", f"{member.name} is not a regular file")
                if member.size > _MAX_MEMBER_BYTES:
                    raise format_error(source, "CIFAR archive", f"{member.name} declares {member.size} "
                                                                "bytes, larger than any CIFAR batch")
                out[wanted[key]] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise format_error(source, "CIFAR archive (.tar.gz)", f"it cannot be read ({e})") from e
    missing = [k for k, name in wanted.items() if name not in out]
    if missing:
        raise format_error(source, "CIFAR archive", f"it has no member {missing[0]!r}")
    return out


def python_batch(blob: bytes, path: str, label_keys: tuple[str, ...]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images (N, 32, 32, 3) and one label array (N,) per key, from one pickled batch."""
    batch = unpickle(blob, path)
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or \
            data.shape[1] != _IMAGE_BYTES:
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise format_error(path, "CIFAR python batch", f"'data' is {desc}, expected a uint8 (N, 3072) array")
    labels = []
    for key in label_keys:
        if key not in batch:
            raise format_error(path, _BATCH, f"the key {key!r} is missing (found {sorted(batch)})")
        try:
            y = np.asarray(batch[key], dtype=np.int64)
        except (TypeError, ValueError) as e:
            raise format_error(path, "CIFAR python batch", f"{key!r} is not a list of integers") from e
        if y.shape != (len(data),):
            raise format_error(path, _BATCH, f"{key!r} has shape {y.shape} for {len(data)} images")
        labels.append(y)
    return _to_images(data), labels


def binary_batch(blob: bytes, path: str, n_label_bytes: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """Images and label arrays from a binary batch: each record is its label bytes, then 3072 pixels."""
    record = n_label_bytes + _IMAGE_BYTES
    if len(blob) % record:
        raise format_error(path, "CIFAR binary batch", f"its size {len(blob)} is not a multiple of the "
                                                       f"{record}-byte record")
    rows = np.frombuffer(blob, np.uint8).reshape(-1, record)
    return _to_images(rows[:, n_label_bytes:]), [rows[:, i].astype(np.int64) for i in range(n_label_bytes)]


def _to_images(rows: np.ndarray) -> np.ndarray:
    """(N, 3072) rows of 1024 red, 1024 green, 1024 blue bytes -> contiguous (N, 32, 32, 3)."""
    return np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def finish(images: list[np.ndarray], labels: list[np.ndarray], num_classes: int, source: str,
           split: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate a split's batches; labels become uint8 (N, 1) as Keras returns them."""
    x = images[0] if len(images) == 1 else np.concatenate(images)
    y = labels[0] if len(labels) == 1 else np.concatenate(labels)
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise format_error(source, "CIFAR file", f"{split} labels range over [{y.min()}, {y.max()}], "
                                                 f"expected [0, {num_classes - 1}]")
    return x, y.astype(np.uint8).reshape(-1, 1)


def find_source(datasets_dir: str, candidates: list[tuple[str, str]]) -> tuple[str, str] | None:
    """The first ``(name, kind)`` in ``candidates`` present in ``datasets_dir``, as ``(path, kind)``."""
    for name, kind in candidates:
        path = os.path.join(datasets_dir, name)
        if os.path.exists(path):
            return path, kind
    return None
