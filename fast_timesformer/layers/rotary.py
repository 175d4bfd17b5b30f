"""Rotary position embeddings (RoPE): 1-D over time, 2-D axial over space, 3-D for joint attention.

Layout convention, used everywhere in this file: a head vector of width d is split into two halves and
coordinate ``i`` is rotated together with coordinate ``i + d/2`` (the "rotate half" layout). ``cos`` and
``sin`` are therefore built as ``cat(angles, angles)``. Keeping one convention in one place is what makes
this a true rotation (norms are preserved, tested) -- the peers mix two conventions (see the reference notes).

For axial embeddings the d/2 rotation pairs are shared out between the axes, each axis using its own
frequency ladder over its own integer positions. Tokens that carry no position (the CLS token) get the
identity rotation (cos = 1, sin = 0).
"""

from __future__ import annotations

import torch


def _frequencies(num_pairs: int, theta: float, device: torch.device | None) -> torch.Tensor:
    """Standard RoPE ladder theta^(-i/num_pairs), i = 0..num_pairs-1."""
    exponent = torch.arange(num_pairs, device=device, dtype=torch.float32) / max(num_pairs, 1)
    return theta ** (-exponent)


def split_pairs(num_pairs: int, num_axes: int) -> list[int]:
    """Share ``num_pairs`` rotation pairs between ``num_axes`` axes as evenly as possible."""
    base, extra = divmod(num_pairs, num_axes)
    return [base + (1 if i < extra else 0) for i in range(num_axes)]


def rotary_cos_sin(
    positions: list[torch.Tensor],
    dim_head: int,
    *,
    theta: float = 10000.0,
    prepend_identity: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Build (cos, sin) of shape (N, dim_head) for tokens with the given per-axis integer positions.

    Args:
        positions: one 1-D tensor of length N per axis (e.g. [t] for time, [row, col] for space).
        dim_head: head width; must be even.
        theta: base of the frequency ladder.
        prepend_identity: add one leading token with the identity rotation (for CLS).
    """
    if dim_head % 2:
        raise ValueError(f"rotary position embeddings need an even dim_head, got {dim_head}")
    device = positions[0].device
    angles = []
    for axis_positions, pairs in zip(positions, split_pairs(dim_head // 2, len(positions))):
        if pairs == 0:
            continue
        freqs = _frequencies(pairs, theta, device)
        angles.append(axis_positions.to(torch.float32)[:, None] * freqs[None, :])  # (N, pairs)
    angle = torch.cat(angles, dim=-1)  # (N, d/2)
    if prepend_identity:
        angle = torch.cat([angle.new_zeros(1, angle.shape[-1]), angle], dim=0)
    angle = torch.cat([angle, angle], dim=-1)  # (N, d), "rotate half" layout
    return angle.cos(), angle.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) on the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., N, d) by angles whose cos/sin broadcast to it; computed in x's dtype."""
    return x * cos.to(x.dtype) + rotate_half(x) * sin.to(x.dtype)
