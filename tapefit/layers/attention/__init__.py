"""Attention layers: ``Attention`` (dot-product), ``AdditiveAttention``, ``MultiHeadAttention`` and
``GroupQueryAttention``."""

from .attention import AdditiveAttention as AdditiveAttention
from .attention import Attention as Attention
from .grouped_query_attention import GroupedQueryAttention as GroupedQueryAttention
from .grouped_query_attention import GroupQueryAttention as GroupQueryAttention
from .multi_head_attention import MultiHeadAttention as MultiHeadAttention

__all__ = [
    "AdditiveAttention",
    "Attention",
    "GroupQueryAttention",
    "GroupedQueryAttention",
    "MultiHeadAttention",
]
