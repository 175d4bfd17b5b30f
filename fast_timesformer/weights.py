"""Save and load FastTimeSformer weights; start from official, Hugging Face or ImageNet ViT checkpoints.

The functions users call, bound to :class:`~fast_timesformer.model.FastTimeSformer`. The machinery --
safe reading, source detection, name maps, the rules for fitting a checkpoint to a model, our folder format
-- is in :mod:`fast_timesformer.checkpoints`, which does not know the model class.

Our format is a folder with two files, written atomically (and readable by other users) and read without
pickle: ``model.safetensors`` and ``config.json`` (every constructor argument, the :class:`Preprocessing`,
the class names). Example::

    model = from_pretrained("facebook/timesformer-base-finetuned-k400", num_classes=10)
    save_pretrained(model, "weights/mine", class_names=names)
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from fast_timesformer.checkpoints import (
    CheckpointError,
    LoadReport,
    Preprocessing,
    default_preprocessing,
    load_weights,
    no_init_weights,
    save_pretrained,
    swap_attention,
)
from fast_timesformer.checkpoints.files import check_finite, read_torch_file
from fast_timesformer.checkpoints.validation import check_model_config
from fast_timesformer.model import FastTimeSformer

logger = logging.getLogger(__name__)


def from_pretrained(path: str | os.PathLike, **kwargs: Any) -> Any:
    """Build a FastTimeSformer from a checkpoint of any supported kind (detected automatically).

    Args:
        path: a folder written by :func:`save_pretrained`; a Hugging Face Timesformer or ViT folder; a hub id
            such as ``facebook/timesformer-base-finetuned-k400`` (needs huggingface_hub and the network); an
            official ``.pyth`` / ``.pth``; or a ``.safetensors`` / ``.pth`` ImageNet ViT state dict.
        **kwargs: ``return_report`` (also return the :class:`LoadReport`), ``keep_image_head``,
            ``source_format`` ("official" or "vit" for a bare file), ``revision`` / ``cache_dir`` (hub ids),
            and constructor arguments replacing the checkpoint's, e.g. ``num_classes=174``,
            ``num_frames=16``, ``attention="performer"``; see
            :func:`fast_timesformer.checkpoints.load_pretrained`.

    Returns the model in eval mode, with ``class_names``, ``preprocessing`` and ``load_report`` attributes.
    """
    return FastTimeSformer.from_pretrained(path, **kwargs)


def convert(src: str | os.PathLike, dst: str | os.PathLike, **options: Any) -> Path:
    """Write ``src`` (any source :func:`from_pretrained` reads) to the folder ``dst`` in our format.

    ``options`` are :func:`from_pretrained`'s (overrides, ``source_format``, ``keep_image_head`` ...).
    Returns the folder. The result loads with no pickle involved.
    """
    options.pop("return_report", None)
    model = from_pretrained(src, **options)
    save_pretrained(model, dst)
    logger.info("converted %s -> %s\n%s", src, dst, model.load_report)
    return Path(dst)


def export_checkpoint(checkpoint: str | os.PathLike, directory: str | os.PathLike) -> Path:
    """Write the model of a Lightning checkpoint written by ``fast-timesformer fit`` as a weights folder.

    The checkpoint is read with ``weights_only=True``; it carries the model configuration, class names and
    preprocessing under its ``"fast_timesformer"`` key (saved there by the training module).
    """
    state = read_torch_file(Path(checkpoint))
    extra = state.get("fast_timesformer") if isinstance(state, dict) else None
    if not extra or "model_config" not in extra:
        raise CheckpointError(
            checkpoint, "not a checkpoint written by `fast-timesformer fit` (no model configuration inside)",
            "for other checkpoints use `fast-timesformer convert`",
        )  # fmt: skip
    if not isinstance(state.get("state_dict"), dict):
        raise CheckpointError(
            checkpoint, "no state_dict inside", "pass a checkpoint written by `fast-timesformer fit`"
        )
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    check_finite(weights, Path(checkpoint))
    names = check_model_config(
        extra["model_config"], weights, file=checkpoint, class_names=extra.get("class_names"),
        where="the checkpoint's model configuration",
    )  # fmt: skip
    with no_init_weights():  # every tensor is loaded strictly below
        model = FastTimeSformer(**extra["model_config"])
    model.load_state_dict(weights, strict=True)
    task = (
        {"type": "multilabel", "thresholds": extra.get("thresholds")}
        if extra.get("task") == "multilabel"
        else None
    )
    save_pretrained(model, directory, preprocessing=extra.get("preprocessing"), class_names=names, task=task)
    return Path(directory)


__all__ = [
    "CheckpointError",
    "LoadReport",
    "Preprocessing",
    "convert",
    "default_preprocessing",
    "export_checkpoint",
    "from_pretrained",
    "load_weights",
    "save_pretrained",
    "swap_attention",
]
