"""Crash-safe file writing: temp file in the same folder, flush, fsync, rename.

A reader never sees a torn file: either the previous good file or the complete new one.
Every file tapefit writes goes through :func:`atomic_write`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import socket
import tempfile
from collections.abc import Iterator
from typing import IO

_TMP_PREFIX = ".tapefit-tmp-"
_OWNER = re.compile(r"\.tapefit-tmp-([0-9a-f]{8})-(\d+)-")


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _writer_prefix() -> str:
    """Temporary names say which host and process write them, so a cleaner spares live writers."""
    return f"{_TMP_PREFIX}{_host_tag()}-{os.getpid()}-"


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on clean exit fsync it and rename it into place.

    Example:
        >>> import os, tempfile
        >>> p = os.path.join(tempfile.mkdtemp(), "a.txt")
        >>> with atomic_write(p, "w") as f:
        ...     _ = f.write("hello")
        >>> open(p).read()
        'hello'
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', not {mode!r}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_writer_prefix(), dir=folder)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path`` for a writer that wants a file name (not a handle);
    on clean exit the file is fsynced and renamed into place, else removed.

    The temporary keeps ``path``'s file name as its ending, so writers that check extensions
    (``model.save`` wants ``.tapefit``) accept it.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f"{_writer_prefix()}{secrets.token_hex(6)}-{os.path.basename(path)}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def rename_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Move a finished folder into place crash-safely: fsync every file and folder in ``src``,
    rename it to ``dst`` (an ``OSError`` if ``dst`` is a non-empty folder), then fsync the parent.

    After a crash ``dst`` is either absent or complete, with every file's bytes on disk.

    Example:
        >>> import os, tempfile
        >>> root = tempfile.mkdtemp()
        >>> os.mkdir(os.path.join(root, "tmp"))
        >>> with open(os.path.join(root, "tmp", "a.txt"), "w") as f:
        ...     _ = f.write("x")
        >>> rename_tree(os.path.join(root, "tmp"), os.path.join(root, "done"))
        >>> os.listdir(os.path.join(root, "done"))
        ['a.txt']
    """
    src, dst = os.fspath(src), os.fspath(dst)
    for folder, _, files in os.walk(src, topdown=False):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(folder)
    os.rename(src, dst)
    _fsync_dir(os.path.dirname(os.path.abspath(dst)))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _writer_is_alive(name: str) -> bool:
    """Whether the process that made temporary ``name`` may still be writing it: it runs on this
    host, or on another host (which cannot be checked from here, so it is spared)."""
    match = _OWNER.match(name)
    if match is None:
        return False  # an older name without an owner
    host, pid = match.group(1), int(match.group(2))
    if host != _host_tag():
        return True
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete temporary files that a killed writer left in ``folder``; returns their names.

    Temporaries of writers still running (this process, another live process on this host, or
    any process on another host sharing the folder) are left alone, so a shared folder is safe.
    """
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for name in os.listdir(folder):
            if name.startswith(_TMP_PREFIX) and not _writer_is_alive(name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(folder, name))
                    removed.append(name)
    return removed
