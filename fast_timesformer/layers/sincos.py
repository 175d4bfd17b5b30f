"""Fixed sinusoidal absolute position embeddings: 1-D over time, 2-D axial over space.

Transformer-style (Vaswani et al. 2017) ``[sin(p w_0) .. sin(p w_{k-1}), cos(p w_0) .. cos(p w_{k-1})]`` with
``w_i = theta^(-i/k)``, added to the tokens, with no parameters. For 2-D, the width is shared between the
row and column axes as evenly as possible (MAE's 2-D embedding does the same), each axis with its own ladder.

Why a model has them beside ``learned`` and ``rotary``: the official learned ``time_embed`` starts at zero,
so a model trained from scratch is blind to frame order until the embedding grows; rotary positions act
inside attention only (for Fastformer, which has no query-key products, through its pooling scores and query
residual). Sinusoidal embeddings carry order from the first step into every token's input, whatever layer
reads it, and they are defined at every frame count and grid size (nothing to interpolate). On the demo task
they train worse than rotary for every mechanism (BENCHMARKS.md, "Recipes per mechanism").
"""

from __future__ import annotations

import torch

from fast_timesformer.layers.rotary import split_pairs


def sincos_embedding(positions: list[torch.Tensor], dim: int, *, theta: float = 10000.0) -> torch.Tensor:
    """(N, dim) float32 embedding of tokens with the given per-axis integer positions.

    Args:
        positions: one 1-D tensor of length N per axis ([t] for time, [row, col] for space).
        dim: embedding width; must be even (each frequency takes a sine and a cosine slot).
        theta: base of the frequency ladder.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal position embeddings need an even dim, got {dim}")
    parts = []
    for axis_positions, pairs in zip(positions, split_pairs(dim // 2, len(positions))):
        if pairs == 0:
            continue
        exponent = torch.arange(pairs, device=axis_positions.device, dtype=torch.float32) / pairs
        angle = axis_positions.to(torch.float32)[:, None] * theta ** (-exponent)[None, :]  # (N, pairs)
        parts += [angle.sin(), angle.cos()]
    return torch.cat(parts, dim=-1)
