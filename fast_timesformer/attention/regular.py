"""Exact softmax attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

SDPA picks a fused kernel (flash / memory-efficient on GPU, the flash CPU kernel on CPU) that never builds
the N x N score matrix, which is why exact attention here uses a small fraction of the memory of the eager
``softmax(q @ k.T) @ v`` that Hugging Face's Timesformer runs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fast_timesformer.attention.base import Attention, merge_heads


class RegularAttention(Attention):
    """Exact scaled-dot-product softmax attention (scale dim_head^-0.5), as in TimeSformer/ViT."""

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=self.attn_dropout if self.training else 0.0
        )  # (B, H, N, d)
        return merge_heads(out)
