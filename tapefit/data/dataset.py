"""``Dataset``: tf.data's input pipeline API, eager, on torch tensors.

The public class is a thin handle on a chain of nodes (``_sources``, ``_transforms``); every
method returns a new ``Dataset`` and never changes its input. Elements keep their structure
(tuples, dicts, nests); leaves are torch tensors, or Python ``str`` for strings.

Speed comes from the index fast path (``_rows``): while the data sits in memory, ``shuffle``
draws one permutation per pass, ``batch`` gathers each batch with one ``index_select`` per
component, and ``map`` runs once per batch when its function is batch-polymorphic.
``padded_batch`` (``_padded``), ``interleave`` (``_interleave``) and the file cache
(``_file_cache``, ``_shard_io``) live in their own modules.
"""

from __future__ import annotations

import operator
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ._file_cache import FileCache
from ._interleave import Interleave, default_cycle_length
from ._map import num_workers
from ._node import Node
from ._padded import PaddedBatch
from ._sources import (
    Concatenate,
    GeneratorSource,
    IterableSource,
    RangeSource,
    TensorSlices,
    Zip,
    dataset_tree,
    flatten_shapes,
)
from ._structure import flatten, map_structure, to_numpy
from ._transforms import Batch, Cache, Filter, Map, Prefetch, Repeat, Shard, Shuffle, Skip, Take, Unbatch
from .spec import AUTOTUNE, INFINITE_CARDINALITY, UNKNOWN_CARDINALITY, TensorSpec, as_dtype

__all__ = ["Dataset"]


