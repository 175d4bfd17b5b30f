"""A timeline of a long video: what the model sees in every window, and the segments that makes.

:func:`timeline` slides the model's clip window over the whole file
(:func:`~fast_timesformer.data.streaming.plan_windows` says what a window is for dense and for segment
sampling), decodes the file forward once (:func:`~fast_timesformer.data.streaming.stream_windows`: memory
does not grow with the video's length), scores every window with the stored preprocessing -- the same
resize, crops and normalisation as a test clip, with the probabilities of a window's crops averaged as
:class:`~fast_timesformer.inference.Predictor` averages views -- and merges the windows into segments.
:meth:`Timeline.write` writes ``timeline.csv``, ``timeline.json``, ``segments.csv`` and ``timeline.png``.

**Segments** (:func:`merge_segments`), the smoothing rule:

1. each window's probabilities are averaged with those of its neighbours -- a centred moving average over
   ``smoothing`` windows (default 3; 1 turns smoothing off), shortened at the ends of the video;
2. each window takes the label with the highest smoothed probability;
3. each window stands for the moments closer to its centre than to any other window's centre (the first
   from 0 s, the last to the end of the video), so consecutive windows with the same label make one segment
   and a boundary falls half-way between the centres of two windows labelled differently;
4. a segment's probability is the mean of its windows' smoothed probabilities for its label (what the label
   was chosen by; ``timeline.csv`` keeps every window's own probabilities).

With the default stride of half a window each moment is covered by two windows already, and a moving
average of three removes single-window flickers without moving a real boundary by more than about one
stride (tested: two concatenated clips of different classes give two segments whose boundary is within one
stride of the cut).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.checkpoints.saving import model_preprocessing
from fast_timesformer.data.decoding import VideoDecodeError, is_still_image
from fast_timesformer.data.streaming import (
    DecodeProblem,
    StreamingVideoReader,
    Window,
    WindowError,
    plan_windows,
    stream_windows,
)
from fast_timesformer.data.transforms import EvalTransform, resize_short_side

logger = logging.getLogger(__name__)

#: The short side of one-crop test views when the weights store none (VideoDataset's scale_range[0]).
_ONE_CROP_SHORT_SIDE = 256


@dataclass(frozen=True)
class Segment:
    """Consecutive windows with the same (smoothed) label.

    Attributes:
        label: the class name.
        index: the class index.
        start_s: start in seconds from the first frame.
        end_s: end in seconds.
        probability: the mean smoothed probability of ``label`` over the segment's windows.
        windows: (first, last) window index, inclusive.
    """

    label: str
    index: int
    start_s: float
    end_s: float
    probability: float
    windows: tuple[int, int]


@dataclass
class Timeline:
    """The scored windows of one video and the segments they make (see the module docstring).

    Attributes:
        video: the file.
        protocol: what a window is, in words (``"8x32 windows every 4.27 s, 3 crops, 224px"``).
        class_names: one name per model output.
        windows: the windows that were scored, in time order.
        probabilities: (W, C) float32 class probabilities of each window.
        segments: the merged segments, covering 0 s to ``duration_s``.
        duration_s: the video's length in seconds (where its stream really ended, when it ended early).
        fps: the video's average frame rate.
        stride_s: seconds between window starts.
        window_s: seconds a window covers.
        problems: what decoding skipped (broken packets, an early end), with their times.
        skipped_windows: planned windows not scored because the stream ended before them.
        seconds: wall-clock seconds of the whole pass (decode + model).
        frames_decoded: frames the decoder produced.
    """

    video: str
    protocol: str
    class_names: list[str]
    windows: list[Window]
    probabilities: torch.Tensor
    segments: list[Segment]
    duration_s: float
    fps: float
    stride_s: float
    window_s: float
    problems: list[DecodeProblem] = field(default_factory=list)
    skipped_windows: int = 0
    seconds: float = 0.0
    frames_decoded: int = 0

    @property
    def windows_per_second(self) -> float:
        """Windows scored per wall-clock second."""
        return len(self.windows) / self.seconds if self.seconds > 0 else 0.0

    def top_k(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """Per window, its ``k`` most probable ``(label, probability)`` pairs."""
        values, indices = self.probabilities.topk(min(k, len(self.class_names)), dim=1)
        return [
            [(self.class_names[int(i)], float(v)) for v, i in zip(row_values, row_indices)]
            for row_values, row_indices in zip(values, indices)
        ]

    def to_dict(self, *, top_k: int = 5) -> dict[str, Any]:
        """A JSON-ready summary: the windows with their top-k, the segments, the problems and the speed."""
        return {
            "video": self.video,
            "protocol": self.protocol,
            "duration_s": round(self.duration_s, 3),
            "fps": round(self.fps, 3),
            "window_s": round(self.window_s, 3),
            "stride_s": round(self.stride_s, 3),
            "class_names": self.class_names,
            "windows": [
                {
                    "index": w.index,
                    "start_s": round(w.start_s, 3),
                    "end_s": round(w.end_s, 3),
                    "frames": list(w.frames),
                    "top_k": [{"label": label, "probability": round(p, 6)} for label, p in top],
                }
                for w, top in zip(self.windows, self.top_k(top_k))
            ],
            "segments": [
                {
                    "label": s.label,
                    "start_s": round(s.start_s, 3),
                    "end_s": round(s.end_s, 3),
                    "probability": round(s.probability, 6),
                    "windows": list(s.windows),
                }
                for s in self.segments
            ],  # fmt: skip
            "problems": [p.describe() for p in self.problems],
            "skipped_windows": self.skipped_windows,
            "seconds": round(self.seconds, 3),
            "windows_per_second": round(self.windows_per_second, 3),
            "frames_decoded": self.frames_decoded,
        }

    def write(self, output: str | os.PathLike, *, top_k: int = 5, plot: bool = True) -> dict[str, Path]:
        """Write ``timeline.csv``, ``timeline.json``, ``segments.csv`` and (``plot``) ``timeline.png`` into
        ``output`` (created); returns {name: path}."""
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        files = {"timeline.csv": out / "timeline.csv", "timeline.json": out / "timeline.json"}
        k = min(top_k, len(self.class_names))
        with open(files["timeline.csv"], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            ranks = [f"{name}_{r}" for r in range(1, k + 1) for name in ("label", "probability")]
            writer.writerow(["window", "start_s", "end_s", *ranks])
            for window, top in zip(self.windows, self.top_k(k)):
                cells = [cell for label, p in top for cell in (label, f"{p:.6f}")]
                writer.writerow([window.index, f"{window.start_s:.3f}", f"{window.end_s:.3f}", *cells])
        files["timeline.json"].write_text(
            json.dumps(self.to_dict(top_k=k), indent=2) + "\n", encoding="utf-8"
        )
        files["segments.csv"] = out / "segments.csv"
        with open(files["segments.csv"], "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(
                ["segment", "start_s", "end_s", "label", "probability", "first_window", "last_window"]
            )
            for number, s in enumerate(self.segments):
                writer.writerow(
                    [
                        number,
                        f"{s.start_s:.3f}",
                        f"{s.end_s:.3f}",
                        s.label,
                        f"{s.probability:.6f}",
                        *s.windows,
                    ]
                )
        if plot:
            files["timeline.png"] = plot_timeline(self, out / "timeline.png")
        return files


def merge_segments(
    probabilities: torch.Tensor,
    windows: Sequence[Window],
    class_names: Sequence[str],
    *,
    duration_s: float,
    smoothing: int = 3,
) -> list[Segment]:
    """Merge scored windows into labelled segments by the rule in the module docstring.

    Args:
        probabilities: (W, C) class probabilities, one row per window, windows in time order.
        windows: the W windows.
        class_names: C names.
        duration_s: where the last segment ends.
        smoothing: windows in the centred moving average (odd, at least 1; 1 means none).
    """
    if smoothing < 1 or smoothing % 2 == 0:
        raise WindowError(f"smoothing must be an odd number of windows (1 = off), got {smoothing}")
    if len(windows) == 0:
        return []
    half = smoothing // 2
    # Centred moving average over the window axis, shortened at the ends: cumulative sums make it O(W).
    padded = torch.cat([probabilities.new_zeros(1, probabilities.shape[1]), probabilities.cumsum(0)])
    rows = torch.arange(len(windows))
    lo, hi = (rows - half).clamp(min=0), (rows + half + 1).clamp(max=len(windows))
    smoothed = (padded[hi] - padded[lo]) / (hi - lo).unsqueeze(1)  # (W, C)
    labels = smoothed.argmax(1).tolist()
    centres = [w.centre_s for w in windows]
    edges = [0.0] + [(a + b) / 2 for a, b in zip(centres, centres[1:])] + [max(duration_s, centres[-1])]
    segments, first = [], 0
    for k in range(1, len(windows) + 1):
        if k == len(windows) or labels[k] != labels[first]:
            label = labels[first]
            probability = float(smoothed[first:k, label].mean())
            segments.append(
                Segment(class_names[label], label, edges[first], edges[k], probability, (first, k - 1))
            )
            first = k
    return segments


def window_transforms(prep: Preprocessing, views: int) -> tuple[EvalTransform, Any]:
    """(the crops of one window's clip, the per-frame resize for `stream_windows`): the test views' geometry
    as VideoDataset builds it (3 crops cover the frame resized to the crop size)."""
    short_side = prep.short_side or (prep.crop_size if views == 3 else _ONE_CROP_SHORT_SIDE)
    crops = EvalTransform(
        crop_size=prep.crop_size, short_side=short_side, num_spatial_crops=views, mean=prep.mean, std=prep.std
    )

    def resize(frame: torch.Tensor) -> torch.Tensor:  # (C, H, W) -> (C, h, w): once per frame, not per window
        return resize_short_side(frame[None], short_side)[0]

    return crops, resize


def open_stream(
    path: str | os.PathLike, limits: dict[str, Any], *, allow_images: bool, threads: int = 0
) -> StreamingVideoReader:
    """The streaming reader of ``path`` with the reader's ``limits``; a still image refused unless allowed."""
    reader = StreamingVideoReader(path, threads=threads, **limits)
    if not allow_images and is_still_image(reader.metadata):
        raise VideoDecodeError(
            path,
            f"a still image ({reader.metadata.codec}), not a video",
            "pass a video file, or --allow-images",
        )
    return reader


def _resolve(model: Any, preprocessing: Preprocessing | None, class_names: Sequence[str] | None, device: Any):
    """(model, preprocessing, class names, device, reader limits) from a module, a Predictor or a weights folder."""
    limits: dict[str, Any] = {}
    if isinstance(model, (str, os.PathLike)):
        from fast_timesformer.inference.predictor import Predictor

        model = Predictor.from_pretrained(model, device=device or "cpu")
    if not isinstance(model, nn.Module) and hasattr(model, "model") and hasattr(model, "preprocessing"):
        predictor = model  # a Predictor, or anything shaped like one
        preprocessing = preprocessing or predictor.preprocessing
        class_names = class_names if class_names is not None else getattr(predictor, "class_names", None)
        device = device or getattr(predictor, "device", None)
        limits = dict(getattr(predictor, "limits", {}))
        model = predictor.model
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"timeline needs a model (nn.Module), a Predictor or a weights folder, got {type(model).__name__}"
        )
    preprocessing = preprocessing or model_preprocessing(model)
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    names = list(names) if names else [str(i) for i in range(model.num_classes)]
    return model, preprocessing, names, torch.device(device or "cpu"), limits


