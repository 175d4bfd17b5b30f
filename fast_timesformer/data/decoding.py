"""Read chosen frames of a video file as an upright RGB uint8 tensor.

`VideoReader` opens one file, checks its declared size and length against limits *before* decoding
anything, reports `VideoMetadata`, and returns the frames at requested indices as ``(T, 3, H, W)``
uint8. Every failure (missing file, not a video, audio only, truncated stream, no decodable frame,
over the limits) is a `VideoDecodeError` that names the file, the reason and what to do.

**Frame indices are positions on the nominal frame grid.** Index ``i`` means "the frame on screen at
``start + i / fps``", where ``fps`` is the stream's average rate. For constant-frame-rate files this is
exactly the ``i``-th frame; for variable-frame-rate files it selects by timestamp, so clips sampled by
`fast_timesformer.data.sampling` stay uniform in time rather than in (irregular) frame count.

**Seeking.** A reader keeps its file open between calls, and the backend remembers how far it has
decoded: an 8-frame clip of a 10-minute video decodes about one GOP plus the clip span, not the whole
file (see `fast_timesformer.data.backends.pyav`).

**Frame count.** MP4/AVI declare an exact frame count. Matroska/WebM usually declare none; then
``num_frames`` is estimated as ``round(duration * fps)`` and ``num_frames_exact`` is False. Indices past
the real end of such a file return the last frame (the frame still on screen); a file with an *exact*
declared count that ends early is reported as truncated instead.

**Rotation.** Phones store portrait video as landscape plus a display matrix. The reader rotates by the
matrix's angle, so frames come out the way a player shows them, and ``metadata.width``/``height`` are
those of the upright frames (how each backend reads the angle: its module docstring).

**Pixel formats.** Every source format (yuv*, gray, rgba, pal8, ...) comes out as RGB; alpha is dropped
(not composited), palettes are expanded.

**Layout.** FFmpeg gives (H, W, C) per frame; `get_frames` returns (T, C, H, W). This is the only layout
change in the data pipeline: transforms keep (T, C, H, W) and `collate_videos` stacks to the model's
(B, T, C, H, W).

Backends (`fast_timesformer.data.backends`): ``"pyav"`` (always available with the ``[video]`` extra),
``"torchcodec"`` (used only when ``import torchcodec`` succeeds, not exercised by this project's CI), and
``"auto"`` (torchcodec if it loads, else PyAV). The chosen backend is logged once per process at INFO and
per file at DEBUG. This module imports neither PyAV nor numpy; the backend does, when a video is opened.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .backends import (
    BACKENDS,
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    VideoSource,
    check_path,
    open_source,
    resolve_backend,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoMetadata:
    """What a video declares about itself, checked against the limits before any decoding."""

    path: str
    num_frames: int  # exact when num_frames_exact, else round(duration * fps)
    num_frames_exact: bool
    fps: float  # average frame rate; index i <-> time start + i / fps
    duration: float  # seconds
    width: int  # of the upright frames returned by get_frames (after rotation)
    height: int
    rotation: int  # counter-clockwise degrees applied to make frames upright: 0, 90, 180 or 270
    backend: str
    codec: str = ""


class VideoReader:
    """Open one video, check it against limits, and read frames by index.

    Use as a context manager (``with VideoReader(path) as reader: reader.get_frames([0, 8, 16])``) so the
    file is closed promptly; `close` is idempotent.
    """

    def __init__(
        self,
        path: str | os.PathLike | bytes,
        *,
        backend: str = "auto",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_duration: float = DEFAULT_MAX_DURATION,
        threads: int = 1,
        allow_images: bool = False,
    ):
        """
        Args:
            path: the video file (str, Path, or bytes for names that are not valid UTF-8).
            backend: "auto" (torchcodec if it imports, else PyAV), "pyav" or "torchcodec".
            max_pixels: refuse files whose declared width x height exceeds this (before decoding).
            max_frames: refuse files whose declared or estimated frame count exceeds this.
            max_duration: refuse files whose declared duration in seconds exceeds this.
            threads: FFmpeg decoding threads per file; 1 suits DataLoader workers (one file per core).
            allow_images: accept a still image (PNG, JPEG, ...) as a one-frame video; by default it is
                refused, since a photo given as a video is almost always a mistake.
        """
        self.path = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
        self.backend = resolve_backend(backend)
        limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
        check_path(self.path)
        source = open_source(self.backend, self.path, threads=threads, limits=limits)
        self._source: VideoSource | None = source
        self.metadata = VideoMetadata(
            path=self.path,
            num_frames=source.num_frames,
            num_frames_exact=source.exact,
            fps=source.fps,
            duration=source.duration,
            width=source.width,
            height=source.height,
            rotation=source.rotation,
            backend=self.backend,
            codec=source.codec,
        )
        logger.debug("opened %s with %s: %s", self.path, self.backend, self.metadata)
        if not allow_images and is_still_image(self.metadata):
            self.close()
            raise VideoDecodeError(
                self.path, f"a still image ({self.metadata.codec}), not a video",
                "pass a video file, or allow_images=True (--allow-images) to use it as a one-frame clip",
            )  # fmt: skip

    def get_frames(self, indices: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """Return the frames at ``indices`` (any order, repeats allowed) as uint8 (T, 3, H, W) RGB upright.

        Raises ValueError for negative indices, or for indices past an exact frame count; indices past an
        *estimated* count return the last frame. Raises `VideoDecodeError` when decoding fails.
        """
        if self._source is None:
            raise ValueError(f"VideoReader for {self.path!r} is closed")
        wanted = [int(i) for i in (indices.tolist() if isinstance(indices, torch.Tensor) else indices)]
        if not wanted:
            raise ValueError("get_frames needs at least one index")
        meta = self.metadata
        if min(wanted) < 0 or (meta.num_frames_exact and max(wanted) >= meta.num_frames):
            raise ValueError(
                f"frame indices must be in [0, {meta.num_frames}) for {self.path!r}, got min {min(wanted)} "
                f"max {max(wanted)}; sample with fast_timesformer.data.sampling, which keeps indices in range"
            )
        unique = sorted(set(wanted))
        source = self._source
        times = [source.start + i / meta.fps for i in unique]
        # (N, C, H, W) uint8 upright, one frame per unique index; the backend made the layout change.
        picked = source.frames_at(times, tolerance=source.tolerance, allow_past_end=not meta.num_frames_exact)
        by_index = dict(zip(unique, picked.unbind(0)))
        return torch.stack([by_index[i] for i in wanted])  # (T, C, H, W), in the order asked for

    @property
    def frames_decoded(self) -> int:
        """Frames the decoder has produced so far (including the probe); -1 when the backend cannot tell."""
        return getattr(self._source, "frames_decoded", -1)

    def close(self) -> None:
        """Release the file; safe to call twice."""
        if self._source is not None:
            self._source.close()
            self._source = None

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"VideoReader({self.path!r}, backend={self.backend!r})"


#: Codecs of still-image files (FFmpeg names); with at most one frame such a file is a picture, not a video.
#: Animated GIF / APNG / WebP files have more frames and stay videos.
STILL_IMAGE_CODECS = frozenset({
    "png", "apng", "mjpeg", "jpegls", "jpeg2000", "bmp", "tiff", "webp", "gif", "ppm", "pgm", "pbm", "pam",
    "qoi", "sgi", "targa", "dpx", "exr", "hdr", "pcx", "xbm", "xwd", "sunrast", "jpegxl", "pfm", "dds",
})  # fmt: skip


def is_still_image(metadata: VideoMetadata) -> bool:
    """Whether an opened file is a single picture (an image codec holding at most one frame)."""
    return metadata.codec in STILL_IMAGE_CODECS and metadata.num_frames <= 1


def read_video_frames(
    path: str | os.PathLike | bytes,
    indices: Sequence[int] | torch.Tensor,
    *,
    backend: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_duration: float = DEFAULT_MAX_DURATION,
) -> torch.Tensor:
    """Open ``path``, return the frames at ``indices`` as uint8 (T, 3, H, W) RGB, and close it.

    Args:
        path: the video file.
        indices: frame indices on the nominal frame grid (see the module docstring).
        backend: "auto", "pyav" or "torchcodec".
        max_pixels: refuse files with more pixels per frame than this.
        max_frames: refuse files declaring more frames than this.
        max_duration: refuse files declaring more seconds than this.
    """
    with VideoReader(
        path, backend=backend, max_pixels=max_pixels, max_frames=max_frames, max_duration=max_duration
    ) as reader:
        return reader.get_frames(indices)


def probe_video(path: str | os.PathLike | bytes, *, backend: str = "auto") -> VideoMetadata:
    """Open ``path`` just long enough to read its `VideoMetadata` (decodes one frame)."""
    with VideoReader(path, backend=backend) as reader:
        return reader.metadata


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "VideoDecodeError",
    "VideoMetadata",
    "VideoReader",
    "is_still_image",
    "probe_video",
    "read_video_frames",
    "resolve_backend",
]
