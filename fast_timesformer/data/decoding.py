"""Read chosen frames of a video file as an upright RGB uint8 tensor.

`VideoReader` opens one file, checks its declared size and length against limits *before* decoding
anything, reports `VideoMetadata`, and returns the frames at requested indices as ``(T, 3, H, W)``
uint8. Every failure (missing file, not a video, audio only, truncated stream, no decodable frame,
over the limits) is a `VideoDecodeError` that names the file, the reason and what to do.

**Frame indices are positions on the nominal frame grid.** Index ``i`` means "the frame on screen at
``start + i / fps``", where ``fps`` is the stream's average rate. For constant-frame-rate files this is
exactly the ``i``-th frame; for variable-frame-rate files it selects by timestamp, so clips sampled by
`fast_timesformer.data.sampling` stay uniform in time rather than in (irregular) frame count.

**Seeking.** The reader remembers how far it has decoded. A request that starts behind that point, or
more than `SEEK_THRESHOLD_S` ahead of it, seeks to the keyframe before the first requested frame and
decodes forward from there; a request just ahead continues decoding. An 8-frame clip of a 10-minute
video therefore decodes about one GOP plus the clip span, not the whole file.

**Frame count.** MP4/AVI declare an exact frame count. Matroska/WebM usually declare none; then
``num_frames`` is estimated as ``round(duration * fps)`` and ``num_frames_exact`` is False. Indices past
the real end of such a file return the last frame (the frame still on screen); a file with an *exact*
declared count that ends early is reported as truncated instead.

**Rotation.** Phones store portrait video as landscape plus a display matrix. FFmpeg exposes the
matrix on decoded frames (`av.VideoFrame.rotation`, counter-clockwise degrees); the reader rotates by
the same angle, so frames come out the way a player shows them, and ``metadata.width``/``height`` are
those of the upright frames. Tested with files written by PyAV's `VideoStream.set_display_rotation`
(PyAV >= 15); older FFmpeg builds expose the same angle through the ``rotate`` stream tag, read as a
fallback.

**Pixel formats.** Every source format (yuv*, gray, rgba, pal8, ...) is converted by FFmpeg's swscale to
rgb24; alpha is dropped (not composited), palettes are expanded.

**Layout.** FFmpeg gives (H, W, C) per frame; `get_frames` returns (T, C, H, W). This is the only layout
change in the data pipeline: transforms keep (T, C, H, W) and `collate_videos` stacks to the model's
(B, T, C, H, W).

Backends: ``"pyav"`` (always available with the ``[video]`` extra), ``"torchcodec"`` (in
`torchcodec_backend`; used only when ``import torchcodec`` succeeds, not exercised by this project's CI),
and ``"auto"`` (torchcodec if it loads, else PyAV). The chosen backend is logged once per process at
INFO and per file at DEBUG.
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from fast_timesformer.data.video_common import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    check_limits,
    check_path,
    normalise_rotation,
    upright,
)

logger = logging.getLogger(__name__)

# Decoding forward this many seconds costs about the same as one seek (keyframe + GOP decode) for
# typical H.264 (GOP 1-10 s), so requests closer than this continue instead of seeking.
SEEK_THRESHOLD_S = 1.0

BACKENDS = ("auto", "pyav", "torchcodec")

_PYAV_MISSING = "PyAV is required to decode videos: pip install 'fast-timesformer[video]' (or pip install av)"


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


def _import_av():
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is installed in CI
        raise ImportError(_PYAV_MISSING) from error
    return av


@functools.cache
def resolve_backend(backend: str) -> str:
    """Return the concrete backend for ``backend`` ("auto" -> "torchcodec" if it loads, else "pyav").

    The result is cached per process and logged once at INFO. Raises ImportError when an explicitly
    requested backend cannot be imported, and ValueError for an unknown name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    if backend in ("auto", "torchcodec"):
        try:
            import torchcodec.decoders  # noqa: F401
        except Exception as error:  # torchcodec raises OSError/RuntimeError when its FFmpeg libs are missing
            if backend == "torchcodec":
                raise ImportError(
                    f"video backend 'torchcodec' was requested but does not load ({error}); "
                    "install a torchcodec matching your torch and FFmpeg, or use backend='pyav'"
                ) from error
            _import_av()
            logger.info("video backend: pyav (torchcodec not available: %s)", error)
            return "pyav"
        logger.info("video backend: torchcodec")
        return "torchcodec"
    _import_av()
    logger.info("video backend: pyav")
    return "pyav"


