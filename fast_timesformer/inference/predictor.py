"""A weights folder ready to use: turn video files into predictions with the stored preprocessing.

:class:`Predictor` is what ``classify``, the demo (and the timeline, attention maps and web app built on
it) call: it loads a weights folder once, builds the views of each file exactly as the training run's test
split did (its :class:`~fast_timesformer.checkpoints.Preprocessing`), scores them in batches and combines
them per video (:func:`~fast_timesformer.inference.views.aggregate_views`). Needs the ``video`` extra (PyAV)
and ``safetensors``; no training dependency.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.checkpoints.saving import model_preprocessing
from fast_timesformer.data import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDataset,
    VideoDecodeError,
    VideoRecord,
    collate_videos,
)
from fast_timesformer.data.backends import check_path
from fast_timesformer.errors import FastTimeSformerError, OptionError
from fast_timesformer.inference.devices import resolve_device
from fast_timesformer.inference.views import aggregate_views, describe_protocol
from fast_timesformer.weights import from_pretrained


class NonFiniteOutputError(FastTimeSformerError, RuntimeError):
    """The model produced NaN or infinite scores: they are never printed as probabilities."""


class Predictor:
    """Classify video files with a model and the preprocessing it was trained with.

    Args:
        model: a FastTimeSformer (put in eval mode and moved to ``device``).
        preprocessing: how clips are made (default: the model's ``preprocessing`` attribute).
        class_names: one name per output (default: the model's ``class_names``, else "0", "1", ...).
        device: torch device the model runs on (checked to exist: :func:`~.devices.resolve_device`).
        batch_size: views per forward pass.
        max_pixels, max_frames, max_duration: the reader's limits (:class:`~fast_timesformer.data.VideoReader`):
            a file over them is refused before decoding, with the option to raise.
        allow_images: score a still image as a one-frame video (refused by default).
        compile: ``torch.compile`` the model (``nn.Module.compile``, in place) before the first file.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        preprocessing: Preprocessing | None = None,
        class_names: Sequence[str] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 8,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_duration: float = DEFAULT_MAX_DURATION,
        allow_images: bool = False,
        compile: bool = False,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
        for name, value in (
            ("max_pixels", max_pixels),
            ("max_frames", max_frames),
            ("max_duration", max_duration),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise OptionError(f"{name} must be a positive number, got {value!r}")
        self.limits = {
            "max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration,
            "allow_images": allow_images,
        }  # fmt: skip
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        if compile:
            self.model.compile()  # in place: the state dict keeps its names; compiles at the first call
        self.preprocessing = preprocessing or model_preprocessing(model)  # stored, else the default protocol
        names = class_names if class_names is not None else getattr(model, "class_names", None)
        self.class_names = list(names) if names else [str(i) for i in range(model.num_classes)]
        self.batch_size = batch_size
        task = getattr(model, "task", None) or {}
        #: multi-label weights (config.json ``task``): views are averaged sigmoids, labels above thresholds
        self.multilabel = task.get("type") == "multilabel"
        self.thresholds = (
            list(task.get("thresholds") or [0.5] * model.num_classes) if self.multilabel else None
        )

    @classmethod
    def from_pretrained(
        cls, weights: str | os.PathLike, *, device: str | torch.device = "cpu", **options: Any
    ) -> Predictor:
        """Load a weights folder (or any source :func:`~fast_timesformer.weights.from_pretrained` reads).

        ``device`` is checked before the weights are read; ``options`` are the constructor's keywords.
        """
        device = resolve_device(device)
        return cls(from_pretrained(weights), device=device, **options)

    @property
    def protocol(self) -> str:
        """The evaluation protocol in words, e.g. ``"8x32, 1 clip x 3 crops, 224px"``."""
        prep = self.preprocessing
        return describe_protocol(
            num_frames=prep.num_frames, sampling_rate=prep.sampling_rate, sampling=prep.sampling,
            num_temporal_clips=prep.num_temporal_clips, num_spatial_crops=prep.num_spatial_crops,
            crop_size=prep.crop_size,
        )  # fmt: skip

    def views(self, path: str | os.PathLike) -> VideoDataset:
        """The views of one file (temporal clips x spatial crops), as the test split made them."""
        prep = self.preprocessing
        record = VideoRecord(path=os.fspath(path), label=0, video_id=os.fspath(path))
        return VideoDataset(
            [record], [str(i) for i in range(len(self.class_names))], num_frames=prep.num_frames,
            sampling=prep.sampling, sampling_rate=prep.sampling_rate, mode="test", crop_size=prep.crop_size,
            short_side=prep.short_side, num_temporal_clips=prep.num_temporal_clips,
            num_spatial_crops=prep.num_spatial_crops, mean=prep.mean, std=prep.std,
            out_of_range=prep.out_of_range, max_bad_fraction=1.0, **self.limits,
        )  # fmt: skip

    @torch.inference_mode()
    def scores(self, path: str | os.PathLike) -> torch.Tensor:
        """Class probabilities (C,) of one file: the mean of its views' softmax (sigmoid for multi-label).

        Raises :class:`~fast_timesformer.data.VideoDecodeError` when the file cannot be read.
        """
        path = os.fspath(path)
        check_path(path)
        dataset = self.views(path)
        logits = []
        for start in range(0, len(dataset), self.batch_size):
            items = [dataset[i] for i in range(start, min(start + self.batch_size, len(dataset)))]
            batch = collate_videos(items)
            if batch["skipped"]:
                raise VideoDecodeError(path, str(batch["skipped"][0][1]))
            logits.append(self.model(batch["video"].to(self.device)).float().cpu())
        if not logits:
            raise VideoDecodeError(path, "no frames could be decoded")
        logits = torch.cat(logits)  # (views, C)
        if not torch.isfinite(logits).all():
            raise NonFiniteOutputError(
                f"the model gave non-finite scores for {path!r}: its weights or preprocessing are broken "
                "(re-export the weights folder)"
            )
        views = torch.arange(len(logits))
        zeros = torch.zeros_like(views)
        method = "sigmoid" if self.multilabel else "softmax"
        return aggregate_views(logits, zeros, zeros, views, method=method).scores[0]

    def classify(
        self, videos: Sequence[str | os.PathLike], *, top_k: int = 5
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """Top-k labels of each file; returns (results, errors), one entry per file.

        Each result is ``{"video": path, "predictions": [{"label", "index", "probability"}, ...]}``; each
        error is ``{"video": path, "error": reason}`` (an unreadable file does not stop the others). For
        multi-label weights the predictions are every class at or above its threshold (each entry also has
        ``"threshold"``), most probable first, and ``top_k`` is not used.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be at least 1, got {top_k}")
        results, errors = [], []
        for path in map(os.fspath, videos):
            try:
                scores = self.scores(path)
            except VideoDecodeError as error:
                fix = f" ({error.fix})" if error.fix else ""
                errors.append({"video": path, "error": error.reason + fix})
                continue
            if self.multilabel:
                order = scores.argsort(descending=True).tolist()
                predictions = [
                    {"label": self.class_names[i], "index": i, "probability": round(float(scores[i]), 6),
                     "threshold": self.thresholds[i]}
                    for i in order if float(scores[i]) >= self.thresholds[i]
                ]  # fmt: skip
                results.append({"video": path, "predictions": predictions})
                continue
            values, indices = scores.topk(min(top_k, len(self.class_names)))
            predictions = [
                {"label": self.class_names[i], "index": int(i), "probability": round(float(v), 6)}
                for v, i in zip(values, indices)
            ]
            results.append({"video": path, "predictions": predictions})
        return results, errors


def classify_videos(
    videos: Sequence[str],
    weights: str,
    *,
    top_k: int = 5,
    batch_size: int = 8,
    device: str = "cpu",
    **options: Any,
) -> tuple[list[dict[str, Any]], list[dict[str, str]], str]:
    """Classify video files with a weights folder; returns (results, errors, protocol).

    The probabilities are averaged over the views the weights were trained to be evaluated with; see
    :meth:`Predictor.classify` for the entries; ``options`` are :class:`Predictor`'s reader limits.
    """
    predictor = Predictor.from_pretrained(weights, device=device, batch_size=batch_size, **options)
    results, errors = predictor.classify(videos, top_k=top_k)
    return results, errors, predictor.protocol


__all__ = ["Predictor", "classify_videos"]
