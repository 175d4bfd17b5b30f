"""The optional torchcodec backend of `fast_timesformer.data.decoding.VideoReader`: `TorchCodecSource`.

Used only when ``import torchcodec`` works (``backend="auto"`` prefers it then, ``"torchcodec"`` requires
it). It mirrors `PyAVSource`: same limits, same index-to-time mapping (frames "played at" ``start + i /
fps``), frames returned as uint8 (N, C, H, W) upright. torchcodec is imported inside the constructor only,
so this module imports without it (the constructor then raises ImportError). torchcodec is not installed
in this project's CI, so this file is not exercised there; ``tests/test_data_decoding.py`` compares both
backends frame for frame when it is installed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .common import VideoDecodeError, check_limits, normalise_rotation, upright


class TorchCodecSource:
    """The torchcodec side of `VideoReader` (used only when `import torchcodec` works).

    Implements `fast_timesformer.data.backends.common.VideoSource`.
    """

    def __init__(self, path: str, *, threads: int, limits: dict[str, float]):
        from torchcodec.decoders import VideoDecoder

        try:
            self.decoder = VideoDecoder(
                path, dimension_order="NCHW", seek_mode="approximate", num_ffmpeg_threads=threads
            )
        except Exception as error:
            raise VideoDecodeError(path, f"torchcodec cannot open it ({error})", "check the file") from error
        meta = self.decoder.metadata
        self.path = path
        self.fps = float(meta.average_fps or 0.0)
        self.duration = float(meta.duration_seconds or 0.0)
        self.exact = meta.num_frames is not None
        self.num_frames = int(meta.num_frames) if self.exact else int(round(self.duration * self.fps))
        if self.fps <= 0 or self.num_frames <= 0:
            raise VideoDecodeError(
                path, "no frame rate or no frames declared", "re-mux the file, e.g. to MP4"
            )
        check_limits(
            path,
            width=meta.width,
            height=meta.height,
            num_frames=self.num_frames,
            duration=self.duration,
            limits=limits,
        )
        self.start = float(getattr(meta, "begin_stream_seconds", 0.0) or 0.0)
        self.tolerance = 0.25 / self.fps
        self.rotation = normalise_rotation(getattr(meta, "rotation", 0) or 0)
        self.codec = str(meta.codec or "")
        quarter = self.rotation in (90, 270)
        self.width, self.height = (meta.height, meta.width) if quarter else (meta.width, meta.height)

    def frames_at(self, times: Sequence[float], *, tolerance: float, allow_past_end: bool) -> torch.Tensor:
        end = self.start + self.duration - 1e-6
        try:
            frames = self.decoder.get_frames_played_at(seconds=[min(t, end) for t in times]).data
        except Exception as error:
            raise VideoDecodeError(
                self.path, f"torchcodec decoding failed ({error})", "the file is corrupt"
            ) from error
        if tuple(frames.shape[-2:]) != (self.height, self.width):  # older torchcodec: not yet rotated
            frames = upright(frames, self.rotation)
        return frames

    def close(self) -> None:
        self.decoder = None


__all__ = ["TorchCodecSource"]
