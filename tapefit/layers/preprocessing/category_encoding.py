"""``CategoryEncoding``: integer tokens to one-hot, multi-hot or count vectors, as Keras 3 does.

Also owns ``_encode``, the encoder that ``Discretization`` shares, written to give what Keras's
``encode_categorical_inputs`` gives on its torch backend: negative tokens encode to zeros, tokens
``>= depth`` raise, multi-hot and count reduce axis 1 of inputs of rank 2 or more (axis 0 of a
vector), and a scalar counts as a one-element sample.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ..layer import Layer

__all__ = ["CategoryEncoding"]

_MODES = ("one_hot", "multi_hot", "count")


def _one_hot(indices: torch.Tensor, depth: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot of ``indices`` (any rank) with zeros for negative values, as Keras's torch backend."""
    x = indices.long()
    try:
        out = F.one_hot(x.clamp(min=0), depth)  # raises for values >= depth (torch checks on CPU)
    except RuntimeError as error:
        raise RuntimeError(
            f"Token values must be in [0, {depth}) to be encoded over {depth} tokens: {error} Raise "
            "num_tokens, or map the values into range first (e.g. with IntegerLookup)."
        ) from error
    return (out * (x >= 0).unsqueeze(-1)).to(dtype)


def _encode(
    indices: torch.Tensor,
    output_mode: str,
    depth: int,
    dtype: torch.dtype,
    count_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Encode integer ``indices`` over ``depth`` classes by Keras's rules for ``output_mode``."""
    if output_mode == "int":
        return indices.to(dtype)
    if indices.dim() == 0:
        indices = indices.reshape(1)
        if count_weights is not None:
            count_weights = count_weights.reshape(1)
    reduce_axis = 1 if indices.dim() > 1 else 0
    if output_mode == "one_hot":
        if indices.dim() > 1 and indices.shape[-1] == 1:
            indices = indices.squeeze(-1)
        return _one_hot(indices, depth, dtype)
    if output_mode == "multi_hot":
        return _one_hot(indices, depth, dtype).amax(dim=reduce_axis)
    if count_weights is not None:
        return (_one_hot(indices, depth, count_weights.dtype) * count_weights.unsqueeze(-1)).sum(reduce_axis)
    return _one_hot(indices, depth, dtype).sum(reduce_axis)


def _check_mode(layer: str, output_mode: str, allowed: tuple[str, ...]) -> None:
    if output_mode not in allowed:
        raise ValueError(f"{layer}: unknown output_mode={output_mode!r}; use one of {allowed}.")


def _refuse_sparse(layer: str, sparse: bool) -> None:
    if sparse:
        raise ValueError(
            f"{layer}: sparse=True is not supported (Keras supports it only on its TensorFlow backend); "
            "use the default sparse=False for dense outputs."
        )


class CategoryEncoding(Layer):
    """Encode integer tokens in ``[0, num_tokens)`` as dense vectors of size ``num_tokens``.

    Modes: ``"one_hot"`` encodes each element (a trailing dimension of 1 is replaced, any other
    shape gains a last axis); ``"multi_hot"`` marks the tokens present in each sample, the sample
    being the last axis of ``(batch, length)`` inputs (or the whole of a vector); ``"count"``
    counts them, optionally weighted by ``count_weights``. Negative tokens encode to zeros and
    tokens ``>= num_tokens`` raise ``RuntimeError`` on CPU, as Keras on torch does (on a GPU torch
    reports them as a device-side assert, which ends the CUDA context). Outputs have the
    layer's dtype (float32 by default).

    Args:
        num_tokens: the number of distinct tokens, at least 1.
        output_mode: ``"multi_hot"`` (default), ``"one_hot"`` or ``"count"`` (``"binary"`` is the
            old name of ``"multi_hot"``).
        sparse: only False; sparse outputs are refused.

    Example:
        >>> import torch
        >>> CategoryEncoding(num_tokens=4, output_mode="multi_hot")(torch.tensor([[0, 1], [3, 3]]))
        tensor([[1., 1., 0., 0.],
                [0., 0., 0., 1.]])
    """

    def __init__(
        self,
        num_tokens: int | None = None,
        output_mode: str = "multi_hot",
        sparse: bool = False,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if output_mode == "binary":
            output_mode = "multi_hot"
        _check_mode("CategoryEncoding", output_mode, _MODES)
        if num_tokens is None:
            raise ValueError(
                "CategoryEncoding: num_tokens must be set; if the number of tokens is not known "
                "beforehand, use IntegerLookup instead."
            )
        if isinstance(num_tokens, bool) or not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"CategoryEncoding: num_tokens must be an int >= 1, got {num_tokens!r}.")
        _refuse_sparse("CategoryEncoding", sparse)
        self.num_tokens = num_tokens
        self.output_mode = output_mode
        self.sparse = False

    def call(self, inputs: torch.Tensor, count_weights: Any = None) -> torch.Tensor:
        """Encode ``inputs``; ``count_weights`` (broadcast to the inputs' shape, as Keras) weighs each
        token in ``"count"`` mode."""
        inputs = torch.as_tensor(inputs)
        if count_weights is not None:
            if self.output_mode != "count":
                raise ValueError(
                    f"CategoryEncoding {self.name!r}: count_weights is only used when output_mode='count', "
                    f"not {self.output_mode!r}; drop count_weights or set output_mode='count'."
                )
            count_weights = torch.as_tensor(count_weights, device=inputs.device).to(
                getattr(torch, self.compute_dtype)
            )
            try:
                count_weights = count_weights.broadcast_to(inputs.shape)
            except RuntimeError:
                raise ValueError(
                    f"CategoryEncoding {self.name!r}: count_weights must broadcast to the inputs' shape "
                    f"{tuple(inputs.shape)}, got {tuple(count_weights.shape)}."
                ) from None
        return _encode(inputs, self.output_mode, self.num_tokens, getattr(torch, self.dtype), count_weights)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_tokens": self.num_tokens, "output_mode": self.output_mode}
