"""Turning what users pass to ``fit`` (arrays, tensors, Datasets, DataLoaders, generators) into
batches on the model's device.

Separation of concerns: an adapter knows its data and yields batches for one epoch; it does
not know about models, steps or callbacks. ``EpochIterator`` (trainer side) decides how many
batches an epoch takes and whether an iterator carries over between epochs.

In-memory arrays are converted to tensors and moved to the device once; an epoch is then a
permutation and one index gather per batch and leaf (no per-sample Python, no per-batch
host-to-device copies). On an accelerator, a tapefit ``Dataset`` whose batches gather in-memory
rows is placed the same way (``tapefit.data._placement``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from .. import config
from ..utils.data_utils import pack_x_y_sample_weight, unpack_x_y_sample_weight

__all__ = ["unpack_x_y_sample_weight", "pack_x_y_sample_weight", "get_adapter", "train_validation_split"]


def map_leaves(fn: Any, struct: Any) -> Any:
    """``fn`` applied to every leaf of nested lists/tuples/dicts; None entries (an output without
    targets or weights) stay None."""
    if struct is None:
        return None
    if isinstance(struct, (list, tuple)):
        return type(struct)(map_leaves(fn, s) for s in struct)
    if isinstance(struct, dict):
        return {k: map_leaves(fn, v) for k, v in struct.items()}
    return fn(struct)


def leaves(struct: Any) -> list[Any]:
    if isinstance(struct, (list, tuple)):
        return [v for s in struct for v in leaves(s)]
    if isinstance(struct, dict):
        return [v for s in struct.values() for v in leaves(s)]
    return [] if struct is None else [struct]


def _to_tensor(a: Any, what: str) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
    else:
        arr = np.asarray(a)
        if arr.dtype.kind in "OSUV":
            raise TypeError(
                f"{what} has dtype {arr.dtype}, which cannot be fed to a model: convert strings or "
                "objects to numbers first (e.g. labels with a lookup table)."
            )
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_floating_point() and t.dtype == torch.float64:
        t = t.to(getattr(torch, config.floatx()))
    return t


def to_device(batch: Any, device: torch.device) -> Any:
    return map_leaves(
        lambda t: (
            t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) and t.device != device else t
        ),
        batch,
    )


class ArrayAdapter:
    """Batches of in-memory arrays, gathered by index on the device."""

    def __init__(
        self,
        x: Any,
        y: Any,
        sample_weight: Any,
        batch_size: int | None,
        shuffle: bool | str,
        class_weight: dict | None,
        device: torch.device,
    ):
        batch_size = 32 if batch_size is None else batch_size
        if not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
        self.batch_size = batch_size
        self.shuffle = shuffle
        xs = map_leaves(lambda a: _to_tensor(a, "x"), x)
        ys = map_leaves(lambda a: _to_tensor(a, "y"), y) if y is not None else None
        # One array, or one per output (a list or a dict keyed by output name, as y).
        sw = (
            map_leaves(lambda a: _to_tensor(a, "sample_weight").float(), sample_weight)
            if sample_weight is not None
            else None
        )
        sizes = {"x": {len(t) for t in leaves(xs)}}
        if ys is not None:
            sizes["y"] = {len(t) for t in leaves(ys)}
        if sw is not None:
            sizes["sample_weight"] = {len(t) for t in leaves(sw)}
        all_sizes = {n for s in sizes.values() for n in s}
        if len(all_sizes) > 1:
            detail = ", ".join(
                f"{k} has {sorted(v) if len(v) > 1 else next(iter(v))} samples" for k, v in sizes.items()
            )
            raise ValueError(
                f"Data cardinality is ambiguous: {detail}. Make sure all arrays contain the same "
                "number of samples."
            )
        self.n = all_sizes.pop() if all_sizes else 0
        if self.n == 0:
            raise ValueError(
                "The input data is empty (0 samples): fit/evaluate/predict need at least one sample."
            )
        if class_weight is not None:
            if ys is None or not isinstance(ys, torch.Tensor):
                raise ValueError("class_weight needs a single y array of class labels.")
            if sw is not None and not isinstance(sw, torch.Tensor):
                raise ValueError("class_weight needs a single sample_weight array, not one per output.")
            cw = _class_weight_vector(class_weight, ys)
            sw = cw if sw is None else sw * cw
        self.data = to_device(pack_x_y_sample_weight(xs, ys, sw), device)
        # The usual data, a tensor or a tuple of tensors, is batched without walking a structure.
        self._flat = isinstance(self.data, torch.Tensor) or (
            type(self.data) is tuple and all(isinstance(t, torch.Tensor) for t in self.data)
        )
        self.device = device
        self.sharder: Any = None  # set by a distribution strategy: this rank's piece of each batch

    @property
    def num_batches(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def epoch(self, skip: int = 0) -> Iterator[Any]:
        """One pass of batches; ``skip`` leaves out the first batches (resuming mid-epoch).

        The order is drawn when this is called, not on the first ``next``, so a resumed run
        draws it from the replayed random state.
        """
        if self.sharder is not None:
            return self._sharded_epoch(skip)
        bs, n = self.batch_size, self.n
        if self.shuffle == "batch":
            order = torch.randperm(self.num_batches, device="cpu").tolist()[skip:]
            return (map_leaves(lambda t, b=b: t[b * bs : (b + 1) * bs], self.data) for b in order)
        if self.shuffle:
            perm = torch.randperm(n, device=self.device)
            if self._flat:
                return _gathered(self.data, perm, range(skip * bs, n, bs), bs)
            return (
                map_leaves(lambda t, idx=perm[i : i + bs]: t.index_select(0, idx), self.data)
                for i in range(skip * bs, n, bs)
            )
        if self._flat:
            return _sliced(self.data, range(skip * bs, n, bs), bs)
        return (map_leaves(lambda t, i=i: t[i : i + bs], self.data) for i in range(skip * bs, n, bs))

    def _sharded_epoch(self, skip: int) -> Iterator[Any]:
        """This rank's piece of each global batch; the order is rank 0's, shared with every rank."""
        from ..distribute.sharding import same_on_all_ranks
        from ..utils.random import input_stream

        bs, n, sharder = self.batch_size, self.n, self.sharder
        with input_stream():
            batch_order = torch.randperm(self.num_batches) if self.shuffle == "batch" else None
            perm = torch.randperm(n) if self.shuffle is True else None
        if batch_order is not None:
            starts = (same_on_all_ranks(batch_order) * bs).tolist()
        else:
            starts = list(range(0, n, bs))
        if perm is not None:
            perm = same_on_all_ranks(perm).to(self.device)
        sharder.start_pass()

        def pieces() -> Iterator[Any]:
            for lo in starts[skip:]:
                a, b = sharder.record(lo, min(lo + bs, n) - lo)
                if a == b:
                    continue
                if perm is None:
                    yield map_leaves(lambda t, a=lo + a, b=lo + b: t[a:b], self.data)
                else:
                    yield map_leaves(lambda t, idx=perm[lo + a : lo + b]: t.index_select(0, idx), self.data)

        return pieces()

    def state_dict(self) -> dict[str, int]:
        return {}  # the order comes from the global random state, saved by the caller

    def load_state_dict(self, state: dict[str, int]) -> None:
        pass

    def peek(self) -> Any:
        """The first batch in storage order, without touching any random state."""
        return map_leaves(lambda t: t[: self.batch_size], self.data)


def _sliced(data: Any, starts: range, bs: int) -> Iterator[Any]:
    """Consecutive batches of a tensor or a tuple of tensors (``ArrayAdapter._flat`` data)."""
    if isinstance(data, torch.Tensor):
        for i in starts:
            yield data[i : i + bs]
        return
    for i in starts:
        yield tuple([t[i : i + bs] for t in data])


def _gathered(data: Any, perm: torch.Tensor, starts: range, bs: int) -> Iterator[Any]:
    """Batches of a tensor or a tuple of tensors in the order ``perm``, one index gather per leaf."""
    if isinstance(data, torch.Tensor):
        for i in starts:
            yield data.index_select(0, perm[i : i + bs])
        return
    for i in starts:
        idx = perm[i : i + bs]
        yield tuple([t.index_select(0, idx) for t in data])


def _class_ids(y: torch.Tensor) -> torch.Tensor:
    """The class of each sample for sparse, (N, 1) or one-hot labels."""
    return (y.argmax(-1) if y.dim() > 1 and y.shape[-1] > 1 else y.reshape(len(y))).long()


def _class_weight_table(class_weight: dict, labels: torch.Tensor) -> torch.Tensor:
    """``table[c]`` = ``class_weight[c]`` (1 for classes it leaves out), covering every label."""
    top = int(labels.max()) + 1 if len(labels) else 0
    table = torch.ones(max(top, max(class_weight) + 1), dtype=torch.float32)
    for k, v in class_weight.items():
        table[int(k)] = float(v)
    return table


def _class_weight_vector(class_weight: dict, y: torch.Tensor) -> torch.Tensor:
    """Per-sample weights ``class_weight[label]`` for sparse, (N, 1) or one-hot labels."""
    labels = _class_ids(y)
    return _class_weight_table(class_weight, labels).to(labels.device)[labels]


_LABEL_CHECK_ROWS = 65536


def _place(data: Any, device: torch.device) -> Any:
    """A tapefit Dataset's batches gathered on ``device`` (a GPU), when its rows are in memory and
    take at most half of the GPU's free memory (or are there already); else ``None``."""
    from ..data import Dataset
    from ..data._placement import device_batches

    if not isinstance(data, Dataset):
        return None
    if device.type == "cuda":
        return device_batches(data, device, torch.cuda.mem_get_info(device)[0] / 2)
    if device.type == "meta":  # holds no data: the stand-in for an accelerator in tests
        return device_batches(data, device, float("inf"))
    return None  # the CPU needs no copy; other accelerators do not report their free memory


