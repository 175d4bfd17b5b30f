"""Tiny real video files written with PyAV at test time, shared by the tests/test_data_*.py files.

Frames are *identifiable*: frame ``i`` is a flat colour whose red channel is ``STEP * i`` (mod 256),
so `frame_ids` recovers which source frame a decoded frame was, through lossy codecs too. A white
``MARK`` x ``MARK`` block in the top-left corner shows orientation.
"""

from __future__ import annotations

import fractions
import os
from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import pytest
import torch

STEP = 8
MARK = 8


def pattern(index: int, height: int, width: int) -> np.ndarray:
    """Source frame ``index``: flat (STEP * index % 256, 100, 50) with a white top-left block."""
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = (STEP * index % 256, 100, 50)
    frame[:MARK, :MARK] = 255
    return frame


def frame_ids(video: torch.Tensor) -> list[int]:
    """Source indices of decoded frames (T, 3, H, W) made by `pattern` (red level of the bottom-right area)."""
    corner = video[:, 0, -4:, -4:].float().mean(dim=(1, 2))
    return [int(round(float(value) / STEP)) for value in corner]


def write_video(
    path: str | os.PathLike,
    *,
    num_frames: int = 30,
    width: int = 64,
    height: int = 48,
    fps: int = 30,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict | None = None,
    container_options: dict | None = None,
    rotation: int | None = None,
    pts: Sequence[int] | None = None,
    audio_first: bool = False,
    frames: np.ndarray | None = None,
) -> Path:
    """Encode a small video; ``pts`` (in 1/fps units) makes it variable-frame-rate.

    ``frames`` (T, H, W, 3) uint8 overrides the `pattern` frames.
    """
    path = Path(path)
    container = av.open(str(path), "w", options=container_options or {})
    audio = container.add_stream("aac", rate=16000) if audio_first else None
    stream = container.add_stream(codec, rate=fps, options=options or {})
    stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
    if rotation is not None:
        stream.set_display_rotation(rotation)
    count = len(frames) if frames is not None else num_frames
    for i in range(count):
        if audio is not None:
            samples = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            samples.sample_rate, samples.pts = 16000, i * 1024
            for packet in audio.encode(samples):
                container.mux(packet)
        image = frames[i] if frames is not None else pattern(i, height, width)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")  # the encoder converts to pix_fmt
        frame.pts = pts[i] if pts is not None else i
        frame.time_base = fractions.Fraction(1, fps)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    if audio is not None:
        for packet in audio.encode(None):
            container.mux(packet)
    container.close()
    return path


def write_audio_only(path: str | os.PathLike) -> Path:
    """An .m4a file with one AAC stream and no video."""
    path = Path(path)
    container = av.open(str(path), "w")
    stream = container.add_stream("aac", rate=16000)
    for i in range(8):
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        samples.sample_rate, samples.pts = 16000, i * 1024
        for packet in stream.encode(samples):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
    container.close()
    return path


def write_still_png(path: str | os.PathLike, *, width: int = 48, height: int = 32) -> Path:
    """A single grey PNG picture, written through FFmpeg's image2 muxer (what a still image looks like to it)."""
    container = av.open(str(path), "w", format="image2")
    stream = container.add_stream("png", rate=1)
    stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
    frame = av.VideoFrame.from_ndarray(np.full((height, width, 3), 128, np.uint8), format="rgb24")
    for packet in [*stream.encode(frame), *stream.encode()]:
        container.mux(packet)
    container.close()
    return Path(path)


def write_truncated(path: str | os.PathLike, *, keep: float = 0.75) -> Path:
    """An MP4 with its index first (faststart) cut to ``keep`` of its bytes: opens, then fails mid-stream."""
    path = Path(path)
    full = path.with_name(path.stem + "_full.mp4")
    write_video(
        full,
        num_frames=60,
        width=96,
        height=64,
        options={"g": "10"},
        container_options={"movflags": "faststart"},
    )
    data = full.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    full.unlink()
    return path


def write_huge_y4m(path: str | os.PathLike, *, side: int = 12000) -> Path:
    """A YUV4MPEG2 file whose header declares ``side`` x ``side`` frames but holds only a few bytes."""
    path = Path(path)
    header = f"YUV4MPEG2 W{side} H{side} F30:1 Ip A1:1 C420jpeg\nFRAME\n".encode()
    path.write_bytes(header + bytes(1024))
    return path


@pytest.fixture(scope="session")
def motion_root(tmp_path_factory) -> Path:
    """A small built-in motion dataset (8 train + 8 val clips), generated once per session."""
    from fast_timesformer.data.synthetic import generate_motion_dataset

    root = tmp_path_factory.mktemp("motion")
    generate_motion_dataset(root, num_videos=8, seed=0)
    return root
