"""``pad_sequences``: lists of sequences of different lengths to one array, as Keras pads them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["pad_sequences"]


def pad_sequences(
    sequences: Sequence[Any],
    maxlen: int | None = None,
    dtype: Any = "int32",
    padding: str = "pre",
    truncating: str = "pre",
    value: Any = 0.0,
) -> np.ndarray:
    """Pad (or cut) every sequence to ``maxlen`` steps, as ``keras.utils.pad_sequences``.

    Padding with 0 pairs with ``Embedding(mask_zero=True)``, whose mask then skips it.

    Args:
        sequences: a list of sequences (lists or arrays); each step may be a number or an array.
        maxlen: the steps kept per sequence (default: the longest sequence's length).
        dtype: the result's dtype (``object`` for strings of any length).
        padding: ``"pre"`` (Keras's default) pads before the data, ``"post"`` after it.
        truncating: ``"pre"`` cuts a longer sequence's first steps, ``"post"`` its last ones.
        value: what the padding holds.

    Returns:
        An array of shape (len(sequences), maxlen, *step shape).

    Example:
        >>> pad_sequences([[1, 2, 3], [4]], maxlen=2, padding="post")
        array([[2, 3],
               [4, 0]], dtype=int32)
    """
    for name, choice in (("padding", padding), ("truncating", truncating)):
        if choice not in ("pre", "post"):
            raise ValueError(f'pad_sequences: {name} must be "pre" or "post", got {choice!r}.')
    if maxlen is not None and (
        isinstance(maxlen, bool) or not isinstance(maxlen, (int, np.integer)) or maxlen < 0
    ):
        raise ValueError(f"pad_sequences: maxlen must be a non-negative integer or None, got {maxlen!r}.")
    if not hasattr(sequences, "__len__"):
        raise ValueError(
            "pad_sequences: `sequences` must be a list of sequences (a list of lists or arrays)."
        )
    rows = []
    for i, seq in enumerate(sequences):
        if not hasattr(seq, "__len__"):
            raise ValueError(
                f"pad_sequences: `sequences` must be a list of sequences; item {i} is {seq!r}, which has no "
                "length."
            )
        rows.append(seq)
    dtype = np.dtype(dtype)
    if isinstance(value, str) and dtype.kind not in "OSU":
        raise ValueError(
            f"pad_sequences: a string padding value {value!r} needs a string dtype; got dtype={dtype}. "
            "Use dtype=object for strings of any length."
        )
    sample_shape = next((np.asarray(s).shape[1:] for s in rows if len(s)), ())
    if maxlen is None:
        maxlen = max((len(s) for s in rows), default=0)
    out = np.full((len(rows), maxlen, *sample_shape), value, dtype=dtype)
    for i, seq in enumerate(rows):
        if not len(seq) or not maxlen:
            continue
        kept = np.asarray(
            seq[max(len(seq) - maxlen, 0) :] if truncating == "pre" else seq[:maxlen], dtype=dtype
        )
        if kept.shape[1:] != sample_shape:
            raise ValueError(
                f"pad_sequences: sequence {i} has steps of shape {kept.shape[1:]}, but the first non-empty "
                f"sequence's steps have shape {sample_shape}; every step must have the same shape."
            )
        if padding == "post":
            out[i, : len(kept)] = kept
        else:
            out[i, maxlen - len(kept) :] = kept
    return out
