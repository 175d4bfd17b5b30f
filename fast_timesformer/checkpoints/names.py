"""Name maps and configurations: Hugging Face Timesformer / ViT names -> ours, and constructor arguments
read off a checkpoint's tensors or its Hugging Face ``config.json``.

Our parameter names are the official TimeSformer's without the ``model.`` prefix (``blocks.i.attn.qkv`` ...),
so the official and timm files need no renaming; Hugging Face files do (reference notes, section 2.2).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fast_timesformer.checkpoints.files import CheckpointError

# -- name maps ---------------------------------------------------------------------------------------------
_HF_TIMESFORMER = [
    (r"embeddings\.cls_token", "cls_token"),
    (r"embeddings\.position_embeddings", "pos_embed"),
    (r"embeddings\.time_embeddings", "time_embed"),
    (r"embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (r"encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.", r"blocks.\1.temporal_attn.qkv."),
    (r"encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.", r"blocks.\1.temporal_attn.proj."),
    (r"encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"layernorm\.", "norm."),
    (r"classifier\.", "head."),
]
# Hugging Face ViT: the same layout with separate query/key/value (fused below) and a pooler we do not use.
_HF_VIT = [(pattern, target) for pattern, target in _HF_TIMESFORMER if "temporal" not in pattern] + [
    (r"encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.", r"blocks.\1.attn.\2."),
]
_HF_VIT_UNUSED = {
    "pooler.": "ViT pooler (unused by TimeSformer)",
    "embeddings.mask_token": "masked-image token",
}
TIMM_UNUSED = {"pre_logits.": "ImageNet-21k pre-logits layer (unused by TimeSformer)"}


def hf_to_ours(state_dict: Mapping[str, torch.Tensor], *, vit: bool) -> tuple[dict, dict[str, str]]:
    """Translate Hugging Face Timesformer (or ViT) names; returns (state dict, dropped keys with reasons).

    Unknown names are kept as they are, so the strict load reports them.
    """
    table = [
        (re.compile(r"^(?:timesformer\.|vit\.)?" + pattern), target)
        for pattern, target in (_HF_VIT if vit else _HF_TIMESFORMER)
    ]
    out: dict[str, torch.Tensor] = {}
    dropped: dict[str, str] = {}
    for key, value in state_dict.items():
        bare = re.sub(r"^(timesformer|vit)\.", "", key)
        reason = next((why for prefix, why in _HF_VIT_UNUSED.items() if bare.startswith(prefix)), None)
        if vit and reason:
            dropped[key] = reason
            continue
        for pattern, target in table:
            if pattern.match(key):
                key = pattern.sub(target, key, count=1)
                break
        out[key] = value
    if vit:  # fuse query/key/value into one qkv, rows [q; k; v] (each head-major, like ours)
        for key in [k for k in out if re.search(r"\.attn\.query\.", k)]:
            names = [key.replace(".query.", f".{name}.") for name in ("query", "key", "value")]
            if all(name in out for name in names):  # else left apart: the strict load names them
                out[key.replace(".query.", ".qkv.")] = torch.cat([out.pop(name) for name in names], dim=0)
    return out, dropped


def names_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Which naming a flat state dict uses: "hf-timesformer", "hf-vit" or "official" (ours)."""
    keys = list(state_dict)
    if any(re.search(r"(^|\.)encoder\.layer\.\d+\.attention\.attention\.query\.", k) for k in keys):
        return "hf-vit"
    if any(re.search(r"(^|\.)encoder\.layer\.\d+\.", k) or k.startswith("timesformer.") for k in keys):
        return "hf-timesformer"
    return "official"


# -- configurations ----------------------------------------------------------------------------------------
def infer_config(state_dict: Mapping[str, torch.Tensor], file: Path) -> tuple[dict[str, Any], set[str]]:
    """Constructor arguments read off tensor shapes (official layout); returns (config, guessed keys).

    Head count cannot be read from shapes: it is guessed as width / 64 (every published ViT and TimeSformer
    uses 64-wide heads) and may be overridden.
    """
    for key in (
        "cls_token",
        "patch_embed.proj.weight",
        "blocks.0.attn.qkv.weight",
        "blocks.0.mlp.fc1.weight",
    ):
        if key not in state_dict:
            raise CheckpointError(
                file, f"not a TimeSformer or ViT checkpoint: no tensor {key!r} (keys start {sorted(state_dict)[:6]})",
                "pass a TimeSformer (.pyth, Hugging Face, fast-timesformer) or ImageNet ViT checkpoint",
            )  # fmt: skip
    dim = state_dict["cls_token"].shape[-1]
    _, channels, patch_size, _ = state_dict["patch_embed.proj.weight"].shape
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"blocks\.(\d+)\.", k)))
    inner = state_dict["blocks.0.attn.qkv.weight"].shape[0] // 3
    heads = inner // 64 if inner >= 64 and inner % 64 == 0 else 1
    config: dict[str, Any] = dict(
        dim=dim, depth=depth, heads=heads, dim_head=inner // heads, patch_size=patch_size, channels=channels,
        mlp_ratio=state_dict["blocks.0.mlp.fc1.weight"].shape[0] / dim,
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        num_classes=state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0,
        pos_emb="learned" if "pos_embed" in state_dict else "rotary",
    )  # fmt: skip
    if "blocks.0.temporal_attn.qkv.weight" in state_dict:
        config["attention_type"] = "divided_space_time"
    else:
        config["attention_type"] = "joint_space_time" if "time_embed" in state_dict else "space_only"
    if "time_embed" in state_dict:
        config["num_frames"] = state_dict["time_embed"].shape[1]
    if "pos_embed" in state_dict:
        tokens = state_dict["pos_embed"].shape[1] - 1
        side = math.isqrt(tokens)
        if side * side == tokens:
            config["image_size"] = side * patch_size
    config.update(_mechanisms(state_dict, config["attention_type"]))
    return config, {"heads", "dim_head"}


