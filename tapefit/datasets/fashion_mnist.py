"""Fashion-MNIST: Zalando's 28x28 clothing images, read from the four gzipped IDX files Keras caches.

Fashion-MNIST is by Zalando SE, MIT license.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from . import _download
from ._validate import check_split, format_error

__all__ = ["load_data", "read_idx"]

_BASE_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_SUBDIR = "fashion-mnist"
_FILES = {
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
}
_MAX_IDX_BYTES = 1 << 31
_WHAT = "IDX file (big-endian header, unsigned-byte data)"

Split = tuple[np.ndarray, np.ndarray]


def load_data() -> tuple[Split, Split]:
    """Load Fashion-MNIST as Keras does: ``(x_train, y_train), (x_test, y_test)``, all uint8.

    Images are (N, 28, 28), labels (N,) in 0..9 (T-shirt/top, Trouser, Pullover, Dress, Coat,
    Sandal, Shirt, Sneaker, Bag, Ankle boot). The four IDX files are read from
    ``$TAPEFIT_HOME/datasets/fashion-mnist/`` (gzipped, or already unzipped without the ``.gz``)
    and downloaded, sha256-checked, when missing.
    """
    arrays = [read_idx(_locate(name, sha)) for name, sha in _FILES.items()]
    y_train, x_train, y_test, x_test = arrays
    paths = [_download.cache_path(name, _SUBDIR) for name in _FILES]
    check_split(x_train, y_train, (28, 28), 10, f"{paths[1]} with {paths[0]}", "Fashion-MNIST split", "train")
    check_split(x_test, y_test, (28, 28), 10, f"{paths[3]} with {paths[2]}", "Fashion-MNIST split", "test")
    return (x_train, y_train), (x_test, y_test)


def _locate(name: str, sha256: str) -> str:
    unzipped = _download.cache_path(name.removesuffix(".gz"), _SUBDIR)
    if os.path.exists(unzipped) and not os.path.exists(_download.cache_path(name, _SUBDIR)):
        return unzipped
    return _download.get_file(name, _BASE_URL + name, sha256, _SUBDIR)


def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST family's format), gzipped or not, as a uint8 array.

    The header is two zero bytes, a type byte (0x08: unsigned byte), the number of dimensions,
    then each dimension as a big-endian uint32; the data follows. Memory is bounded by the
    header: a file whose data does not match it is rejected.
    """
    opener = gzip.open if _is_gzip(path) else open
    try:
        with opener(path, "rb") as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[:2] != b"\0\0":
                raise format_error(path, _WHAT, f"it starts with {magic!r}, not an IDX magic number")
            if magic[2] != 0x08:
                raise format_error(path, _WHAT, f"data type code 0x{magic[2]:02x}, expected 0x08 (ubyte)")
            ndim = magic[3]
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) != 4 * ndim:
                raise format_error(path, _WHAT, "the header is truncated")
            shape = tuple(int(d) for d in np.frombuffer(raw_dims, ">u4"))
            size = int(np.prod(shape, dtype=np.int64))
            if size > _MAX_IDX_BYTES:
                raise format_error(path, _WHAT, f"the header declares shape {shape}, too large")
            data = f.read(size + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise format_error(path, _WHAT, f"it cannot be read ({e})") from e
    if len(data) != size:
        raise format_error(path, _WHAT, f"the header declares shape {shape} ({size} bytes) but the file "
                                        f"holds {'more' if len(data) > size else len(data)} bytes of data")
    return np.frombuffer(data, np.uint8).reshape(shape).copy()  # writable, like a fresh array


def _is_gzip(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"
