"""Attention layers: ``Attention`` (dot-product), ``AdditiveAttention`` and ``MultiHeadAttention``."""

from .attention import AdditiveAttention as AdditiveAttention
from .attention import Attention as Attention
from .multi_head_attention import MultiHeadAttention as MultiHeadAttention

__all__ = ["AdditiveAttention", "Attention", "MultiHeadAttention"]