@torch.inference_mode()
def timeline(
    model: Any,
    path: str | os.PathLike,
    *,
    preprocessing: Preprocessing | None = None,
    class_names: Sequence[str] | None = None,
    stride: float | None = None,
    window_seconds: float | None = None,
    window_views: int | None = None,
    smoothing: int = 3,
    batch_size: int = 8,
    device: str | torch.device | None = None,
    threads: int = 0,
    progress: bool | None = False,
    output: str | os.PathLike | None = None,
    top_k: int = 5,
    max_pixels: int | None = None,
    max_frames: int | None = None,
    max_duration: float | None = None,
    allow_images: bool | None = None,
) -> Timeline:
    """Score every window of a video and merge the windows into labelled segments.

    Args:
        model: a FastTimeSformer, a :class:`~fast_timesformer.inference.Predictor`, or a weights folder.
        path: the video file.
        preprocessing: how a clip is made (default: the Predictor's, else the model's stored one).
        class_names: one name per output (default: the Predictor's or the model's, else "0", "1", ...).
        stride: seconds between window starts (default: half a window).
        window_seconds: seconds per window, for segment sampling only (default 4 s; a dense window is the
            model's clip span, num_frames x sampling_rate at 30 fps).
        window_views: spatial crops scored per window, 1 (centre) or 3 (left/centre/right); default: the
            stored protocol's crops. Temporal clips do not apply: the windows are the temporal views.
        smoothing: windows in the moving average before labelling (odd; 1 = none).
        batch_size: views per forward pass.
        device: torch device (default: the Predictor's, else cpu).
        threads: FFmpeg decoding threads (0: FFmpeg picks).
        progress: show a tqdm bar over the windows (None: only on a terminal).
        output: when given, write the four files there (:meth:`Timeline.write`).
        top_k: labels per window in the written files.
        max_pixels, max_frames, max_duration: the reader's limits, checked before decoding (None: the
            Predictor's, else the library's defaults, :class:`~fast_timesformer.data.VideoReader`).
        allow_images: score a still image as a one-frame video (None: the Predictor's, else refused).

    Raises :class:`~fast_timesformer.data.VideoDecodeError` for a file that cannot be read at all (missing,
    not a video, audio only) and `WindowError` for options that cannot work; a broken packet in the middle
    is skipped and listed in ``Timeline.problems``.
    """
    begin = time.perf_counter()
    model, prep, names, device, limits = _resolve(model, preprocessing, class_names, device)
    given = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
    limits.update({name: value for name, value in given.items() if value is not None})
    if allow_images is not None:
        limits["allow_images"] = allow_images
    allow_still = bool(limits.pop("allow_images", False))
    views = prep.num_spatial_crops if window_views is None else window_views
    if views not in (1, 3):
        raise WindowError(
            f"window_views must be 1 (centre crop) or 3 (left/centre/right), got {window_views}"
        )
    if batch_size < 1:
        raise WindowError(f"batch_size must be at least 1, got {batch_size}")
    if smoothing < 1 or smoothing % 2 == 0:
        raise WindowError(f"smoothing must be an odd number of windows (1 = off), got {smoothing}")
    crops, resize = window_transforms(prep, views)
    reader = open_stream(path, limits, allow_images=allow_still, threads=threads)
    meta = reader.metadata
    windows = plan_windows(
        meta.num_frames, meta.fps, num_frames=prep.num_frames, sampling=prep.sampling,
        sampling_rate=prep.sampling_rate, stride_s=stride, window_s=window_seconds, out_of_range=prep.out_of_range,
    )  # fmt: skip
    window_s = max(w.end_s - w.start_s for w in windows)
    stride_s = windows[1].start_s - windows[0].start_s if len(windows) > 1 else window_s
    frames_text = (
        f"{prep.num_frames}x{prep.sampling_rate}"
        if prep.sampling == "dense"
        else f"{prep.num_frames}-segment"
    )
    protocol = (
        f"{frames_text} windows of {window_s:.2f} s every {stride_s:.2f} s, "
        f"{views} crop{'s' if views > 1 else ''}, {prep.crop_size}px"
    )
    model = model.to(device).eval()
    dtype = next(model.parameters()).dtype
    multilabel = (getattr(model, "task", None) or {}).get("type") == "multilabel"

    from tqdm import tqdm

    scored: dict[int, torch.Tensor] = {}
    pending: list[tuple[int, torch.Tensor]] = []  # (window index, one view (T, C, crop, crop))

    def flush() -> None:
        batch = torch.stack([view for _, view in pending]).to(device, dtype)  # (B, T, C, crop, crop)
        logits = model(batch).float()
        # multi-label weights (config.json task): each class's own sigmoid, as classify scores them
        probabilities = (logits.sigmoid() if multilabel else logits.softmax(-1)).cpu()  # (B, C)
        for (index, _), row in zip(pending, probabilities):
            scored[index] = scored.get(index, 0) + row / views  # mean of the window's crops
        pending.clear()

    disable = None if progress is None else not progress
    with tqdm(total=len(windows), desc="timeline", unit="window", disable=disable) as bar:
        for window, clip in stream_windows(reader, windows, transform=resize):
            pending.extend((window.index, view) for view in crops(clip))
            if len(pending) >= batch_size:
                flush()
            bar.update(1)
        if pending:
            flush()
    done = [w for w in windows if w.index in scored]
    if not done:
        raise WindowError(
            f"no window of {os.fspath(path)!r} could be decoded: "
            + ("; ".join(p.describe() for p in reader.problems) or "the stream holds no frames")
        )
    probabilities = torch.stack([scored[w.index] for w in done])  # (W, C)
    duration = meta.duration
    if any(p.kind == "stream ended early" for p in reader.problems) and reader.end_s is not None:
        duration = reader.end_s + 1 / meta.fps
    result = Timeline(
        video=os.fspath(path), protocol=protocol, class_names=names, windows=done, probabilities=probabilities,
        segments=merge_segments(probabilities, done, names, duration_s=duration, smoothing=smoothing),
        duration_s=duration, fps=meta.fps, stride_s=stride_s, window_s=window_s, problems=list(reader.problems),
        skipped_windows=len(windows) - len(done), seconds=time.perf_counter() - begin,
        frames_decoded=reader.frames_decoded,
    )  # fmt: skip
    if output is not None:
        result.write(output, top_k=top_k)
    return result


