"""Small building blocks shared by the model: stochastic depth, the MLP, the patch embedding."""

from __future__ import annotations

import torch
from torch import nn

from fast_timesformer.layers.fast_paths import cpu_bf16_training, gelu


class DropPath(nn.Module):
    """Stochastic depth: zero whole rows of the tensor it is applied to, rescaling the rest.

    One Bernoulli draw per row of dim 0. TimeSformer applies the same module to (B*N, T, D) temporal
    outputs, (B*T, N+1, D) spatial outputs and (B, L, D) MLP outputs, so drops are per (video, patch), per
    (video, frame) and per video respectively -- reproduced here by applying it where the official block does.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


class Mlp(nn.Module):
    """ViT feed-forward: Linear -> exact GELU -> Linear (names ``fc1``/``fc2`` as in the checkpoints)."""

    def __init__(self, dim: int, *, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.fc1(x)  # (..., hidden_dim): the largest activation of the block
        hidden = gelu(hidden, self.act)  # in place where nothing can tell (layers/fast_paths.py)
        return self.drop(self.fc2(self.drop(hidden)))


class PatchEmbed(nn.Module):
    """Per-frame Conv2d patch embedding: (B*T, C, H, W) -> (B*T, N, dim), patches in row-major order."""

    def __init__(self, *, patch_size: int, channels: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if cpu_bf16_training(frames):  # bf16 conv backward is 3x slower than float32's on CPU (fast_paths.py)
            with torch.autocast("cpu", enabled=False):
                return self.proj(frames.float()).flatten(2).transpose(1, 2)
        return self.proj(frames).flatten(2).transpose(1, 2)  # (B*T, dim, Hp, Wp) -> (B*T, Hp*Wp, dim)
