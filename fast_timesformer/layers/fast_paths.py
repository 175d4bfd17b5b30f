"""CPU fast paths: the same numbers computed a cheaper way, each with the one condition under which it runs.

Every fast path here skips a module call or an intermediate tensor, so each steps aside whenever something
could notice the difference: autograd (it needs the intermediate), randomness (dropout, drop path), or a hook
(a module's own or a global one, ``torch.nn.modules.module.register_module_forward_hook``) waiting to see a
module called. Outside those conditions the official computation runs. ``python benchmarks/fast_paths.py``
and ``python benchmarks/attention.py --short`` measure them; BENCHMARKS.md has the numbers.

1. **In-place GELU** (:class:`~fast_timesformer.layers.Mlp`): without autograd and without hooks on the
   activation, GELU overwrites the MLP's hidden tensor -- one fewer hidden-sized allocation per block
   (about 6% of an 8 x 224 inference pass on 2 cores: fewer fresh pages to fault in).
2. **Explicit short softmax** (:class:`~fast_timesformer.attention.RegularAttention`): on CPU, without
   autograd, mask or attention dropout, sequences of at most :data:`SHORT_SEQUENCE` tokens (divided
   attention's temporal groups) use ``softmax(q k^T) v`` instead of SDPA, whose fused CPU kernel's per-group
   set-up dominates there (1.2-1.5x faster at 4-16 tokens). Also used *with* autograd in CPU bfloat16
   training (fast path 4's condition): there the explicit product's backward is plain bf16 matmuls, while
   SDPA's fused backward is the slow part of the step.
3. **Fused temporal projection** (the divided block): ``temporal_fc(proj(h))`` as one linear map with the
   composed weights, where nothing random stands between the two layers (eval mode, or no drop path and no
   projection dropout), where it is cheaper (more rows than the projection's input width: composing costs
   as much as applying one layer to that many rows) and where no hook watches either layer (small config:
   5% faster inference, 8% faster training step).
4. **float32 islands in CPU bfloat16 training** (SDPA and the patch embedding): under
   ``torch.autocast("cpu", dtype=torch.bfloat16)`` with autograd, PyTorch's CPU kernels for the *backward*
   of bf16 flash attention and of the bf16 patch convolution are 4x and 3x slower than their float32 ones
   (profiled: 35 vs 8.7 ms per attention call, 60 vs 18 ms per patch-embedding backward, small config), while
   the matmuls around them gain 3-4x from bf16 (AMX). So those two run in float32 there and hand bf16 (SDPA)
   or float32 (the embedding, as autocast would for the residual stream) on; results are more precise, not
   less. Inference and GPUs are untouched (``python benchmarks/bf16_training.py`` measures it).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
import torch.nn.modules.module as torch_module
from torch import nn

#: Longest sequence that uses the explicit product on CPU in inference (flash wins from about 32 tokens).
SHORT_SEQUENCE = 16

_OWN_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")  # fmt: skip


def has_hooks(*modules: nn.Module) -> bool:
    """True if a forward or backward hook would see a call of any of ``modules``: one of their own, or a
    global hook registered for every module (``register_module_forward_hook`` and friends)."""
    if any(getattr(torch_module, kind, None) for kind in _GLOBAL_HOOKS):
        return True
    return any(getattr(module, kind, None) for module in modules for kind in _OWN_HOOKS)


# -- 1. in-place GELU ---------------------------------------------------------------------------------------
def gelu(hidden: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """``act(hidden)``, computed in place when no autograd and no hook can see the difference."""
    if hidden.requires_grad or has_hooks(act):
        return act(hidden)
    return torch.ops.aten.gelu_(hidden)


# -- 2. explicit short softmax ------------------------------------------------------------------------------
def use_short_softmax(q: torch.Tensor, mask: torch.Tensor | None, dropout: float) -> bool:
    """True where :func:`short_softmax` beats SDPA: CPU, no mask, no dropout, short sequence, and no autograd
    unless in CPU bfloat16 training (:func:`cpu_bf16_training`)."""
    return (
        mask is None
        and dropout == 0.0
        and q.shape[-2] <= SHORT_SEQUENCE
        and q.device.type == "cpu"
        and (not q.requires_grad or cpu_bf16_training(q))
    )


def short_softmax(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Exact attention through the explicit (N, N) scores: q, k, v (B, H, N, d) -> (B, H, N, d)."""
    scores = torch.matmul(q, k.transpose(-2, -1)).mul_(q.shape[-1] ** -0.5)  # (B, H, N, N)
    return scores.softmax(dim=-1, dtype=torch.float32).to(v.dtype) @ v


# -- 3. fused pair of linear layers -------------------------------------------------------------------------
def cpu_bf16_training(x: torch.Tensor) -> bool:
    """True under CPU bfloat16 autocast with autograd on: where fast path 4 (float32 islands) applies."""
    return (
        x.device.type == "cpu"
        and torch.is_grad_enabled()
        and torch.is_autocast_enabled("cpu")
        and torch.get_autocast_dtype("cpu") == torch.bfloat16
    )


def float32_sdpa(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None, dropout_p: float
) -> torch.Tensor:
    """SDPA computed in float32 (autocast off), returned in ``q``'s dtype: fast path 4."""
    with torch.autocast("cpu", enabled=False):
        out = F.scaled_dot_product_attention(
            q.float(), k.float(), v.float(), attn_mask=attn_mask, dropout_p=dropout_p
        )
    return out.to(q.dtype)


def can_fuse_linears(
    first: nn.Linear, second: nn.Linear, rows: int, watched: Iterable[nn.Module] = ()
) -> bool:
    """True where ``second(first(x))`` over ``rows`` tokens is cheaper as one composed linear map and no hook
    on ``first``, ``second`` or ``watched`` expects the separate calls. (Exactness -- nothing random between
    the two -- is the caller's condition.)"""
    return rows > first.in_features and not has_hooks(first, second, *watched)


def fused_linears(x: torch.Tensor, first: nn.Linear, second: nn.Linear) -> torch.Tensor:
    """``second(first(x))`` as one linear map: (W2 W1) x + (W2 b1 + b2).

    Composing the weights costs one (out, mid) x (mid, in) matmul and saves a mid-width matmul over all rows
    of x in the forward pass and two in the backward pass; parameters and gradients are the layers' own.
    """
    weight = second.weight @ first.weight  # (out, in)
    bias = F.linear(first.bias, second.weight, second.bias)
    return F.linear(x, weight, bias)


__all__ = [
    "SHORT_SEQUENCE",
    "can_fuse_linears",
    "fused_linears",
    "gelu",
    "has_hooks",
    "short_softmax",
    "use_short_softmax",
]
