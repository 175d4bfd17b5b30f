"""Exact softmax attention through ``torch.nn.functional.scaled_dot_product_attention`` (SDPA).

SDPA picks a fused kernel (flash / memory-efficient on GPU, the flash CPU kernel on CPU) that never builds
the N x N score matrix, which is why exact attention here uses a small fraction of the memory of the eager
``softmax(q @ k.T) @ v`` that Hugging Face's Timesformer runs.

One exception, for speed: on CPU without autograd, sequences of at most ``SHORT_SEQUENCE`` tokens (divided
attention's temporal groups: 8 frames, thousands of groups) go through the explicit product instead. The
fused CPU kernel's per-group set-up dominates there; the explicit (N, N) scores are tiny and 1.2-1.5x faster
at 4-16 tokens (``python benchmarks/attention.py --short``). Same numbers up to float rounding. (Attention
dropout in training mode always goes through SDPA.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fast_timesformer.attention.base import Attention, merge_heads

#: Longest sequence that uses the explicit product on CPU in inference (flash wins from about 32 tokens).
SHORT_SEQUENCE = 16


class RegularAttention(Attention):
    """Exact scaled-dot-product softmax attention (scale dim_head^-0.5), as in TimeSformer/ViT."""

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        dropout = self.attn_dropout if self.training else 0.0
        if (
            mask is None
            and dropout == 0.0
            and q.shape[-2] <= SHORT_SEQUENCE
            and q.device.type == "cpu"
            and not q.requires_grad
        ):
            scores = torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)  # (B, H, N, N)
            return merge_heads(scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype) @ v)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout)  # (B, H, N, d)
        return merge_heads(out)
