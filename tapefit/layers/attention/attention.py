"""``Attention`` (Luong-style dot-product or concat scores) and ``AdditiveAttention`` (Bahdanau).

Both take ``[query, value]`` or ``[query, value, key]`` and return a softmax-weighted sum of
``value`` per query step, with Keras 3's masking: the value mask and the causal mask keep padded
or future steps out of the softmax, the query mask zeroes the output at padded query steps and is
the output's mask. Dropout (in training only) applies to the attention weights.
"""

from __future__ import annotations

from typing import Any

import torch

from ..layer import Layer
from ..regularization import Dropout, _check_rate

__all__ = ["AdditiveAttention", "Attention"]

_SCORE_MODES = ("dot", "concat")


def _as_bool(mask: torch.Tensor) -> torch.Tensor:
    return mask if mask.dtype == torch.bool else mask.bool()


def _describe(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_describe(v) for v in value)
        return f"a {type(value).__name__} [{inner}]"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else repr(value)


class Attention(Layer):
    """Dot-product attention layer, a.k.a. Luong-style attention (Keras 3 semantics).

    ``scores = query @ key^T`` (``"dot"``, times the learned scalar ``scale`` when ``use_scale``) or
    ``concat_score_weight * sum(tanh(scale * (query + key)), -1)`` (``"concat"``); then
    ``softmax(scores) @ value``. The inputs are a list ``[query, value]`` or ``[query, value, key]``
    of shapes ``(batch, Tq, dim)``, ``(batch, Tv, dim)`` and ``(batch, Tv, dim)``; ``key``
    defaults to ``value``.

    Args:
        use_scale: create a scalar weight ``scale`` (initialised to 1) that scales the scores.
        score_mode: ``"dot"`` or ``"concat"``.
        dropout: fraction of the attention weights dropped in training.
        seed: seed of the dropout draws (a fixed seed gives the same sequence every run).
        **kwargs: the base ``Layer`` arguments (``name``, ``dtype``, ``trainable``).

    Call arguments:
        inputs: ``[query, value]`` or ``[query, value, key]``.
        mask: ``[query_mask, value_mask]`` booleans of shapes ``(batch, Tq)``/``(batch, Tv)``;
            filled in from the inputs' Keras masks (``Embedding(mask_zero=True)``).
        training: whether dropout is active.
        return_attention_scores: also return the attention weights ``(batch, Tq, Tv)``.
        use_causal_mask: forbid query step ``i`` from attending to value steps ``j > i``.

    Example:
        >>> import torch
        >>> from tapefit.layers.attention.attention import Attention
        >>> query, value = torch.ones(2, 3, 4), torch.ones(2, 5, 4)
        >>> out, scores = Attention()([query, value], return_attention_scores=True)
        >>> tuple(out.shape), tuple(scores.shape)
        ((2, 3, 4), (2, 3, 5))
    """

    def __init__(
        self,
        use_scale: bool = False,
        score_mode: str = "dot",
        dropout: float = 0.0,
        seed: int | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        if score_mode not in _SCORE_MODES:
            raise ValueError(
                f"{type(self).__name__}: score_mode must be one of {{'dot', 'concat'}}, got "
                f"score_mode={score_mode!r}."
            )
        self.use_scale = use_scale
        self.score_mode = score_mode
        self.dropout = _check_rate(type(self).__name__, "dropout", dropout)
        self.seed = seed
        # The seeded draws of the attention weights' dropout: ``Dropout``'s own mechanism.
        self._weights_dropout = (
            Dropout(self.dropout, seed=seed, name=f"{self.name}_dropout") if self.dropout else None
        )
        self.scale = None
        self.concat_score_weight = None

    def build(self, input_shape: Any) -> None:
        self._validate_inputs(input_shape)
        if self.use_scale:
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")
        if self.score_mode == "concat":
            self.concat_score_weight = self.add_weight(
                shape=(), initializer="ones", name="concat_score_weight"
            )
        self.built = True

    def _calculate_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        """Scores (batch, Tq, Tv) from ``query`` (batch, Tq, dim) and ``key`` (batch, Tv, dim)."""
        scale = None if self.scale is None else self.scale.to(query.dtype)
        if self.score_mode == "dot":
            scores = torch.matmul(query, key.transpose(-2, -1))
            return scores if scale is None else scores * scale
        pairs = query.unsqueeze(-2) + key.unsqueeze(-3)  # (batch, Tq, Tv, dim)
        if scale is not None:
            pairs = scale * pairs
        return self.concat_score_weight.to(query.dtype) * torch.tanh(pairs).sum(dim=-1)

    def _apply_scores(
        self,
        scores: torch.Tensor,
        value: torch.Tensor,
        scores_mask: torch.Tensor | None = None,
        training: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(softmax(masked scores) @ value, the softmax weights)``, dropout on the weights in training."""
        if scores_mask is not None:
            padding = ~scores_mask
            if padding.dim() == 2:
                padding = padding.unsqueeze(-2)
            # Keras subtracts (rather than replaces with) a large number; 65504 is float16's largest.
            large = 65504.0 if scores.dtype == torch.float16 else 1.0e9
            scores = torch.where(padding, scores - large, scores)
        weights = torch.softmax(scores, dim=-1)
        if training and self._weights_dropout is not None:
            weights = self._weights_dropout.call(weights, training=True)
        return torch.matmul(weights, value), weights

    @staticmethod
    def _calculate_score_mask(
        scores: torch.Tensor, v_mask: torch.Tensor | None, use_causal_mask: bool
    ) -> torch.Tensor | None:
        if not use_causal_mask:
            return v_mask
        tq, tv = scores.shape[-2], scores.shape[-1]
        causal = torch.ones((1, tq, tv), dtype=torch.bool, device=scores.device).tril()
        return causal if v_mask is None else v_mask.unsqueeze(-2) & causal

    def call(
        self,
        inputs: list[torch.Tensor],
        mask: list[torch.Tensor | None] | None = None,
        training: bool = False,
        return_attention_scores: bool = False,
        use_causal_mask: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        self._validate_inputs(inputs, mask)
        query, value = inputs[0], inputs[1]
        key = inputs[2] if len(inputs) > 2 else value
        q_mask = None if mask is None or mask[0] is None else _as_bool(mask[0])
        v_mask = None if mask is None or mask[1] is None else _as_bool(mask[1])
        scores = self._calculate_scores(query, key)
        scores_mask = self._calculate_score_mask(scores, v_mask, use_causal_mask)
        output, weights = self._apply_scores(scores, value, scores_mask, training=training)
        if q_mask is not None:
            output = torch.where(q_mask.unsqueeze(-1), output, 0.0)
        if return_attention_scores:
            return output, weights
        return output

    def compute_mask(self, inputs: Any, previous_mask: Any = None) -> torch.Tensor | None:
        """The query's mask (None when the query has none)."""
        self._validate_inputs(inputs, previous_mask)
        if previous_mask is None or previous_mask[0] is None:
            return None
        return torch.as_tensor(previous_mask[0])

    def compute_output_shape(self, input_shape: Any) -> tuple:
        self._validate_inputs(input_shape)
        return (*tuple(input_shape[0])[:-1], tuple(input_shape[1])[-1])

    def _validate_inputs(self, inputs: Any, mask: Any = None) -> None:
        name = type(self).__name__
        if not isinstance(inputs, list):
            raise ValueError(
                f"{name} layer must be called on a list of inputs, namely [query, value] or "
                f"[query, value, key]; received {_describe(inputs)}. Pass a list (not a tuple or a "
                "single tensor)."
            )
        if not 2 <= len(inputs) <= 3:
            raise ValueError(
                f"{name} layer accepts an inputs list of length 2 or 3, namely [query, value] or "
                f"[query, value, key]; received a list of length {len(inputs)}."
            )
        if mask is None:
            return
        if not isinstance(mask, list):
            raise ValueError(
                f"{name} layer mask must be a list, namely [query_mask, value_mask] (None for an "
                f"unmasked input); received {_describe(mask)}."
            )
        if not 2 <= len(mask) <= 3:
            raise ValueError(
                f"{name} layer accepts a mask list of length 2 or 3, namely [query_mask, value_mask]; "
                f"received a list of length {len(mask)}."
            )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "use_scale": self.use_scale,
            "score_mode": self.score_mode,
            "dropout": self.dropout,
            "seed": self.seed,
        }


class AdditiveAttention(Attention):
    """Additive attention layer, a.k.a. Bahdanau-style attention (Keras 3 semantics).

    ``scores = sum(scale * tanh(query + key), -1)`` with ``scale`` a learned vector of the
    query's size (glorot_uniform) when ``use_scale``, then ``softmax(scores) @ value``. Inputs,
    masks and call arguments as in :class:`Attention`.

    Args:
        use_scale: create the ``scale`` vector (shape ``(dim,)``).
        dropout: fraction of the attention weights dropped in training.
        **kwargs: ``seed`` and the base ``Layer`` arguments.

    Example:
        >>> import torch
        >>> from tapefit.layers.attention.attention import AdditiveAttention
        >>> AdditiveAttention()([torch.ones(2, 3, 4), torch.ones(2, 5, 4)]).shape
        torch.Size([2, 3, 4])
    """

    def __init__(self, use_scale: bool = True, dropout: float = 0.0, **kwargs: Any):
        super().__init__(use_scale=use_scale, dropout=dropout, **kwargs)

    def build(self, input_shape: Any) -> None:
        self._validate_inputs(input_shape)
        dim = tuple(input_shape[0])[-1]
        if self.use_scale:
            if dim is None:
                raise ValueError(
                    f"AdditiveAttention {self.name!r}: the last dimension of the query must be known "
                    f"to create the scale weight, got shape {tuple(input_shape[0])}."
                )
            self.scale = self.add_weight(shape=(dim,), initializer="glorot_uniform", name="scale")
        self.built = True

    def _calculate_scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        pairs = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))  # (batch, Tq, Tv, dim)
        if self.scale is not None:
            pairs = self.scale.to(query.dtype) * pairs
        return pairs.sum(dim=-1)

    def get_config(self) -> dict[str, Any]:
        config_ = super().get_config()
        del config_["score_mode"]
        return config_
