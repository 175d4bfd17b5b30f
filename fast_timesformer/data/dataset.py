"""Map-style video dataset, batch collation, and the accounting of videos that cannot be decoded.

**Items.** ``VideoDataset[i]`` is a dict ``{"video": float32 (T, C, H, W), "label": int, "index": int,
"video_id": str, "view": int}``. In ``mode="train"`` there is one random clip per video (``len`` = number
of videos, ``view`` = 0). In ``"val"`` and ``"test"`` every video contributes ``num_temporal_clips *
num_spatial_crops`` deterministic views, each its own item (``len`` = videos x views; item ``i`` is view
``i % views`` of video ``i // views``; ``view = clip * num_spatial_crops + crop``), so a DataLoader
batches views freely and evaluation regroups them by ``index``.

**Layout.** Items stay (T, C, H, W); `collate_videos` stacks them into the model's default
(B, T, C, H, W). There is no other layout change after decoding (see `fast_timesformer.data.decoding`).

**Bad videos.** A video that cannot be decoded is never silently replaced. ``__getitem__`` catches the
`VideoDecodeError` and returns a `BadSample` (path, reason, index) instead of a clip — also inside
DataLoader workers, where raising would end the epoch. `collate_videos` drops BadSamples from the batch
and lists them under ``batch["skipped"]`` as ``(path, reason)`` pairs, so failures reach the main process
with the batch that met them. There, a `BadVideoTracker` (``dataset.tracker``, or your own) is fed every
batch with ``tracker.update(batch)``: it counts distinct bad videos, logs each once, and when more than
``max_bad_fraction`` of the dataset's videos are bad it writes a report file (every bad file and why)
and raises `TooManyBadVideos`. A batch in which every sample is bad collates to an empty batch:
``video`` of shape (0, T, C, H, W) and empty ``label``/``index``/``view`` — skip it (``if not len(batch["label"])``).

**Randomness.** Training draws from a `torch.Generator` seeded per item by ``(seed, index, a number drawn
from torch's global RNG)``. The global draw makes clips differ between epochs and workers (PyTorch reseeds
each worker every epoch) and makes them reproducible under `torch.manual_seed` / Lightning's
``seed_everything`` or any wrapper that reseeds the global RNG per item.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from fast_timesformer.errors import FastTimeSformerError

from .annotations import AnnotationSet, VideoRecord
from .decoding import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    VideoReader,
)
from .sampling import OUT_OF_RANGE, dense_indices, segment_indices
from .transforms import DEFAULT_MEAN, DEFAULT_STD, EvalTransform, TrainTransform

logger = logging.getLogger(__name__)

MODES = ("train", "val", "test")
SAMPLINGS = ("dense", "segment")
# A few unreadable files are normal in scraped datasets (Kinetics loses ~1% a year); more means a broken
# path, a wrong root or a missing codec, which should stop the run rather than train on what is left.
DEFAULT_MAX_BAD_FRACTION = 0.01
# Largest decoded video `cache_frames` keeps, in uint8 bytes: 64 MB is about 8 s of 340x256 at 30 fps.
CACHE_MAX_BYTES = 64 * 2**20


class TooManyBadVideos(FastTimeSformerError, RuntimeError):
    """More than ``max_bad_fraction`` of a dataset's videos could not be decoded; see ``report_path``."""


@dataclass(frozen=True)
class BadSample:
    """Stands in for the item of a video that could not be decoded (never a substitute clip)."""

    path: str
    reason: str
    index: int
    view: int = 0
    video_shape: tuple[int, ...] | None = None  # (T, C, H, W) a good item would have had


def _mix(*parts: int) -> int:
    """A 63-bit seed from integers; stable across processes (unlike hash())."""
    value = 0x2545F4914F6CDD1D
    for part in parts:
        value = (value * 6364136223846793005 + int(part) + 1442695040888963407) % (2**63)
    return value


