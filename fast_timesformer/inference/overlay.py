"""Pictures of attention maps: a PNG strip (frames in a row, one row per map), an MP4 of the overlay, and
:func:`explain_video`, which makes both for a video file with the preprocessing its weights store.

Maps are patch-resolution (T, Hp, Wp); they are scaled by the clip's largest value (so frames compare with
each other), shown nearest-neighbour (one flat block per patch: the resolution the model has) and blended
over the frames with a colour map. Small clips are enlarged, also nearest-neighbour, so a 16 px demo clip
is still readable. matplotlib (PNG, colour maps), numpy and PyAV (MP4) are imported inside the functions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fast_timesformer.inference.explain import (
    ExplainError,
    check_method,
    default_method,
    explain_clips,
)

#: Frames are enlarged (by a whole factor) to at least this many pixels on their short side.
MIN_SIDE = 128
COLORMAP = "inferno"


def _enlarge(frames: torch.Tensor, min_side: int) -> torch.Tensor:
    """(T, C, H, W) -> nearest-neighbour enlarged by the whole factor that reaches ``min_side``."""
    factor = max(1, -(-min_side // min(frames.shape[-2:])))
    return frames.repeat_interleave(factor, -2).repeat_interleave(factor, -1) if factor > 1 else frames


def normalise_map(patch_map: torch.Tensor) -> torch.Tensor:
    """A (T, Hp, Wp) map divided by its largest value over the clip (all zeros stay zeros)."""
    peak = patch_map.max()
    return patch_map / peak if peak > 0 else torch.zeros_like(patch_map)


def overlay_frames(
    frames: torch.Tensor,
    patch_map: torch.Tensor,
    *,
    alpha: float = 0.55,
    colormap: str = COLORMAP,
    min_side: int = MIN_SIDE,
) -> torch.Tensor:
    """Blend a map over frames: frames float (T, 3, H, W) in [0, 1], map (T, Hp, Wp) -> uint8 (T, H', W', 3).

    H' and W' are H and W enlarged by a whole factor to at least ``min_side`` (see the module docstring).
    """
    import matplotlib

    frames = _enlarge(frames.float().clamp(0, 1), min_side)
    t, _, h, w = frames.shape
    scaled = F.interpolate(normalise_map(patch_map.float())[:, None], size=(h, w), mode="nearest")[:, 0]
    colours = torch.from_numpy(
        matplotlib.colormaps[colormap](scaled.numpy())[..., :3]
    ).float()  # (T, H', W', 3)
    blend = (1 - alpha) * frames.permute(0, 2, 3, 1) + alpha * colours
    return (blend * 255).round().clamp(0, 255).to(torch.uint8)


def write_strip_png(
    path: str | os.PathLike,
    frames: torch.Tensor,
    maps: Mapping[str, torch.Tensor],
    *,
    frame_labels: Sequence[str] | None = None,
    title: str = "",
    colormap: str = COLORMAP,
) -> Path:
    """Write the frames in a row and, under them, one row per map overlaid on the frames.

    Args:
        path: PNG file to write.
        frames: float (T, 3, H, W) RGB in [0, 1].
        maps: row label -> (T, Hp, Wp) map (e.g. {"rollout": ..., "gradcam": ...}).
        frame_labels: one caption per frame (default "t=0", "t=1", ...).
        title: figure title (e.g. the prediction).
        colormap: matplotlib colour map of the overlay.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    t = frames.shape[0]
    labels = list(frame_labels or [f"t={i}" for i in range(t)])
    rows = [("frames", _enlarge(frames.float().clamp(0, 1), MIN_SIDE).permute(0, 2, 3, 1))]
    rows += [(name, overlay_frames(frames, m, colormap=colormap).float() / 255) for name, m in maps.items()]
    figure, axes = plt.subplots(
        len(rows), t, figsize=(1.6 * t + 1.2, 1.7 * len(rows) + 0.6), squeeze=False, constrained_layout=True
    )
    for r, (name, images) in enumerate(rows):
        for i in range(t):
            ax = axes[r][i]
            ax.imshow(images[i].numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(labels[i], fontsize=9)
            if i == 0:
                ax.set_ylabel(name, fontsize=10)
    if len(rows) > 1:
        mappable = plt.cm.ScalarMappable(cmap=colormap, norm=matplotlib.colors.Normalize(0, 1))
        bar = figure.colorbar(mappable, ax=axes[1:, :].ravel().tolist(), shrink=0.8, pad=0.01)
        bar.set_label("weight / clip max", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_overlay_mp4(
    path: str | os.PathLike,
    frames: torch.Tensor,
    patch_map: torch.Tensor,
    *,
    fps: float = 4.0,
    colormap: str = COLORMAP,
    min_side: int = 256,
) -> Path:
    """Write the clip (left) beside the clip with the map overlaid (right) as an H.264 (else MPEG-4) MP4.

    ``fps`` is slow by default: a clip of 8 sampled frames plays for 2 seconds.
    """
    import av
    import numpy as np

    plain = (_enlarge(frames.float().clamp(0, 1), min_side).permute(0, 2, 3, 1) * 255).round().to(torch.uint8)
    overlaid = overlay_frames(frames, patch_map, colormap=colormap, min_side=min_side)
    video = torch.cat([plain, overlaid], dim=2)  # (T, H', 2W', 3): side by side
    h, w = video.shape[1] // 2 * 2, video.shape[2] // 2 * 2  # yuv420p needs even sides
    video = np.ascontiguousarray(video[:, :h, :w].numpy())
    try:
        av.codec.Codec("libx264", "w")
        codec, options = "libx264", {"crf": "18", "preset": "veryfast"}
    except Exception:  # an FFmpeg build without libx264
        codec, options = "mpeg4", {"qscale": "2"}
    path = Path(path)
    from fractions import Fraction

    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1000), options=options)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for image in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# -- a video file, explained ----------------------------------------------------------------------