class IterableAdapter:
    """Batches from a tapefit Dataset, a torch DataLoader, or any re-iterable of batches."""

    def __init__(self, data: Any, class_weight: dict | None, device: torch.device):
        self.data = data
        self.device = device
        self.class_weight = class_weight
        try:
            n = len(data)
        except TypeError:
            n = None
        self._len = n
        self.sharder: Any = None  # set by a distribution strategy: this rank's piece of each batch
        self.host_check: Any = None  # set by fit on accelerators: labels checked before the copy
        # In-memory rows gathered on the device, copied once (None: batches copied one by one).
        self._placed = _place(data, device)
        self._placed_checked = False
        self._class_table: torch.Tensor | None = None  # class_weight per class, on the device
        if self._placed is not None and class_weight is not None:
            _, y, _ = unpack_x_y_sample_weight(self._placed.host_whole())
            if isinstance(y, torch.Tensor):  # built once from the host labels: no read per batch
                self._class_table = _class_weight_table(class_weight, _class_ids(y)).to(device)

    @property
    def num_batches(self) -> int | None:
        return self._len

    def epoch(self, skip: int = 0) -> Iterator[Any]:
        """One pass; the first ``skip`` batches are produced and dropped now (a resumed run replays
        them to reach the same position and random draws)."""
        if self._placed is not None and self.host_check is not None and not self._placed_checked:
            self._check_placed_labels()
        source = self.data if self._placed is None else self._placed
        it = iter(source) if self.sharder is None else self.sharder.pieces(source)
        for _ in range(skip):
            next(it, None)
        if self._placed is not None:
            return (self._normalise(batch) for batch in it)
        if self.host_check is not None:
            return (to_device(self._checked(self._normalise(batch)), self.device) for batch in it)
        return (to_device(self._normalise(batch), self.device) for batch in it)

    def _check_placed_labels(self) -> None:
        """Check every label on the host once. If some are bad, batches come from the host again,
        each checked before its copy: the error then names the batch, and rows the pipeline never
        yields (``take``, ``skip``, ``shard``) cannot fail it."""
        _, y, _ = unpack_x_y_sample_weight(self._placed.host_whole())
        self._placed_checked = True
        if not isinstance(y, torch.Tensor):
            return
        try:
            for start in range(0, len(y), _LABEL_CHECK_ROWS):
                self.host_check(y[start : start + _LABEL_CHECK_ROWS])
        except ValueError:
            self._placed = self._class_table = None

    def _checked(self, batch: Any) -> Any:
        _, y, _ = unpack_x_y_sample_weight(batch)
        if y is not None:
            self.host_check(y)
        return batch

    def state_dict(self) -> dict[str, int]:
        getter = getattr(self.data, "state_dict", None)
        return (
            dict(getter())
            if callable(getter) and not isinstance(self.data, torch.utils.data.DataLoader)
            else {}
        )

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state:
            self.data.load_state_dict(state)

    def peek(self) -> Any:
        """The first batch, leaving the random state and the pipeline's pass counters as they were."""
        from ..utils.random import get_rng_state, set_rng_state

        rng, data_state = get_rng_state(), self.state_dict()
        try:
            return next(self.epoch(), None)
        finally:
            set_rng_state(rng)
            self.load_state_dict(data_state)

    def _normalise(self, batch: Any) -> Any:
        if isinstance(batch, list):
            batch = tuple(batch)
        if self.class_weight is not None:
            x, y, sw = unpack_x_y_sample_weight(batch)
            if y is None:
                raise ValueError("class_weight needs labels: the dataset yields no y.")
            if self._class_table is not None:
                cw = self._class_table[_class_ids(y)]
            else:
                cw = _class_weight_vector(self.class_weight, torch.as_tensor(y))
            batch = (x, y, cw if sw is None else torch.as_tensor(sw) * cw)
        return batch


