"""Optimisation pieces of the training module: learning-rate schedules and weight-decay groups."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from torch import nn


class WarmupCosine:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total`` steps."""

    def __init__(self, *, total: int, warmup: int, min_ratio: float) -> None:
        self.total, self.warmup, self.min_ratio = max(1, total), max(0, warmup), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupSteps:
    """Linear warm-up, then the LR times ``gamma`` at each milestone step (the paper: epochs 11 and 14)."""

    def __init__(self, *, milestones: Sequence[int], gamma: float, warmup: int) -> None:
        self.milestones, self.gamma, self.warmup = sorted(milestones), gamma, max(0, warmup)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return self.gamma ** sum(step >= milestone for milestone in self.milestones)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed weights, and (decay 0) ``no_weight_decay()`` names + 1-D tensors."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name in skip or param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


__all__ = ["WarmupCosine", "WarmupSteps", "parameter_groups"]
