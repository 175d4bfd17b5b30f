"""Deployment: a weights folder or a training checkpoint -> an ONNX file or a ``torch.export`` program.

    export_model(source, "model.onnx", format="onnx")          # onnxruntime, any ONNX runtime
    export_model(source, "model.pt2", format="torch-export")   # torch.export.load(...).module()

What the exported graph takes and gives: ``video`` float32 (batch, T, C, H, W) (or (batch, C, T, H, W) for a
model with ``input_layout="bcthw"``) already normalised, -> ``logits`` float32 (batch, classes). The batch is
dynamic; **frames and frame size are fixed at export** to the preprocessing's ``num_frames`` and
``crop_size``: the model resizes its learned embeddings when the geometry differs from the configured one,
a Python branch on a shape that a traced graph would bake in (a torchscript-traced ONNX file fed another
frame count would be silently wrong), so the export pins them and says so. No mask input (every frame real).

Every export is verified before the file is put in place: the exported graph (run by onnxruntime, or the
reloaded ``.pt2``) and eager PyTorch score the same random clips at batch 1 and 3 (the dynamic batch
exercised), and a largest logit difference above ``tolerance`` (1e-4, float32) raises :class:`ExportError`
and leaves no file behind. Everything ``classify`` needs travels *inside* the file: the ONNX
``metadata_props`` key ``fast_timesformer`` (and a ``.pt2``'s extra file ``fast_timesformer.json``) hold the
JSON of the weights folder's ``config.json`` (model arguments, preprocessing, class names) plus the input
description. Needs the ``export`` extra (onnx, onnxscript, onnxruntime) for ONNX; ``torch.export`` is torch.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints.files import atomic_write
from fast_timesformer.checkpoints.saving import model_preprocessing
from fast_timesformer.checkpoints.sources import FORMAT_NAME, FORMAT_VERSION
from fast_timesformer.errors import FastTimeSformerError, OptionError
from fast_timesformer.weights import export_checkpoint, from_pretrained

FORMATS = ("weights", "onnx", "torch-export")
EXPORTERS = ("dynamo", "torchscript")
METADATA_KEY = "fast_timesformer"  # ONNX metadata_props key / .pt2 extra file stem
DEFAULT_TOLERANCE = 1e-4  # float32: the exported graph reorders some sums, never more than ~1e-6 here
DEFAULT_OPSET = 18  # the dynamo exporter's own default; onnxruntime >= 1.14 runs it
VERIFY_BATCHES = (1, 3)  # two batch sizes, neither the one traced with (2): the dynamic batch is exercised


class ExportError(FastTimeSformerError, RuntimeError):
    """A model could not be exported, or its export does not reproduce eager PyTorch."""


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and how close the export is to eager PyTorch."""

    path: Path
    format: str
    input_shape: tuple[Any, ...] = ()  # ("batch", T, C, H, W): batch dynamic, the rest fixed
    max_abs_diff: float | None = None  # largest |logit difference| over VERIFY_BATCHES (None: weights)
    tolerance: float = DEFAULT_TOLERANCE
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the command line, e.g. ``wrote m.onnx (onnx, input (batch, 8, 3, 224, 224)) ...``."""
        if self.format == "weights":
            return f"wrote {self.path}/model.safetensors and config.json"
        shape = ", ".join(str(s) for s in self.input_shape)
        return (
            f"wrote {self.path} ({self.format}, input ({shape}), batch dynamic, frames and size fixed); "
            f"verified against eager PyTorch: max logit difference {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:.0e}, batches {list(VERIFY_BATCHES)}) in {self.seconds:.1f} s"
        )


def load_source(source: str | os.PathLike) -> nn.Module:
    """The model of a weights folder (or any :func:`~fast_timesformer.weights.from_pretrained` source) or of a
    ``.ckpt`` written by ``fast-timesformer fit`` (read with ``weights_only=True``), in eval mode."""
    path = Path(source)
    if not path.exists():
        raise ExportError(f"{source}: no such file or folder: pass a weights folder or a .ckpt from `fit`")
    if path.is_file() and path.suffix == ".ckpt":
        with tempfile.TemporaryDirectory() as folder:  # the checkpoint's own safe path, then our folder
            export_checkpoint(path, folder)
            return from_pretrained(folder).eval()
    return from_pretrained(path).eval()


def export_model(
    source: str | os.PathLike | nn.Module,
    output: str | os.PathLike,
    *,
    format: str = "onnx",
    exporter: str = "dynamo",
    opset: int = DEFAULT_OPSET,
    tolerance: float = DEFAULT_TOLERANCE,
    seed: int = 0,
) -> ExportResult:
    """Export ``source`` to ``output`` and verify it against eager PyTorch (see the module docstring).

    Args:
        source: a weights folder, a ``.ckpt`` from ``fit`` or a loaded FastTimeSformer.
        output: the folder (``weights``), ``.onnx`` file (``onnx``) or ``.pt2`` file (``torch-export``).
        format: "weights", "onnx" or "torch-export".
        exporter: ONNX only: "dynamo" (``torch.export`` based, the default of torch >= 2.9) or "torchscript"
            (the older tracer: faster to export, deprecated by PyTorch).
        opset: ONNX opset version.
        tolerance: largest accepted |logit difference| to eager PyTorch (float32).
        seed: seed of the random verification clips.
    """
    if format not in FORMATS:
        raise OptionError(f"unknown export format {format!r}: choose one of {list(FORMATS)}")
    if exporter not in EXPORTERS:
        raise OptionError(f"unknown ONNX exporter {exporter!r}: choose one of {list(EXPORTERS)}")
    if format == "weights":
        if isinstance(source, nn.Module) or Path(source).suffix != ".ckpt":
            raise OptionError(
                "--format weights turns a .ckpt from `fit` into a folder; use `convert` otherwise"
            )
        return ExportResult(path=export_checkpoint(source, output), format="weights")
    output = Path(output)
    suffix = ".onnx" if format == "onnx" else ".pt2"
    if output.suffix != suffix:
        raise OptionError(
            f"--format {format} writes a {suffix} file, got output {str(output)!r}: name it *{suffix}"
        )
    if output.is_dir():
        raise OptionError(f"{output} is a folder: pass a file path ending in {suffix}")
    model = (source if isinstance(source, nn.Module) else load_source(source)).float().eval()
    started = time.perf_counter()
    example = _example_inputs(model, batches=(2, *VERIFY_BATCHES), seed=seed)
    metadata = json.dumps(export_metadata(model), allow_nan=False)
    with tempfile.TemporaryDirectory(dir=output.parent if output.parent.exists() else None) as folder:
        staged = Path(folder) / output.name
        with torch.no_grad():  # the graph of inference: eval-mode fast paths, no autograd bookkeeping
            if format == "onnx":
                _export_onnx(model, example[0], staged, exporter=exporter, opset=opset, metadata=metadata)
                run = _onnx_runner(staged)
            else:
                _export_program(model, example[0], staged, metadata=metadata)
                run = _program_runner(staged)
            difference = max(float((run(x) - model(x)).abs().max()) for x in example[1:])
        if not difference <= tolerance:  # also catches NaN
            raise ExportError(
                f"the {format} export of {_describe(model)} differs from eager PyTorch by {difference:.3e} "
                f"(tolerance {tolerance:.0e}): not written. Report it with the model's config.json"
            )
        output.parent.mkdir(parents=True, exist_ok=True)
        atomic_write((output, lambda p: shutil.copyfile(staged, p)))
    return ExportResult(
        path=output, format=format, input_shape=("batch", *example[0].shape[1:]), max_abs_diff=difference,
        tolerance=tolerance, seconds=time.perf_counter() - started,
    )  # fmt: skip


def export_metadata(model: nn.Module) -> dict[str, Any]:
    """What travels with an export: the weights folder's config.json plus the exported input's description."""
    prep = model_preprocessing(model)
    names = getattr(model, "class_names", None)
    frames_first = model.config.get("input_layout", "btchw") == "btchw"
    channels = model.config.get("channels", 3)
    shape = ["batch", prep.num_frames, channels, prep.crop_size, prep.crop_size]
    if not frames_first:
        shape[1], shape[2] = channels, prep.num_frames
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION, "architecture": "FastTimeSformer",
        "model": model.config, "preprocessing": prep.to_dict(),
        "class_names": list(names) if names is not None else None,
        "task": getattr(model, "task", None),  # multi-label weights: type and thresholds travel too
        "input": {"name": "video", "shape": shape, "dtype": "float32", "normalised": True},
        "output": {"name": "logits", "shape": ["batch", model.num_classes]},
        "fixed": "frames and frame size are fixed at export; the batch is dynamic",
    }  # fmt: skip


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The :func:`export_metadata` document stored in an ONNX file (without loading its weights)."""
    onnx = _require("onnx")
    try:
        proto = onnx.load(os.fspath(path), load_external_data=False)
    except Exception as problem:  # protobuf DecodeError and friends: not an ONNX file
        raise ExportError(f"{path}: not a readable ONNX file ({type(problem).__name__}: {problem})") from None
    props = {prop.key: prop.value for prop in proto.metadata_props}
    if METADATA_KEY not in props:
        raise ExportError(
            f"{path}: an ONNX file without {METADATA_KEY!r} metadata (not written by `fast-timesformer "
            "export`): its preprocessing and class names are unknown; export it with `fast-timesformer export`"
        )
    return json.loads(props[METADATA_KEY])