class GeneratorAdapter(IterableAdapter):
    """A Python generator: iterated once, so its batches carry over from epoch to epoch."""

    def __init__(self, data: Any, class_weight: dict | None, device: torch.device):
        super().__init__(data, class_weight, device)
        self._len = None

    def peek(self) -> Any:
        return None  # taking a batch would lose it

    def state_dict(self) -> dict[str, int]:
        return {}


def is_dataset_like(x: Any) -> bool:
    from ..data import Dataset

    return isinstance(x, (Dataset, torch.utils.data.DataLoader))


def get_adapter(
    x: Any,
    y: Any = None,
    sample_weight: Any = None,
    batch_size: int | None = None,
    shuffle: bool | str = False,
    class_weight: dict | None = None,
    device: torch.device | None = None,
) -> ArrayAdapter | IterableAdapter:
    """The adapter for ``x`` (and ``y``/``sample_weight`` when x is an array)."""
    device = device or config.get_device()
    if is_dataset_like(x) or hasattr(x, "__next__"):
        for name, v in (("y", y), ("sample_weight", sample_weight)):
            if v is not None:
                raise ValueError(
                    f"`{name}` must not be given when x is a dataset, DataLoader or generator: the "
                    f"data already yields (x, y[, sample_weight])."
                )
        if batch_size is not None and is_dataset_like(x):
            warnings.warn(
                "batch_size is ignored for datasets and DataLoaders, which are already batched.", stacklevel=3
            )
        if hasattr(x, "__next__"):
            return GeneratorAdapter(x, class_weight, device)
        return IterableAdapter(x, class_weight, device)
    if x is None:
        raise ValueError("No input data: pass x (arrays, tensors, a tapefit.data.Dataset or a DataLoader).")
    return ArrayAdapter(x, y, sample_weight, batch_size, shuffle, class_weight, device)


def train_validation_split(arrays: tuple, validation_split: float) -> tuple[tuple, tuple]:
    """Split arrays into (train, validation) with the LAST fraction held out, before any shuffling."""
    if not 0.0 < validation_split < 1.0:
        raise ValueError(f"validation_split must be between 0 and 1 (exclusive), got {validation_split}.")
    flat = [a for a in leaves(arrays)]
    if any(is_dataset_like(a) or hasattr(a, "__next__") for a in flat):
        raise ValueError(
            "validation_split is only supported for arrays and tensors; with a Dataset, DataLoader or "
            "generator pass validation_data= instead."
        )
    n = len(flat[0])
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at == 0 or split_at == n:
        raise ValueError(f"validation_split={validation_split} on {n} samples leaves one side empty.")
    train = map_leaves(lambda a: a[:split_at], arrays)
    val = map_leaves(lambda a: a[split_at:], arrays)
    return train, val
