"""``DividedAttention``: attention within groups of tokens chosen by einops patterns (the seed's API).

The model itself does not use it (its divided block regroups tokens with views, see ``model.py``); it is kept
for code written against the seed, importable as ``from fast_timesformer.model import DividedAttention``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange
from torch import nn

from fast_timesformer.attention.registry import build_attention, check_attention_kwargs, check_attention_name


class DividedAttention(nn.Module):
    """Attention within groups of tokens chosen by einops patterns -- the seed's calling convention.

    ``x`` is (b, 1 + n*f, dim) with the CLS token first. The patch tokens are regrouped with
    ``rearrange(x[:, 1:], f"{einops_from} -> {einops_to}", **axes)``; each group attends over the CLS token
    plus its own tokens. **CLS handling**: the CLS token is repeated into every group (as the official
    TimeSformer's spatial step does per frame) and its output is the mean of its outputs over the groups of
    its sample. The result has the shape of ``x``; add it as a residual yourself::

        attention = DividedAttention(dim, dim_head=64, heads=8, dropout=0.0, attention="performer")
        time_attended = attention(x, "b (f n) d", "(b n) f d", n=n)   # across frames
        space_attended = attention(x, "b (f n) d", "(b f) n d", f=f)  # across patches

    Args:
        dim: token width.
        dim_head: width of each head.
        heads: number of heads.
        dropout: dropout on the output projection, and on attention weights where the mechanism has them.
        attention: ``"regular"``, ``"performer"`` or ``"fastformer"``.
        attention_kwargs: mechanism options (e.g. ``{"nb_features": 256}``).
    """

    def __init__(
        self,
        dim: int,
        *,
        dim_head: int = 64,
        heads: int = 8,
        dropout: float = 0.0,
        attention: str = "regular",
        attention_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        check_attention_name(attention)
        kwargs = check_attention_kwargs(attention_kwargs, [attention])
        attn_dropout = 0.0 if attention == "performer" else dropout
        self.attn = build_attention(
            attention,
            dim,
            heads=heads,
            dim_head=dim_head,
            attn_dropout=attn_dropout,
            proj_dropout=dropout,
            attention_kwargs=kwargs,
        )

    def forward(
        self,
        x: torch.Tensor,
        einops_from: str,
        einops_to: str,
        *,
        mask: torch.Tensor | None = None,
        **axes: int,
    ) -> torch.Tensor:
        """x (b, 1+n*f, dim); mask: optional bool (b, n*f) over the patch tokens, True = real."""
        if x.ndim != 3:
            raise ValueError(
                f"expected x of shape (b, 1 + n*f, dim) with the CLS token first, got {tuple(x.shape)}"
            )
        b = x.shape[0]
        cls, patches = x[:, :1], x[:, 1:]
        groups = rearrange(patches, f"{einops_from} -> {einops_to}", **axes)  # (b*g, L, dim)
        # Which sample each group came from, found by sending sample indices through the same rearrange.
        owner = torch.arange(b, device=x.device).view(b, 1, 1).expand(b, patches.shape[1], 1)
        owner = rearrange(owner, f"{einops_from} -> {einops_to}", **axes)[:, 0, 0]  # (b*g,)
        group_mask = None
        if mask is not None:
            group_mask = rearrange(mask.unsqueeze(-1), f"{einops_from} -> {einops_to}", **axes)[..., 0]
            group_mask = torch.cat([group_mask.new_ones(group_mask.shape[0], 1), group_mask], dim=1)
        out = self.attn(torch.cat([cls[owner], groups], dim=1), mask=group_mask)  # (b*g, 1+L, dim)
        cls_sum = torch.zeros_like(cls[:, 0]).index_add_(0, owner, out[:, 0])
        cls_out = cls_sum / torch.bincount(owner, minlength=b).to(x.dtype).unsqueeze(1)
        patches_out = rearrange(out[:, 1:], f"{einops_to} -> {einops_from}", **axes)
        return torch.cat([cls_out.unsqueeze(1), patches_out], dim=1)


__all__ = ["DividedAttention"]