class VideoDataset(torch.utils.data.Dataset):
    """Clips of labelled videos for training (one random clip each) or evaluation (every view).

    Example::

        annotations = read_annotations("train.csv")
        dataset = VideoDataset(annotations.records, annotations.classes, num_frames=8, sampling_rate=32,
                               mode="train", crop_size=224)
        loader = DataLoader(dataset, batch_size=8, num_workers=2, collate_fn=collate_videos)
        for batch in loader:
            dataset.tracker.update(batch)  # counts skipped videos, stops above max_bad_fraction
            if not len(batch["label"]):
                continue
            logits = model(batch["video"])  # (B, T, C, H, W)
    """

    def __init__(
        self,
        records: Sequence[VideoRecord] | AnnotationSet,
        classes: Sequence[str] | None = None,
        *,
        num_frames: int,
        sampling: str = "dense",
        sampling_rate: int = 32,
        mode: str = "train",
        crop_size: int = 224,
        scale_range: tuple[int, int] = (256, 320),
        num_temporal_clips: int = 1,
        num_spatial_crops: int = 1,
        short_side: int | None = None,
        flip: bool = False,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
        out_of_range: str = "loop",
        target_fps: float | None = 30,
        seed: int = 0,
        max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        report_path: str | os.PathLike | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_duration: float = DEFAULT_MAX_DURATION,
        allow_images: bool = False,
        backend: str = "auto",
        cache_frames: bool = False,
        verify_checksums: bool = False,
        multilabel: bool = False,
    ):
        """
        Args:
            records: the videos (`VideoRecord` list, or an `AnnotationSet`, whose classes are then the default).
            classes: class names indexed by the labels; None takes them from an `AnnotationSet`.
            num_frames: T, frames per clip.
            sampling: "dense" (T frames ``sampling_rate`` apart; Kinetics) or "segment" (one frame per
                equal segment; SSv2).
            sampling_rate: frame stride of dense sampling at ``target_fps`` (32 in "8x32"); unused by "segment".
            mode: "train" (one random clip per video), "val" or "test" (every deterministic view).
            crop_size: side of the square crop the model sees.
            scale_range: training short-side jitter range; its low end is also the evaluation short side
                with one spatial crop (the official protocol).
            num_temporal_clips: clips per video in val/test (evenly spaced).
            num_spatial_crops: 1 (centre) or 3 (left/centre/right after resizing the short side to
                ``crop_size``) in val/test.
            short_side: evaluation short side before cropping; None follows the official protocol
                (``crop_size`` with 3 crops, ``scale_range[0]`` with 1). Pass the value a model was
                evaluated with (its saved preprocessing) when classifying new videos.
            flip: random horizontal flips in training; keep False when left/right matters.
            mean: per-channel normalisation mean.
            std: per-channel normalisation std.
            out_of_range: "loop" or "repeat_last": what fills a dense clip longer than the video.
            target_fps: frame rate that ``sampling_rate`` refers to; dense spans are rescaled by
                ``video_fps / target_fps`` (official). None uses raw frame indices.
            seed: mixed into every item's random generator.
            max_bad_fraction: ``tracker`` raises `TooManyBadVideos` when more than this fraction of the
                videos are unreadable.
            report_path: where ``tracker`` writes the list of bad videos when it stops the run (default
                ``bad_videos.txt`` in the working directory).
            max_pixels: refuse videos whose declared frame has more pixels than this.
            max_frames: refuse videos declaring more frames than this.
            max_duration: refuse videos declaring more seconds than this.
            allow_images: accept still images as one-frame videos (refused by default).
            verify_checksums: compare records' ``sha256`` (decoded frames) whenever a video is decoded whole
                (``cache_frames``); a mismatch makes the video a bad sample.
            multilabel: items' ``label`` is a float32 multi-hot (C,) tensor of the record's ``labels``
                (read with ``read_annotations(..., multilabel=True)``) instead of an int.
            backend: video decoding backend, "auto", "pyav" or "torchcodec".
            cache_frames: keep every decoded video (all its frames, uint8) in memory after its first use,
                so later epochs only sample and transform. For small datasets such as the built-in one
                (480 clips of 16x32x32: 24 MB); videos over `CACHE_MAX_BYTES` are never cached. The cache
                lives in each process: use it with ``num_workers=0`` or ``persistent_workers=True``.
        """
        if isinstance(records, AnnotationSet):
            classes = records.classes if classes is None else classes
            records = records.records
        if classes is None:
            raise ValueError("pass classes=[...] (or an AnnotationSet as records) so labels have names")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if out_of_range not in OUT_OF_RANGE:
            raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE}, got {out_of_range!r}")
        if num_temporal_clips < 1:
            raise ValueError(f"num_temporal_clips must be >= 1, got {num_temporal_clips}")
        if not 0.0 <= max_bad_fraction <= 1.0:
            raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
        self.records = list(records)
        self.classes = [str(name) for name in classes]
        self.multilabel = multilabel
        for record in self.records:
            labels = (
                (record.labels if record.labels is not None else (record.label,))
                if multilabel
                else (record.label,)
            )
            if any(not 0 <= label < len(self.classes) for label in labels):
                raise ValueError(
                    f"label {record.label if not multilabel else list(labels)} of {record.path!r} is outside the "
                    f"{len(self.classes)} classes; pass the class list the labels were made with"
                )
        self.num_frames = num_frames
        self.sampling = sampling
        self.sampling_rate = sampling_rate
        self.mode = mode
        self.crop_size = crop_size
        self.out_of_range = out_of_range
        self.target_fps = target_fps
        self.seed = seed
        self.backend = backend
        self.limits = {
            "max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration,
            "allow_images": allow_images,
        }  # fmt: skip
        train = mode == "train"
        self.num_temporal_clips = 1 if train else num_temporal_clips
        self.num_spatial_crops = 1 if train else num_spatial_crops
        # Only the transform of this mode is built (and validated): a test set need not have a scale range
        # that fits its crop.
        self.train_transform = (
            TrainTransform(crop_size=crop_size, scale_range=scale_range, flip=flip, mean=mean, std=std)
            if train
            else None
        )
        self.eval_transform = (
            None
            if train
            else EvalTransform(
                crop_size=crop_size,
                short_side=short_side or (crop_size if num_spatial_crops == 3 else scale_range[0]),
                num_spatial_crops=num_spatial_crops,
                mean=mean,
                std=std,
            )
        )
        self.tracker = BadVideoTracker(
            num_videos=len(self.records), max_bad_fraction=max_bad_fraction, report_path=report_path
        )
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None  # last decoded (video, clip)
        self.cache_frames = cache_frames
        self.verify_checksums = verify_checksums
        self._videos: dict[int, tuple[torch.Tensor, float]] = {}  # video index -> (all frames, fps)

    @property
    def num_views(self) -> int:
        """Items per video: 1 in training, ``num_temporal_clips * num_spatial_crops`` otherwise."""
        return self.num_temporal_clips * self.num_spatial_crops

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records) * self.num_views

    def locate(self, item: int) -> tuple[int, int, int]:
        """(video index, temporal clip, spatial crop) of dataset item ``item``."""
        if not 0 <= item < len(self):
            raise IndexError(f"item {item} out of range for a dataset of {len(self)} items")
        video, view = divmod(item, self.num_views)
        clip, crop = divmod(view, self.num_spatial_crops)
        return video, clip, crop

    def clip_indices(
        self, num_video_frames: int, *, fps: float | None, clip: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Frame indices of temporal clip ``clip`` (random in training) for a video of that length."""
        train = self.mode == "train"
        if self.sampling == "segment":
            return segment_indices(
                num_video_frames, num_frames=self.num_frames, train=train, generator=generator,
                clip_idx=clip, num_clips=self.num_temporal_clips,
            )  # fmt: skip
        return dense_indices(
            num_video_frames, num_frames=self.num_frames, sampling_rate=self.sampling_rate, train=train,
            clip_idx=clip, num_clips=self.num_temporal_clips, generator=generator, out_of_range=self.out_of_range,
            fps=fps if self.target_fps is not None else None, target_fps=self.target_fps or 30,
        )  # fmt: skip

    def _decode(self, video_index: int, clip: int, generator: torch.Generator | None) -> torch.Tensor:
        if video_index in self._videos:
            frames, fps = self._videos[video_index]
            indices = self.clip_indices(len(frames), fps=fps, clip=clip, generator=generator)
            return frames[indices]
        with VideoReader(self.records[video_index].path, backend=self.backend, **self.limits) as reader:
            meta = reader.metadata
            size = meta.num_frames * 3 * meta.width * meta.height
            if self.cache_frames and size <= CACHE_MAX_BYTES:
                frames = reader.get_frames(range(meta.num_frames))
                expected = self.records[video_index].sha256
                if self.verify_checksums and expected is not None:
                    from .synthetic import frames_sha256

                    if frames_sha256(frames) != expected:
                        raise VideoDecodeError(
                            reader.path, "decoded frames do not match the annotation's sha256",
                            "the file changed or is corrupt: regenerate or re-download it",
                        )  # fmt: skip
                self._videos[video_index] = (frames, meta.fps)
                return self._decode(video_index, clip, generator)
            indices = self.clip_indices(meta.num_frames, fps=meta.fps, clip=clip, generator=generator)
            return reader.get_frames(indices)  # uint8 (T, C, H, W)

    def __getitem__(self, item: int) -> dict[str, Any] | BadSample:
        video_index, clip, crop = self.locate(item)
        record = self.records[video_index]
        view = clip * self.num_spatial_crops + crop
        shape = (self.num_frames, 3, self.crop_size, self.crop_size)
        try:
            if self.mode == "train":
                entropy = int(torch.randint(0, 2**62, ()))
                generator = torch.Generator().manual_seed(_mix(self.seed, video_index, entropy))
                frames = self._decode(video_index, 0, generator)
                clip_tensor = self.train_transform(frames, generator=generator)
            else:
                key = (video_index, clip)
                if self._cache is not None and self._cache[0] == key:
                    frames = self._cache[1]  # the other crops of the clip just decoded
                else:
                    frames = self._decode(video_index, clip, None)
                    self._cache = (key, frames)
                clip_tensor = self.eval_transform.view(frames, crop)
        except VideoDecodeError as error:
            reason = error.reason + (f" ({error.fix})" if error.fix else "")  # the fix travels with it
            return BadSample(path=record.path, reason=reason, index=video_index, view=view, video_shape=shape)
        return {
            "video": clip_tensor,
            "label": self._target(record),
            "index": video_index,
            "video_id": record.video_id,
            "view": view,
        }

    def _target(self, record: VideoRecord) -> int | torch.Tensor:
        if not self.multilabel:
            return record.label
        target = torch.zeros(len(self.classes))
        target[list(record.labels if record.labels is not None else (record.label,))] = 1.0
        return target

    def __repr__(self) -> str:
        return (
            f"VideoDataset({len(self.records)} videos, {len(self.classes)} classes, mode={self.mode!r}, "
            f"num_frames={self.num_frames}, sampling={self.sampling!r}, views={self.num_views})"
        )


def collate_videos(batch: Sequence[dict[str, Any] | BadSample]) -> dict[str, Any]:
    """Stack good items into ``{"video": (B, T, C, H, W), "label", "index", "view": LongTensor (B,),
    "video_id": list[str], "skipped": [(path, reason), ...]}``; BadSamples go to ``skipped`` only.

    When every item is bad, ``video`` is an empty (0, T, C, H, W) tensor and the other tensors are empty.
    """
    good = []
    skipped = []
    shape: tuple[int, ...] | None = None
    for position, item in enumerate(batch):
        if isinstance(item, BadSample):
            skipped.append((item.path, item.reason))
            shape = shape or item.video_shape
        elif isinstance(item, dict):
            good.append(item)
        else:
            raise TypeError(
                f"collate_videos got {type(item).__name__} at position {position}; expected VideoDataset items "
                "(dicts) or BadSample — a dataset must never return None for a bad video"
            )
    if good:
        video = torch.stack([item["video"] for item in good])  # (B, T, C, H, W)
    else:
        video = torch.empty((0, *(shape or (0, 0, 0, 0))))
    return {
        "video": video,
        "label": (  # (B,) class indices, or (B, C) multi-hot targets of a multi-label dataset
            torch.stack([item["label"] for item in good])
            if good and isinstance(good[0]["label"], torch.Tensor)
            else torch.tensor([item["label"] for item in good], dtype=torch.long)
        ),
        "index": torch.tensor([item["index"] for item in good], dtype=torch.long),
        "view": torch.tensor([item["view"] for item in good], dtype=torch.long),
        "video_id": [item["video_id"] for item in good],
        "skipped": skipped,
    }


class BadVideoTracker:
    """Counts the videos skipped in collated batches and stops a run when too many are bad.

    Lives in the main process; feed it every batch (``tracker.update(batch)``). A video is counted once
    however many of its views or epochs fail.
    """

    def __init__(
        self, *, num_videos: int, max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION,
        report_path: str | os.PathLike | None = None,
    ):  # fmt: skip
        """
        Args:
            num_videos: videos in the dataset (the denominator of the bad fraction).
            max_bad_fraction: raise `TooManyBadVideos` once more than this fraction of ``num_videos`` is bad.
            report_path: file written when the run is stopped (``.json`` gives JSON, anything else text);
                default ``bad_videos.txt`` in the working directory.
        """
        self.num_videos = num_videos
        self.max_bad_fraction = max_bad_fraction
        self.report_path = os.fspath(report_path) if report_path is not None else "bad_videos.txt"
        self.bad: dict[str, str] = {}  # path -> first reason, in the order met
        self.skipped_samples = 0

    @property
    def num_bad(self) -> int:
        return len(self.bad)

    def record(self, path: str, reason: str) -> None:
        """Count one skipped sample of ``path``; raises `TooManyBadVideos` past the limit."""
        self.skipped_samples += 1
        if path in self.bad:
            return
        self.bad[path] = reason
        logger.warning("skipping unreadable video %s: %s", path, reason)
        allowed = self.max_bad_fraction * self.num_videos
        if self.num_bad > allowed:
            report = self.write_report()
            raise TooManyBadVideos(
                f"{self.num_bad} of {self.num_videos} videos could not be decoded, more than "
                f"max_bad_fraction={self.max_bad_fraction} allows ({int(allowed)}); the list with reasons is in "
                f"{report}. Fix or remove those files (fast-timesformer check-data finds them all) or raise "
                "max_bad_fraction"
            )

    def update(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Count ``batch["skipped"]``; returns the batch for chaining."""
        for path, reason in batch.get("skipped", ()):
            self.record(path, reason)
        return batch

    def summary(self) -> str:
        """One line: how many videos were skipped so far."""
        fraction = self.num_bad / self.num_videos if self.num_videos else 0.0
        return f"{self.num_bad} of {self.num_videos} videos unreadable ({fraction:.2%}), {self.skipped_samples} samples skipped"

    def write_report(self, path: str | os.PathLike | None = None) -> str:
        """Write every bad video with its reason to ``path`` (default ``report_path``); returns the path."""
        path = os.fspath(path) if path is not None else self.report_path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w", encoding="utf-8", errors="backslashreplace") as handle:
            if path.endswith(".json"):
                entries = [{"path": p, "reason": r} for p, r in self.bad.items()]
                json.dump(
                    {"num_videos": self.num_videos, "num_bad": self.num_bad, "bad": entries}, handle, indent=2
                )
            else:
                handle.write(f"# {self.summary()}\n# path\treason\n")
                for bad_path, reason in self.bad.items():
                    handle.write(f"{bad_path}\t{reason}\n")
        return path
