"""Scan a dataset before training: every video training would skip, with the reason.

``check_data("train.csv")`` reads the annotations, opens every listed video with the same `VideoReader`
(and limits) that training uses, decodes its first and last frame — which catches files that open but
are truncated — and, where the manifest carries a ``sha256`` column (the built-in datasets do), decodes
every frame and compares the checksum, which catches bit flips that still decode. The result is a
`DataReport`: ``report.ok`` is True only when nothing is wrong, ``report.format()`` is a human-readable
summary (the ``fast-timesformer check-data`` command prints it and exits non-zero when ``ok`` is False).

**The check agrees with the pipeline.** A problem is exactly what training would skip: missing,
unreadable, empty, over the limits, a still image, a checksum mismatch. A video with fewer frames than a
clip is *not* a problem — training and ``classify`` fill the clip (``out_of_range``: looping, or repeating
the last frame) and use it — so it is a note: how many, and how they are filled. So are videos shorter
than a whole dense span (``num_frames * sampling_rate``, sampled with clamped or looped indices) and
videos listed more than once.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .annotations import AnnotationSet, duplicate_paths, read_annotations
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
    """One video training would skip: ``kind`` is one of "missing", "unreadable", "empty", "checksum"."""

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
    shorter_than_clip: int = 0  #: fewer frames than a clip: filled by ``out_of_range``, still used
    out_of_range: str = "loop"
    duplicates: int = 0  #: extra entries of videos listed more than once
    checksums_verified: int = 0
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
        fill = "looping the video" if self.out_of_range == "loop" else "repeating the last frame"
        if self.shorter_than_clip:
            lines.append(
                f"  note: {self.shorter_than_clip} videos have fewer frames than a clip; training and classify "
                f"fill the clip by {fill} (out_of_range={self.out_of_range!r}) and use them"
            )
        if self.shorter_than_span:
            lines.append(
                f"  note: {self.shorter_than_span} videos are shorter than one clip span (indices looped or clamped)"
            )
        if self.duplicates:
            lines.append(
                f"  note: {self.duplicates} extra entries of videos listed more than once (each counts)"
            )
        if self.checksums_verified:
            lines.append(f"  checksums: {self.checksums_verified} videos match the manifest's sha256")
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


CHECKSUM_MISMATCH = (
    "decoded frames do not match the manifest's sha256 (the file changed or is corrupt; regenerate or "
    "re-download it)"
)


def _inspect(
    path: str, *, backend: str, limits: dict, sha256: str | None = None
) -> tuple[str | None, str, int]:
    """(problem kind or None, reason, frame count) of one file; ``sha256``: the manifest's checksum."""
    try:
        with VideoReader(path, backend=backend, **limits) as reader:
            meta = reader.metadata
            if sha256 is None:
                reader.get_frames([0, meta.num_frames - 1])  # the last frame proves the file is complete
            else:
                from .synthetic import frames_sha256  # numpy; only for manifests that carry checksums

                if frames_sha256(reader.get_frames(range(meta.num_frames))) != sha256:
                    return "checksum", CHECKSUM_MISMATCH, meta.num_frames
    except VideoDecodeError as error:
        return _kind(error), error.reason + (f" ({error.fix})" if error.fix else ""), 0
    return None, "", meta.num_frames


def check_video(
    path: str,
    *,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_duration: float = DEFAULT_MAX_DURATION,
    allow_images: bool = False,
    sha256: str | None = None,
) -> tuple[str, str] | None:
    """Check one file; returns ``(kind, reason)`` when training would skip it, else None.

    Args:
        path: the video file.
        backend: video decoding backend.
        max_pixels: refuse frames with more pixels than this (as training would).
        max_frames: refuse videos declaring more frames than this.
        max_duration: refuse videos declaring more seconds than this.
        allow_images: accept still images (training refuses them by default).
        sha256: the expected checksum of the decoded frames (``synthetic.frames_sha256``), if known.
    """
    limits = {
        "max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration,
        "allow_images": allow_images,
    }  # fmt: skip
    kind, reason, _ = _inspect(path, backend=backend, limits=limits, sha256=sha256)
    return None if kind is None else (kind, reason)


def check_data(
    annotations: str | os.PathLike | AnnotationSet,
    *,
    root: str | os.PathLike | None = None,
    num_frames: int = 8,
    sampling_rate: int = 1,
    out_of_range: str = "loop",
    format: str = "auto",
    classes: Sequence[str] | str | None = None,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_duration: float = DEFAULT_MAX_DURATION,
    allow_images: bool = False,
    allow_outside_root: bool = False,
    verify_checksums: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> DataReport:
    """Check every video of an annotation file (or folder tree, or `AnnotationSet`); see the module docstring.

    Annotation errors (malformed lines, unknown labels, paths leaving the root) raise `AnnotationError`
    before any video is opened.

    Args:
        annotations: annotation file, folder-per-class root, or an already read `AnnotationSet`.
        root: folder that relative paths in the annotation are joined to.
        num_frames: frames a clip needs; shorter videos are counted (filled by ``out_of_range``), not bad.
        sampling_rate: dense stride; videos shorter than ``num_frames * sampling_rate`` are only counted.
        out_of_range: how training fills a clip longer than the video ("loop" or "repeat_last"), for the note.
        format: annotation format ("auto" detects it).
        classes: class names or a class file, as for `read_annotations`.
        backend: video decoding backend.
        max_pixels: refuse frames with more pixels than this (as training would).
        max_frames: refuse videos declaring more frames than this.
        max_duration: refuse videos declaring more seconds than this.
        allow_images: accept still images as one-frame videos (as training would with the same option).
        allow_outside_root: accept relative paths that leave ``root``.
        verify_checksums: where the manifest has a ``sha256`` column, decode every frame and compare.
        progress: called as ``progress(done, total)`` after each video.
    """
    started = time.perf_counter()
    if isinstance(annotations, AnnotationSet):
        annotation_set = annotations
    else:
        annotation_set = read_annotations(
            annotations, format=format, root=root, classes=classes, allow_outside_root=allow_outside_root
        )
    report = DataReport(
        source=annotation_set.source or str(annotations),
        num_videos=len(annotation_set),
        num_classes=annotation_set.num_classes,
        out_of_range=out_of_range,
        duplicates=sum(duplicate_paths(annotation_set).values()) - len(duplicate_paths(annotation_set)),
    )
    span = clip_span(num_frames=num_frames, sampling_rate=sampling_rate)
    limits = {
        "max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration,
        "allow_images": allow_images,
    }  # fmt: skip
    total = len(annotation_set)
    for done, record in enumerate(annotation_set, start=1):
        digest = record.sha256 if verify_checksums else None
        kind, reason, length = _inspect(record.path, backend=backend, limits=limits, sha256=digest)
        if kind is not None:
            report.problems.append(
                DataProblem(path=record.path, video_id=record.video_id, kind=kind, reason=reason)
            )
        else:
            report.checksums_verified += digest is not None
            report.shorter_than_clip += length < num_frames
            report.shorter_than_span += num_frames <= length < span
        if progress is not None:
            progress(done, total)
    report.seconds = time.perf_counter() - started
    return report
