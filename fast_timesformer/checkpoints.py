"""Read checkpoint files safely, recognise where they come from, and translate their names to ours.

Our parameter names are the official TimeSformer's without the ``model.`` prefix (``blocks.i.attn.qkv`` ...),
so the sources differ only in how they wrap and name those tensors:

    source                          wrapper / names                                         reference notes
    fast-timesformer folder         config.json (format "fast-timesformer") + model.safetensors
    official .pyth / .pth           {"model_state" | "state_dict" | "model" | "module": ...}    section 1.2
                                    or bare; ``module.`` then ``model.`` prefixes; ``cfg`` YAML
    Hugging Face Timesformer        config.json (model_type "timesformer") + model.safetensors   section 2.2
                                    or pytorch_model.bin (or shards + index); ``timesformer.encoder.layer.i...``
    ImageNet ViT (image model)      timm names (= official names without temporal parts), in a   section 1.5
                                    file or a timm hub folder (config.json "architecture": "vit_..."),
                                    or Hugging Face ViT (``vit.encoder.layer.i.attention.attention.query``)
    a hub id                        downloaded with huggingface_hub, then read as the folder it is

:func:`read_checkpoint` returns a :class:`Checkpoint`: tensors under our names plus the constructor arguments
of the model they fit. Nothing here unpickles code: safetensors files are validated before they are read,
torch files go through ``torch.load(weights_only=True)``. Every problem is a :class:`CheckpointError` that
names the file, the problem and the fix. Applying a checkpoint to a model lives in :mod:`weights`.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

FORMAT_NAME = "fast-timesformer"
FORMAT_VERSION = 1
SOURCE_FORMATS = ("fast-timesformer", "huggingface", "official", "vit")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# Official defaults (reference notes section 1.9): Kinetics normalisation and 1 clip x 3 crops testing.
DEFAULT_MEAN, DEFAULT_STD = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]
# SAMPLING_RATE of the official Kinetics recipes by frame count (8x32, 16x16 HR, 96x4 L).
OFFICIAL_SAMPLING_RATE = {8: 32, 16: 16, 96: 4}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""

    def __init__(self, file: str | Path, problem: str, fix: str | None = None) -> None:
        self.file, self.problem, self.fix = str(file), problem, fix
        super().__init__(f"{file}: {problem}" + (f". Fix: {fix}" if fix else ""))


@dataclass
class Checkpoint:
    """Tensors under our names plus what is known about the model they came from."""

    file: Path  #: the file the tensors were read from (named in every message)
    kind: str  #: one of SOURCE_FORMATS
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]  #: FastTimeSformer constructor arguments the tensors fit
    class_names: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    renamed: int = 0  #: how many names were translated
    dropped: dict[str, str] = field(default_factory=dict)  #: file key -> why it was left out while mapping
    assumed: set[str] = field(default_factory=set)  #: config keys guessed (not read), free to override
    notes: list[str] = field(default_factory=list)


# -- reading files without unpickling code ------------------------------------------------------------
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
_REDOWNLOAD = "download or copy the file again"


def check_safetensors_header(file: Path) -> None:
    """Validate a safetensors header against the file before any tensor is read.

    Catches truncated files and headers whose offsets disagree with the shapes, overlap, leave gaps or point
    outside the file -- the ways a damaged or hostile file could make a reader misbehave.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(file, f"truncated safetensors file ({size} bytes, no header)", _REDOWNLOAD)
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise CheckpointError(
                file, f"truncated safetensors file: the header needs {length} bytes, the file has {size - 8}",
                _REDOWNLOAD,
            )  # fmt: skip
        if length > 100_000_000:
            raise CheckpointError(file, f"implausible safetensors header size ({length} bytes)", _REDOWNLOAD)
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(file, f"corrupt safetensors header ({error})", _REDOWNLOAD) from None
    if not isinstance(header, dict):
        raise CheckpointError(file, "corrupt safetensors header (not a JSON object)", _REDOWNLOAD)
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            itemsize = _SAFETENSORS_ITEMSIZE[dtype]
            numel = math.prod(int(s) for s in shape)
            if not all(isinstance(v, int) and v >= 0 for v in (begin, end, *shape)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                file, f"corrupt safetensors header entry for tensor {name!r}: {info}", _REDOWNLOAD
            ) from None
        if end - begin != numel * itemsize:
            raise CheckpointError(
                file,
                f"inconsistent safetensors header: tensor {name!r} ({dtype}, shape {shape}) needs "
                f"{numel * itemsize} bytes but its data_offsets [{begin}, {end}] span {end - begin}",
                _REDOWNLOAD,
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, previous_end, previous), (begin, _, name) in zip(spans, spans[1:]):
        if begin < previous_end:
            raise CheckpointError(
                file, f"inconsistent safetensors header: the data of tensors {previous!r} and {name!r} overlaps",
                _REDOWNLOAD,
            )  # fmt: skip
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise CheckpointError(
                file, f"inconsistent safetensors header: the data of tensor {name!r} leaves a gap at byte {position}",
                _REDOWNLOAD,
            )  # fmt: skip
        position = end
    available = size - 8 - length
    if position > available:
        raise CheckpointError(
            file, f"truncated safetensors file: the header describes {position} bytes of tensor data, the file "
            f"holds {available}", _REDOWNLOAD,
        )  # fmt: skip
    if position < available:
        raise CheckpointError(
            file,
            f"inconsistent safetensors header: {available - position} bytes after the last tensor",
            _REDOWNLOAD,
        )


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Load a validated safetensors file (memory-mapped)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            file,
            "reading .safetensors needs the safetensors package",
            "pip install 'fast-timesformer[weights]'",
        ) from None
    check_safetensors_header(file)
    try:
        return load_file(file)
    except Exception as error:  # the library's own validation, after ours
        raise CheckpointError(file, f"unreadable safetensors file ({error})", _REDOWNLOAD) from None


