"""Our weights folder, written atomically: ``model.safetensors`` + ``config.json``.

    model.safetensors   every tensor of ``model.state_dict()`` (performer feature buffers included)
    config.json         {"format": "fast-timesformer", "format_version": 1, "architecture": "FastTimeSformer",
                         "model": <every constructor argument>, "preprocessing": {mean, std, num_frames, ...},
                         "class_names": [...] | null}

Both files get ordinary permissions (readable by a serving process) and replace the old ones only once both
are written (:func:`~fast_timesformer.checkpoints.files.atomic_write`). Reading is in :mod:`.sources`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints.files import atomic_write
from fast_timesformer.checkpoints.preprocessing import Preprocessing, default_preprocessing
from fast_timesformer.checkpoints.sources import FORMAT_NAME, FORMAT_VERSION


def model_preprocessing(model: nn.Module) -> Preprocessing:
    """The model's ``preprocessing`` attribute (a :class:`Preprocessing` or a dict of its fields), else the
    default protocol for its geometry."""
    prep = getattr(model, "preprocessing", None)
    if isinstance(prep, Preprocessing):
        return prep
    return default_preprocessing(model).replace(**prep) if prep else default_preprocessing(model)


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    preprocessing: Preprocessing | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    task: Mapping[str, Any] | None = None,
) -> None:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed), atomically.

    Args:
        model: the model to save (a FastTimeSformer: its ``config`` holds every constructor argument).
        directory: target folder; existing files of the same names are replaced only once both are written.
        preprocessing: a :class:`Preprocessing`, or fields replacing those of the model's own
            ``preprocessing`` (set when it was loaded), else of :func:`default_preprocessing`.
        class_names: one name per output (default: the model's ``class_names`` attribute, if any).
        task: ``{"type": "multilabel", "thresholds": [...]}`` for a multi-label model (default: the model's
            ``task`` attribute, set when it was loaded); single-label models write none.
    """
    try:
        from safetensors.torch import save_file
    except ImportError:
        raise ImportError(
            "saving weights needs safetensors: pip install 'fast-timesformer[weights]'"
        ) from None
    if not isinstance(model, nn.Module) or not isinstance(getattr(model, "config", None), dict):
        raise TypeError(f"expected a FastTimeSformer, got {type(model).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} exists and is not a folder: pass a folder path")
    directory.mkdir(parents=True, exist_ok=True)
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    if names is not None and len(names) != model.num_classes:
        raise ValueError(f"got {len(names)} class_names for a model with num_classes={model.num_classes}")
    prep = model_preprocessing(model)
    if isinstance(preprocessing, Preprocessing):
        prep = preprocessing
    elif preprocessing:
        prep = prep.replace(**preprocessing)
    meta = {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "architecture": "FastTimeSformer",
        "model": model.config, "preprocessing": prep.to_dict(),
        "class_names": list(names) if names is not None else None,
    }  # fmt: skip
    task = task if task is not None else getattr(model, "task", None)
    if task is not None and task.get("type") == "multilabel":
        thresholds = task.get("thresholds")
        if thresholds is not None and len(thresholds) != model.num_classes:
            raise ValueError(
                f"got {len(thresholds)} thresholds for a model with num_classes={model.num_classes}"
            )
        meta["task"] = {"type": "multilabel", "thresholds": None if thresholds is None else list(thresholds)}
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    tensors = _standalone_tensors(model.state_dict())
    atomic_write(  # weights first: a crash between the two renames leaves the old config's folder loadable
        (directory / "model.safetensors", lambda p: save_file(tensors, p, metadata={"format": "pt"})),
        (directory / "config.json", lambda p: p.write_text(text, encoding="utf-8")),
    )


def _standalone_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU tensors that own exactly their memory: safetensors refuses shared and needs contiguous data."""
    seen: set[int] = set()
    out = {}
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu()
        storage = tensor.untyped_storage()
        whole = tensor.storage_offset() == 0 and storage.nbytes() == tensor.numel() * tensor.element_size()
        if storage.data_ptr() in seen or not tensor.is_contiguous() or not whole:
            tensor = tensor.clone(memory_format=torch.contiguous_format)  # tied, strided or a slice
        seen.add(tensor.untyped_storage().data_ptr())
        out[name] = tensor
    return out


__all__ = ["model_preprocessing", "save_pretrained"]
