"""``cache(filename)``: the first complete pass is written to disk; later passes, in this process
or a new one, read the files instead of running the pipeline above the cache.

Files (``filename`` is a prefix, as in tf.data): ``<filename>.data-00000.safetensors``, ... hold
the elements (see ``_shard_io``), written shard by shard while the first pass streams, so
memory holds one shard at a time. ``<filename>.index`` (JSON: structure, dtypes, shapes, shard
list) is written last, atomically, and only when the pass reached its end: without an index
the shards are never trusted, so a pass that stops early (a ``break``, an error, a killed
process) leaves nothing a later run would read. ``<filename>.lockfile`` marks a writer at work;
a writer in another live process makes a second one error, as in tf.data (a lock whose process
no longer runs is taken over; a second pass in the same process takes over from the first).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import socket
from collections.abc import Iterator
from typing import Any

from .._atomic import atomic_path, atomic_write
from ._node import Node
from ._shard_io import ShardBuffer, decode, describe_tree, dtype_name, elements, nbytes
from ._structure import Tree, flatten, flatten_with_paths, unstack
from .spec import INFINITE_CARDINALITY

_FORMAT = "tapefit.data.cache"
_VERSION = 1
_SHARD_BYTES = 64 << 20
_WRITE_ROWS = 1024


class FileCache(Node):
    """The cache node. It keeps no pass-dependent state in memory: the files are the state."""

    def __init__(self, up: Node, prefix: str):
        if os.path.isdir(prefix):
            raise ValueError(
                f"cache({prefix!r}): this is a directory; `filename` is a file prefix (tf.data names "
                f"the files `<filename>.index` and so on). Pass e.g. {os.path.join(prefix, 'cache')!r}."
            )
        if up.cardinality() == INFINITE_CARDINALITY:
            raise ValueError(
                f"cache({prefix!r}): the dataset is infinite, so its first pass never ends and the cache "
                "would grow until the disk is full; call repeat() after cache(), not before."
            )
        self.up, self.prefix = up, prefix
        self.index_path = prefix + ".index"
        self.lock_path = prefix + ".lockfile"
        self._verified: tuple[str, Tree | None] | None = None

    def generic(self) -> Iterator[Any]:
        text = _read_text(self.index_path)
        if text is None:
            token = _acquire(self.lock_path, self.prefix)
            text = _read_text(self.index_path)  # another writer may have finished meanwhile
            if text is None:
                yield from self._write(token)
                return
            _release(self.lock_path, token)
        yield from self._read(text)

    def cardinality(self) -> int:
        return self.up.cardinality()

    def spec(self) -> Any:
        return self.up.spec()

    # ------------------------------------------------------------------ reading
    def _read(self, text: str) -> Iterator[Any]:
        index = self._parse(text)
        tree = self._verify(text, index)
        if tree is None:
            return
        folder = os.path.dirname(os.path.abspath(self.index_path))
        for shard in index["shards"]:
            path = os.path.join(folder, shard["file"])
            try:
                from safetensors.torch import load_file

                columns = decode(load_file(path), tree.num_leaves, int(shard["elements"]))
            except Exception as err:  # a missing, truncated or foreign file: say which and how to fix
                raise self._broken(f"cannot read {path}: {err}") from err
            yield from elements(columns, tree)

    def _parse(self, text: str) -> dict:
        try:
            index = json.loads(text)
            ok = index.get("format") == _FORMAT and index.get("version") == _VERSION
            ok = ok and {"elements", "structure", "components", "shards"} <= set(index)
        except (ValueError, AttributeError):
            ok = False
        if not ok:
            raise self._broken(f"{self.index_path} is not a tapefit cache index ({_FORMAT} v{_VERSION})")
        return index

    def _verify(self, text: str, index: dict) -> Tree | None:
        """Check the files against the pipeline once per index; the tree to rebuild elements with."""
        if self._verified is not None and self._verified[0] == text:
            return self._verified[1]
        count = int(index["elements"])
        expected = self.up.cardinality()
        if expected >= 0 and expected != count:
            raise self._mismatch(f"the cache holds {count} elements but the pipeline now has {expected}")
        tree = None
        if count:
            try:
                pipeline = self.up.spec()
            except ValueError as err:  # an empty pipeline has no element to infer a spec from
                raise self._mismatch(f"the pipeline gives no element spec ({err})") from err
            specs, tree = flatten(pipeline)
            self._compare(index, specs, tree, pipeline)
        self._verified = (text, tree)
        return tree

    def _compare(self, index: dict, specs: list, tree: Tree, pipeline: Any) -> None:
        if describe_tree(tree) != index["structure"]:
            raise self._mismatch(
                f"the cached elements have the structure {index['structure_text']} but the pipeline's "
                f"are {tree.describe()}"
            )
        paths = [p for p, _ in flatten_with_paths(pipeline)]
        for path, spec, cached in zip(paths, specs, index["components"]):
            shape = None if cached["shape"] is None else tuple(cached["shape"])
            if dtype_name(spec.dtype) != cached["dtype"] or not spec.is_compatible_shape(shape):
                raise self._mismatch(
                    f"component {path} was cached as {cached['dtype']} of shape {_shape_text(shape)} but "
                    f"the pipeline yields {dtype_name(spec.dtype)} of shape {_shape_text(spec.shape)}"
                )

    def _files(self) -> str:
        return f"{self.index_path} and {self.prefix}.data-*.safetensors"

    def _mismatch(self, detail: str) -> ValueError:
        return ValueError(
            f"cache({self.prefix!r}): the cache files do not match this pipeline: {detail}. They were "
            f"written by a different pipeline; delete {self._files()} to rebuild the cache, or pass "
            "another filename."
        )

    def _broken(self, detail: str) -> ValueError:
        return ValueError(f"cache({self.prefix!r}): {detail}. Delete {self._files()} to rebuild the cache.")

    # ------------------------------------------------------------------ writing
    def _write(self, token: object) -> Iterator[Any]:
        """One pass of the pipeline, yielded while it is written; the index only at its end.

        A newer pass in this process takes the cache over (see :func:`_acquire`); this one then
        stops writing and just passes its elements through.
        """
        written: list[str] = []
        finished = False
        try:
            _remove_shards(self.prefix)  # left by a pass that was stopped or killed
            buffer = ShardBuffer()
            shards: list[dict] = []
            for batch, rows in self._blocks():
                owner = _owns(self.lock_path, token)
                if owner and rows is None:
                    buffer.add(batch)
                elif owner:
                    buffer.add_batch(batch, rows)
                yield from ((batch,) if rows is None else unstack(batch))
                if buffer.nbytes >= _SHARD_BYTES and _owns(self.lock_path, token):
                    shards.append(self._flush(buffer, len(shards), written))
            if _owns(self.lock_path, token):
                if buffer.rows:
                    shards.append(self._flush(buffer, len(shards), written))
                self._write_index(buffer, shards)
            finished = True
        finally:
            if not finished and _owns(self.lock_path, token):
                for path in written:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            _release(self.lock_path, token)

    def _blocks(self) -> Iterator[tuple[Any, int | None]]:
        """``(element, None)`` one by one, or ``(batch, rows)`` gathered by index when the input
        is in memory with rows of one shape (then nothing is unstacked and restacked)."""
        plan = self.up.plan()
        if plan is None or not plan.rows.dense:
            for element in self.up:
                yield element, None
            return
        rows = 64  # grown to about _WRITE_ROWS once the size of a row is known, kept below a shard
        for chunk in plan.stream():
            while len(chunk):
                sub, chunk = chunk[:rows], chunk[rows:]
                batch = plan.rows.batch(sub)
                yield batch, len(sub)
                row_bytes = sum(nbytes(leaf) for leaf in flatten(batch)[0]) / len(sub)
                rows = int(max(1, min(_WRITE_ROWS, _SHARD_BYTES // 4 / max(row_bytes, 1))))

    def _flush(self, buffer: ShardBuffer, number: int, written: list[str]) -> dict:
        from safetensors.torch import save_file

        tensors, rows = buffer.take()
        name = f"{os.path.basename(self.prefix)}.data-{number:05d}.safetensors"
        path = os.path.join(os.path.dirname(os.path.abspath(self.prefix)), name)
        written.append(path)
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={"format": _FORMAT, "rows": str(rows)})
        return {"file": name, "elements": rows}

    def _write_index(self, buffer: ShardBuffer, shards: list[dict]) -> None:
        tree = buffer.tree
        index = {
            "format": _FORMAT,
            "version": _VERSION,
            "elements": sum(s["elements"] for s in shards),
            "structure": None if tree is None else describe_tree(tree),
            "structure_text": None if tree is None else tree.describe(),
            "components": [{"dtype": d, "shape": s} for d, s in zip(buffer.dtypes, buffer.shapes)],
            "shards": shards,
        }
        text = json.dumps(index, indent=1)
        with atomic_write(self.index_path, "w") as f:
            f.write(text)
        self._verified = (text, tree)  # this pipeline wrote it: later passes need no check


def _shape_text(shape: Any) -> str:
    return "<unknown rank>" if shape is None else str(tuple(shape))


def _read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def _remove_shards(prefix: str) -> None:
    for path in glob.glob(glob.escape(prefix) + ".data-" + "[0-9]" * 5 + ".safetensors"):
        with contextlib.suppress(OSError):
            os.unlink(path)


# The writer that owns each lock this process holds: a newer pass over the same cache replaces an
# older one (typically an iterator abandoned by an exception, still alive in a traceback).
_OWNERS: dict[str, object] = {}


def _acquire(lock_path: str, prefix: str) -> object:
    """Take the lock for a new writer and return its token; raise if another live process holds it.

    A lock left by a process of this machine that no longer runs is taken over; one held by this
    process passes to the new writer. The lock is created with ``O_EXCL`` rather than
    ``atomic_write``: exclusive creation is the point of a lock, and a rename would silently
    replace another writer's lock.
    """
    key = os.path.abspath(lock_path)
    for attempt in range(2):
        try:
            fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _lock_owner(lock_path)
            if owner == (socket.gethostname(), os.getpid()):
                token = _OWNERS[key] = object()
                return token
            if attempt == 0 and owner is not None and _is_stale(owner):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(lock_path)
                continue
            holder = "an unknown process" if owner is None else f"process {owner[1]} on {owner[0]}"
            raise RuntimeError(
                f"cache({prefix!r}): another process is writing this cache (lock file {lock_path}, held "
                f"by {holder}). Wait for it to finish its pass; if no process is using the cache, delete "
                f"{lock_path}."
            ) from None
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid()}, f)
        token = _OWNERS[key] = object()
        return token
    raise AssertionError("unreachable")


def _owns(lock_path: str, token: object) -> bool:
    return _OWNERS.get(os.path.abspath(lock_path)) is token


def _release(lock_path: str, token: object) -> None:
    if _owns(lock_path, token):
        del _OWNERS[os.path.abspath(lock_path)]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)


def _lock_owner(lock_path: str) -> tuple[str, int] | None:
    try:
        with open(lock_path, encoding="utf-8") as f:
            owner = json.load(f)
        return str(owner["host"]), int(owner["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _is_stale(owner: tuple[str, int]) -> bool:
    """Whether the lock's writer is a process on this machine that no longer exists."""
    host, pid = owner
    if host != socket.gethostname() or os.name == "nt":  # on Windows os.kill would end the process
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
