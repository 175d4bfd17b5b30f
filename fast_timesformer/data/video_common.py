"""What every video decoding backend shares: the error type, the limits and the frame helpers.

``decoding.py`` (the PyAV source and ``VideoReader``) and ``torchcodec_backend.py`` both import from here, so
neither imports the other's internals.
"""

from __future__ import annotations

import os

import torch

from fast_timesformer.errors import FastTimeSformerError

# 4096 x 4096 covers UHD (3840x2160) and DCI 4K; anything larger is almost always a broken header.
DEFAULT_MAX_PIXELS = 4096 * 4096
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


def check_path(path: str) -> None:
    if os.path.islink(path) and not os.path.exists(path):
        raise VideoDecodeError(
            path, f"dangling symlink (points to {os.readlink(path)!r})", "fix or remove the link"
        )
    if not os.path.exists(path):
        raise VideoDecodeError(path, "file not found", "check the path and the annotation root")
    if os.path.isdir(path):
        raise VideoDecodeError(path, "is a directory, not a video file", "point the annotation at a file")
    if os.path.getsize(path) == 0:
        raise VideoDecodeError(path, "empty file (0 bytes)", "re-download or remove it from the annotations")


def check_limits(
    path: str, *, width: int, height: int, num_frames: int, duration: float, limits: dict[str, float]
) -> None:
    if width <= 0 or height <= 0:
        raise VideoDecodeError(
            path, f"declared frame size {width}x{height} is invalid", "the file is corrupt"
        )
    if width * height > limits["max_pixels"]:
        raise VideoDecodeError(
            path,
            f"declared frame size {width}x{height} ({width * height} pixels) exceeds max_pixels="
            f"{int(limits['max_pixels'])}; refused before decoding",
            "resize the video or raise max_pixels",
        )
    if num_frames > limits["max_frames"]:
        raise VideoDecodeError(
            path,
            f"declared length {num_frames} frames exceeds max_frames={int(limits['max_frames'])}",
            "cut the video into clips or raise max_frames",
        )
    if duration > limits["max_duration"]:
        raise VideoDecodeError(
            path,
            f"declared duration {duration:.1f} s exceeds max_duration={limits['max_duration']:.0f} s",
            "cut the video into clips or raise max_duration",
        )


def upright(frames: torch.Tensor, rotation: int) -> torch.Tensor:
    # frames: (T, C, H, W). torch.rot90 over (H, W) with k > 0 turns counter-clockwise, matching
    # VideoFrame.rotation's convention.
    k = (rotation // 90) % 4
    return torch.rot90(frames, k, dims=(2, 3)).contiguous() if k else frames


def normalise_rotation(degrees: float) -> int:
    return int(round(degrees / 90.0)) * 90 % 360


__all__ = [
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "VideoDecodeError",
    "check_limits",
    "check_path",
    "normalise_rotation",
    "upright",
]
