"""``MultiHeadAttention``: Keras's multi-head attention, on torch's fused scaled-dot-product kernel."""

from __future__ import annotations

import math
import string
from typing import Any

import torch

from ... import constraints, initializers, regularizers
from ..activation_layers import _large_negative
from ..einsum_dense import EinsumDense
from ..layer import Layer
from ..regularization import Dropout
from ._common import attention_mask_of, causal_mask, fused_attention, unmasked

__all__ = ["MultiHeadAttention"]


class MultiHeadAttention(Layer):
    """Multi-head attention ("Attention is all you need"), with Keras's weights, masks and options.

    ``query``, ``value`` and ``key`` (default: ``value``) are projected by ``EinsumDense`` layers to
    ``num_heads`` heads of ``key_dim`` (``value_dim`` for values); each query position attends
    over the key positions with ``softmax(q·k / sqrt(key_dim))``, and the heads' outputs are
    projected back to the query's last dimension (or ``output_shape``). Weights are Keras's:
    ``query``, ``key``, ``value`` kernels of shape (dim, num_heads, key_dim) with (num_heads,
    key_dim) biases, and an ``attention_output`` kernel of shape (num_heads, value_dim, dim).

    Masks follow Keras: the Keras masks of ``query``, ``value`` and ``key`` (an
    ``Embedding(mask_zero=True)`` upstream), ``attention_mask`` (B, T, S) where True may attend,
    ``use_causal_mask`` and ``sliding_window`` are combined with a logical AND; the output keeps
    the query's mask. A query position that may attend to nothing averages all values, as Keras
    does on this path; with ``dropout`` its output is zero, as in Keras's dropout path.

    Sequences (3-D inputs) run through ``torch.nn.functional.scaled_dot_product_attention``
    (flash or memory-efficient kernels on a GPU), dropout included when ``seed`` is None; a
    seeded dropout, ``return_attention_scores``, other ``attention_axes`` and inputs of higher
    rank compute the scores explicitly, as Keras does. ``flash_attention=True`` demands the
    flash kernel, False forbids it (Keras on torch treats False as None), None lets torch choose.

    As in Keras, subclasses may override ``_build_attention``, ``_compute_attention``,
    ``_masked_softmax`` or ``_compute_attention_mask``; the projections are ``_query_dense``,
    ``_key_dense``, ``_value_dense`` and ``_output_dense``.

    Example:
        >>> import torch, tapefit
        >>> mha = tapefit.layers.MultiHeadAttention(num_heads=2, key_dim=4)
        >>> x = torch.randn(3, 5, 8)
        >>> out, scores = mha(x, x, return_attention_scores=True)
        >>> tuple(out.shape), tuple(scores.shape)
        ((3, 5, 8), (3, 2, 5, 5))
    """

    _masks_by_default = True

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        dropout: float = 0.0,
        use_bias: bool = True,
        output_shape: int | tuple[int, ...] | list[int] | None = None,
        attention_axes: int | tuple[int, ...] | list[int] | None = None,
        sliding_window: int | None = None,
        flash_attention: bool | None = None,
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        kernel_regularizer: Any = None,
        bias_regularizer: Any = None,
        activity_regularizer: Any = None,
        kernel_constraint: Any = None,
        bias_constraint: Any = None,
        use_gate: bool = False,
        seed: int | None = None,
        **kwargs: Any,
    ):
        for arg, value in (("num_heads", num_heads), ("key_dim", key_dim), ("value_dim", value_dim)):
            if not (value is None and arg == "value_dim") and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(f"MultiHeadAttention: {arg} must be a positive integer, got {value!r}.")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout!r}.")
        if sliding_window is not None and (not isinstance(sliding_window, int) or sliding_window <= 0):
            raise ValueError(
                "MultiHeadAttention: sliding_window must be None or a positive integer, got "
                f"{sliding_window!r}."
            )
        if flash_attention and dropout > 0.0:
            raise ValueError(
                "MultiHeadAttention: dropout is not supported with flash_attention=True; set dropout=0.0 "
                "or leave flash_attention=None."
            )
        if isinstance(attention_axes, int):
            attention_axes = (attention_axes,)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(
                f"MultiHeadAttention: attention_axes must be an int, list or tuple, got {attention_axes!r}."
            )
        if isinstance(output_shape, int):
            output_shape = (output_shape,)
        elif output_shape is not None and not isinstance(output_shape, (list, tuple)):
            raise ValueError(
                f"MultiHeadAttention: output_shape must be an int, list or tuple, got {output_shape!r}."
            )
        super().__init__(**kwargs)
        self._num_heads = num_heads
        self._key_dim = key_dim
        self._value_dim = value_dim or key_dim
        self._dropout = float(dropout)
        self._use_bias = use_bias
        self._output_shape = tuple(output_shape) if output_shape else None
        self._attention_axes = tuple(attention_axes) if attention_axes is not None else None
        self._sliding_window = sliding_window
        self._flash_attention = flash_attention
        self._use_gate = use_gate
        self.seed = seed
        self._kernel_initializer = initializers.get(kernel_initializer)
        self._bias_initializer = initializers.get(bias_initializer)
        self._kernel_regularizer = regularizers.get(kernel_regularizer)
        self._bias_regularizer = regularizers.get(bias_regularizer)
        self._activity_regularizer = regularizers.get(activity_regularizer)
        self._kernel_constraint = constraints.get(kernel_constraint)
        self._bias_constraint = constraints.get(bias_constraint)
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(key_dim))

    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)
    num_heads = property(lambda self: self._num_heads)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)

    # ------------------------------------------------------------------ building
    def build(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> None:
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "MultiHeadAttention: value and key must have the same shape except for the last axis; got "
                f"value {tuple(value_shape)} and key {tuple(key_shape)}."
            )
        heads_key, heads_value = [self._num_heads, self._key_dim], [self._num_heads, self._value_dim]
        self._query_dense = self._projection(len(query_shape), heads_key, "query", query_shape)
        self._key_dense = self._projection(len(key_shape), heads_key, "key", key_shape)
        if self._use_gate:
            self._gate_dense = self._projection(len(query_shape), heads_value, "gate", query_shape, "sigmoid")
        self._value_dense = self._projection(len(value_shape), heads_value, "value", value_shape)
        self._build_attention(len(value_shape) + 1)
        out_dims = list(self._output_shape) if self._output_shape else [query_shape[-1]]
        equation, bias_axes, out_rank = _projection_equation(len(query_shape) - 1, 2, len(out_dims))
        self._output_dense = EinsumDense(
            equation,
            output_shape=[None] * (out_rank - 1 - len(out_dims)) + out_dims,
            bias_axes=bias_axes if self._use_bias else None,
            name="attention_output",
            **self._sublayer_kwargs(),
        )
        self._output_dense.build((*tuple(query_shape[:-1]), self._num_heads, self._value_dim))
        self.built = True

    def _build_attention(self, rank: int) -> None:
        """The attention's einsums, softmax axes and dropout for projected tensors of ``rank``
        (Keras's hook: override it with ``_compute_attention`` for another attention)."""
        if self._attention_axes is None:
            self._attention_axes = tuple(range(1, rank - 2))
        else:
            self._attention_axes = tuple(a if a >= 0 else rank - 1 + a for a in self._attention_axes)
        self._dot_product_equation, self._combine_equation, scores_rank = _attention_equations(
            rank, self._attention_axes
        )
        self._softmax_axes = tuple(range(scores_rank - len(self._attention_axes), scores_rank))
        self._dropout_layer = Dropout(self._dropout, seed=self.seed, dtype=self._policy)

    def _projection(
        self, rank: int, heads: list[int], name: str, shape: Any, activation: Any = None
    ) -> EinsumDense:
        equation, bias_axes, out_rank = _projection_equation(rank - 1, 1, 2)
        layer = EinsumDense(
            equation,
            output_shape=[None] * (out_rank - 1 - 2) + heads,
            bias_axes=bias_axes if self._use_bias else None,
            activation=activation,
            name=name,
            **self._sublayer_kwargs(),
        )
        layer.build(tuple(shape))
        return layer

    def _sublayer_kwargs(self) -> dict[str, Any]:
        return {
            "kernel_initializer": initializers.deserialize(initializers.serialize(self._kernel_initializer)),
            "bias_initializer": initializers.deserialize(initializers.serialize(self._bias_initializer)),
            "kernel_regularizer": self._kernel_regularizer,
            "bias_regularizer": self._bias_regularizer,
            "activity_regularizer": self._activity_regularizer,
            "kernel_constraint": self._kernel_constraint,
            "bias_constraint": self._bias_constraint,
            "dtype": self._policy,
        }

    # ------------------------------------------------------------------- calling
    def call(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        key: torch.Tensor | None = None,
        query_mask: torch.Tensor | None = None,
        value_mask: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        return_attention_scores: bool = False,
        training: bool | None = None,
        use_causal_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        key = value if key is None else key
        causal_only = (
            use_causal_mask
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
            and self._sliding_window is None
            and type(self)._compute_attention is MultiHeadAttention._compute_attention
        )
        if not causal_only:
            attention_mask = self._compute_attention_mask(
                query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask
            )
        if self._use_gate:
            gate = self._gate_dense(unmasked(query))
        q = self._query_dense(unmasked(query))
        k = self._key_dense(unmasked(key))
        v = self._value_dense(unmasked(value))
        extra = {"use_causal_mask": True} if causal_only else {}
        output, scores = self._compute_attention(
            q, k, v, attention_mask, training, return_attention_scores, **extra
        )
        output = self._output_dense(output * gate if self._use_gate else output)
        return (output, scores) if return_attention_scores else output

    def _compute_attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        training: bool | None = None,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over projected ``query`` (B, T, N, key_dim), ``key`` and ``value``; returns the
        heads' outputs and, when asked, the attention scores. Override for another attention."""
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "MultiHeadAttention: return_attention_scores=True needs the scores, which flash attention "
                "never forms; set flash_attention=None or False."
            )
        seeded_dropout = bool(training) and self._dropout > 0.0 and self.seed is not None
        if (
            query.dim() == 4
            and self._attention_axes == (1,)
            and not return_attention_scores
            and not seeded_dropout
        ):
            return self._fused_attention(query, key, value, attention_mask, training, use_causal_mask), None
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else attention_mask.bool() & causal
        scores = torch.einsum(self._dot_product_equation, key, query * self._inverse_sqrt_key_dim)
        scores = self._masked_softmax(scores, attention_mask)
        dropped = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores
        return torch.einsum(self._combine_equation, dropped, value), scores

    def _fused_attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        training: bool | None,
        is_causal: bool,
    ) -> torch.Tensor:
        return fused_attention(
            query,
            key,
            value,
            attention_mask,
            self._dropout,
            training,
            is_causal,
            self._inverse_sqrt_key_dim,
            self._flash_attention,
        )

    def _masked_softmax(self, scores: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        axes = self._softmax_axes
        if attention_mask is None:
            if len(axes) == 1:
                return torch.softmax(scores, dim=axes[0])
            return torch.exp(scores - torch.logsumexp(scores, dim=axes, keepdim=True))
        mask = attention_mask.bool()
        while mask.dim() < scores.dim():
            mask = mask.unsqueeze(-2 * len(self._attention_axes) - 1)
        scores = torch.where(mask, scores, _large_negative(scores.dtype))
        if len(axes) == 1:
            probs = torch.softmax(scores, dim=axes[0])
        else:
            probs = torch.exp(scores - torch.logsumexp(scores, dim=axes, keepdim=True))
        return torch.where(mask, probs, 0.0)

    def _compute_attention_mask(
        self,
        query: torch.Tensor,
        value: torch.Tensor,
        query_mask: torch.Tensor | None = None,
        value_mask: torch.Tensor | None = None,
        key_mask: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        use_causal_mask: bool = False,
    ) -> torch.Tensor | None:
        """The boolean (B, T, S) mask of which query positions may attend to which keys: the AND of
        the query mask (B, T, 1), the value and key masks (B, 1, S), the causal and sliding-window
        masks (1, T, S) and ``attention_mask``."""
        return attention_mask_of(
            query,
            value,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
            self._sliding_window,
        )

    def _compute_causal_mask(self, query: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        """The (1, T, S) lower-triangular mask: query position i may attend to key positions <= i."""
        return causal_mask(query, value)

    # ------------------------------------------------------------------- shapes
    def compute_output_shape(self, query_shape: Any, value_shape: Any = None, key_shape: Any = None) -> tuple:
        query_shape = tuple(query_shape)
        if (
            value_shape is not None
            and key_shape is not None
            and tuple(value_shape)[1:-1] != tuple(key_shape)[1:-1]
        ):
            raise ValueError(
                "MultiHeadAttention: value and key must have the same shape except for the last axis; got "
                f"value {tuple(value_shape)} and key {tuple(key_shape)}."
            )
        return query_shape[:-1] + self._output_shape if self._output_shape else query_shape

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_heads": self._num_heads,
            "key_dim": self._key_dim,
            "value_dim": self._value_dim,
            "dropout": self._dropout,
            "use_bias": self._use_bias,
            "use_gate": self._use_gate,
            "output_shape": self._output_shape,
            "attention_axes": self._attention_axes,
            "sliding_window": self._sliding_window,
            "kernel_initializer": initializers.serialize(self._kernel_initializer),
            "bias_initializer": initializers.serialize(self._bias_initializer),
            "kernel_regularizer": regularizers.serialize(self._kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self._bias_regularizer),
            "activity_regularizer": regularizers.serialize(self._activity_regularizer),
            "kernel_constraint": constraints.serialize(self._kernel_constraint),
            "bias_constraint": constraints.serialize(self._bias_constraint),
            "seed": self.seed,
        }


def _projection_equation(free_dims: int, bound_dims: int, output_dims: int) -> tuple[str, str, int]:
    """Keras's einsum for a projection: keep ``free_dims`` axes, contract ``bound_dims``, add
    ``output_dims``; returns (equation, bias axes, output rank)."""
    letters = string.ascii_lowercase
    free = letters[:free_dims]
    bound = letters[free_dims : free_dims + bound_dims]
    out = letters[free_dims + bound_dims : free_dims + bound_dims + output_dims]
    return f"{free}{bound},{bound}{out}->{free}{out}", out, free_dims + output_dims


def _attention_equations(rank: int, attn_axes: tuple[int, ...]) -> tuple[str, str, int]:
    """Keras's einsums for the scores and their combination with the values, for projected tensors
    of ``rank`` (batch, <other>, <attention axes>, heads, channels); returns (dot, combine, scores rank)."""
    letters = string.ascii_lowercase
    target = letters[:rank]
    batch = tuple(i for i in range(rank) if i not in attn_axes and i != rank - 1)
    source, offset = "", rank
    for i in range(rank):
        if i in batch or i == rank - 1:
            source += target[i]
        else:
            source += letters[offset]
            offset += 1
    product = "".join(
        [target[i] for i in batch] + [target[i] for i in attn_axes] + [source[i] for i in attn_axes]
    )
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)