def _int(value: Any, what: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = operator.index(value)
        except TypeError:
            raise TypeError(f"{what} must be an int, got {type(value).__name__}.") from None
    if value < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {value}.")
    return int(value)


class Dataset:
    """A sequence of elements with tf.data's transformations; iterate it with ``for``.

    Build one with :meth:`from_tensor_slices`, :meth:`from_generator`, :meth:`range` or
    :meth:`zip`, then chain transformations.

    Example:
        >>> import torch
        >>> ds = Dataset.from_tensor_slices((torch.arange(10), torch.arange(10) * 2))
        >>> ds = ds.shuffle(10, seed=0).batch(4)
        >>> [tuple(x.shape) for x, y in ds]
        [(4,), (4,), (2,)]
        >>> len(ds)
        3
    """

    def __init__(self, node: Node):
        self._node = node

    # ----------------------------------------------------------------- sources
    @staticmethod
    def from_tensor_slices(tensors: Any) -> Dataset:
        """One element per row of ``tensors`` (sliced along the first dimension).

        Accepts numpy arrays, torch tensors, Python lists (converted to one tensor; lists of
        strings stay strings), and tuples/dicts/nests of them. Numpy arrays are converted once
        with ``torch.from_numpy``, sharing their memory (a later in-place change of the array
        shows in the dataset). Every component must have the same first dimension.
        """
        return Dataset(TensorSlices(tensors))

    @staticmethod
    def from_tensors(tensors: Any) -> Dataset:
        """A dataset with the single element ``tensors``."""
        wrapped = map_structure(lambda leaf: [leaf], tensors)
        return Dataset(TensorSlices(wrapped))

    @staticmethod
    def from_generator(
        generator: Callable[..., Any],
        output_types: Any = None,
        output_shapes: Any = None,
        args: tuple | None = None,
        output_signature: Any = None,
    ) -> Dataset:
        """Elements yielded by ``generator(*args)``, which is called again for every pass.

        Args:
            generator: a callable returning an iterator (not the iterator itself).
            output_types: deprecated tf-style nest of dtypes (use ``output_signature``).
            output_shapes: deprecated tf-style nest of shapes matching ``output_types``.
            args: arguments passed to ``generator``, as they are.
            output_signature: a nest of :class:`TensorSpec`; yielded values are converted to
                these dtypes and checked against these shapes. Unlike tf.data it may be
                omitted: elements are then converted as they come (lists become tensors).
        """
        if not callable(generator):
            raise TypeError("from_generator: `generator` must be a callable that returns an iterator.")
        if output_signature is not None and (output_types is not None or output_shapes is not None):
            raise TypeError(
                "from_generator: pass either `output_signature` or `output_types`/`output_shapes`, not both."
            )
        if output_shapes is not None and output_types is None:
            raise TypeError("from_generator: `output_shapes` needs `output_types`.")
        signature = output_signature
        if output_types is not None:
            types, tree = flatten(output_types)
            shapes = (
                [None] * len(types) if output_shapes is None else flatten_shapes(output_shapes, len(types))
            )
            signature = tree.unflatten([TensorSpec(s, as_dtype(t)) for t, s in zip(types, shapes)])
        if signature is not None:
            specs, _ = flatten(signature)
            if not specs or not all(isinstance(s, TensorSpec) for s in specs):
                raise TypeError(
                    "from_generator: `output_signature` must be a (nested) tuple/dict of TensorSpec."
                )
        return Dataset(GeneratorSource(generator, args or (), signature))

    @staticmethod
    def range(*args: int, output_type: Any = torch.int64) -> Dataset:
        """``range(stop)``, ``range(start, stop)`` or ``range(start, stop, step)`` as scalars."""
        if not 1 <= len(args) <= 3:
            raise TypeError(f"Dataset.range takes 1 to 3 positional arguments, got {len(args)}.")
        bounds = [_int(a, "Dataset.range argument", -(2**63)) for a in args]
        start, stop, step = (0, bounds[0], 1) if len(bounds) == 1 else (*bounds, 1)[:3]
        if step == 0:
            raise ValueError("Dataset.range: step must not be zero.")
        return Dataset(RangeSource(start, stop, step, as_dtype(output_type)))

    @staticmethod
    def zip(*args: Any, datasets: Any = None) -> Dataset:
        """Elements of several datasets side by side: ``zip(a, b)`` or ``zip((a, b))`` or a dict.

        The result is as long as the shortest input.
        """
        if datasets is not None and args:
            raise TypeError("Dataset.zip: pass the datasets positionally or as `datasets=`, not both.")
        if datasets is None:
            if not args:
                raise TypeError("Dataset.zip needs at least one dataset.")
            datasets = args[0] if len(args) == 1 else args
        leaves, tree = dataset_tree(datasets, lambda d: isinstance(d, Dataset))
        return Dataset(Zip([d._node for d in leaves], tree))

    @staticmethod
    def _from_iterable_factory(
        factory: Callable[[], Iterator[Any]], cardinality: int | None = None
    ) -> Dataset:
        """A dataset whose passes each iterate a fresh ``factory()`` (for tapefit's own loaders).

        ``cardinality`` is the number of elements one pass yields (``None`` when unknown).
        """
        return Dataset(IterableSource(factory, cardinality))

    # ---------------------------------------------------------- transformations
    def map(
        self, map_func: Callable, num_parallel_calls: int | None = None, deterministic: bool | None = None
    ) -> Dataset:
        """Apply ``map_func`` to every element (a tuple element is passed as positional args).

        When the data is in memory, ``map_func`` is probed on a few elements; if it gives the
        same answers on a batch of them as on each alone (and the same answers twice, so
        random functions are excluded), it then runs once per batch instead of once per
        element, which is much faster. The probe calls ``map_func`` a few extra times at the
        start. Functions run without autograd. ``num_parallel_calls`` (an int or
        ``AUTOTUNE``) runs the per-element path on a thread pool; results always keep their
        order (``deterministic`` is accepted for compatibility).
        """
        if not callable(map_func):
            raise TypeError(f"map: `map_func` must be callable, got {type(map_func).__name__}.")
        if num_parallel_calls is not None and num_parallel_calls != AUTOTUNE:
            _int(num_parallel_calls, "map: num_parallel_calls", 1)
        return Dataset(Map(self._node, map_func, num_workers(num_parallel_calls)))

    def filter(self, predicate: Callable) -> Dataset:
        """Keep the elements for which ``predicate`` returns a scalar boolean ``True``."""
        if not callable(predicate):
            raise TypeError(f"filter: `predicate` must be callable, got {type(predicate).__name__}.")
        return Dataset(Filter(self._node, predicate))

    def batch(self, batch_size: int, drop_remainder: bool = False) -> Dataset:
        """Stack ``batch_size`` consecutive elements; the last batch may be smaller unless
        ``drop_remainder``. Batches span the passes of an upstream ``repeat``."""
        return Dataset(Batch(self._node, _int(batch_size, "batch: batch_size", 1), bool(drop_remainder)))

    def unbatch(self) -> Dataset:
        """Split every element along its first dimension into separate elements."""
        return Dataset(Unbatch(self._node))

    def shuffle(
        self, buffer_size: int, seed: int | None = None, reshuffle_each_iteration: bool = True
    ) -> Dataset:
        """Randomly shuffle with a buffer of ``buffer_size`` elements (tf.data semantics).

        A buffer at least as large as the dataset gives a uniform permutation; a smaller one
        only mixes elements within a sliding window. With ``seed`` the orders repeat from run
        to run (using a private generator); without it they come from torch's global RNG.
        ``reshuffle_each_iteration=False`` makes every pass use the same order.
        """
        buffer_size = _int(buffer_size, "shuffle: buffer_size", 1)
        if seed is not None:
            seed = _int(seed, "shuffle: seed", 0)
        return Dataset(Shuffle(self._node, buffer_size, seed, bool(reshuffle_each_iteration)))

    def repeat(self, count: int | None = None) -> Dataset:
        """Repeat the dataset ``count`` times (forever for ``None`` or -1)."""
        count = -1 if count is None else _int(count, "repeat: count", -1)
        return Dataset(Repeat(self._node, count))

    def take(self, count: int) -> Dataset:
        """The first ``count`` elements (all for -1)."""
        return Dataset(Take(self._node, _int(count, "take: count", -1)))

    def skip(self, count: int) -> Dataset:
        """Everything after the first ``count`` elements (nothing for -1)."""
        return Dataset(Skip(self._node, _int(count, "skip: count", -1)))

    def shard(self, num_shards: int, index: int) -> Dataset:
        """Every ``num_shards``-th element starting at ``index`` (one worker's share)."""
        num_shards = _int(num_shards, "shard: num_shards", 1)
        index = _int(index, "shard: index", 0)
        if index >= num_shards:
            raise ValueError(f"shard: index must be < num_shards ({num_shards}), got {index}.")
        return Dataset(Shard(self._node, num_shards, index))

    def cache(self, filename: str | os.PathLike = "") -> Dataset:
        """Keep the elements of the first complete pass and replay them in later passes.

        Put it after expensive deterministic ``map`` calls: later passes skip them. Without a
        ``filename`` the elements stay in memory (after a batch-polymorphic map the mapped data
        becomes tensors gathered by index, the fast path).

        With a ``filename`` (a file prefix, as in tf.data) the first pass is written while it
        streams to ``<filename>.data-NNNNN.safetensors`` shards (memory holds one shard) and
        ``<filename>.index`` (JSON), written atomically once that pass reaches its end. Later
        passes, and later runs of the program, read the files and skip the pipeline above
        ``cache``. A pass that stops early (a ``break``, an error, a killed process) leaves no
        index, so nothing of it is ever read, and the next pass writes the cache again.

        Unlike tf.data, reading checks the files against the pipeline (structure, dtypes,
        shapes, and the element count where the pipeline knows it) and raises, naming the files
        to delete, when it changed. The check reads the pipeline's ``element_spec``, which after
        a ``map`` runs it on one element. Reading takes the element path (add ``.cache()`` to
        hold the data in memory for the fast path); tensors come back on the CPU. A writer in
        another live process is an error; in this process a new pass takes over from an
        unfinished one. No file holds pickled data, and there is no state for ``state_dict``.

        Example:
            >>> import os, tempfile
            >>> prefix = os.path.join(tempfile.mkdtemp(), "squares")
            >>> ds = Dataset.range(5).map(lambda x: x**2).cache(prefix)
            >>> [int(x) for x in ds]  # runs the map and writes the cache
            [0, 1, 4, 9, 16]
            >>> [int(x) for x in Dataset.range(5).map(lambda x: x**2).cache(prefix)]  # reads it
            [0, 1, 4, 9, 16]
        """
        if not isinstance(filename, (str, os.PathLike)):
            raise TypeError(f"cache: `filename` must be a str or a path, got {type(filename).__name__}.")
        filename = os.fspath(filename)
        if filename:
            return Dataset(FileCache(self._node, filename))
        return Dataset(Cache(self._node))

    def padded_batch(
        self,
        batch_size: int,
        padded_shapes: Any = None,
        padding_values: Any = None,
        drop_remainder: bool = False,
    ) -> Dataset:
        """Batch consecutive elements of different shapes, padding each component (tf.data's rules).

        Args:
            batch_size: elements per batch.
            padded_shapes: per component (following the element's tuple/dict structure) the
                shape to pad to: a list of ints where ``None`` or -1 means the longest in the
                batch, or an int for a vector. ``None`` (the default, also per component)
                pads every dimension to the longest in the batch. An element larger than a
                fixed size is an error.
            padding_values: per component a scalar, or one scalar for all components;
                defaults are 0, ``False`` for booleans and ``""`` for strings. Python numbers
                take the component's dtype; tensors must have it.
            drop_remainder: drop a last batch smaller than ``batch_size``.

        Example:
            >>> ds = Dataset.range(1, 5).map(lambda x: torch.full((int(x),), int(x)))
            >>> [b.tolist() for b in ds.padded_batch(2)]
            [[[1, 0], [2, 2]], [[3, 3, 3, 0], [4, 4, 4, 4]]]
            >>> [b.tolist() for b in ds.padded_batch(2, padded_shapes=5, padding_values=-1)][0]
            [[1, -1, -1, -1, -1], [2, 2, -1, -1, -1]]
        """
        size = _int(batch_size, "padded_batch: batch_size", 1)
        return Dataset(PaddedBatch(self._node, size, bool(drop_remainder), padded_shapes, padding_values))

    def interleave(
        self,
        map_func: Callable[..., Dataset],
        cycle_length: int | None = None,
        block_length: int | None = None,
        num_parallel_calls: int | None = None,
        deterministic: bool | None = None,
    ) -> Dataset:
        """Map each element to a dataset and take their elements in turns (tf.data's order).

        ``map_func`` is called on ``cycle_length`` input elements at a time (a tuple element
        is passed as positional arguments); their datasets are visited in turn, each giving
        ``block_length`` consecutive elements, and when one ends the next input element takes
        its place. ``cycle_length=1`` is tf's ``flat_map``.

        Args:
            map_func: returns a :class:`Dataset` for an element.
            cycle_length: datasets open at once. ``None`` or ``AUTOTUNE`` gives tf's default:
                the number of CPUs this process may use, at most ``num_parallel_calls`` when
                that is an int, a third of them when it is ``AUTOTUNE``.
            block_length: consecutive elements from each dataset per turn (default 1).
            num_parallel_calls: an int or ``AUTOTUNE``: worker threads read ahead in the open
                datasets (useful when reading files or decoding, which release the GIL).
            deterministic: accepted for compatibility; the order is always tf's deterministic one.

        Example:
            >>> ds = Dataset.range(1, 6).interleave(
            ...     lambda x: Dataset.from_tensors(x).repeat(6), cycle_length=2, block_length=4)
            >>> [int(x) for x in ds][:12]
            [1, 1, 1, 1, 2, 2, 2, 2, 1, 1, 2, 2]
        """
        if not callable(map_func):
            raise TypeError(f"interleave: `map_func` must be callable, got {type(map_func).__name__}.")
        if num_parallel_calls is None:
            if deterministic is not None:
                warnings.warn(
                    "interleave: `deterministic` has no effect unless `num_parallel_calls` is given.",
                    stacklevel=2,
                )
        elif num_parallel_calls != AUTOTUNE:
            _int(num_parallel_calls, "interleave: num_parallel_calls", 1)
        if cycle_length is None or cycle_length == AUTOTUNE:
            cycle_length = default_cycle_length(num_parallel_calls)
        cycle_length = _int(cycle_length, "interleave: cycle_length", 1)
        block_length = 1 if block_length is None else _int(block_length, "interleave: block_length", 1)
        workers = num_workers(num_parallel_calls)
        return Dataset(Interleave(self._node, map_func, _node_of, cycle_length, block_length, workers))

    def prefetch(self, buffer_size: int) -> Dataset:
        """Accepted for tf.data compatibility; elements are still produced on demand.

        A background thread would not make this pipeline faster: the in-memory fast path is a
        few gathers per batch, and Python-heavy per-element work holds the GIL that the
        training loop also needs. Device transfers belong to the training loop.
        """
        if buffer_size != AUTOTUNE:
            _int(buffer_size, "prefetch: buffer_size", 0)
        return Dataset(Prefetch(self._node))

    def concatenate(self, dataset: Dataset) -> Dataset:
        """All elements of this dataset followed by all of ``dataset`` (same structure)."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"concatenate expects a Dataset, got {type(dataset).__name__}.")
        return Dataset(Concatenate(self._node, dataset._node))

    def enumerate(self, start: int = 0) -> Dataset:
        """Pairs ``(index, element)`` with an int64 index counting from ``start``."""
        return Dataset.zip((Dataset.range(start, 2**62), self))

    def apply(self, transformation_func: Callable[[Dataset], Dataset]) -> Dataset:
        """``transformation_func(self)``, for chaining reusable pipeline pieces."""
        result = transformation_func(self)
        if not isinstance(result, Dataset):
            raise TypeError("apply: `transformation_func` must return a Dataset.")
        return result

    # ------------------------------------------------------------------ access
    def __iter__(self) -> Iterator[Any]:
        return iter(self._node)

    def _stateful_nodes(self) -> list[Node]:
        seen: set[int] = set()
        order: list[Node] = []
        stack = [self._node]
        while stack:
            node = stack.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            order.append(node)
            stack.extend(reversed(node.children()))
        return [n for n in order if n.state() is not None]

    def state_dict(self) -> dict[str, int]:
        """Where the pipeline's pass-dependent randomness stands (shuffle epochs), for exact resume.

        Only ``shuffle`` (and tapefit's own loaders) keep such state; ``cache`` (in memory or
        in files), ``padded_batch``, ``interleave`` and the other transformations have none.

        Example:
            >>> ds = Dataset.range(4).shuffle(4, seed=1)
            >>> _ = list(ds)
            >>> ds.state_dict()
            {'0/epoch': 1, '0/frozen_seed': -1}
        """
        out: dict[str, int] = {}
        for i, node in enumerate(self._stateful_nodes()):
            out.update({f"{i}/{k}": int(v) for k, v in node.state().items()})
        return out

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore what :meth:`state_dict` returned (same pipeline); raises on a mismatch."""
        nodes = self._stateful_nodes()
        expected = {f"{i}/{k}" for i, n in enumerate(nodes) for k in n.state()}
        if set(state) != expected:
            raise ValueError(
                f"Dataset.load_state_dict: the state has keys {sorted(state)}, but this pipeline "
                f"expects {sorted(expected)}."
            )
        for i, node in enumerate(nodes):
            prefix = f"{i}/"
            node.load_state({k[len(prefix) :]: int(v) for k, v in state.items() if k.startswith(prefix)})

    def as_numpy_iterator(self) -> Iterator[Any]:
        """Iterate with numpy leaves (0-d tensors become numpy scalars; strings stay ``str``)."""
        for element in self._node:
            yield map_structure(to_numpy, element)

    def cardinality(self) -> int:
        """The number of elements, ``INFINITE_CARDINALITY`` (-1) or ``UNKNOWN_CARDINALITY`` (-2)."""
        return self._node.cardinality()

    def __len__(self) -> int:
        n = self.cardinality()
        if n == INFINITE_CARDINALITY:
            raise TypeError("The dataset is infinite.")
        if n == UNKNOWN_CARDINALITY:
            raise TypeError("The dataset length is unknown.")
        return n

    def __bool__(self) -> bool:
        return True

    @property
    def element_spec(self) -> Any:
        """The nest of :class:`TensorSpec` of one element (a leading ``None`` for a batch
        dimension whose size may vary). Where it cannot be derived statically (after ``map``
        or from a generator without signature) it is read off the first element."""
        return self._node.spec()

    def __repr__(self) -> str:
        # element_spec may have to run user code (a map, a generator), which a repr must not do.
        n = self.cardinality()
        size = {INFINITE_CARDINALITY: "infinite", UNKNOWN_CARDINALITY: "unknown"}.get(n, str(n))
        return f"<{type(self._node).__name__}Dataset cardinality={size}>"


def _node_of(value: Any) -> Node:
    if not isinstance(value, Dataset):
        raise TypeError(f"interleave: `map_func` must return a Dataset, got {type(value).__name__}.")
    return value._node