def read_torch_file(file: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs); memory-mapped for zip checkpoints."""
    is_zip = _magic(file).startswith(b"PK")
    if is_zip and not zipfile.is_zipfile(file):
        raise CheckpointError(
            file, "truncated or corrupt zip archive (its central directory is missing)", _REDOWNLOAD
        )
    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            file,
            f"refused to unpickle: the file holds Python objects beyond tensors and plain containers ({reason})",
            "only open checkpoints you trust; if you trust this one, load it yourself and re-save "
            "just its state dict (torch.save(obj['model_state'], path)) or convert it to safetensors",
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as error:
        raise CheckpointError(file, f"unreadable PyTorch checkpoint ({error})", _REDOWNLOAD) from None


def read_file(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of one checkpoint file (wrappers and prefixes removed) and the extras beside them (``cfg``)."""
    if not file.is_file():
        raise CheckpointError(file, "no such file", "check the path")
    if file.stat().st_size == 0:
        raise CheckpointError(file, "the file is empty (0 bytes)", _REDOWNLOAD)
    magic = _magic(file)
    if _looks_like_safetensors(magic):
        return read_safetensors(file), {}
    if not (magic.startswith(b"PK") or magic.startswith(b"\x80")):
        raise CheckpointError(
            file, f"not a checkpoint: unknown file format (starts with {magic[:8]!r})",
            "pass a .safetensors, .pth/.pyth/.bin (torch.save) file or a model folder",
        )  # fmt: skip
    return unwrap_state_dict(read_torch_file(file), file)


def _magic(file: Path) -> bytes:
    with open(file, "rb") as handle:
        return handle.read(16)


def _looks_like_safetensors(magic: bytes) -> bool:
    return len(magic) >= 9 and magic[8:9] == b"{" and int.from_bytes(magic[:8], "little") < 2**40