# -- the two mechanisms --------------------------------------------------------------------------------
def _export_onnx(
    model: nn.Module, example: torch.Tensor, path: Path, *, exporter: str, opset: int, metadata: str
) -> None:
    onnx = _require("onnx")
    if exporter == "dynamo":
        _require("onnxscript")
    try:
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            torch.onnx.export(
                model, (example,), path, dynamo=True, external_data=False, opset_version=opset,
                input_names=["video"], output_names=["logits"], dynamic_shapes=({0: batch},), verbose=False,
            )  # fmt: skip
        else:
            torch.onnx.export(
                model, (example,), path, dynamo=False, opset_version=opset, input_names=["video"],
                output_names=["logits"], dynamic_axes={"video": {0: "batch"}, "logits": {0: "batch"}},
            )  # fmt: skip
    except Exception as problem:  # the exporters raise their own types; the message is what matters
        raise ExportError(
            f"{_describe(model)} cannot be exported to ONNX with the {exporter} exporter: "
            f"{type(problem).__name__}: {str(problem).splitlines()[0] if str(problem) else ''}"
        ) from problem
    proto = onnx.load(os.fspath(path))
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, metadata
    onnx.save(proto, os.fspath(path))


def _export_program(model: nn.Module, example: torch.Tensor, path: Path, *, metadata: str) -> None:
    batch = torch.export.Dim("batch", min=1, max=4096)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as problem:
        raise ExportError(
            f"{_describe(model)} cannot be exported with torch.export: {type(problem).__name__}: "
            f"{str(problem).splitlines()[0] if str(problem) else ''}"
        ) from problem
    torch.export.save(program, path, extra_files={f"{METADATA_KEY}.json": metadata})