def plot_timeline(result: Timeline, path: str | os.PathLike, *, num_classes: int = 5) -> Path:
    """Class probability over time for the ``num_classes`` classes that reach the highest probability,
    with the segments as a coloured band underneath and skipped packets as red ticks; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: no display needed
    import matplotlib.pyplot as plt

    top = result.probabilities.max(0).values.argsort(descending=True)[:num_classes].tolist()
    colours = {index: plt.get_cmap("tab10")(n % 10) for n, index in enumerate(top)}
    centres = [w.centre_s for w in result.windows]
    figure, (curves, band) = plt.subplots(
        2, 1, figsize=(10, 4.2), sharex=True, gridspec_kw={"height_ratios": [5, 1]}
    )
    for index in top:
        curves.plot(
            centres, result.probabilities[:, index].tolist(), color=colours[index], label=result.class_names[index],
            marker="." if len(centres) < 60 else None,
        )  # fmt: skip
    for problem in result.problems:
        curves.axvline(problem.start_s, color="red", linewidth=0.8, linestyle=":")
    curves.set_ylim(0, 1.02)
    curves.set_ylabel("probability")
    curves.legend(loc="upper right", fontsize="small", framealpha=0.8)
    curves.set_title(f"{os.path.basename(result.video)}  ({result.protocol})", fontsize="medium")
    for segment in result.segments:
        colour = colours.get(segment.index, "lightgrey")
        band.axvspan(segment.start_s, segment.end_s, color=colour, alpha=0.6)
        if segment.end_s - segment.start_s > 0.06 * result.duration_s:
            band.text((segment.start_s + segment.end_s) / 2, 0.5, segment.label, ha="center", va="center",
                      fontsize="small", clip_on=True)  # fmt: skip
    band.set_yticks([])
    band.set_ylabel("segments", rotation=0, ha="right", va="center")
    band.set_xlim(0, result.duration_s)
    band.set_xlabel("time (s)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return Path(path)


__all__ = ["Segment", "Timeline", "merge_segments", "plot_timeline", "timeline"]