_WRAPPER_KEYS = ("model_state", "state_dict", "model", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DDP, torch.compile, the official wrapper (in that order)


def unwrap_state_dict(obj: Any, file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state dict in a loaded torch object (bare, or under the official/timm/DDP wrapper keys)."""
    extras: dict[str, Any] = {}
    for _ in range(3):
        if not isinstance(obj, Mapping):
            raise CheckpointError(file, f"expected a dict of tensors, found {type(obj).__name__}")
        if isinstance(obj.get("cfg"), str):
            extras["cfg"] = obj["cfg"]
        if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
            break
        inner = next((key for key in _WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            raise CheckpointError(
                file, f"no state dict found (top-level keys {sorted(map(str, obj))[:12]})",
                f"expected a dict of tensors, or one under {list(_WRAPPER_KEYS)}",
            )  # fmt: skip
        extras.setdefault("wrapper", inner)
        obj = obj[inner]
    state_dict = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    return state_dict, extras


def check_finite(state_dict: Mapping[str, torch.Tensor], file: Path) -> None:
    """Refuse NaN or infinite values in any floating-point tensor."""
    bad = [
        name for name, t in state_dict.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise CheckpointError(
            file, f"non-finite weights (NaN or inf) in {len(bad)} tensor(s): {shown}",
            "the training run that wrote it diverged; use an earlier checkpoint",
        )  # fmt: skip


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
_TIMM_UNUSED = {"pre_logits.": "ImageNet-21k pre-logits layer (unused by TimeSformer)"}


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


def parse_cfg(text: str) -> dict[str, Any]:
    """The PySlowFast training config embedded in official checkpoints (YAML); {} when unreadable."""
    try:
        import yaml

        parsed = yaml.safe_load(text)
        return parsed if isinstance(parsed, dict) else {}
    except ImportError:
        return parse_simple_yaml(text)
    except Exception:
        return {}


def parse_simple_yaml(text: str) -> dict[str, Any]:
    """Minimal YAML reader for yacs dumps: nested mappings, ``- item`` and ``[a, b]`` lists, scalars.

    Used when PyYAML is not installed; anything it does not understand is skipped, never executed.
    """
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in text.splitlines()]
    lines = [(indent, line) for indent, line in lines if line and not line.startswith("#")]

    def block(start: int, indent: int) -> tuple[Any, int]:
        if start < len(lines) and lines[start][1].startswith("- ") and lines[start][0] == indent:
            items, i = [], start
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:]))
                i += 1
            return items, i
        out, i = {}, start
        while i < len(lines) and lines[i][0] == indent:
            key, sep, value = lines[i][1].partition(":")
            i += 1
            if not sep:
                continue
            if value.strip():
                out[key.strip()] = _scalar(value.strip())
            elif i < len(lines) and (
                lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("- "))
            ):
                out[key.strip()], i = block(i, lines[i][0])
            else:
                out[key.strip()] = None
        while i < len(lines) and lines[i][0] > indent:  # skip what we could not place
            i += 1
        return out, i

    try:
        parsed, _ = block(0, lines[0][0] if lines else 0)
        return parsed if isinstance(parsed, dict) else {}
    except Exception:
        return {}


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(part) for part in text[1:-1].split(",") if part.strip()]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def preprocessing_from_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Preprocessing and geometry from a PySlowFast config (DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE ...)."""
    data, test = cfg.get("DATA") or {}, cfg.get("TEST") or {}
    pairs = [
        ("num_frames", data.get("NUM_FRAMES")), ("sampling_rate", data.get("SAMPLING_RATE")),
        ("crop_size", data.get("TEST_CROP_SIZE") or data.get("TRAIN_CROP_SIZE")),
        ("mean", data.get("MEAN")), ("std", data.get("STD")),
        ("num_temporal_clips", test.get("NUM_ENSEMBLE_VIEWS")), ("num_spatial_crops", test.get("NUM_SPATIAL_CROPS")),
    ]  # fmt: skip
    out = {key: value for key, value in pairs if value is not None}
    dataset = str((cfg.get("TRAIN") or {}).get("DATASET") or (cfg.get("TEST") or {}).get("DATASET") or "")
    if dataset:  # Something-Something is sampled one frame per segment, Kinetics densely
        out["sampling"] = "segment" if "ssv2" in dataset.lower() else "dense"
    if "crop_size" in out and out.get("num_spatial_crops", 3) == 3:
        out["short_side"] = out["crop_size"]  # 3-crop testing resizes the short side to the crop size
    return out


# -- finding and reading a source --------------------------------------------------------------------------
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def read_checkpoint(
    source: str | Path,
    *,
    source_format: str | None = None,
    revision: str | None = None,
    cache_dir: str | Path | None = None,
) -> Checkpoint:
    """Read any supported source (see the module docstring) into a :class:`Checkpoint`.

    Args:
        source: a folder, a weights file, or a Hugging Face hub id (downloaded with huggingface_hub).
        source_format: force the reading of a bare file: "official" (a space-only TimeSformer) or "vit" (an
            image model); a bare file whose tensors fit both is read as an ImageNet ViT unless it carries the
            official training wrapper (``model_state`` / ``cfg``).
        revision, cache_dir: passed to ``huggingface_hub.snapshot_download`` for hub ids.
    """
    if source_format is not None and source_format not in SOURCE_FORMATS:
        raise ValueError(f"unknown source_format {source_format!r}; expected one of {list(SOURCE_FORMATS)}")
    path = Path(source)
    if not path.exists():
        if not _HUB_ID.match(str(source)):
            raise CheckpointError(
                source, "no such file or folder",
                "check the path, or pass a hub id such as facebook/timesformer-base-finetuned-k400",
            )  # fmt: skip
        path = download_from_hub(str(source), revision=revision, cache_dir=cache_dir)
    if (
        path.is_file()
        and (path.name == "config.json" or path.name in WEIGHT_FILES)
        and (path.parent / "config.json").is_file()
    ):
        path = path.parent
    ckpt = _read_folder(path) if path.is_dir() else _read_bare_file(path, source_format)
    if source_format is not None and source_format != ckpt.kind:
        raise CheckpointError(
            ckpt.file, f"this is a {ckpt.kind} checkpoint, not {source_format}", "drop source_format"
        )
    return ckpt


def download_from_hub(
    repo_id: str, *, revision: str | None = None, cache_dir: str | Path | None = None
) -> Path:
    """Download a hub repository's config and weights (safetensors preferred) and return the local folder."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            repo_id, "no such local path, and downloading it from the Hugging Face hub needs huggingface_hub",
            "pip install huggingface_hub, or download the model folder yourself and pass its path",
        ) from None  # fmt: skip
    try:
        folder = Path(snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=["*.json", "*.safetensors"]
        ))  # fmt: skip
        if not any((folder / name).is_file() for name in WEIGHT_FILES[:2]):
            folder = Path(snapshot_download(
                repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=["*.json", "pytorch_model*.bin"]
            ))  # fmt: skip
    except Exception as error:  # offline, unknown repository, gated repository ...
        raise CheckpointError(
            repo_id, "no such local path, and downloading it from the Hugging Face hub failed "
            f"({type(error).__name__}: {error})",
            "check the id and the network; offline, download the folder elsewhere and pass its path",
        ) from None  # fmt: skip
    return folder


def _read_json(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(file, f"unreadable JSON ({error})", _REDOWNLOAD) from None
    if not isinstance(data, dict):
        raise CheckpointError(file, "expected a JSON object")
    return data


def _read_folder(folder: Path) -> Checkpoint:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(
            folder, "no config.json in this folder",
            "pass a folder written by save_pretrained or a Hugging Face model folder, or the weights file itself",
        )  # fmt: skip
    meta = _read_json(config_file)
    if meta.get("format") == FORMAT_NAME:
        return _read_ours(folder, meta)
    if meta.get("model_type") in ("timesformer", "vit"):
        return _read_hf(folder, meta)
    if str(meta.get("architecture", "")).startswith("vit_") and (folder / "model.safetensors").is_file():
        return _read_bare_file(folder / "model.safetensors", "vit")  # a timm hub folder: timm names
    raise CheckpointError(
        config_file, f"unsupported model (format {meta.get('format')!r}, model_type {meta.get('model_type')!r})",
        "expected a fast-timesformer folder, or a Hugging Face Timesformer or ViT folder",
    )  # fmt: skip


def _read_ours(folder: Path, meta: dict[str, Any]) -> Checkpoint:
    config_file = folder / "config.json"
    version = meta.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(config_file, f"invalid format_version {version!r}", _REDOWNLOAD)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            config_file, f"written by a newer fast-timesformer (format_version {version}; this version reads "
            f"up to {FORMAT_VERSION})", "upgrade: pip install -U fast-timesformer",
        )  # fmt: skip
    if meta.get("architecture") != "FastTimeSformer" or not isinstance(meta.get("model"), dict):
        raise CheckpointError(
            config_file, "expected architecture 'FastTimeSformer' and a 'model' object", _REDOWNLOAD
        )
    weights = folder / "model.safetensors"
    state_dict = read_safetensors(weights)
    check_finite(state_dict, weights)
    names = meta.get("class_names")
    return Checkpoint(
        file=weights, kind="fast-timesformer", state_dict=state_dict, config=dict(meta["model"]),
        class_names=list(names) if names is not None else None, preprocessing=dict(meta.get("preprocessing") or {}),
    )  # fmt: skip


def _read_weight_file(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The weights of a Hugging Face folder: a single file or the shards named by an index."""
    name = next((name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if name is None:
        raise CheckpointError(
            folder, f"no weights file in this folder (looked for {list(WEIGHT_FILES)})", _REDOWNLOAD
        )
    file = folder / name
    if not name.endswith(".index.json"):
        return read_file(file)[0], file
    shards = sorted(set(_read_json(file).get("weight_map", {}).values()))
    state_dict: dict[str, torch.Tensor] = {}
    for shard in shards:
        if Path(shard).name != shard:  # an index must not point outside its folder
            raise CheckpointError(file, f"shard name {shard!r} is not a plain file name")
        state_dict.update(read_file(folder / shard)[0])
    return state_dict, file


def _read_hf(folder: Path, meta: dict[str, Any]) -> Checkpoint:
    raw, file = _read_weight_file(folder)
    check_finite(raw, file)
    vit = meta["model_type"] == "vit"
    state_dict, dropped = hf_to_ours(raw, vit=vit)
    config, names = config_from_hf(meta, folder / "config.json")
    config["num_classes"] = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
    preprocessing = {}
    if (folder / "preprocessor_config.json").is_file():
        preprocessing = preprocessing_from_hf(_read_json(folder / "preprocessor_config.json"))
    if "ssv2" in str(folder).lower():  # e.g. facebook/timesformer-base-finetuned-ssv2: segment sampling
        preprocessing["sampling"] = "segment"
    notes = []
    if vit and not math.isclose(float(meta.get("layer_norm_eps", 1e-6)), 1e-6, rel_tol=1e-3):
        notes.append(
            f"the image model's LayerNorm eps is {meta['layer_norm_eps']}; the video model uses 1e-6"
        )
    return Checkpoint(
        file=file, kind="vit" if vit else "huggingface", state_dict=state_dict, config=config,
        class_names=names if names and len(names) == config["num_classes"] else None,
        preprocessing=preprocessing, renamed=len(raw) - len(dropped), dropped=dropped, notes=notes,
    )  # fmt: skip


def _read_bare_file(file: Path, source_format: str | None) -> Checkpoint:
    raw, extras = read_file(file)
    check_finite(raw, file)
    naming = names_kind(raw)
    dropped: dict[str, str] = {}
    if naming == "official":
        state_dict = {}
        for key, value in raw.items():
            reason = next((why for prefix, why in _TIMM_UNUSED.items() if key.startswith(prefix)), None)
            if reason:
                dropped[key] = reason
            else:
                state_dict[key] = value
    else:
        state_dict, dropped = hf_to_ours(raw, vit=naming == "hf-vit")
    config, assumed = infer_config(state_dict, file)
    cfg = parse_cfg(extras["cfg"]) if "cfg" in extras else {}
    preprocessing = preprocessing_from_cfg(cfg)
    notes = []
    if "cfg" in extras and not cfg:
        notes.append("the embedded training config could not be read; geometry taken from tensor shapes")
    image_like = config["attention_type"] == "space_only" and "time_embed" not in state_dict
    official_wrapper = "cfg" in extras or extras.get("wrapper") == "model_state"
    is_image = naming == "hf-vit" or (image_like and not official_wrapper)
    if source_format in ("vit", "official"):
        if source_format == "vit" and not image_like:
            raise CheckpointError(
                file,
                f"has {config['attention_type']} video layers, not an image model",
                "drop source_format='vit'",
            )
        is_image = source_format == "vit"
    if "image_size" not in config:
        crop = (cfg.get("DATA") or {}).get("TRAIN_CROP_SIZE")
        if config["pos_emb"] == "learned" and not (
            crop and (crop // config["patch_size"]) ** 2 == state_dict["pos_embed"].shape[1] - 1
        ):
            raise CheckpointError(
                file,
                "cannot tell the image size: pos_embed is not a square grid and no cfg gives TRAIN_CROP_SIZE",
            )
        config["image_size"] = int(crop) if crop else 224
        if not crop:
            assumed.add("image_size")
    if is_image:
        config.pop("attention_type")
        if naming == "official" and source_format is None:
            notes.append(
                "read as an ImageNet ViT (no time tensors, no official training wrapper); pass "
                "source_format='official' if it is a space-only TimeSformer"
            )
    else:
        config.setdefault("num_frames", int(preprocessing.get("num_frames", 8)))
        declared = ((cfg.get("TIMESFORMER") or {}).get("ATTENTION_TYPE")) if cfg else None
        if declared and declared != config["attention_type"]:
            notes.append(f"cfg says ATTENTION_TYPE {declared}; the tensors are {config['attention_type']}")
    return Checkpoint(
        file=file, kind="vit" if is_image else "official", state_dict=state_dict, config=config,
        preprocessing=preprocessing, renamed=len(raw) - len(dropped) if naming != "official" else 0,
        dropped=dropped, assumed=assumed, notes=notes,
    )  # fmt: skip
