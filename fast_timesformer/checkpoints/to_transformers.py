"""Our model -> a Hugging Face ``TimesformerForVideoClassification`` folder that ``transformers`` loads as is.

The folder holds what ``from_pretrained`` and ``pipeline("video-classification")`` read::

    config.json                     model_type "timesformer", geometry, id2label / label2id, and our own
                                    configuration + preprocessing under "fast_timesformer" (for the record)
    model.safetensors               our tensors under the Hugging Face names (nothing reshaped)
    preprocessor_config.json        VideoMAEImageProcessor (what the hub TimeSformer repos carry): our mean /
                                    std, short side, centre crop
    video_preprocessor_config.json  TimesformerVideoProcessor (transformers >= 5 with torchvision): the same
                                    plus num_frames

The names are the inverse of the import table in :mod:`.names` (one table, read both ways), and every export
is read back through that import map: a tensor that would not come back under its own name is an error.

What transformers' Timesformer cannot hold is refused with the field to change: performer / fastformer
attention, rotary positions, ``space_only`` (transformers classifies every frame instead of averaging them),
``dim_head`` other than ``dim / heads``, non-square images and a features-only model (``num_classes=0``).
transformers also reads ``num_frames`` and ``image_size`` from its config in every layer, so the exported model
runs only at the geometry it was trained for (ours interpolates embeddings for others).

This floor never imports the model: :func:`to_transformers` takes a built model (anything with ``config`` and
``state_dict()``) or a checkpoint source read with :func:`~fast_timesformer.checkpoints.read_checkpoint`.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints.files import CheckpointError, atomic_write
from fast_timesformer.checkpoints.names import _HF_TIMESFORMER, hf_to_ours
from fast_timesformer.checkpoints.preprocessing import Preprocessing
from fast_timesformer.checkpoints.saving import _standalone_tensors, model_preprocessing
from fast_timesformer.checkpoints.sources import read_checkpoint

#: Constructor defaults of FastTimeSformer for the fields a checkpoint's configuration may leave out.
_DEFAULTS = {"attention": "regular", "pos_emb": "learned", "attention_type": "divided_space_time"}
TRANSFORMERS_FILES = (
    "config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
)


# -- names: the import table read the other way -------------------------------------------------------------
def _inverse_table() -> list[tuple[re.Pattern[str], str]]:
    """(our-name regex, Hugging Face replacement) from the (Hugging Face regex, our name) import table."""
    table = []
    for pattern, target in _HF_TIMESFORMER:
        # pattern: escaped dots and (\d+) groups; target: plain dots and \1 back-references
        ours = r"(\d+)".join(re.escape(piece) for piece in target.split(r"\1"))
        hf = pattern.replace(r"(\d+)", r"\1").replace(r"\.", ".")
        if "\\" in hf.replace(r"\1", ""):
            raise AssertionError(f"cannot invert the name pattern {pattern!r}")  # a table edit broke this
        prefix = "" if hf.startswith("classifier.") else "timesformer."
        table.append((re.compile("^" + ours), prefix + hf))
    return table


def ours_to_hf(state_dict: Mapping[str, torch.Tensor], *, file: str | Path = "model") -> dict:
    """Our names -> ``TimesformerForVideoClassification`` names (the inverse of ``hf_to_ours``).

    Raises :class:`CheckpointError` naming any tensor with no Hugging Face name, or one that the import map
    would not bring back under its own name.
    """
    table = _inverse_table()
    out: dict[str, torch.Tensor] = {}
    unmapped = []
    for key, value in state_dict.items():
        for pattern, target in table:
            if pattern.match(key):
                out[pattern.sub(target, key, count=1)] = value
                break
        else:
            unmapped.append(key)
    if unmapped:
        raise CheckpointError(
            file, f"{len(unmapped)} tensor(s) have no place in transformers' Timesformer: {sorted(unmapped)[:6]}",
            "export a model with regular attention and learned positions",
        )  # fmt: skip
    back, _ = hf_to_ours(out, vit=False)
    if set(back) != set(state_dict):
        raise CheckpointError(file, f"names do not round-trip: {sorted(set(back) ^ set(state_dict))[:6]}")
    return out


# -- what transformers can hold -----------------------------------------------------------------------------
def transformers_problems(config: Mapping[str, Any]) -> list[str]:
    """Why a model configuration cannot become a transformers Timesformer (empty: it can), one per field."""
    problems = []
    attention = config.get("attention") or _DEFAULTS["attention"]
    for name in ("attention", "space_attention", "time_attention"):
        value = config.get(name) or attention
        if value != "regular":
            problems.append(
                f"{name}={value!r}: transformers' Timesformer has only softmax attention; "
                "train or fine-tune with attention='regular'"
            )
            if name == "attention":
                break
    if (config.get("pos_emb") or _DEFAULTS["pos_emb"]) != "learned":
        problems.append(
            f"pos_emb={config['pos_emb']!r}: transformers' Timesformer has only learned absolute position "
            "embeddings; use pos_emb='learned'"
        )
    attention_type = config.get("attention_type") or _DEFAULTS["attention_type"]
    if attention_type == "space_only":
        problems.append(
            "attention_type='space_only': transformers classifies every frame (logits of shape (B*T, C)) "
            "instead of averaging frame features as this model does; use divided_space_time or joint_space_time"
        )
    dim, heads, dim_head = config.get("dim", 768), config.get("heads", 12), config.get("dim_head")
    if dim % heads or (dim_head is not None and dim_head * heads != dim):
        problems.append(
            f"dim_head={dim_head} with dim={dim}, heads={heads}: transformers uses dim / heads per head; "
            "use dim_head=None and a dim divisible by heads"
        )
    size = config.get("image_size", 224)
    if isinstance(size, (list, tuple)) and len(set(size)) != 1:
        problems.append(f"image_size={list(size)}: transformers' Timesformer needs square frames")
    if config.get("num_classes", 400) == 0:
        problems.append(
            "num_classes=0 (features only): TimesformerForVideoClassification needs a classifier head"
        )
    return problems


# -- the folder ---------------------------------------------------------------------------------------------
def transformers_config(
    config: Mapping[str, Any],
    *,
    class_names: Sequence[str] | None,
    preprocessing: Preprocessing,
    dtype: str = "float32",
) -> dict[str, Any]:
    """The ``config.json`` of a TimesformerForVideoClassification for our constructor arguments."""
    size = config.get("image_size", 224)
    dim, classes = int(config.get("dim", 768)), int(config.get("num_classes", 400))
    names = list(class_names) if class_names is not None else [f"LABEL_{i}" for i in range(classes)]
    return {
        "architectures": ["TimesformerForVideoClassification"], "model_type": "timesformer",
        "image_size": int(size[0]) if isinstance(size, (list, tuple)) else int(size),
        "patch_size": int(config.get("patch_size", 16)), "num_channels": int(config.get("channels", 3)),
        "num_frames": int(config.get("num_frames", 8)), "hidden_size": dim,
        "num_hidden_layers": int(config.get("depth", 12)), "num_attention_heads": int(config.get("heads", 12)),
        "intermediate_size": int(dim * float(config.get("mlp_ratio", 4.0))), "hidden_act": "gelu",
        "hidden_dropout_prob": float(config.get("ff_dropout", 0.0)),
        "attention_probs_dropout_prob": float(config.get("attn_dropout", 0.0)),
        # drop_path (training only) stays under "fast_timesformer": transformers 5.24 types drop_path_rate as
        # an int and refuses the file with a fraction such as 0.1
        "drop_path_rate": 0, "initializer_range": 0.02,
        "layer_norm_eps": 1e-6, "qkv_bias": bool(config.get("qkv_bias", True)),
        "attention_type": config.get("attention_type") or _DEFAULTS["attention_type"],
        "id2label": {str(i): str(name) for i, name in enumerate(names)},
        "label2id": {str(name): i for i, name in enumerate(names)},
        "dtype": dtype,
        "fast_timesformer": {"model": dict(config), "preprocessing": preprocessing.to_dict()},
    }  # fmt: skip


def processor_configs(preprocessing: Preprocessing) -> dict[str, dict[str, Any]]:
    """``preprocessor_config.json`` and ``video_preprocessor_config.json`` carrying our input protocol."""
    crop = preprocessing.crop_size
    common = {
        "do_resize": True, "size": {"shortest_edge": preprocessing.short_side or crop}, "resample": 2,
        "do_center_crop": True, "crop_size": {"height": crop, "width": crop},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(preprocessing.mean), "image_std": list(preprocessing.std),
    }  # fmt: skip
    return {
        "preprocessor_config.json": {"image_processor_type": "VideoMAEImageProcessor", **common},
        "video_preprocessor_config.json": {
            "video_processor_type": "TimesformerVideoProcessor", **common, "do_convert_rgb": True,
            "num_frames": preprocessing.num_frames, "default_to_square": False,
        },
    }  # fmt: skip


def to_transformers(
    source: nn.Module | str | os.PathLike,
    directory: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    verify: bool = False,
) -> Path:
    """Write ``source`` as a transformers ``TimesformerForVideoClassification`` folder (see module docstring).

    Args:
        source: a FastTimeSformer (e.g. from ``from_pretrained``), or any checkpoint source
            :func:`~fast_timesformer.checkpoints.read_checkpoint` reads (our folder, official ``.pyth`` ...).
        directory: output folder (created); the four files replace old ones only once all are written.
        class_names: one per output (default: the model's / checkpoint's, else ``LABEL_i``).
        preprocessing: a :class:`Preprocessing` or fields replacing the model's / checkpoint's.
        verify: load the folder with transformers and compare its logits with ``source``'s on a random clip
            (needs a model and ``transformers``); a difference over 1e-4 raises :class:`CheckpointError`.

    Returns the folder. Raises :class:`CheckpointError` naming every field transformers cannot hold.
    """
    if isinstance(source, nn.Module):
        if not isinstance(getattr(source, "config", None), dict):
            raise TypeError(f"expected a FastTimeSformer, got {type(source).__name__}")
        config, state_dict, origin = source.config, source.state_dict(), type(source).__name__
        names = class_names if class_names is not None else getattr(source, "class_names", None)
        prep = model_preprocessing(source)
    else:
        if verify:
            raise ValueError("verify=True needs a model: pass from_pretrained(source) instead of the path")
        ckpt = read_checkpoint(source)
        if ckpt.kind == "vit":
            raise CheckpointError(
                ckpt.file, "an image model has no video layers to export",
                "load it into a video model first: from_pretrained(source, num_classes=...), fine-tune, export",
            )  # fmt: skip
        config, state_dict, origin = ckpt.config, ckpt.state_dict, ckpt.file
        names = class_names if class_names is not None else ckpt.class_names
        prep = Preprocessing.from_dict(ckpt.preprocessing) if ckpt.preprocessing else Preprocessing(
            num_frames=int(config.get("num_frames", 8)), crop_size=_side(config), short_side=_side(config)
        )  # fmt: skip
    if isinstance(preprocessing, Preprocessing):
        prep = preprocessing
    elif preprocessing:
        prep = prep.replace(**preprocessing)
    problems = transformers_problems(config)
    if problems:
        raise CheckpointError(
            origin, "cannot be a transformers Timesformer: " + "; ".join(problems),
            "change the field(s) named, or keep using it with fast_timesformer",
        )  # fmt: skip
    classes = int(config.get("num_classes", 400))
    if names is not None and len(names) != classes:
        raise ValueError(f"got {len(names)} class_names for a model with num_classes={classes}")
    if names is not None and len(set(map(str, names))) != len(names):
        raise ValueError("class_names must be distinct: transformers' label2id maps each name to one id")
    tensors = _standalone_tensors(ours_to_hf(state_dict, file=origin))
    dtype = next(
        (str(t.dtype).removeprefix("torch.") for t in tensors.values() if t.is_floating_point()), "float32"
    )
    files = {"config.json": transformers_config(config, class_names=names, preprocessing=prep, dtype=dtype)}
    files.update(processor_configs(prep))
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder: pass a folder path")
    directory.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    writers = [(directory / "model.safetensors", lambda p: save_file(tensors, p, metadata={"format": "pt"}))]
    for name, content in files.items():
        text = json.dumps(content, indent=2, allow_nan=False) + "\n"
        writers.append((directory / name, lambda p, text=text: p.write_text(text, encoding="utf-8")))
    atomic_write(*writers)
    if verify:
        check_transformers_logits(source, directory)
    return directory


def _side(config: Mapping[str, Any]) -> int:
    size = config.get("image_size", 224)
    return int(size[0]) if isinstance(size, (list, tuple)) else int(size)


def check_transformers_logits(
    model: nn.Module, directory: str | os.PathLike, *, atol: float = 1e-4, batch: int = 2, seed: int = 0
) -> float:
    """Load ``directory`` with transformers and return the largest |logit difference| against ``model`` on a
    random clip at the configured geometry, both in float32 on the CPU; raises :class:`CheckpointError` when it
    is over ``atol``. ``model`` itself is left as it was (device, dtype, train / eval mode)."""
    try:
        from transformers import TimesformerForVideoClassification
    except ImportError:
        raise ImportError("verifying the export needs transformers: pip install transformers") from None
    config = model.config
    # float32 on both sides: a bfloat16 model is compared at the precision the 1e-4 bound is meant for
    hf = TimesformerForVideoClassification.from_pretrained(str(directory), dtype=torch.float32).eval()
    ours = copy.deepcopy(model).float().cpu().eval()
    side = _side(config)
    generator = torch.Generator().manual_seed(seed)
    # (B, T, C, H, W): transformers' layout; ours may take channels first (input_layout="bcthw")
    clip = torch.randn(batch, config["num_frames"], config["channels"], side, side, generator=generator)
    ours_input = clip.transpose(1, 2) if config.get("input_layout") == "bcthw" else clip
    with torch.no_grad():
        gap = float((ours(ours_input) - hf(pixel_values=clip).logits).abs().max())
    if not gap <= atol:
        raise CheckpointError(
            directory, f"transformers' logits differ from this model's by {gap:.2e} (over {atol:.0e})",
            "report this with the model's config.json",
        )  # fmt: skip
    return gap


__all__ = [
    "TRANSFORMERS_FILES",
    "check_transformers_logits",
    "ours_to_hf",
    "processor_configs",
    "to_transformers",
    "transformers_config",
    "transformers_problems",
]
