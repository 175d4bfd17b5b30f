"""What every video decoding backend shares: the error type, the limits, the frame helpers and the interface.

`fast_timesformer.data.decoding.VideoReader` opens a file through a *source*, one class per backend
(`PyAVSource` in ``pyav.py``, `TorchCodecSource` in ``torchcodec.py``). Both import their helpers from here
and implement `VideoSource`, so neither imports the other, and this module imports nothing of the package
but `fast_timesformer.errors`.

**Index and time.** A source works in seconds, not frame indices: the reader turns index ``i`` into the
time ``start + i / fps`` (the frame on screen then; see `decoding`'s docstring) and asks the source for
the frames at those times. ``tolerance`` absorbs timestamps rounded to the container's time base, so a
frame stored a fraction of a tick after its nominal time still answers for it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from typing import Protocol

import torch

from fast_timesformer.errors import FastTimeSformerError

# DCI 4K (4096 x 2160, and UHD 3840 x 2160 either way up). A clip is resized to ~224 px anyway; a larger
# frame costs gigabytes to decode (4096 x 4096: 1.35 GB peak for 3 frames) and is refused with the fix.
DEFAULT_MAX_PIXELS = 4096 * 2160
# ~4.6 hours at 30 fps: longer files are not clips, and a bogus header must not start a huge loop.
DEFAULT_MAX_FRAMES = 500_000
DEFAULT_MAX_DURATION = 4 * 3600.0


class VideoDecodeError(FastTimeSformerError, RuntimeError):
    """A video could not be read. ``path`` and ``reason`` are kept as attributes for reports."""

    def __init__(self, path: str | os.PathLike, reason: str, fix: str | None = None):
        self.path = os.fspath(path)
        self.reason = reason
        self.fix = fix
        message = f"cannot read video {self.path!r}: {reason}"
        if fix:
            message += f" ({fix})"
        super().__init__(message)

    def __reduce__(self):
        # Keep the three fields when the error is pickled across DataLoader workers.
        return (type(self), (self.path, self.reason, self.fix))


class VideoSource(Protocol):
    """One open video file, as a backend sees it; `VideoReader` holds one and builds `VideoMetadata` from it.

    The constructor is ``Source(path, *, threads, limits)``: it opens the file, raises `VideoDecodeError`
    for anything unreadable, and checks the declared size and length with `check_limits` before decoding
    more than (at most) one probe frame.
    """

    path: str
    fps: float  # average frame rate: index i is the frame on screen at start + i / fps
    duration: float  # seconds
    exact: bool  # num_frames is the declared count (True) or round(duration * fps) (False)
    num_frames: int
    start: float  # time of the first frame, seconds
    tolerance: float  # how far after a requested time a frame may be stamped and still count as on screen
    rotation: int  # counter-clockwise degrees that make the frames upright: 0, 90, 180 or 270
    codec: str
    width: int  # of the upright frames
    height: int

    def frames_at(self, times: Sequence[float], *, tolerance: float, allow_past_end: bool) -> torch.Tensor:
        """The frames on screen at each of the sorted, distinct ``times`` (seconds), one per time, as uint8
        (N, C, H, W) RGB, upright.

        Times past the end of the stream give its last frame. Without ``allow_past_end`` (the count is
        exact) a source may report a stream that ends well before them as truncated instead (PyAV does).
        """
        ...

    def close(self) -> None:
        """Release the file."""
        ...


def check_path(path: str) -> None:
    """Raise `VideoDecodeError` unless ``path`` is an existing, non-empty regular file (or a link to one).

    Pipes, sockets and devices are refused here, before FFmpeg opens them: a FIFO would block the reader
    until something writes to it, and none of them can be seeked.
    """
    if os.path.islink(path) and not os.path.exists(path):
        raise VideoDecodeError(
            path, f"dangling symlink (points to {os.readlink(path)!r})", "fix or remove the link"
        )
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found", "check the path, or the annotation root for a dataset")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file", "give the path of a video file")
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "a named pipe" if stat.S_ISFIFO(mode)
            else "a socket" if stat.S_ISSOCK(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
            else "a special file"
        )  # fmt: skip
        raise VideoDecodeError(
            path,
            f"not a regular file ({kind})",
            "save the video to a file first; pipes and devices cannot seek",
        )
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(
            path, "empty file (0 bytes)", "re-download it, or remove it from the annotations"
        )


def check_limits(
    path: str, *, width: int, height: int, num_frames: int, duration: float, limits: dict[str, float]
) -> None:
    """Raise `VideoDecodeError` when the declared size or length is invalid or over ``limits``.

    ``limits`` has the keys ``max_pixels``, ``max_frames`` and ``max_duration`` (`VideoReader`'s arguments).
    """
    if width <= 0 or height <= 0:
        raise VideoDecodeError(
            path, f"declared frame size {width}x{height} is invalid", "the file is corrupt"
        )
    if width * height > limits["max_pixels"]:
        raise VideoDecodeError(
            path,
            f"declared frame size {width}x{height} ({width * height} pixels) exceeds max_pixels="
            f"{int(limits['max_pixels'])}; refused before decoding",
            "resize the video, or raise max_pixels (--max-pixels on the command line)",
        )
    if num_frames > limits["max_frames"]:
        raise VideoDecodeError(
            path,
            f"declared length {num_frames} frames exceeds max_frames={int(limits['max_frames'])}",
            "cut the video into clips, or raise max_frames (--max-frames)",
        )
    if duration > limits["max_duration"]:
        raise VideoDecodeError(
            path,
            f"declared duration {duration:.1f} s exceeds max_duration={limits['max_duration']:.0f} s",
            "cut the video into clips, or raise max_duration (--max-duration)",
        )


def upright(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    """Rotate (T, C, H, W) ``frames`` counter-clockwise by ``rotation`` degrees (a multiple of 90)."""
    # torch.rot90 over (H, W) with k > 0 turns counter-clockwise, matching VideoFrame.rotation's convention.
    k = (rotation // 90) % 4
    return torch.rot90(frames, k, dims=(2, 3)).contiguous() if k else frames


def normalise_rotation(degrees: float) -> int:
    """Any angle in degrees as the nearest of 0, 90, 180, 270."""
    return int(round(degrees / 90.0)) * 90 % 360


__all__ = [
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "VideoDecodeError",
    "VideoSource",
    "check_limits",
    "check_path",
    "normalise_rotation",
    "upright",
]
