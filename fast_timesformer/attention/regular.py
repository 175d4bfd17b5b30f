"""Exact softmax attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

SDPA picks a fused kernel (flash / memory-efficient on GPU, the flash CPU kernel on CPU) that never builds
the N x N score matrix, which is why exact attention here uses a small fraction of the memory of the eager
``softmax(q @ k.T) @ v`` that Hugging Face's Timesformer runs.

One exception, for speed: on CPU without autograd, sequences of at most ``SHORT_SEQUENCE`` tokens (divided
attention's temporal groups: 8 frames, thousands of groups) go through the explicit product instead
(:mod:`fast_timesformer.layers.fast_paths`, which says when; same numbers up to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fast_timesformer.attention.base import Attention, merge_heads
from fast_timesformer.layers.fast_paths import (
    SHORT_SEQUENCE,
    cpu_bf16_training,
    float32_sdpa,
    short_softmax,
    use_short_softmax,
)


class RegularAttention(Attention):
    """Exact scaled-dot-product softmax attention (scale dim_head^-0.5), as in TimeSformer/ViT."""

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        dropout = self.attn_dropout if self.training else 0.0
        if use_short_softmax(q, mask, dropout):
            return merge_heads(short_softmax(q, k, v))
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        if cpu_bf16_training(q):  # bf16 flash backward is 4x slower than float32's on CPU (fast_paths.py)
            return merge_heads(float32_sdpa(q, k, v, attn_mask, dropout))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)  # (B, H, N, d)
        return merge_heads(out)


__all__ = ["SHORT_SEQUENCE", "RegularAttention"]
