"""Check a checkpoint's configuration before anything is built from it.

A weights folder is two files that must agree: ``config.json`` says how to build the model and
``model.safetensors`` holds its tensors. A hand-edited or mixed-up ``config.json`` used to fail late and
badly: ``"dim": 1000000000`` tried to allocate 768 GB, ``"depth": 1000000`` built layers until memory ran
out, ``"dim": "128"`` died deep inside ``nn.Linear``. Here every field is checked for its type and a sane
range first (:func:`config_problems`), then against the shapes of the tensors themselves
(:func:`tensor_mismatches`: the tensors are the truth, since they are what gets loaded), and class names
against the head. Nothing is allocated before these checks pass; each problem names the field.

The bounds are far above every published model (ViT-H: dim 1280, depth 32; TimeSformer-L: 96 frames) and
exist only to refuse nonsense before it reaches the allocator.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fast_timesformer.checkpoints.files import CheckpointError
from fast_timesformer.checkpoints.names import infer_config

#: field -> (smallest, largest) allowed integer.
INT_BOUNDS = {
    "num_frames": (1, 10_000),
    "num_classes": (0, 1_000_000),
    "patch_size": (1, 1024),
    "channels": (1, 64),
    "dim": (1, 65_536),
    "depth": (1, 1000),
    "heads": (1, 1024),
    "dim_head": (1, 8192),
}
IMAGE_SIZE_BOUNDS = (1, 32_768)
MLP_RATIO_MAX = 64.0
QK_INIT_STD_MAX = 10.0  #: FastTimeSformer(qk_init_std=...) is checked against it too (it only shapes an init)
PROBABILITIES = ("attn_dropout", "ff_dropout", "drop_path")  #: each in [0, 1)
STRING_FIELDS = (
    "attention", "time_attention", "space_attention", "attention_type", "pos_emb", "input_layout",
    "embed_interpolation",
)  # fmt: skip
OPTIONAL_FIELDS = ("time_attention", "space_attention", "dim_head", "attention_kwargs")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _describe(value: Any) -> str:
    kind = {str: "a string", float: "a number with a fraction", bool: "a boolean", list: "a list"}.get(
        type(value), type(value).__name__
    )
    return f"{value!r} ({kind})" if not _is_int(value) else repr(value)


def config_problems(config: Mapping[str, Any]) -> list[str]:
    """What is wrong with the types and ranges of model constructor arguments (empty: nothing).

    Only fields present are checked; the model's constructor checks the choices of string fields.
    """
    problems = []
    for name, (low, high) in INT_BOUNDS.items():
        if name not in config or (config[name] is None and name in OPTIONAL_FIELDS):
            continue
        value = config[name]
        if not _is_int(value):
            problems.append(f"{name} must be an integer, got {_describe(value)}")
        elif not low <= value <= high:
            problems.append(f"{name}={value} is outside {low}..{high}")
    if "image_size" in config:
        size = config["image_size"]
        sides = list(size) if isinstance(size, (list, tuple)) else [size]
        low, high = IMAGE_SIZE_BOUNDS
        if len(sides) not in (1, 2) or not all(_is_int(side) for side in sides):
            problems.append(f"image_size must be an integer or [height, width], got {_describe(size)}")
        elif not all(low <= side <= high for side in sides):
            problems.append(f"image_size={size} is outside {low}..{high}")
    for name in ("mlp_ratio", "qk_init_std", *PROBABILITIES):
        if name not in config:
            continue
        value = config[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            problems.append(f"{name} must be a number, got {_describe(value)}")
        elif name == "mlp_ratio" and not 0 < value <= MLP_RATIO_MAX:
            problems.append(f"mlp_ratio={value} is outside (0, {MLP_RATIO_MAX:g}]")
        elif name == "qk_init_std" and not 0 < value < QK_INIT_STD_MAX:
            problems.append(f"qk_init_std={value} is outside (0, {QK_INIT_STD_MAX:g})")
        elif name in PROBABILITIES and not 0 <= value < 1:
            problems.append(f"{name}={value} is outside [0, 1)")
    for name in STRING_FIELDS:
        if name in config and not isinstance(config[name], str):
            if config[name] is None and name in OPTIONAL_FIELDS:
                continue
            problems.append(f"{name} must be a string, got {_describe(config[name])}")
    if "qkv_bias" in config and not isinstance(config["qkv_bias"], bool):
        problems.append(f"qkv_bias must be true or false, got {_describe(config['qkv_bias'])}")
    kwargs = config.get("attention_kwargs")
    if kwargs is not None and not isinstance(kwargs, Mapping):
        problems.append(f"attention_kwargs must be an object, got {_describe(kwargs)}")
    return problems


def _sides(size: Any) -> tuple[int, int]:
    return (size, size) if _is_int(size) else (int(size[0]), int(size[1]))


def tensor_mismatches(
    config: Mapping[str, Any], shapes: Mapping[str, Any], state_dict: Mapping[str, torch.Tensor]
) -> list[str]:
    """Fields of ``config`` that disagree with what the tensors were read to hold (``shapes``: the result
    of :func:`~fast_timesformer.checkpoints.names.infer_config`). Call after :func:`config_problems`."""
    out = []

    def differ(name: str, ours: Any, theirs: Any, evidence: str) -> None:
        same = math.isclose(ours, theirs, rel_tol=1e-6) if name == "mlp_ratio" else ours == theirs
        if not same:
            out.append(f"{name} is {ours!r} in config.json but {theirs!r} in the tensors ({evidence})")

    def shape(key: str) -> str:
        return f"{key} {tuple(state_dict[key].shape)}"

    for name, key in (
        ("dim", "cls_token"), ("depth", "blocks.*"), ("patch_size", "patch_embed.proj.weight"),
        ("channels", "patch_embed.proj.weight"), ("mlp_ratio", "blocks.0.mlp.fc1.weight"),
        ("num_classes", "head.weight"), ("num_frames", "time_embed"),
    ):  # fmt: skip
        if name in config and name in shapes:
            evidence = f"{shapes['depth']} blocks" if key == "blocks.*" else shape(key)
            if key in state_dict or key == "blocks.*":
                differ(name, config[name], shapes[name], evidence)
    if "qkv_bias" in config:
        differ("qkv_bias", config["qkv_bias"], shapes["qkv_bias"], "blocks.0.attn.qkv.bias present or not")
    joint_or_space = {config.get("attention_type"), shapes["attention_type"]} <= {
        "joint_space_time",
        "space_only",
    }
    if "attention_type" in config and not (shapes["pos_emb"] != "learned" and joint_or_space):
        # without time_embed (rotary or sincos positions) joint and space-only layouts hold the same tensors
        differ("attention_type", config["attention_type"], shapes["attention_type"], "which tensors exist")
    # the tensors tell learned positions (pos_embed) from parameter-free ones, not rotary from sincos
    if (config.get("pos_emb", "learned") == "learned") != (shapes["pos_emb"] == "learned"):
        differ("pos_emb", config.get("pos_emb", "learned"), shapes["pos_emb"], "pos_embed present or not")
    if "image_size" in config and "pos_embed" in state_dict and "patch_size" in shapes:
        tokens = state_dict["pos_embed"].shape[1] - 1
        height, width = _sides(config["image_size"])
        grid = (height // shapes["patch_size"]) * (width // shapes["patch_size"])
        if grid != tokens:
            out.append(
                f"image_size {config['image_size']!r} in config.json makes {grid} patches per frame, but the "
                f"tensors have {tokens} ({shape('pos_embed')})"
            )
    if "heads" in config and "blocks.0.attn.qkv.weight" in state_dict:
        heads, dim_head = config["heads"], config.get("dim_head")
        inner = heads * (dim_head if dim_head is not None else config.get("dim", shapes["dim"]) // heads)
        theirs = state_dict["blocks.0.attn.qkv.weight"].shape[0] // 3
        if inner != theirs:
            out.append(
                f"heads x dim_head is {inner} in config.json but {theirs} in the tensors "
                f"({shape('blocks.0.attn.qkv.weight')})"
            )
    space = config.get("space_attention") or config.get("attention", "regular")
    time = config.get("time_attention") or config.get("attention", "regular")
    differ("attention (space)", space, shapes.get("attention", "regular"), "the mechanism's own tensors")
    if shapes["attention_type"] == "divided_space_time":
        stored_time = shapes.get("time_attention", shapes.get("attention", "regular"))
        differ("attention (time)", time, stored_time, "the mechanism's own tensors")
    return out


def printable(label: str) -> str:
    """``label`` with control and formatting characters (ANSI escapes, bidi overrides, newlines) written as
    ``\\x1b``-style escapes, so a class name cannot rewrite the user's terminal or a CSV row."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Cf") else ch
        for ch in label
    )