def _onnx_runner(path: Path) -> Any:
    session = onnx_session(path)
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def _program_runner(path: Path) -> Any:
    module = torch.export.load(path).module()
    return lambda x: module(x)


def onnx_session(path: str | os.PathLike, *, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for ``path`` (``threads``: intra-op threads, default onnxruntime's)."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])
    except Exception as problem:
        raise ExportError(
            f"{path}: onnxruntime cannot load it ({type(problem).__name__}: {problem})"
        ) from None


# -- helpers -------------------------------------------------------------------------------------------
def _example_inputs(model: nn.Module, *, batches: tuple[int, ...], seed: int) -> list[torch.Tensor]:
    """Normal-random clips of the exported geometry (what normalised video looks like to the model)."""
    shape = export_metadata(model)["input"]["shape"][1:]
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(b, *shape, generator=generator) for b in batches]


def _describe(model: nn.Module) -> str:
    config = model.config
    return f"the {config.get('attention', 'regular')} / {config.get('attention_type', 'divided_space_time')} model"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ExportError(
            f"ONNX export and inference need {module}: pip install 'fast-timesformer[export]'"
        ) from None


__all__ = [
    "DEFAULT_TOLERANCE",
    "EXPORTERS",
    "FORMATS",
    "ExportError",
    "ExportResult",
    "export_metadata",
    "export_model",
    "load_source",
    "onnx_session",
    "read_onnx_metadata",
]
