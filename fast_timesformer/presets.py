"""Named model configurations: the paper's TimeSformer variants and small ones that train on a CPU."""

from __future__ import annotations

from typing import Any

from fast_timesformer.model import FastTimeSformer

_VIT_BASE = dict(patch_size=16, dim=768, depth=12, heads=12, dim_head=64, mlp_ratio=4.0, drop_path=0.1)

#: name -> constructor arguments. The paper's models are ViT-B/16 with divided space-time attention.
PRESETS: dict[str, dict[str, Any]] = {
    # TimeSformer, 8 frames x 224 px (K400 top-1 78.0 in the paper; 0.59 TFLOPs for 3 views).
    "timesformer_base_8x224": dict(_VIT_BASE, num_frames=8, image_size=224, num_classes=400),
    # TimeSformer-HR, 16 frames x 448 px.
    "timesformer_hr_16x448": dict(_VIT_BASE, num_frames=16, image_size=448, num_classes=400),
    # TimeSformer-L, 96 frames x 224 px.
    "timesformer_l_96x224": dict(_VIT_BASE, num_frames=96, image_size=224, num_classes=400),
    # The benchmark configuration (dim 384, depth 4, 6 heads, 8x224): comparable across libraries.
    "timesformer_small_8x224": dict(
        num_frames=8, image_size=224, patch_size=16, dim=384, depth=4, heads=6, dim_head=64, num_classes=400
    ),
    # Trains in minutes on a laptop CPU: 8 x 64 px, patch 8 (64 patches per frame).
    "timesformer_tiny_8x64": dict(
        num_frames=8, image_size=64, patch_size=8, dim=128, depth=4, heads=4, dim_head=32, num_classes=10
    ),
    # Trains in about a minute on 2 CPU cores: 8 x 32 px, patch 8 (16 patches per frame). The demo's model.
    "timesformer_micro_8x32": dict(
        num_frames=8, image_size=32, patch_size=8, dim=64, depth=2, heads=4, dim_head=16, num_classes=4
    ),
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(PRESETS)


def create_model(name: str, **overrides: Any) -> FastTimeSformer:
    """Build preset ``name`` with constructor arguments replaced by ``overrides``.

    Example: ``create_model("timesformer_base_8x224", attention="performer", num_classes=174)``.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; available: {list_models()}")
    return FastTimeSformer(**{**PRESETS[name], **overrides})