@dataclass
class VideoExplanation:
    """What :func:`explain_video` wrote and found for one file."""

    video: str
    label: str  #: predicted class name
    probability: float  #: of the predicted class, on the explained view
    methods: list[str]
    maps: dict[str, torch.Tensor]  #: method -> float32 (T, Hp, Wp)
    frame_indices: list[int]  #: the video frames the clip was sampled from
    files: dict[str, str]  #: "png", "mp4", "json" -> path

    def frame_mass(self, method: str) -> list[float]:
        """Share of the map's total weight on each frame."""
        per_frame = self.maps[method].sum((1, 2))
        return (per_frame / per_frame.sum().clamp_min(1e-30)).tolist()


def explain_video(
    video: str | os.PathLike,
    *,
    output: str | os.PathLike,
    weights: str | os.PathLike | None = None,
    predictor: Any = None,
    methods: Sequence[str] | None = None,
    target: int | str | None = None,
    fps: float = 4.0,
    device: str | torch.device = "cpu",
    max_pixels: int | None = None,
    max_frames: int | None = None,
    max_duration: float | None = None,
    allow_images: bool = False,
) -> VideoExplanation:
    """Explain one file: maps of its middle temporal clip, centre crop, as the stored preprocessing makes it.

    Writes into ``output``: ``attention.png`` (frames in a row, one row of overlays per method),
    ``attention.mp4`` (the clip beside its overlay by the first method) and ``attention.json`` (the maps,
    the prediction and the frame indices).

    Args:
        video: a video file.
        output: folder to write into (created).
        weights: a weights folder (or any source ``from_pretrained`` reads); or pass ``predictor``.
        predictor: an :class:`~fast_timesformer.inference.Predictor` already loaded.
        methods: names from :data:`METHODS`; default: :func:`default_method` of the model, then ``gradcam``.
        target: class (index or name) that ``gradcam`` explains; default: the predicted one.
        fps: frame rate of ``attention.mp4`` (slow, so the 8 or 16 sampled frames can be followed).
        device: torch device to load ``weights`` on (checked to exist); a ``predictor`` keeps its own.
        max_pixels, max_frames, max_duration: the reader's limits when loading ``weights`` (None: the
            defaults); a ``predictor`` applies its own. A file over them is refused before decoding.
        allow_images: accept a still image as a one-frame video (with ``weights``; else the predictor's).

    Raises :class:`ExplainError` for a method the model cannot give (before anything is decoded) and
    :class:`~fast_timesformer.data.VideoDecodeError` for a file that is missing or not a readable video.
    """
    import json

    from fast_timesformer.data import VideoDecodeError, VideoReader
    from fast_timesformer.data.backends import check_path
    from fast_timesformer.data.dataset import BadSample
    from fast_timesformer.inference.predictor import Predictor

    if (weights is None) == (predictor is None):
        raise ExplainError("pass exactly one of weights= (a weights folder) and predictor=")
    if not fps > 0:
        raise ExplainError(f"fps must be positive, got {fps!r}")
    path = os.fspath(video)
    check_path(path)
    if predictor is None:
        limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
        given = {name: value for name, value in limits.items() if value is not None}
        predictor = Predictor.from_pretrained(weights, device=device, allow_images=allow_images, **given)
    model, prep = predictor.model, predictor.preprocessing
    methods = list(methods or dict.fromkeys([default_method(model), "gradcam"]))
    for method in methods:
        check_method(model, method)  # before decoding: a wrong method fails at once
    target_index = _target_index(target, predictor.class_names)

    with VideoReader(path, **predictor.limits) as reader:  # the predictor's limits, before any decoding
        meta = reader.metadata
    dataset = predictor.views(path)
    clip = prep.num_temporal_clips // 2
    item = dataset[clip * prep.num_spatial_crops + prep.num_spatial_crops // 2]  # middle clip, centre crop
    if isinstance(item, BadSample):
        raise VideoDecodeError(path, item.reason)
    indices = dataset.clip_indices(meta.num_frames, fps=meta.fps, clip=clip, generator=None).tolist()
    clip_tensor = item["video"].unsqueeze(0).to(predictor.device)  # (1, T, C, H, W)
    if getattr(model, "input_layout", "btchw") == "bcthw":
        clip_tensor = clip_tensor.transpose(1, 2)  # (1, C, T, H, W)
    result = explain_clips(model, clip_tensor, methods=methods, target=target_index)
    probabilities = result.logits[0].softmax(-1)
    predicted = int(probabilities.argmax())
    maps = {m: result.maps[m][0] for m in methods}

    mean = torch.tensor(prep.mean).view(1, -1, 1, 1)
    std = torch.tensor(prep.std).view(1, -1, 1, 1)
    frames = (item["video"] * std + mean).clamp(0, 1)  # undo the normalisation: (T, C, H, W) in [0, 1]
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    label = predictor.class_names[predicted]
    title = f"{os.path.basename(path)}: {label} ({100 * float(probabilities[predicted]):.1f}%)"
    if target_index is not None:
        title += f"; gradcam explains {predictor.class_names[target_index]}"
    png = write_strip_png(
        out / "attention.png", frames, maps, frame_labels=[f"frame {i}" for i in indices], title=title
    )
    mp4 = write_overlay_mp4(out / "attention.mp4", frames, maps[methods[0]], fps=fps)
    explanation = VideoExplanation(
        video=path, label=label, probability=float(probabilities[predicted]), methods=methods, maps=maps,
        frame_indices=indices, files={"png": str(png), "mp4": str(mp4), "json": str(out / "attention.json")},
    )  # fmt: skip
    record = {
        "video": path, "label": label, "probability": explanation.probability, "protocol": predictor.protocol,
        "view": {"temporal_clip": clip, "spatial_crop": "centre"}, "frame_indices": indices,
        "grid": list(result.grid), "methods": methods, "gradcam_target": target_index,
        "maps": {m: maps[m].tolist() for m in methods},
        "frame_mass": {m: explanation.frame_mass(m) for m in methods},
    }  # fmt: skip
    (out / "attention.json").write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    return explanation


def _target_index(target: int | str | None, class_names: Sequence[str]) -> int | None:
    if target is None:
        return None
    if isinstance(target, str) and not target.lstrip("-").isdigit():
        if target not in class_names:
            raise ExplainError(f"unknown target class {target!r}; expected one of {list(class_names)[:20]}")
        return list(class_names).index(target)
    index = int(target)
    if not 0 <= index < len(class_names):
        raise ExplainError(f"target class index {index} out of range for {len(class_names)} classes")
    return index


__all__ = [
    "COLORMAP",
    "MIN_SIDE",
    "VideoExplanation",
    "explain_video",
    "normalise_map",
    "overlay_frames",
    "write_overlay_mp4",
    "write_strip_png",
]
