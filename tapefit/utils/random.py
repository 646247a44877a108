"""``set_random_seed``: one call seeds Python, numpy and torch (CPU and every GPU); the global
random states as one value, for exact resumption; and the input pipeline's own torch stream.

In data-parallel training every rank must draw the same data order while the model's own draws
(dropout masks) must differ from rank to rank, or rows in the same position on different ranks
would share a mask. :func:`split_input_stream` gives the input pipeline a torch stream of its
own, the same on every rank, and reseeds the global generators per rank; code that pulls
batches runs inside :func:`input_stream`.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = [
    "set_random_seed",
    "get_rng_state",
    "set_rng_state",
    "rng_state_to_tensors",
    "rng_state_from_tensors",
    "split_input_stream",
    "join_input_stream",
    "input_stream",
]


class _InputStream:
    """The input pipeline's torch CPU generator state, while the global generator holds the model's."""

    def __init__(self, state: torch.Tensor) -> None:
        self.aside = state  # the state of whichever stream is not in the global generator
        self.swapped_in = False

    def swap(self) -> None:
        current = torch.get_rng_state()
        torch.set_rng_state(self.aside)
        self.aside = current
        self.swapped_in = not self.swapped_in

    def states(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(the model's torch state, the input's torch state)."""
        current = torch.get_rng_state()
        return (self.aside, current) if self.swapped_in else (current, self.aside)


_stream: _InputStream | None = None


def split_input_stream(rank: int) -> None:
    """From here on the input pipeline draws from the current torch state (call it when every rank
    holds the same), and everything else from a stream seeded from it and ``rank``."""
    global _stream
    shared = torch.get_rng_state()
    generator = torch.Generator()
    generator.set_state(shared)
    seed = int(torch.randint(0, 2**62, (1,), generator=generator))
    _stream = _InputStream(shared)
    torch.manual_seed(seed + 1_000_003 * rank)  # the CPU and every GPU generator


def join_input_stream() -> None:
    """Back to one global stream (the model's): the end of distributed training."""
    global _stream
    if _stream is not None and _stream.swapped_in:
        _stream.swap()
    _stream = None


@contextlib.contextmanager
def input_stream() -> Iterator[None]:
    """Run the block on the input pipeline's stream (does nothing when none was split off)."""
    stream = _stream
    if stream is None or stream.swapped_in:
        yield
        return
    stream.swap()
    try:
        yield
    finally:
        stream.swap()


def set_random_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch, as ``keras.utils.set_random_seed``.

    Example:
        >>> set_random_seed(0); a = torch.rand(1)
        >>> set_random_seed(0); bool(torch.equal(a, torch.rand(1)))
        True
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"set_random_seed expects an int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state() -> dict[str, Any]:
    """Every global random state (Python, numpy, torch CPU and CUDA, and the input pipeline's stream
    when one was split off), for exact resumption."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if _stream is not None:
        state["torch"], state["input"] = _stream.states()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if _stream is not None and "input" in state:
        torch.set_rng_state(state["input"] if _stream.swapped_in else state["torch"])
        _stream.aside = (state["torch"] if _stream.swapped_in else state["input"]).clone()
    else:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def rng_state_to_tensors(
    state: dict[str, Any], prefix: str
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a random state into tensors (for safetensors) and JSON-able metadata."""
    py_version, py_state, py_gauss = state["python"]
    np_name, np_keys, np_pos, np_has_gauss, np_cached = state["numpy"]
    tensors = {
        f"{prefix}/torch": state["torch"].clone(),
        f"{prefix}/numpy": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
    }
    if "input" in state:
        tensors[f"{prefix}/input"] = state["input"].clone()
    for i, s in enumerate(state.get("cuda", [])):
        tensors[f"{prefix}/cuda/{i:03d}"] = s.clone()
    meta = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": [np_name, int(np_pos), int(np_has_gauss), float(np_cached)],
    }
    return tensors, meta


def rng_state_from_tensors(
    tensors: dict[str, torch.Tensor], meta: dict[str, Any], prefix: str
) -> dict[str, Any]:
    """The inverse of :func:`rng_state_to_tensors`."""
    version, py_state, gauss = meta["python"]
    name, pos, has_gauss, cached = meta["numpy"]
    state: dict[str, Any] = {
        "python": (version, tuple(py_state), gauss),
        "numpy": (name, tensors[f"{prefix}/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached),
        "torch": tensors[f"{prefix}/torch"],
    }
    if f"{prefix}/input" in tensors:
        state["input"] = tensors[f"{prefix}/input"]
    cuda = [tensors[k] for k in sorted(tensors) if k.startswith(f"{prefix}/cuda/")]
    if cuda:
        state["cuda"] = cuda
    return state
