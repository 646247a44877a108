"""``GroupedQueryAttention`` (Keras's ``GroupQueryAttention``): query heads share fewer key/value heads."""

from __future__ import annotations

import math
from typing import Any

import torch

from ... import constraints, initializers, regularizers
from ..activation_layers import _large_negative
from ..einsum_dense import EinsumDense
from ..layer import Layer
from ..regularization import Dropout
from ._common import attention_mask_of, causal_mask, fused_attention, to_4d, unmasked

__all__ = ["GroupQueryAttention", "GroupedQueryAttention"]

# ``enable_gqa`` arrived in torch 2.5; before it the key/value heads are repeated by hand.


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"GroupedQueryAttention: {name} must be a positive integer, got {value!r}.")


class GroupedQueryAttention(Layer):
    """Grouped-query attention (Ainslie et al., 2023) with Keras's weights, masks and options.

    ``query`` is projected to ``num_query_heads`` heads and ``key``/``value`` (``key`` defaults to
    ``value``) to ``num_key_value_heads`` heads, all of size ``head_dim``; each key/value head
    serves ``num_query_heads // num_key_value_heads`` consecutive query heads (Keras's
    ``ops.repeat`` on the heads axis). One key/value head is multi-query attention; as many as
    query heads is multi-head attention. The output is projected back to the query's width.

    Weights are Keras's, in Keras's order: ``query`` (dim, num_query_heads, head_dim), ``key`` and
    ``value`` (dim, num_key_value_heads, head_dim), each with a (heads, head_dim) bias, the
    optional sigmoid ``gate`` (``use_gate``) after ``key``, and ``attention_output``
    (num_query_heads, head_dim, dim) with a (dim,) bias.

    Masks follow Keras: the Keras masks of the inputs (``Embedding(mask_zero=True)``),
    ``attention_mask`` (B, T, S) where True may attend, ``use_causal_mask`` and
    ``sliding_window`` combine with a logical AND; the output keeps the query's mask.

    Without ``return_attention_scores`` or a seeded dropout in training, attention runs through
    ``torch.nn.functional.scaled_dot_product_attention`` (``enable_gqa`` on torch >= 2.5 when
    no mask is given, so the key/value heads are never copied). A query that may attend to
    nothing averages all values when ``dropout == 0`` and gives zeros otherwise, as in Keras.
    ``flash_attention=True`` demands the flash kernel, False forbids it, None lets torch choose.

    Example:
        >>> import torch, tapefit
        >>> gqa = tapefit.layers.GroupQueryAttention(head_dim=4, num_query_heads=4, num_key_value_heads=2)
        >>> x = torch.randn(3, 5, 8)
        >>> out, scores = gqa(x, x, return_attention_scores=True)
        >>> tuple(out.shape), tuple(scores.shape)
        ((3, 5, 8), (3, 4, 5, 5))
    """

    _masks_by_default = True

    def __init__(
        self,
        head_dim: int,
        num_query_heads: int,
        num_key_value_heads: int,
        dropout: float = 0.0,
        use_bias: bool = True,
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
        _check_positive_int("head_dim", head_dim)
        _check_positive_int("num_query_heads", num_query_heads)
        _check_positive_int("num_key_value_heads", num_key_value_heads)
        if num_query_heads % num_key_value_heads != 0:
            raise ValueError(
                f"GroupedQueryAttention: num_query_heads ({num_query_heads}) must be divisible by "
                f"num_key_value_heads ({num_key_value_heads}); pick a divisor of num_query_heads."
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"GroupedQueryAttention: dropout must be in [0, 1), got {dropout!r}.")
        if sliding_window is not None and (
            isinstance(sliding_window, bool) or not isinstance(sliding_window, int) or sliding_window <= 0
        ):
            raise ValueError(
                "GroupedQueryAttention: sliding_window must be None or a positive integer, got "
                f"{sliding_window!r}."
            )
        if flash_attention and dropout > 0.0:
            raise ValueError(
                "GroupedQueryAttention: dropout is not supported with flash_attention=True; set "
                "dropout=0.0 or leave flash_attention=None."
            )
        super().__init__(**kwargs)
        self.head_dim = head_dim
        self.num_query_heads = num_query_heads
        self.num_key_value_heads = num_key_value_heads
        self.num_repeats = num_query_heads // num_key_value_heads
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.use_gate = use_gate
        self.sliding_window = sliding_window
        self._flash_attention = flash_attention
        self.seed = seed
        self._return_attention_scores = False
        self.kernel_initializer = initializers.get(kernel_initializer)
        self.bias_initializer = initializers.get(bias_initializer)
        self.kernel_regularizer = regularizers.get(kernel_regularizer)
        self.bias_regularizer = regularizers.get(bias_regularizer)
        self.activity_regularizer = regularizers.get(activity_regularizer)
        self.kernel_constraint = constraints.get(kernel_constraint)
        self.bias_constraint = constraints.get(bias_constraint)
        self._inverse_sqrt_head_dim = 1.0 / math.sqrt(float(head_dim))
        self._dot_product_equation = "bquh,bkuh->buqk"
        self._combine_equation = "buqk,bkuh->bquh"

    query_dense = property(lambda self: self._query_dense)
    key_dense = property(lambda self: self._key_dense)
    value_dense = property(lambda self: self._value_dense)
    output_dense = property(lambda self: self._output_dense)

    # ------------------------------------------------------------------ building
    def build(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> None:
        key_shape = value_shape if key_shape is None else key_shape
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "GroupedQueryAttention: value and key must have the same shape except for the last "
                f"axis; got value {tuple(value_shape)} and key {tuple(key_shape)}."
            )
        self.feature_dim = query_shape[-1]
        q_heads, kv_heads = (
            (None, self.num_query_heads, self.head_dim),
            (None, self.num_key_value_heads, self.head_dim),
        )
        self._query_dense = self._projection("bqm,muh->bquh", q_heads, "uh", "query", query_shape)
        self._key_dense = self._projection("bkm,mvh->bkvh", kv_heads, "vh", "key", key_shape)
        if self.use_gate:
            self._gate_dense = self._projection(
                "bqm,muh->bquh", q_heads, "uh", "gate", query_shape, "sigmoid"
            )
        self._value_dense = self._projection("bkm,mvh->bkvh", kv_heads, "vh", "value", value_shape)
        self._dropout_layer = Dropout(self.dropout, seed=self.seed, dtype=self._policy)
        self._output_dense = self._projection(
            "bquh,uhm->bqm",
            (None, self.feature_dim),
            "m",
            "attention_output",
            (None, None, self.num_query_heads, self.head_dim),
        )
        self.built = True

    def _projection(
        self,
        equation: str,
        output_shape: tuple,
        bias_axes: str,
        name: str,
        shape: Any,
        activation: Any = None,
    ) -> EinsumDense:
        layer = EinsumDense(
            equation,
            output_shape=output_shape,
            bias_axes=bias_axes if self.use_bias else None,
            activation=activation,
            name=name,
            # Fresh initializers per projection, so that seeded ones do not give equal kernels.
            kernel_initializer=initializers.deserialize(initializers.serialize(self.kernel_initializer)),
            bias_initializer=initializers.deserialize(initializers.serialize(self.bias_initializer)),
            kernel_regularizer=self.kernel_regularizer,
            bias_regularizer=self.bias_regularizer,
            activity_regularizer=self.activity_regularizer,
            kernel_constraint=self.kernel_constraint,
            bias_constraint=self.bias_constraint,
            dtype=self._policy,
        )
        layer.build(tuple(shape))
        return layer

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
        self._return_attention_scores = return_attention_scores  # read by Keras-style hooks
        own_attention = type(self)._compute_attention is GroupedQueryAttention._compute_attention
        causal_only = (
            use_causal_mask
            and query_mask is None
            and value_mask is None
            and key_mask is None
            and attention_mask is None
            and self.sliding_window is None
            and own_attention
        )
        if not causal_only:
            attention_mask = self._compute_attention_mask(
                query, value, query_mask, value_mask, key_mask, attention_mask, use_causal_mask
            )
        if self.use_gate:
            gate = self._gate_dense(unmasked(query))
        q = self._query_dense(unmasked(query))
        k = self._key_dense(unmasked(key))
        v = self._value_dense(unmasked(value))
        if own_attention:
            output, scores = self._attend(
                q, k, v, attention_mask, training, return_attention_scores, causal_only
            )
        else:
            # Keras's contract for ``_compute_attention``: key and value already have the query's heads.
            k = torch.repeat_interleave(k, self.num_repeats, dim=2)
            v = torch.repeat_interleave(v, self.num_repeats, dim=2)
            output, scores = self._compute_attention(q, k, v, attention_mask, training)
        output = self._output_dense(output * gate if self.use_gate else output)
        if self.activity_regularizer is not None:
            # Keras's Layer.__call__ also regularizes the whole layer's outputs, per sample.
            for tensor in (output, scores) if return_attention_scores else (output,):
                self.add_loss(self.activity_regularizer(tensor) / tensor.shape[0])
        return (output, scores) if return_attention_scores else output

    def _compute_attention(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        training: bool | None = None,
        use_causal_mask: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention over projected ``query`` (B, T, num_query_heads, head_dim) and ``key``/``value``
        whose heads were already repeated to the query's; returns the output and, when the call
        asked for them (``self._return_attention_scores``, as in Keras), the scores (B,
        num_query_heads, T, S). Keras's hook: override it for another attention."""
        return self._attend(
            query, key, value, attention_mask, training, self._return_attention_scores, use_causal_mask
        )

    def _attend(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attention_mask: torch.Tensor | None,
        training: bool | None,
        return_attention_scores: bool,
        use_causal_mask: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Attention for ``key``/``value`` with any number of heads dividing the query's."""
        if self._flash_attention and return_attention_scores:
            raise ValueError(
                "GroupedQueryAttention: return_attention_scores=True needs the scores, which flash "
                "attention never forms; set flash_attention=None or False."
            )
        seeded_dropout = bool(training) and self.dropout > 0.0 and self.seed is not None
        if not return_attention_scores and not seeded_dropout:
            return self._fused_attention(query, key, value, attention_mask, training, use_causal_mask), None
        repeats = query.shape[2] // key.shape[2]
        if repeats > 1:
            key = torch.repeat_interleave(key, repeats, dim=2)
            value = torch.repeat_interleave(value, repeats, dim=2)
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else attention_mask.bool() & causal
        scores = torch.einsum(self._dot_product_equation, query * self._inverse_sqrt_head_dim, key)
        scores = self._masked_softmax(scores, attention_mask)
        dropped = self._dropout_layer(scores, training=training) if self.dropout > 0.0 else scores
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
            self.dropout,
            training,
            is_causal,
            self._inverse_sqrt_head_dim,
            self._flash_attention,
        )

    def _masked_softmax(self, scores: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            return torch.softmax(scores, dim=-1)
        mask = to_4d(attention_mask.bool())
        probs = torch.softmax(torch.where(mask, scores, _large_negative(scores.dtype)), dim=-1)
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
        ``attention_mask``, the query mask (B, T, 1), the value and key masks (B, 1, S) and the
        causal and sliding-window masks (1, T, S)."""
        return attention_mask_of(
            query,
            value,
            query_mask,
            value_mask,
            key_mask,
            attention_mask,
            use_causal_mask,
            self.sliding_window,
        )

    def _compute_causal_mask(self, query: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
        """The (1, T, S) lower-triangular mask: query position i may attend to key positions <= i."""
        return causal_mask(query, value)

    # ------------------------------------------------------------------- shapes
    def compute_output_shape(self, query_shape: Any, value_shape: Any, key_shape: Any = None) -> tuple:
        key_shape = value_shape if key_shape is None else key_shape
        if query_shape[-1] != value_shape[-1]:
            raise ValueError(
                "GroupedQueryAttention: the last dimension of query_shape and value_shape must be equal, "
                f"got query_shape={tuple(query_shape)} and value_shape={tuple(value_shape)}."
            )
        if tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(
                "GroupedQueryAttention: value and key must have the same shape except for the last "
                f"axis; got value {tuple(value_shape)} and key {tuple(key_shape)}."
            )
        return tuple(query_shape)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "head_dim": self.head_dim,
            "num_query_heads": self.num_query_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "use_bias": self.use_bias,
            "use_gate": self.use_gate,
            "sliding_window": self.sliding_window,
            "dropout": self.dropout,
            "kernel_initializer": initializers.serialize(self.kernel_initializer),
            "bias_initializer": initializers.serialize(self.bias_initializer),
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "activity_regularizer": regularizers.serialize(self.activity_regularizer),
            "kernel_constraint": constraints.serialize(self.kernel_constraint),
            "bias_constraint": constraints.serialize(self.bias_constraint),
            "seed": self.seed,
        }


GroupQueryAttention = GroupedQueryAttention
