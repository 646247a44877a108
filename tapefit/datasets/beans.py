"""Beans: 1,295 photos of bean leaves (healthy, angular leaf spot, bean rust) in image folders.

Downloads the three zips TensorFlow Datasets uses (Makerere AI Lab, MIT license) and unpacks
each into ``train/``, ``validation/`` and ``test/``, one sub-folder per class, ready for
:func:`tapefit.utils.image_dataset_from_directory`. Extraction is safe (absolute paths, ``..``
and links are refused, sizes are bounded) and all-or-nothing: a split is unpacked into a
temporary folder whose files are fsynced before it is renamed into place, so a crash leaves no
split folder or a complete one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import time
import zipfile
import zlib
from typing import NamedTuple

from .._atomic import rename_tree
from . import _download
from ._validate import format_error

__all__ = ["load_data", "BeansFolders", "CLASS_NAMES"]

CLASS_NAMES = ("angular_leaf_spot", "bean_rust", "healthy")

_URLS = {
    "train": "https://storage.googleapis.com/ibeans/train.zip",
    "validation": "https://storage.googleapis.com/ibeans/validation.zip",
    "test": "https://storage.googleapis.com/ibeans/test.zip",
}
# From tensorflow/datasets, tensorflow_datasets/url_checksums/beans.txt.
_SHA256 = {
    "train": "284fe8456ce20687f4367ae7ad94a64577e7f9fde2c2c6b1c74340ab5dc82715",
    "validation": "90b7aa1c26d91d9afff07a30bbc67a5ea34f1f1397f068d8675be09d7d0c602d",
    "test": "ca67b15d960d1e2fd9d23fd8498ce86818ead90755c630a43baf19ec4af09312",
}
_MAX_TOTAL_BYTES = 4 << 30
_TMP_PREFIX = ".tapefit-tmp-"
_STALE_AFTER_S = 3600


class BeansFolders(NamedTuple):
    """Paths of the three unpacked splits; unpacks like a tuple: ``train, val, test = ...``."""

    train: str
    validation: str
    test: str


def load_data(cache_dir: str | None = None) -> BeansFolders:
    """Download (once) and unpack the beans images; return the three split folders.

    Args:
        cache_dir: Where the zips and folders go; ``$TAPEFIT_HOME/datasets/beans`` by default. A
            split folder already there (for example one you copied in) is used as it is.

    Returns:
        ``BeansFolders(train, validation, test)``, each a folder with one sub-folder per class in
        :data:`CLASS_NAMES`.

    Example:
        >>> train_dir, val_dir, test_dir = load_data()  # doctest: +SKIP
        >>> train_ds = tapefit.utils.image_dataset_from_directory(train_dir)  # doctest: +SKIP
    """
    root = os.path.abspath(cache_dir or _download.cache_path("beans"))
    os.makedirs(root, exist_ok=True)
    _remove_stale_extractions(root)
    folders = {}
    for split, url in _URLS.items():
        folder = os.path.join(root, split)
        if not _nonempty_dir(folder):
            archive = os.path.join(root, f"{split}.zip")
            if not os.path.exists(archive):
                _download.download(url, archive, _SHA256[split])
            extract_zip(archive, folder)
        folders[split] = folder
    return BeansFolders(**folders)


def extract_zip(archive: str, destination: str) -> None:
    """Unpack ``archive`` into ``destination`` safely, renaming it into place only when complete.

    A single top-level folder inside the zip (``train/...``) is unwrapped, so ``destination``
    holds the class folders directly.
    """
    parent = os.path.dirname(destination)
    tmp = tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=parent)
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                infos = [i for i in zf.infolist() if not i.filename.startswith("__MACOSX/")]
                _check_members(archive, infos)
                for info in infos:
                    target = os.path.join(tmp, *info.filename.split("/"))
                    if info.is_dir():
                        os.makedirs(target, exist_ok=True)
                        continue
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    with zf.open(info) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        except (zipfile.BadZipFile, EOFError, zipfile.LargeZipFile, zlib.error, NotImplementedError,
                RuntimeError) as e:
            raise format_error(archive, "zip archive", f"it cannot be read ({e})") from e
        top = tmp
        while True:
            entries = [e for e in os.listdir(top) if not e.startswith(".")]
            if len(entries) == 1 and os.path.isdir(os.path.join(top, entries[0])):
                top = os.path.join(top, entries[0])
            else:
                break
        try:
            rename_tree(top, destination)
        except OSError:
            if not _nonempty_dir(destination):  # else another process finished first: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check_members(archive: str, infos: list[zipfile.ZipInfo]) -> None:
    """Refuse absolute paths, ``..``, links and archives that expand beyond a sane size."""
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
            raise format_error(archive, "zip archive", f"the entry {name!r} points outside the folder")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise format_error(archive, "zip archive", f"the entry {name!r} is a symbolic link")
        total += info.file_size
    if total > _MAX_TOTAL_BYTES:
        raise format_error(archive, "zip archive", f"it expands to {total} bytes, far more than the dataset")


def _nonempty_dir(path: str) -> bool:
    return os.path.isdir(path) and any(not e.startswith(".") for e in os.listdir(path))


def _remove_stale_extractions(root: str) -> None:
    """Delete temporary folders left by a killed extraction (older than an hour, so never a live one)."""
    now = time.time()
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name.startswith(_TMP_PREFIX) and os.path.isdir(path):
            with contextlib.suppress(OSError):
                if now - os.path.getmtime(path) > _STALE_AFTER_S:
                    shutil.rmtree(path, ignore_errors=True)
