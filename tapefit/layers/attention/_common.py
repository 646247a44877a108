"""What MultiHeadAttention and GroupQueryAttention share: Keras's attention masks and the call of
torch's fused scaled-dot-product kernel with Keras's masking values."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..._masking import get_mask

_NO_FLASH = [SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH]
_SDPA_HAS_GQA = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2]) >= (2, 5)


def unmasked(x: torch.Tensor) -> torch.Tensor:
    """``x`` without its Keras mask (a view), so the projections neither warn nor carry it."""
    return x if get_mask(x) is None else x.view_as(x)


def causal_mask(query: torch.Tensor, value: torch.Tensor | None = None) -> torch.Tensor:
    """The (1, T, S) lower-triangular mask: query position i may attend to key positions <= i."""
    keys = query.shape[1] if value is None else value.shape[1]
    return torch.ones(query.shape[1], keys, dtype=torch.bool, device=query.device).tril().unsqueeze(0)


def attention_mask_of(
    query: torch.Tensor,
    value: torch.Tensor,
    query_mask: torch.Tensor | None,
    value_mask: torch.Tensor | None,
    key_mask: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    use_causal_mask: bool,
    sliding_window: int | None,
) -> torch.Tensor | None:
    """Keras's boolean (B, T, S) mask of which query positions may attend to which keys: the AND
    of ``attention_mask``, the query mask (B, T, 1), the value and key masks (B, 1, S) and the
    causal and sliding-window masks (1, T, S); None when there is none."""
    parts = [] if attention_mask is None else [attention_mask.bool()]
    if query_mask is not None:
        parts.append(query_mask.bool().unsqueeze(-1))
    if value_mask is not None:
        parts.append(value_mask.bool().unsqueeze(-2))
    if key_mask is not None:
        parts.append(key_mask.bool().unsqueeze(-2))
    if use_causal_mask:
        parts.append(causal_mask(query, value))
    if sliding_window is not None:
        rows = torch.arange(query.shape[1], device=query.device).view(1, -1, 1)
        cols = torch.arange(value.shape[1], device=query.device).view(1, 1, -1)
        parts.append((rows - cols).abs() < sliding_window)
    if not parts:
        return None
    mask = parts[0]
    for part in parts[1:]:
        mask = mask & part
    return mask


def to_4d(mask: torch.Tensor) -> torch.Tensor:
    """A (B, T, S) or (T, S) attention mask with a heads axis: (B, 1, T, S), Keras's expansion."""
    while mask.dim() < 4:
        mask = mask.unsqueeze(-3)
    return mask


def fused_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float,
    training: bool | None,
    is_causal: bool,
    scale: float,
    flash: bool | None,
) -> torch.Tensor:
    """``scaled_dot_product_attention`` over (B, T, heads, dim) projections, as Keras on torch.

    A mask becomes Keras's additive 0 / -0.7·max, so a query that may attend to nothing averages
    all values; with ``dropout`` such a query gives zeros, as Keras's dropout path does. Key and
    value may have fewer heads than the query (grouped-query attention). ``flash`` True demands
    the flash kernel, False forbids it, None lets torch choose.
    """
    mask = additive = None
    if attention_mask is not None:
        mask = to_4d(attention_mask.bool())
        additive = torch.zeros(mask.shape, dtype=query.dtype, device=query.device)
        additive.masked_fill_(~mask, -0.7 * (65500.0 if query.dtype == torch.float16 else 3.38953e38))
    q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)
    extra = {}
    repeats = q.shape[1] // k.shape[1]
    if repeats > 1:
        # Only the flash and math kernels take ``enable_gqa``: where flash cannot run (a mask) or is
        # forbidden, the heads are repeated so that the memory-efficient kernel stays available.
        if _SDPA_HAS_GQA and mask is None and flash is not False:
            extra["enable_gqa"] = True
        else:
            k = torch.repeat_interleave(k, repeats, dim=1)
            v = torch.repeat_interleave(v, repeats, dim=1)
    kwargs = {"attn_mask": additive, "dropout_p": dropout if training else 0.0, "is_causal": is_causal}
    if flash is None:
        out = F.scaled_dot_product_attention(q, k, v, scale=scale, **kwargs, **extra)
    else:
        with sdpa_kernel([SDPBackend.FLASH_ATTENTION] if flash else _NO_FLASH):
            out = F.scaled_dot_product_attention(q, k, v, scale=scale, **kwargs, **extra)
    out = out.transpose(1, 2)
    if mask is not None and dropout > 0.0:
        out = out * mask.any(-1).transpose(1, 2).unsqueeze(-1).to(out.dtype)
    return out
