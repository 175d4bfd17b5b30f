"""The interface every attention mechanism implements.

An attention module maps tokens ``x`` of shape (B, N, dim) to (B, N, dim). It owns the fused input
projection ``qkv`` (dim -> 3 * heads * dim_head, rows ordered [q; k; v], head-major inside each third) and the
output projection ``proj`` (heads * dim_head -> dim). These names and layouts are the official TimeSformer's
(``blocks.i.attn.qkv``, ``blocks.i.attn.proj``), so its checkpoints load 1:1 whatever mechanism runs.

Subclasses only implement :meth:`Attention.attend`, the part that replaces ``softmax(q k^T / sqrt(d)) v``.
"""

from __future__ import annotations

import torch
from torch import nn

from fast_timesformer.layers.rotary import apply_rotary


class Attention(nn.Module):
    """Multi-head attention with a fused qkv projection; the mixing step is left to subclasses.

    Args:
        dim: token width.
        heads: number of attention heads.
        dim_head: width of each head.
        qkv_bias: learn a bias in the qkv projection (True in TimeSformer / ViT).
        attn_dropout: dropout on the attention weights (where the mechanism has them).
        proj_dropout: dropout on the output projection.
    """

    #: keyword arguments accepted through ``attention_kwargs`` (subclasses extend this).
    extra_kwargs: tuple[str, ...] = ()

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        dim_head: int,
        qkv_bias: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim <= 0 or heads <= 0 or dim_head <= 0:
            raise ValueError(f"dim, heads and dim_head must be positive, got {dim}, {heads}, {dim_head}")
        self.heads = heads
        self.dim_head = dim_head
        self.attn_dropout = float(attn_dropout)
        inner = heads * dim_head
        self.qkv = nn.Linear(dim, 3 * inner, bias=qkv_bias)
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_dropout)

    def split_heads(
        self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Project ``x`` (B, N, dim) to q, k, v of shape (B, heads, N, dim_head), rotating q and k if asked."""
        b, n, _ = x.shape
        # (B, N, 3*H*d) -> (3, B, H, N, d): views, no copy until a kernel needs one.
        qkv = self.qkv(x).view(b, n, 3, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        if rope is not None:
            cos, sin = rope
            q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        return q, k, v

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend over ``x`` (B, N, dim).

        Args:
            x: tokens (B, N, dim).
            mask: optional bool (B, N), True for real tokens; False tokens are never attended to.
            rope: optional (cos, sin), each broadcastable to (B, heads, N, dim_head), applied to q and k.
        """
        return self.proj_drop(self.proj(self.mix(x, mask=mask, rope=rope)))

    def mix(
        self,
        x: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Everything before the output projection: tokens (B, N, dim) -> merged heads (B, N, heads*dim_head)."""
        q, k, v = self.split_heads(x, rope)
        return self.attend(q, k, v, mask)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Mix values: q, k, v (B, H, N, d), key mask (B, N) or None -> (B, N, H*d)."""
        raise NotImplementedError


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) -> (B, N, H*d)."""
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)