def class_name_problems(names: Any, num_classes: int | None) -> list[str]:
    """What is wrong with a stored ``class_names`` list for a head of ``num_classes`` outputs."""
    if names is None:
        return []
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence):
        return [f"class_names must be a list of strings, got {_describe(names)}"]
    bad = [i for i, name in enumerate(names) if not isinstance(name, str)]
    if bad:
        return [f"class_names must be strings; entry {bad[0]} is {_describe(names[bad[0]])}"]
    if num_classes is not None and len(names) != num_classes:
        return [f"class_names has {len(names)} entries but the head has {num_classes} outputs"]
    return []


def check_model_config(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    file: Any,
    class_names: Any = None,
    where: str = "config.json",
) -> list[str] | None:
    """Refuse a stored model configuration that is malformed or disagrees with its own tensors.

    Returns the class names made printable (:func:`printable`), or None. Raises :class:`CheckpointError`
    listing every bad field; nothing has been allocated by then beyond the tensors already read.
    """
    fix = f"restore {where} from the folder that wrote these weights (save_pretrained writes both together)"
    if not isinstance(config, Mapping):
        raise CheckpointError(file, f"the model configuration in {where} must be an object", fix)
    problems = config_problems(config)
    if problems:
        raise CheckpointError(file, f"invalid model configuration in {where}: " + "; ".join(problems), fix)
    shapes, _ = infer_config(state_dict, file)
    mismatches = tensor_mismatches(config, shapes, state_dict)
    if mismatches:
        raise CheckpointError(file, f"{where} does not match the weights: " + "; ".join(mismatches), fix)
    problems = class_name_problems(class_names, shapes["num_classes"])
    if problems:
        raise CheckpointError(
            file,
            f"{where}: " + "; ".join(problems),
            "list one name per output of the head, or remove class_names",
        )
    return None if class_names is None else [printable(name) for name in class_names]


__all__ = ["check_model_config", "class_name_problems", "config_problems", "printable", "tensor_mismatches"]
