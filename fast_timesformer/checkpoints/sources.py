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
names the file, the problem and the fix. Applying a checkpoint to a model lives in :mod:`.loading`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fast_timesformer.checkpoints.files import (
    REDOWNLOAD,
    CheckpointError,
    check_finite,
    read_file,
    read_safetensors,
)
from fast_timesformer.checkpoints.names import (
    TIMM_UNUSED,
    config_from_hf,
    hf_to_ours,
    infer_config,
    names_kind,
    preprocessing_from_hf,
)
from fast_timesformer.checkpoints.official import parse_cfg, preprocessing_from_cfg
from fast_timesformer.checkpoints.validation import check_model_config, config_problems, printable

FORMAT_NAME = "fast-timesformer"
FORMAT_VERSION = 1
SOURCE_FORMATS = ("fast-timesformer", "huggingface", "official", "vit")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


@dataclass
class Checkpoint:
    """Tensors under our names plus what is known about the model they came from."""

    file: Path  #: the file the tensors were read from (named in every message)
    kind: str  #: one of SOURCE_FORMATS
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]  #: FastTimeSformer constructor arguments the tensors fit
    class_names: list[str] | None = None
    preprocessing: dict[str, Any] = field(default_factory=dict)
    task: dict[str, Any] | None = None  #: {"type": "multilabel", "thresholds": [...]} or None (single-label)
    renamed: int = 0  #: how many names were translated
    dropped: dict[str, str] = field(default_factory=dict)  #: file key -> why it was left out while mapping
    assumed: set[str] = field(default_factory=set)  #: config keys guessed (not read), free to override
    notes: list[str] = field(default_factory=list)


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
        raise CheckpointError(file, f"unreadable JSON ({error})", REDOWNLOAD) from None
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
        raise CheckpointError(config_file, f"invalid format_version {version!r}", REDOWNLOAD)
    if version > FORMAT_VERSION:
        raise CheckpointError(
            config_file, f"written by a newer fast-timesformer (format_version {version}; this version reads "
            f"up to {FORMAT_VERSION})", "upgrade: pip install -U fast-timesformer",
        )  # fmt: skip
    if meta.get("architecture") != "FastTimeSformer" or not isinstance(meta.get("model"), dict):
        raise CheckpointError(
            config_file, "expected architecture 'FastTimeSformer' and a 'model' object", REDOWNLOAD
        )
    problems = config_problems(meta["model"])  # before reading tensors: "dim": "128" is named as such
    if problems:
        raise CheckpointError(
            config_file, "invalid model configuration: " + "; ".join(problems),
            "fix the field(s), or restore the config.json that save_pretrained wrote with these weights",
        )  # fmt: skip
    weights = folder / "model.safetensors"
    state_dict = read_safetensors(weights)
    check_finite(state_dict, weights)
    names = check_model_config(
        meta["model"], state_dict, file=config_file, class_names=meta.get("class_names")
    )
    preprocessing = meta.get("preprocessing") or {}
    if not isinstance(preprocessing, dict):
        raise CheckpointError(config_file, "preprocessing must be an object", "fix or remove the field")
    task = _read_task(meta.get("task"), int(meta["model"].get("num_classes", 0)), config_file)
    return Checkpoint(
        file=weights, kind="fast-timesformer", state_dict=state_dict, config=dict(meta["model"]),
        class_names=names, preprocessing=dict(preprocessing), task=task,
    )  # fmt: skip


def _read_task(task: Any, num_classes: int, config_file: Path) -> dict[str, Any] | None:
    """config.json's ``task``: None (single-label) or a multi-label type with one threshold in (0, 1) per class."""
    if task is None:
        return None
    fix = "fix the field, or remove it for a single-label model"
    if not isinstance(task, dict) or task.get("type") not in ("single", "multilabel"):
        raise CheckpointError(
            config_file, f"task must be {{'type': 'multilabel', 'thresholds': [...]}}, got {task!r}", fix
        )
    if task["type"] == "single":
        return None
    thresholds = task.get("thresholds")
    if thresholds is not None and (
        not isinstance(thresholds, list)
        or len(thresholds) != num_classes
        or not all(isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < 1 for t in thresholds)
    ):
        raise CheckpointError(
            config_file, f"task.thresholds must be {num_classes} numbers in (0, 1), one per class", fix
        )
    return {"type": "multilabel", "thresholds": thresholds}


def _read_weight_file(folder: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """The weights of a Hugging Face folder: a single file or the shards named by an index."""
    name = next((name for name in WEIGHT_FILES if (folder / name).is_file()), None)
    if name is None:
        raise CheckpointError(
            folder, f"no weights file in this folder (looked for {list(WEIGHT_FILES)})", REDOWNLOAD
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
    problems = config_problems(config)
    if problems:
        raise CheckpointError(
            folder / "config.json", "invalid model configuration: " + "; ".join(problems), REDOWNLOAD
        )
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
        class_names=[printable(str(n)) for n in names] if names and len(names) == config["num_classes"] else None,
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
            reason = next((why for prefix, why in TIMM_UNUSED.items() if key.startswith(prefix)), None)
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


__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SOURCE_FORMATS",
    "WEIGHT_FILES",
    "Checkpoint",
    "download_from_hub",
    "read_checkpoint",
]
