"""Apply a checkpoint to a model: build it from the checkpoint's configuration, adapt the tensors, load.

:func:`load_pretrained` reads any source (:mod:`.sources` finds and translates it), builds the model class
from the checkpoint's configuration plus the caller's overrides, then applies the tensors:

- a different ``num_classes`` replaces the head (logged); a different ``num_frames`` / ``image_size``
  resizes ``time_embed`` / ``pos_embed`` once, with the forward pass's own interpolation (nearest by default,
  like the official model; ``embed_interpolation="linear"`` for (bi)linear), so the model behaves exactly like
  the checkpoint run at the new geometry;
- an ImageNet ViT initialises a video model as in the paper: temporal attention and ``temporal_norm1`` copy
  the image attention and ``norm1``; ``temporal_fc`` and ``time_embed`` are zero, so at step 0 the video
  model is the image model applied per frame; the image head is dropped unless asked for;
- an attention swap (``attention="performer"`` ...) runs the softmax weights with FAVOR+ directly (fresh
  random features) or adds Fastformer's parameters with their documented initialisation;
- anything else missing or unexpected is an error listing the keys by name. What was loaded, created,
  dropped and interpolated is returned as a :class:`LoadReport` (``model.load_report``).

The model class is a parameter (FastTimeSformer passes itself through :class:`.pretrained.PretrainedMixin`),
so this floor never imports the model: it relies only on the model's ``config``, ``state_dict``,
``num_classes``, ``num_frames``, ``grid``, ``embed_interpolation`` and ``reset_classifier``.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fast_timesformer.attention import ATTENTIONS
from fast_timesformer.checkpoints.files import CheckpointError
from fast_timesformer.checkpoints.preprocessing import Preprocessing, default_preprocessing
from fast_timesformer.checkpoints.saving import model_preprocessing
from fast_timesformer.checkpoints.sources import Checkpoint, read_checkpoint
from fast_timesformer.checkpoints.validation import config_problems
from fast_timesformer.errors import OptionError

logger = logging.getLogger(__name__)

_INIT_WEIGHTS: ContextVar[bool] = ContextVar("fast_timesformer_init_weights", default=True)


@contextmanager
def no_init_weights() -> Iterator[None]:
    """Models built inside this context skip their random initialisation (their tensors are about to be
    loaded). Thread- and task-safe: a context variable, not a patched class."""
    token = _INIT_WEIGHTS.set(False)
    try:
        yield
    finally:
        _INIT_WEIGHTS.reset(token)


def init_weights_enabled() -> bool:
    """False inside :func:`no_init_weights`; models consult it before their random initialisation."""
    return _INIT_WEIGHTS.get()


#: constructor arguments that change which tensors exist or their shapes (a mismatch is another architecture).
ARCHITECTURE_KEYS = ("dim", "depth", "heads", "dim_head", "patch_size", "channels", "mlp_ratio",
                     "attention_type", "pos_emb", "qkv_bias")  # fmt: skip
_ATTENTION_OVERRIDES = ("attention", "time_attention", "space_attention")
_EXTRA_TENSOR = re.compile(
    r"^(blocks\.\d+\.(?:temporal_)?attn)\.(projection_matrix|feature_seed|feature_draws|calls_since_redraw"
    r"|w_q|w_k|transform\.weight|transform\.bias)$"
)  # the tensors one mechanism has and another lacks
_PERFORMER_BUFFERS = ("projection_matrix", "feature_seed", "feature_draws", "calls_since_redraw")
_FASTFORMER_TENSORS = ("w_q", "w_k", "transform.weight", "transform.bias")


@dataclass
class LoadReport:
    """What a load did, key by key (model names)."""

    source: str  #: what was asked for (path or hub id)
    file: str  #: the file the tensors came from
    format: str  #: "fast-timesformer" | "huggingface" | "official" | "vit"
    loaded: list[str] = field(default_factory=list)  #: model keys filled from the checkpoint
    renamed: int = 0  #: how many checkpoint names were translated to ours
    created: dict[str, str] = field(default_factory=dict)  #: model key -> how it was initialised
    dropped: dict[str, str] = field(default_factory=dict)  #: checkpoint key -> why it was not used
    interpolated: dict[str, str] = field(default_factory=dict)  #: key -> "old shape -> new shape (mode)"
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors from {self.file} ({self.format}, {self.renamed} renamed)"
        ]
        for title, entries in (
            ("created", self.created),
            ("dropped", self.dropped),
            ("interpolated", self.interpolated),
        ):
            for what, keys in _group(entries).items():
                lines.append(f"  {title}: {', '.join(keys)} -- {what}")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _group(entries: Mapping[str, str]) -> dict[str, list[str]]:
    """Group keys by reason, writing block indices as * so a 12-block model gives one line per reason."""
    grouped: dict[str, list[str]] = {}
    for key, reason in entries.items():
        pattern = re.sub(r"^blocks\.\d+\.", "blocks.*.", key)
        keys = grouped.setdefault(reason, [])
        if pattern not in keys:
            keys.append(pattern)
    return grouped


# -- loading -----------------------------------------------------------------------------------------------
def load_pretrained(
    model_class: type[nn.Module],
    path: str | os.PathLike,
    *,
    return_report: bool = False,
    keep_image_head: bool = False,
    source_format: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    **overrides: Any,
) -> Any:
    """Build a ``model_class`` (FastTimeSformer) from a checkpoint of any supported kind (detected automatically).

    Args:
        model_class: the class to build; its constructor takes the checkpoint's configuration as keywords.
        path: a folder written by :func:`save_pretrained`; a Hugging Face Timesformer or ViT folder; a hub id
            such as ``facebook/timesformer-base-finetuned-k400`` (needs huggingface_hub and the network); an
            official ``.pyth`` / ``.pth``; or a ``.safetensors`` / ``.pth`` ImageNet ViT state dict.
        return_report: also return the :class:`LoadReport` (always available as ``model.load_report``).
        keep_image_head: for ImageNet ViT sources, keep the image classifier (its class count must equal
            ``num_classes``) instead of a fresh head.
        source_format: force how a bare file is read ("official" or "vit"); see :func:`checkpoints.read_checkpoint`.
        revision, cache_dir: for hub ids (``huggingface_hub.snapshot_download``).
        **overrides: constructor arguments of :class:`FastTimeSformer` replacing the checkpoint's, e.g.
            ``num_classes=174``, ``num_frames=16``, ``image_size=448``, ``attention="performer"``,
            ``attention_kwargs={"nb_features": 256}``. Changing the architecture (depth, dim, patch size,
            attention type, ...) is an error. For ViT sources, ``num_frames`` (default 8), ``attention_type``
            (default divided) and ``num_classes`` (default 400) choose the video model.

    Returns the model in eval mode, with ``class_names``, ``preprocessing`` and ``load_report`` attributes.
    """
    ckpt = read_checkpoint(path, source_format=source_format, revision=revision, cache_dir=cache_dir)
    config = _target_config(model_class, ckpt, overrides, keep_image_head=keep_image_head)
    try:
        model = _build(model_class, config)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            ckpt.file, f"cannot build the model from this configuration ({error})"
        ) from None
    report = _apply(model, ckpt, source=str(path), keep_image_head=keep_image_head)
    _attach_metadata(model, ckpt, report)
    model.eval()
    return (model, report) if return_report else model


def load_weights(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    keep_image_head: bool = False,
    source_format: str | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> LoadReport:
    """Load a checkpoint of any supported kind into an existing model (same rules as :func:`from_pretrained`).

    The model's architecture must match the checkpoint's; its head, frame count, image size and attention
    mechanism may differ (head replaced, embeddings interpolated, attention swapped).
    """
    ckpt = read_checkpoint(path, source_format=source_format, revision=revision, cache_dir=cache_dir)
    _check_architecture(ckpt, model.config, fix="build the model with {key}={theirs!r}")
    report = _apply(model, ckpt, source=str(path), keep_image_head=keep_image_head)
    model.load_report = report
    return report


def swap_attention(
    model: nn.Module,
    *,
    attention: str | None = None,
    time_attention: str | None = None,
    space_attention: str | None = None,
    attention_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """A copy of ``model`` with other attention mechanisms, sharing none of its memory.

    Softmax weights run under FAVOR+ directly (fresh random features); Fastformer parameters are created
    with their documented initialisation. Example: ``swap_attention(model, attention="performer",
    attention_kwargs={"nb_features": 256})``.
    """
    overrides = {key: value for key, value in dict(
        attention=attention, time_attention=time_attention, space_attention=space_attention,
        attention_kwargs=attention_kwargs,
    ).items() if value is not None}  # fmt: skip
    ckpt = Checkpoint(
        file=Path(f"<in-memory {type(model).__name__}>"), kind="fast-timesformer",
        state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()}, config=dict(model.config),
        class_names=getattr(model, "class_names", None), preprocessing=model_preprocessing(model).to_dict(),
    )  # fmt: skip
    new = _build(type(model), _target_config(type(model), ckpt, overrides, keep_image_head=False))
    report = _apply(new, ckpt, source=ckpt.file.name, keep_image_head=False)
    _attach_metadata(new, ckpt, report)
    device = next(model.parameters()).device
    return new.to(device).train(model.training)


# -- applying a checkpoint to a model ----------------------------------------------------------------------
def _target_config(
    model_class: type[nn.Module], ckpt: Checkpoint, overrides: Mapping[str, Any], *, keep_image_head: bool
) -> dict[str, Any]:
    """The checkpoint's constructor arguments with the caller's overrides, refusing a different architecture."""
    model_args = tuple(inspect.signature(model_class.__init__).parameters)[1:]
    unknown = sorted(set(overrides) - set(model_args))
    if unknown:
        raise TypeError(f"unknown arguments {unknown}; {model_class.__name__} accepts {list(model_args)}")
    config = dict(ckpt.config)
    if ckpt.kind == "vit":  # an image model: the caller chooses the video model around it
        config.update(num_frames=8, attention_type="divided_space_time")
        if not keep_image_head:
            config["num_classes"] = 400
    unknown = sorted(set(config) - set(model_args))
    if unknown:
        raise CheckpointError(
            ckpt.file, f"the configuration has unknown arguments {unknown}", "upgrade fast-timesformer"
        )
    problems = config_problems(overrides)
    if problems:
        raise OptionError("invalid argument(s) to build the model: " + "; ".join(problems))
    _check_architecture(
        ckpt, {**config, **overrides}, fix="drop the {key}= override, or use a checkpoint with {key}={ours!r}"
    )
    if "heads" in overrides and "dim_head" not in overrides and "dim_head" in ckpt.assumed:
        config["dim_head"] = config["heads"] * config["dim_head"] // overrides["heads"]
    if "attention" in overrides:  # a new mechanism everywhere unless per-layer choices are given too
        config.update(time_attention=None, space_attention=None)
    config.update(overrides)
    if any(key in overrides for key in _ATTENTION_OVERRIDES) and "attention_kwargs" not in overrides:
        in_use = {config.get("space_attention") or config["attention"]}
        if config.get("attention_type", "divided_space_time") == "divided_space_time":
            in_use.add(config.get("time_attention") or config["attention"])
        valid = {key for name in in_use if name in ATTENTIONS for key in ATTENTIONS[name].extra_kwargs}
        config["attention_kwargs"] = {
            k: v for k, v in (config.get("attention_kwargs") or {}).items() if k in valid
        }
    return config


def _check_architecture(ckpt: Checkpoint, config: Mapping[str, Any], *, fix: str) -> None:
    for key in ARCHITECTURE_KEYS:
        if key not in ckpt.config or key not in config or key in ckpt.assumed:
            continue
        theirs, ours = ckpt.config[key], config[key]
        if key == "dim_head" and (theirs is None or ours is None):
            continue
        same = math.isclose(theirs, ours) if key == "mlp_ratio" else theirs == ours
        if not same:
            raise CheckpointError(
                ckpt.file, f"checkpoint of another architecture: it has {key}={theirs!r}, the model {key}={ours!r}",
                fix.format(key=key, theirs=theirs, ours=ours),
            )  # fmt: skip


def _apply(model: nn.Module, ckpt: Checkpoint, *, source: str, keep_image_head: bool) -> LoadReport:
    """Adapt ``ckpt.state_dict`` to ``model`` (head, embeddings, image->video, attention swap), load strictly."""
    report = LoadReport(
        source=source, file=str(ckpt.file), format=ckpt.kind, renamed=ckpt.renamed, dropped=dict(ckpt.dropped),
        notes=list(ckpt.notes),
    )  # fmt: skip
    state = dict(ckpt.state_dict)
    expected = model.state_dict()
    allowed_missing: set[str] = set()

    _swap_attention_tensors(model, state, expected, report, allowed_missing)
    _adapt_head(model, ckpt, state, report, allowed_missing, keep_image_head=keep_image_head)
    _interpolate_embeddings(model, ckpt, state, report)
    if ckpt.kind == "vit":
        _image_to_video(state, expected, report)
    missing = [k for k in expected if k not in state and k not in allowed_missing]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise CheckpointError(
            ckpt.file, "the checkpoint does not match the model: "
            + "; ".join(part for part in (
                f"missing {len(missing)} key(s): {_names(missing)}" if missing else "",
                f"unexpected {len(unexpected)} key(s): {_names(unexpected)}" if unexpected else "",
            ) if part), "check that the checkpoint and the model configuration belong together",
        )  # fmt: skip
    wrong = [f"{k}: {tuple(v.shape)} in the checkpoint, {tuple(expected[k].shape)} in the model"
             for k, v in state.items() if v.shape != expected[k].shape]  # fmt: skip
    if wrong:
        raise CheckpointError(ckpt.file, "checkpoint of another architecture: " + "; ".join(wrong))
    result = model.load_state_dict(state, strict=False)
    leftover = set(result.missing_keys) - allowed_missing
    if leftover or result.unexpected_keys:  # cannot happen after the checks above; guard against drift
        raise CheckpointError(
            ckpt.file, f"load left {sorted(leftover)} missing, {result.unexpected_keys} unexpected"
        )
    fresh = allowed_missing & set(result.missing_keys)  # created by the model, not by us: initialise them
    if fresh & {"head.weight", "head.bias"}:
        model.reset_classifier(model.num_classes)
    for owner in sorted(
        {m.group(1) for k in fresh if (m := _EXTRA_TENSOR.match(k)) and m.group(2) in _FASTFORMER_TENSORS}
    ):
        model.get_submodule(owner).reset_fastformer_parameters()
    report.loaded = sorted(k for k in state if k not in report.created)
    return report


def _has_module(model: torch.nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
    except AttributeError:
        return False
    return True


def _names(keys: list[str], limit: int = 40) -> str:
    return ", ".join(keys[:limit]) + (f" ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _build(model_class: type[nn.Module], config: Mapping[str, Any]) -> nn.Module:
    """Build without the random initialisation (ViT-B: 3.8 s instead of 12.8 s here): every tensor is then
    either loaded (the load is strict) or initialised by :func:`_apply` as documented (fresh head, Fastformer
    parameters); performer features are drawn by the attention constructor."""
    with no_init_weights():
        return model_class(**config)


def _swap_attention_tensors(model, state, expected, report, allowed_missing) -> None:
    """Drop tensors of a mechanism the model no longer uses; let the new mechanism create its own."""
    warned = False
    for key in list(state):
        match = _EXTRA_TENSOR.match(key)
        if key in expected or not match or not _has_module(model, match.group(1)):
            continue  # (a tensor without a home is left for the strict check to name)
        state.pop(key)
        kind = "performer feature buffer" if match.group(2) in _PERFORMER_BUFFERS else "fastformer parameter"
        report.dropped[key] = f"{kind}, not used by {type(model.get_submodule(match.group(1))).__name__}"
        if kind == "fastformer parameter" and not warned:
            logger.warning(
                "%s: fastformer parameters (w_q, w_k, transform) are dropped by the attention swap",
                report.file,
            )
            warned = True
    extra = [k for k in expected if _EXTRA_TENSOR.match(k)]
    for key in extra:
        owner, name = _EXTRA_TENSOR.match(key).groups()
        if name == "projection_matrix" and key in state and state[key].shape != expected[key].shape:
            for buffer in _PERFORMER_BUFFERS:  # nb_features changed: this layer keeps its own fresh features
                if state.pop(f"{owner}.{buffer}", None) is not None:
                    report.dropped[f"{owner}.{buffer}"] = "performer features of another nb_features"
    for key in extra:
        name = _EXTRA_TENSOR.match(key).group(2)
        if key not in state:
            allowed_missing.add(key)
            report.created[key] = (
                "fresh random features (FAVOR+ runs the softmax weights directly)" if name in _PERFORMER_BUFFERS
                else "Fastformer initialisation (w_q, w_k, transform.weight ~ trunc-normal 0.02, transform.bias 0)"
            )  # fmt: skip


def _adapt_head(model, ckpt, state, report, allowed_missing, *, keep_image_head: bool) -> None:
    if "head.weight" not in state:
        if model.num_classes > 0:
            allowed_missing.update({"head.weight", "head.bias"})
            for key in ("head.weight", "head.bias"):
                report.created[key] = "fresh head (the checkpoint has none)"
        return
    theirs = state["head.weight"].shape[0]
    if ckpt.kind == "vit" and keep_image_head:
        if theirs != model.num_classes:
            raise CheckpointError(
                ckpt.file, f"keep_image_head=True, but the image head has {theirs} classes and the model "
                f"{model.num_classes}", f"pass num_classes={theirs}, or drop keep_image_head",
            )  # fmt: skip
        return
    if ckpt.kind != "vit" and theirs == model.num_classes:
        return
    why = "image classifier (a video model gets a fresh head)" if ckpt.kind == "vit" else "other class count"
    for key in ("head.weight", "head.bias"):
        if key in state:
            report.dropped[key] = f"{why}: {theirs} classes"
            state.pop(key)
    if model.num_classes > 0:
        allowed_missing.update({"head.weight", "head.bias"})
        for key in ("head.weight", "head.bias"):
            report.created[key] = f"fresh head for {model.num_classes} classes (fine-tune it)"
    if ckpt.kind != "vit":
        logger.warning(
            "%s: head replaced: the checkpoint has %d classes, the model %d; the new head is freshly initialised",
            ckpt.file, theirs, model.num_classes,
        )  # fmt: skip


def _interpolate_embeddings(model: nn.Module, ckpt: Checkpoint, state, report) -> None:
    """Resize pos_embed / time_embed once, exactly as the forward pass would for the new geometry."""
    mode = model.embed_interpolation
    if (
        "pos_embed" in state
        and hasattr(model, "pos_embed")
        and state["pos_embed"].shape != model.pos_embed.shape
    ):
        old = state["pos_embed"]
        size = ckpt.config.get("image_size", 224)
        h, w = (size, size) if isinstance(size, int) else size
        grid = (h // ckpt.config["patch_size"], w // ckpt.config["patch_size"])
        if grid[0] * grid[1] != old.shape[1] - 1:
            side = math.isqrt(old.shape[1] - 1)
            grid = (side, (old.shape[1] - 1) // max(side, 1))
        patches = old[:, 1:].reshape(1, *grid, old.shape[-1]).permute(0, 3, 1, 2).float()  # (1, D, H0, W0)
        patches = F.interpolate(patches, size=model.grid, mode="nearest" if mode == "nearest" else "bilinear")
        state["pos_embed"] = torch.cat([old[:, :1].float(), patches.flatten(2).transpose(1, 2)], dim=1)
        report.interpolated["pos_embed"] = (
            f"{tuple(old.shape)} -> {tuple(state['pos_embed'].shape)} ({mode}, grid {grid} -> {model.grid})"
        )
    if (
        "time_embed" in state
        and hasattr(model, "time_embed")
        and state["time_embed"].shape != model.time_embed.shape
    ):
        old = state["time_embed"]
        new = F.interpolate(old.float().transpose(1, 2), size=model.num_frames, mode=mode).transpose(1, 2)
        state["time_embed"] = new
        report.interpolated["time_embed"] = f"{tuple(old.shape)} -> {tuple(new.shape)} ({mode})"


def _image_to_video(state, expected, report) -> None:
    """ImageNet ViT -> TimeSformer (paper, section 4): temporal layers from the spatial ones, zero time."""
    for key in expected:
        if key in state:
            continue
        spatial = re.sub(r"\.temporal_attn\.", ".attn.", key).replace(".temporal_norm1.", ".norm1.")
        if spatial != key and spatial in state:
            state[key] = state[spatial].clone()
            report.created[key] = "copied from the image model's spatial attention / norm1"
        elif key == "time_embed" or ".temporal_fc." in key:
            state[key] = torch.zeros_like(expected[key])
            report.created[key] = "zero: at step 0 the video model is the image model applied per frame"


def _attach_metadata(model: nn.Module, ckpt: Checkpoint, report: LoadReport) -> None:
    """class_names / preprocessing / load_report attributes, kept consistent with the built model."""
    names = ckpt.class_names if ckpt.class_names and len(ckpt.class_names) == model.num_classes else None
    if ckpt.class_names and names is None:
        report.notes.append("class_names dropped: the head was replaced")
    default = default_preprocessing(model)
    fields = (
        {} if ckpt.kind == "vit" else dict(ckpt.preprocessing)
    )  # an image model's does not describe clips
    try:  # the stored fields as written (types, ranges), before any arithmetic on them
        Preprocessing.from_dict({k: v for k, v in fields.items() if k != "num_frames"}, base=default)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            ckpt.file, f"invalid preprocessing ({error})", "fix or remove the field in config.json"
        ) from None
    crop = default.crop_size
    if (
        fields.get("crop_size", crop) != crop
    ):  # the model was resized: keep the stored short side / crop ratio
        fields["short_side"] = round(
            (fields.get("short_side") or fields["crop_size"]) * crop / fields["crop_size"]
        )
        fields["crop_size"] = crop
    fields["num_frames"] = model.num_frames
    try:
        prep = Preprocessing.from_dict(fields, base=default)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            ckpt.file, f"invalid preprocessing ({error})", "fix or remove the field in config.json"
        ) from None
    model.class_names, model.preprocessing, model.load_report = names, prep, report
    model.task = ckpt.task


__all__ = [
    "LoadReport",
    "init_weights_enabled",
    "load_pretrained",
    "load_weights",
    "no_init_weights",
    "swap_attention",
]