def _mechanisms(state_dict: Mapping[str, torch.Tensor], attention_type: str) -> dict[str, Any]:
    """Which attention mechanism the space and time layers hold, from their extra tensors."""

    def mechanism(prefix: str) -> str:
        if f"{prefix}.projection_matrix" in state_dict:
            return "performer"
        return "fastformer" if f"{prefix}.w_q" in state_dict else "regular"

    space = mechanism("blocks.0.attn")
    time = mechanism("blocks.0.temporal_attn") if attention_type == "divided_space_time" else space
    out: dict[str, Any] = {"attention": space}
    if time != space:
        out["time_attention"] = time
    for prefix in ("blocks.0.attn", "blocks.0.temporal_attn"):
        if f"{prefix}.projection_matrix" in state_dict:
            out["attention_kwargs"] = {"nb_features": state_dict[f"{prefix}.projection_matrix"].shape[0]}
    return out


def config_from_hf(hf: Mapping[str, Any], file: Path) -> tuple[dict[str, Any], list[str] | None]:
    """Our constructor arguments from a Hugging Face Timesformer/ViT config.json, and its class names."""
    eps = float(hf.get("layer_norm_eps", 1e-6))
    vit = hf.get("model_type") == "vit"
    if not vit and not math.isclose(eps, 1e-6, rel_tol=1e-3):
        raise CheckpointError(
            file, f"layer_norm_eps is {eps}, but TimeSformer (and this library) uses 1e-6",
            "only checkpoints trained with layer_norm_eps=1e-6 load exactly",
        )  # fmt: skip
    if hf.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(file, f"hidden_act is {hf['hidden_act']!r}; only exact 'gelu' is supported")
    dim, heads = int(hf.get("hidden_size", 768)), int(hf.get("num_attention_heads", 12))
    size = hf.get("image_size", 224)
    config: dict[str, Any] = dict(
        dim=dim, depth=int(hf.get("num_hidden_layers", 12)), heads=heads, dim_head=dim // heads,
        mlp_ratio=int(hf.get("intermediate_size", 4 * dim)) / dim, patch_size=int(hf.get("patch_size", 16)),
        channels=int(hf.get("num_channels", 3)), qkv_bias=bool(hf.get("qkv_bias", True)),
        image_size=list(size) if isinstance(size, (list, tuple)) else int(size),
        drop_path=float(hf.get("drop_path_rate", 0.0)),
    )  # fmt: skip
    if not vit:
        config["num_frames"] = int(hf.get("num_frames", 8))
        config["attention_type"] = hf.get("attention_type", "divided_space_time")
    id2label = hf.get("id2label") or {}
    names = [str(id2label[k]) for k in sorted(id2label, key=int)] if id2label else None
    return config, names


def preprocessing_from_hf(processor: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a Hugging Face preprocessor_config.json we use (mean, std, crop, short side)."""
    out: dict[str, Any] = {}
    if "image_mean" in processor:
        out["mean"] = list(processor["image_mean"])
    if "image_std" in processor:
        out["std"] = list(processor["image_std"])
    crop = processor.get("crop_size")
    if isinstance(crop, Mapping) and "height" in crop:
        out["crop_size"] = int(crop["height"])
    size = processor.get("size")
    if isinstance(size, Mapping) and "shortest_edge" in size:
        out["short_side"] = int(size["shortest_edge"])
    if out:  # the hub processors evaluate one centre view
        out.update(num_temporal_clips=1, num_spatial_crops=1)
    return out


__all__ = [
    "TIMM_UNUSED",
    "config_from_hf",
    "hf_to_ours",
    "infer_config",
    "names_kind",
    "preprocessing_from_hf",
]
