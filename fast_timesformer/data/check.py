"""Scan a dataset before training: every missing, unreadable, empty or too-short video, with the reason.

``check_data("train.csv")`` reads the annotations, opens every listed video with the same `VideoReader`
(and limits) that training uses, decodes its first and last frame — which catches files that open but
are truncated — and compares its length with what a clip needs. The result is a `DataReport`:
``report.ok`` is True only when nothing is wrong, ``report.format()`` is a human-readable summary (the
``fast-timesformer check-data`` command prints it and exits non-zero when ``ok`` is False).

"Too short" means fewer frames than ``num_frames`` (the clip could only be filled by repeating or
looping frames). A video shorter than a whole dense span (``num_frames * sampling_rate``) but not
shorter than ``num_frames`` is not an error: training loops or clamps it (``out_of_range``); it is
counted in ``report.shorter_than_span`` for information.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .annotations import AnnotationSet, read_annotations
from .decoding import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    VideoReader,
)
from .sampling import clip_span


@dataclass(frozen=True)
class DataProblem:
    """One bad video: ``kind`` is one of "missing", "unreadable", "empty", "too_short"."""

    path: str
    video_id: str
    kind: str
    reason: str


@dataclass
class DataReport:
    """What `check_data` found. ``ok`` is True when no video has a problem."""

    source: str
    num_videos: int
    num_classes: int
    problems: list[DataProblem] = field(default_factory=list)
    shorter_than_span: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def num_bad(self) -> int:
        return len(self.problems)

    def counts(self) -> dict[str, int]:
        """Problems per kind."""
        return dict(Counter(problem.kind for problem in self.problems))

    def format(self, *, limit: int | None = None) -> str:
        """A readable report: a summary line, then one line per problem (``limit`` caps how many)."""
        status = "OK" if self.ok else "PROBLEMS FOUND"
        lines = [
            f"{status}: {self.source}: {self.num_videos} videos, {self.num_classes} classes, "
            f"{self.num_bad} bad ({self.seconds:.1f} s)"
        ]
        if self.problems:
            lines.append(
                "  " + ", ".join(f"{kind}: {count}" for kind, count in sorted(self.counts().items()))
            )
        if self.shorter_than_span:
            lines.append(
                f"  note: {self.shorter_than_span} videos are shorter than one clip span (looped or clamped)"
            )
        shown = self.problems if limit is None else self.problems[:limit]
        for problem in shown:
            lines.append(f"{problem.kind}\t{problem.path}\t{problem.reason}")
        if len(shown) < len(self.problems):
            lines.append(f"... and {len(self.problems) - len(shown)} more")
        return "\n".join(lines)


def _kind(error: VideoDecodeError) -> str:
    reason = error.reason
    if reason.startswith(("file not found", "dangling symlink", "is a directory")):
        return "missing"
    if reason.startswith(("empty file", "no decodable video frame")):
        return "empty"
    return "unreadable"


def _inspect(path: str, *, num_frames: int, backend: str, limits: dict) -> tuple[str | None, str, int]:
    """(problem kind or None, reason, frame count) of one file."""
    try:
        with VideoReader(path, backend=backend, **limits) as reader:
            meta = reader.metadata
            reader.get_frames([0, meta.num_frames - 1])  # the last frame proves the file is complete
    except VideoDecodeError as error:
        return _kind(error), error.reason, 0
    if meta.num_frames < num_frames:
        estimate = "" if meta.num_frames_exact else " (estimated from duration)"
        return "too_short", f"{meta.num_frames} frames{estimate}, a clip needs {num_frames}", meta.num_frames
    return None, "", meta.num_frames


def check_video(
    path: str,
    *,
    num_frames: int = 8,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_duration: float = DEFAULT_MAX_DURATION,
) -> tuple[str, str] | None:
    """Check one file; returns ``(kind, reason)`` for a problem, else None.

    Args:
        path: the video file.
        num_frames: frames a clip needs; fewer is "too_short".
        backend: video decoding backend.
        max_pixels: refuse frames with more pixels than this (as training would).
        max_frames: refuse videos declaring more frames than this.
        max_duration: refuse videos declaring more seconds than this.
    """
    limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
    kind, reason, _ = _inspect(path, num_frames=num_frames, backend=backend, limits=limits)
    return None if kind is None else (kind, reason)


def check_data(
    annotations: str | os.PathLike | AnnotationSet,
    *,
    root: str | os.PathLike | None = None,
    num_frames: int = 8,
    sampling_rate: int = 1,
    format: str = "auto",
    classes: Sequence[str] | str | None = None,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_duration: float = DEFAULT_MAX_DURATION,
    progress: Callable[[int, int], None] | None = None,
) -> DataReport:
    """Check every video of an annotation file (or folder tree, or `AnnotationSet`); see the module docstring.

    Annotation errors (malformed lines, unknown labels) raise `AnnotationError` before any video is opened.

    Args:
        annotations: annotation file, folder-per-class root, or an already read `AnnotationSet`.
        root: folder that relative paths in the annotation are joined to.
        num_frames: frames a clip needs; shorter videos are reported as "too_short".
        sampling_rate: dense stride; videos shorter than ``num_frames * sampling_rate`` are only counted.
        format: annotation format ("auto" detects it).
        classes: class names or a class file, as for `read_annotations`.
        backend: video decoding backend.
        max_pixels: refuse frames with more pixels than this (as training would).
        max_frames: refuse videos declaring more frames than this.
        max_duration: refuse videos declaring more seconds than this.
        progress: called as ``progress(done, total)`` after each video.
    """
    started = time.perf_counter()
    if isinstance(annotations, AnnotationSet):
        annotation_set = annotations
    else:
        annotation_set = read_annotations(annotations, format=format, root=root, classes=classes)
    report = DataReport(
        source=annotation_set.source or str(annotations),
        num_videos=len(annotation_set),
        num_classes=annotation_set.num_classes,
    )
    span = clip_span(num_frames=num_frames, sampling_rate=sampling_rate)
    limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
    total = len(annotation_set)
    for done, record in enumerate(annotation_set, start=1):
        kind, reason, length = _inspect(record.path, num_frames=num_frames, backend=backend, limits=limits)
        if kind is not None:
            report.problems.append(
                DataProblem(path=record.path, video_id=record.video_id, kind=kind, reason=reason)
            )
        elif length < span:
            report.shorter_than_span += 1
        if progress is not None:
            progress(done, total)
    report.seconds = time.perf_counter() - started
    return report
