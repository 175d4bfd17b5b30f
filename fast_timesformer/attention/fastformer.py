"""Fastformer additive attention (Wu et al., "Fastformer: Additive Attention Can Be All You Need", 2021).

Per head, with d = dim_head and tokens i = 1..N (paper, eqs. 3-7):

    alpha_i = softmax_i(w_q . q_i / sqrt(d))        global query  g_q = sum_i alpha_i q_i
    p_i     = g_q * k_i                              (element-wise)
    beta_i  = softmax_i(w_k . p_i / sqrt(d))        global key    g_k = sum_i beta_i p_i
    u_i     = g_k * v_i
    out_i   = W_o u_i + q_i                          (output transform plus query residual)

then the heads are merged by ``proj`` like every mechanism here. Cost and memory are linear in N: there is
no N x N tensor anywhere, only two softmaxes over tokens.

Deviations of the peers that this file does NOT have (reference notes, section 6): the seed sums the global
key over features instead of tokens; lucidrains pools k instead of p. ``w_q`` and ``w_k`` are per head, as in
the paper. Padded tokens are excluded from both softmaxes.

Parameters added on top of the common ``qkv``/``proj`` (their initialisation, documented because a softmax
checkpoint loaded with ``attention="fastformer"`` starts from it): ``w_q`` and ``w_k`` (heads, d) ~
trunc-normal(0.02), so pooling starts close to uniform averaging; ``transform`` (Linear inner -> inner)
~ trunc-normal(0.02) weights and zero bias, so each token's output starts close to its query (the residual).
"""

from __future__ import annotations

import torch
from torch import nn

from fast_timesformer.attention.base import Attention, merge_heads


class FastformerAttention(Attention):
    """Multi-head Fastformer additive attention; ``attn_dropout`` drops pooling weights alpha and beta."""

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
        super().__init__(
            dim,
            heads=heads,
            dim_head=dim_head,
            qkv_bias=qkv_bias,
            attn_dropout=attn_dropout,
            proj_dropout=proj_dropout,
        )
        inner = heads * dim_head
        self.w_q = nn.Parameter(torch.empty(heads, dim_head))
        self.w_k = nn.Parameter(torch.empty(heads, dim_head))
        self.transform = nn.Linear(inner, inner)
        self.pool_drop = nn.Dropout(attn_dropout)
        self.reset_fastformer_parameters()

    @torch.no_grad()
    def reset_fastformer_parameters(self) -> None:
        """(Re)initialise the Fastformer-only parameters as documented in the module docstring."""
        nn.init.trunc_normal_(self.w_q, std=0.02)
        nn.init.trunc_normal_(self.w_k, std=0.02)
        nn.init.trunc_normal_(self.transform.weight, std=0.02)
        nn.init.zeros_(self.transform.bias)

    def _pool(self, x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Additive pooling over tokens: x (B, H, N, d), w (H, d) or (B, H, d) -> (B, H, 1, d)."""
        scores = (x * (w * x.shape[-1] ** -0.5).unsqueeze(-2)).sum(-1)  # (B, H, N)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        weights = self.pool_drop(scores.softmax(dim=-1, dtype=torch.float32).to(x.dtype))
        return weights.unsqueeze(-2) @ x  # (B, H, 1, N) @ (B, H, N, d) -> (B, H, 1, d)

    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        b, h, n, d = q.shape
        global_query = self._pool(q, self.w_q, mask)  # (B, H, 1, d)
        # p_i = g_q * k_i is never materialised: w_k . p_i = (w_k * g_q) . k_i, and
        # sum_i beta_i p_i = g_q * sum_i beta_i k_i -- the same numbers without an (N, d) temporary.
        global_key = global_query * self._pool(k, self.w_k * global_query.squeeze(-2), mask)  # (B, H, 1, d)
        # u_i = g_k * v_i, written straight into the merged (B, N, H*d) layout (v is a view of the qkv output).
        u = (v.transpose(1, 2) * global_key.transpose(1, 2)).reshape(b, n, h * d)
        # Output transform plus the query residual; merge_heads(q) is a free view of the qkv output.
        return self.transform(u).add_(merge_heads(q))