def _to_rgb(frame: Any, path: str) -> np.ndarray:
    """One decoded frame as uint8 (H, W, 3) RGB, from any pixel format."""
    try:
        if frame.format.name in ("rgb24", "gbrp"):
            # PyAV reorders planar GBR itself; swscale's gbrp -> rgb24 path is ~10x slower on small frames.
            return frame.to_ndarray()
        return frame.to_ndarray(format="rgb24")  # yuv*, gray, rgba, pal8, ... via swscale
    except (ValueError, _import_av().error.FFmpegError) as error:
        raise VideoDecodeError(
            path, f"cannot convert {frame.format.name} frames to RGB ({error})", "re-encode the video"
        ) from error


class _PyAVSource:
    """The PyAV side of `VideoReader`: container, stream, and a forward-only decode position."""

    def __init__(self, path: str, *, threads: int, limits: dict[str, float]):
        av = _import_av()
        self.path = path
        try:
            self.container = av.open(path, metadata_errors="ignore")
        except av.error.FFmpegError as error:
            raise VideoDecodeError(
                path,
                f"not a video FFmpeg can open ({error.__class__.__name__}: {error.strerror})",
                "check that it is a complete video file (not text, HTML or a partial download)",
            ) from error
        try:
            self._open_stream(av, threads=threads, limits=limits)
        except BaseException:
            self.container.close()
            raise

    def _open_stream(self, av: Any, *, threads: int, limits: dict[str, float]) -> None:
        path, container = self.path, self.container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams}) or ["none"]
            raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})", "audio-only file?")
        stream = container.streams.video[0]
        stream.thread_count = threads
        self.stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            duration = 0.0
        if self.fps <= 0 and stream.frames and duration > 0:
            self.fps = stream.frames / duration
        if self.fps <= 0:
            raise VideoDecodeError(path, "no frame rate declared", "re-mux the file, e.g. to MP4")
        self.exact = bool(stream.frames)
        if stream.frames:
            self.num_frames = int(stream.frames)
        elif duration > 0:
            self.num_frames = int(round(duration * self.fps))
        else:  # neither a count nor a duration (e.g. a live-recorded Matroska): count packets, no decoding
            self.num_frames = self._count_packets(limit=int(limits["max_frames"]))
        self.duration = duration if duration > 0 else self.num_frames / self.fps
        width, height = stream.codec_context.width, stream.codec_context.height
        check_limits(
            path,
            width=width,
            height=height,
            num_frames=self.num_frames,
            duration=self.duration,
            limits=limits,
        )
        self.start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        # Timestamps are rounded to the time base (1 ms ticks in Matroska: frame 2 at 30 fps is stored as
        # 0.067 s, not 0.0667 s); allow that much, but never a quarter frame, which would pick the next
        # frame of a dense variable-frame-rate stretch.
        self._tick = tick = float(stream.time_base) if stream.time_base else 0.0
        self.tolerance = min(0.25 / self.fps, 1.5 * tick) if tick else 0.25 / self.fps
        self.frames_decoded = 0  # decoder output count, for tests and benchmarks of seeking
        self._frames = None  # decode generator; None means "seek before decoding"
        self._prev = None  # last frame taken from the generator
        # Probe the first frame: it proves that something decodes and carries the display matrix.
        try:
            first = self._frames_from(self.start, seek=False)
        except VideoDecodeError as error:
            raise VideoDecodeError(path, f"no decodable video frame ({error.reason})", error.fix) from error
        if first is None:
            raise VideoDecodeError(path, "no decodable video frame", "the stream is empty or corrupt")
        self._prev = first
        self.start = self._time(first, fallback=self.start)
        rotation = getattr(first, "rotation", 0) or 0
        if not rotation and "rotate" in stream.metadata:  # FFmpeg < 6 exported the matrix as a tag
            rotation = -float(stream.metadata["rotate"])
        self.rotation = normalise_rotation(rotation)
        self.codec = stream.codec_context.name
        if self.num_frames == 0:
            self.num_frames = 1  # a single decodable frame with no duration (e.g. one-frame WebM)
        self.width, self.height = (
            (first.height, first.width) if self.rotation in (90, 270) else (first.width, first.height)
        )

    def _count_packets(self, *, limit: int) -> int:
        count = 0
        for packet in self.container.demux(self.stream):
            count += packet.size > 0
            if count > limit:
                break  # check_limits reports it
        self.container.seek(0, stream=self.stream, backward=True)
        return count

    def _time(self, frame: Any, fallback: float) -> float:
        # float(time_base) once: Fraction arithmetic per frame costs more than decoding a small frame.
        return frame.pts * self._tick if frame.pts is not None and self._tick else fallback

    def _frames_from(self, time: float, *, seek: bool) -> Any:
        """(Re)start decoding so that the next frame is at or before ``time``; return the first frame."""
        av = _import_av()
        if seek:
            # Seek to the keyframe at or before one frame ahead of the target, in stream time base.
            target = max(time - 1.0 / self.fps, self.start) if time > self.start else self.start
            offset = int(math.floor(target / self.stream.time_base)) if self.stream.time_base else 0
            try:
                self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(self.path, f"seek failed: {error}", "re-mux the file") from error
        self._frames = self.container.decode(self.stream)
        return self._next()

    def _next(self) -> Any:
        av = _import_av()
        try:
            frame = next(self._frames)
            self.frames_decoded += 1
            return frame
        except StopIteration:
            return None
        except (av.error.FFmpegError, EOFError) as error:
            raise VideoDecodeError(
                self.path,
                f"decoding failed mid-stream ({error.__class__.__name__}: {error})",
                "the file is truncated or corrupt; re-download it",
            ) from error

    def frames_at(self, times: Sequence[float], *, tolerance: float, allow_past_end: bool) -> list[Any]:
        """Decoded frames on screen at each of the sorted ``times`` (seconds)."""
        prev = self._prev if self._frames is not None else None
        prev_time = self._time(prev, self.start) if prev is not None else None
        # Continue decoding forward when the first target is at or a little after the current position;
        # otherwise (behind us, or far ahead) seek to the keyframe before it.
        if prev_time is None or prev_time > times[0] + tolerance or times[0] - prev_time > SEEK_THRESHOLD_S:
            first = self._frames_from(times[0], seek=True)
            if first is None or self._time(first, self.start) > times[0] + tolerance:
                # The seek landed after the target (sparse or wrong index): decode from the start instead.
                first = self._frames_from(self.start, seek=True)
            self._prev = first
        selected: list[Any] = []
        frame = self._prev
        while len(selected) < len(times):
            nxt = self._next()
            if nxt is None:
                break
            # `frame` is the answer for every target before the next frame's time.
            while len(selected) < len(times) and self._time(nxt, math.inf) > times[len(selected)] + tolerance:
                selected.append(frame)
            frame = nxt
            self._prev = frame
        if len(selected) < len(times):
            if frame is None:
                raise VideoDecodeError(
                    self.path, "no frame decoded at the requested times", "the file is corrupt"
                )
            last_time = self._time(frame, self.start)
            missing = times[len(selected)]
            declared_end = self.start + (self.num_frames - 1) / self.fps
            if not allow_past_end and last_time < min(missing, declared_end) - 2.0 / self.fps:
                raise VideoDecodeError(
                    self.path,
                    f"stream ends at {last_time:.2f} s but declares {self.num_frames} frames "
                    f"({declared_end:.2f} s)",
                    "the file is truncated; re-download it",
                )
            selected.extend([frame] * (len(times) - len(selected)))
            self._frames = None  # generator exhausted: the next request must seek
        return selected

    def close(self) -> None:
        self.container.close()


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
    ):
        """
        Args:
            path: the video file (str, Path, or bytes for names that are not valid UTF-8).
            backend: "auto" (torchcodec if it imports, else PyAV), "pyav" or "torchcodec".
            max_pixels: refuse files whose declared width x height exceeds this (before decoding).
            max_frames: refuse files whose declared or estimated frame count exceeds this.
            max_duration: refuse files whose declared duration in seconds exceeds this.
            threads: FFmpeg decoding threads per file; 1 suits DataLoader workers (one file per core).
        """
        self.path = os.fsdecode(path) if isinstance(path, bytes) else os.fspath(path)
        self.backend = resolve_backend(backend)
        limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
        check_path(self.path)
        if self.backend == "torchcodec":  # pragma: no cover - torchcodec is not installed in CI
            from .torchcodec_backend import TorchCodecSource as source_cls
        else:
            source_cls = _PyAVSource
        self._source: Any = source_cls(self.path, threads=threads, limits=limits)
        source = self._source
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
        picked = source.frames_at(times, tolerance=source.tolerance, allow_past_end=not meta.num_frames_exact)
        if isinstance(picked, torch.Tensor):  # torchcodec: already (N, C, H, W) uint8 upright
            by_index = dict(zip(unique, picked.unbind(0)))
            return torch.stack([by_index[i] for i in wanted])
        arrays: dict[int, np.ndarray] = {}
        converted: dict[int, np.ndarray] = {}  # the same frame may serve several indices
        for index, frame in zip(unique, picked):
            key = id(frame)
            if key not in converted:
                converted[key] = _to_rgb(frame, self.path)  # (H, W, 3)
            arrays[index] = converted[key]
        video = torch.from_numpy(np.stack([arrays[i] for i in wanted]))  # (T, H, W, C)
        video = video.permute(0, 3, 1, 2)  # (T, C, H, W): the pipeline's one layout change
        return upright(video, meta.rotation).contiguous()

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
