"""`PyAVSource` skipping non-reference packets: frames bit-identical to decoding every packet.

Each file is written with PyAV at test time; the same index sets are read with ``skip_non_reference=False``
(the old path: every packet decoded) and ``True``, and the uint8 frames must be equal byte for byte.
"""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from video_fixtures import write_video

from fast_timesformer.data import VideoReader
from fast_timesformer.data.backends import pyav
from fast_timesformer.data.backends.pyav import PyAVSource, non_reference_test

LIMITS = {"max_pixels": 1e8, "max_frames": 1e6, "max_duration": 1e5}
NUM_FRAMES = 96


def moving_frames(num_frames: int = NUM_FRAMES, height: int = 48, width: int = 64) -> np.ndarray:
    """A drifting texture (T, H, W, 3): real motion, so x264 uses P- and B-frames instead of skips."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height + num_frames, width + 2 * num_frames, 3), dtype=np.uint8)
    return np.stack([texture[t : t + height, 2 * t : 2 * t + width] for t in range(num_frames)])


def index_sets(num_frames: int, seed: int = 0) -> list[list[int]]:
    """Dense, sparse, repeated-and-unordered, strided and end-of-file index sets."""
    rng = np.random.default_rng(seed)
    sets = [list(range(num_frames)), [0], [num_frames - 1], list(range(num_frames - 5, num_frames))]
    for _ in range(6):
        start = int(rng.integers(0, num_frames - 16))
        sets.append(list(range(start, start + 16)))  # dense
        sets.append(sorted(rng.choice(num_frames, size=8, replace=False).tolist()))  # sparse
        sets.append(rng.integers(0, num_frames, size=10).tolist())  # repeats, any order
        stride = int(rng.integers(2, 12))
        sets.append(list(range(start % stride, num_frames, stride)))  # strided, 8x32-like
    return sets


def read_all(path, sets: list[list[int]], *, skip: bool, monkeypatch) -> tuple[list[torch.Tensor], int]:
    """The frames of every set, read one after the other by ONE reader (so it continues and seeks)."""
    monkeypatch.setattr(pyav, "SKIP_NON_REFERENCE", skip)
    with VideoReader(path, backend="pyav") as reader:
        frames = [reader.get_frames(indices) for indices in sets]
        return frames, reader._source.packets_skipped


def assert_same_frames(path, monkeypatch, num_frames: int = NUM_FRAMES) -> int:
    """Old and new path agree on every index set, in one reader and in a fresh reader per set."""
    sets = index_sets(num_frames)
    old, skipped_none = read_all(path, sets, skip=False, monkeypatch=monkeypatch)
    new, skipped = read_all(path, sets, skip=True, monkeypatch=monkeypatch)
    assert skipped_none == 0
    for indices, a, b in zip(sets, old, new):
        assert torch.equal(a, b), f"frames differ for indices {indices}"
    for indices in sets[::3]:  # a fresh reader: the request starts from the probe
        (a,), _ = read_all(path, [indices], skip=False, monkeypatch=monkeypatch)
        (b,), _ = read_all(path, [indices], skip=True, monkeypatch=monkeypatch)
        assert torch.equal(a, b), f"frames differ for indices {indices} in a fresh reader"
    return skipped


@pytest.mark.parametrize("pyramid", ["none", "normal", "strict"])
def test_h264_b_frames_are_bit_identical(tmp_path, monkeypatch, pyramid):
    path = write_video(
        tmp_path / f"b_{pyramid}.mp4",
        frames=moving_frames(),
        options={"bf": "3", "b-pyramid": pyramid, "g": "24", "crf": "28"},
    )
    assert assert_same_frames(path, monkeypatch) > 0


def test_h264_variable_frame_rate_with_b_frames(tmp_path, monkeypatch):
    rng = np.random.default_rng(1)
    pts = np.cumsum(rng.choice([1, 1, 2, 3, 7], size=NUM_FRAMES)).tolist()  # gaps: no constant duration
    path = write_video(tmp_path / "vfr.mp4", frames=moving_frames(), pts=pts, options={"bf": "3", "g": "24"})
    with VideoReader(path, backend="pyav") as reader:
        num_frames = reader.metadata.num_frames
    assert assert_same_frames(path, monkeypatch, num_frames=num_frames) > 0


def test_h264_open_gop(tmp_path, monkeypatch):
    # Leading B-frames after a non-IDR keyframe refer to the GOP before it; they are never dropped.
    options = {"bf": "3", "x264-params": "open-gop=1:keyint=24:min-keyint=24:scenecut=0"}
    path = write_video(tmp_path / "open.mp4", frames=moving_frames(), options=options)
    assert assert_same_frames(path, monkeypatch) > 0


def test_h264_default_gop_skips_packets_and_decodes_fewer_frames(tmp_path):
    path = write_video(tmp_path / "x264.mp4", frames=moving_frames())  # x264 defaults: 3 B-frames, pyramid
    times_of = lambda source, ids: [source.start + i / source.fps for i in ids]  # noqa: E731
    wanted = list(range(10, NUM_FRAMES, 12))  # sparse: most B-frames are on screen at no requested time
    decoded, frames = {}, {}
    for skip in (False, True):
        source = PyAVSource(str(path), threads=1, limits=LIMITS, skip_non_reference=skip)
        times = times_of(source, wanted)
        frames[skip] = source.frames_at(times, tolerance=source.tolerance, allow_past_end=False)
        decoded[skip], skipped = source.frames_decoded, source.packets_skipped
        source.close()
        assert (skipped > 0) == skip
    assert torch.equal(frames[False], frames[True])
    assert decoded[True] < 0.8 * decoded[False]  # the skipped packets never reached the decoder


def test_past_the_end_requests_are_bit_identical(tmp_path):
    path = write_video(tmp_path / "end.mp4", frames=moving_frames())
    results = {}
    for skip in (False, True):
        source = PyAVSource(str(path), threads=1, limits=LIMITS, skip_non_reference=skip)
        last = source.start + (source.num_frames - 1) / source.fps
        times = [last - 3 / source.fps, last, last + 0.5 / source.fps, last + 1 / source.fps]
        results[skip] = source.frames_at(times, tolerance=source.tolerance, allow_past_end=True)
        source.close()
    assert torch.equal(results[False], results[True])
    assert torch.equal(results[True][-1], results[True][1])  # past the end: the last frame


def test_annex_b_h264_in_mpeg_ts(tmp_path, monkeypatch):
    path = write_video(tmp_path / "b.ts", frames=moving_frames(), options={"bf": "3", "g": "24"})
    with av.open(str(path)) as container:  # no avcC: start codes in every packet (and in the extradata)
        assert container.streams.video[0].codec_context.extradata[:1] != b"\x01"
    assert assert_same_frames(path, monkeypatch) > 0


@pytest.mark.skipif("libx265" not in av.codecs_available, reason="this PyAV build has no libx265")
def test_hevc_is_bit_identical(tmp_path, monkeypatch):
    path = write_video(
        tmp_path / "b.mp4", codec="libx265", frames=moving_frames(), options={"x265-params": "log-level=0"}
    )
    assert assert_same_frames(path, monkeypatch) > 0  # x265's default: one temporal layer, B-frames


def test_vp9_is_decoded_as_before(tmp_path, monkeypatch):
    path = write_video(
        tmp_path / "a.webm", codec="libvpx-vp9", frames=moving_frames(48), options={"deadline": "realtime"}
    )
    with VideoReader(path, backend="pyav") as reader:
        num_frames = reader.metadata.num_frames
    assert assert_same_frames(path, monkeypatch, num_frames=num_frames) == 0  # not a codec it parses


# -- the NAL header test on hand-made packets ---------------------------------------------------------
AVCC = bytes([1, 100, 0, 30, 0xFF, 0xE1])  # version 1, profile, compat, level, 4-byte NAL lengths, 1 SPS


def nal(header: int, payload: bytes = b"\x88\x84") -> bytes:
    body = bytes([header]) + payload
    return len(body).to_bytes(4, "big") + body


def test_h264_nal_ref_idc_decides():
    is_non_reference = non_reference_test("h264", AVCC + b"\x00")
    assert is_non_reference(nal(0x01))  # non-IDR slice, nal_ref_idc 0
    assert is_non_reference(nal(0x06) + nal(0x01))  # SEI + non-reference slice
    assert not is_non_reference(nal(0x21))  # nal_ref_idc 1
    assert not is_non_reference(nal(0x01) + nal(0x41))  # one reference slice is enough to keep it
    assert not is_non_reference(nal(0x65))  # IDR
    assert not is_non_reference(nal(0x06))  # no slice at all: keep
    annex_b = non_reference_test("h264", b"")
    assert annex_b(b"\x00\x00\x00\x01\x09\xf0\x00\x00\x01\x01\x88") and not annex_b(b"\x00\x00\x01\x41\x88")


def test_hevc_needs_one_temporal_layer_and_other_codecs_are_never_parsed():
    def hvcc(temporal_layers: int) -> bytes:
        header = bytearray(23)
        header[0], header[21] = 1, (temporal_layers << 3) | 3  # 4-byte NAL lengths
        return bytes(header)

    is_non_reference = non_reference_test("hevc", hvcc(1))
    assert is_non_reference(nal(0 << 1, b"\x01\x80"))  # TRAIL_N, TemporalId 0
    assert not is_non_reference(nal(1 << 1, b"\x01\x80"))  # TRAIL_R
    assert not is_non_reference(nal(19 << 1, b"\x01\x80"))  # IDR
    assert non_reference_test("hevc", hvcc(2)) is None  # sub-layer non-reference may be referenced
    assert non_reference_test("vp9", b"") is None and non_reference_test("h264", b"\x02junk") is None


# -- the RGB conversion ---------------------------------------------------------------------------------
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p", "gray", "yuv420p10le"])
def test_one_thread_rgb_conversion_gives_the_same_bytes(tmp_path, monkeypatch, pix_fmt):
    path = write_video(tmp_path / f"{pix_fmt}.mkv", frames=moving_frames(8, 64, 96), pix_fmt=pix_fmt,
                       codec="ffv1")  # fmt: skip
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    assert frames[0].format.name == pix_fmt
    converted = {}
    for threads in (None, 1):  # None: PyAV's default, a thread pool per frame
        monkeypatch.setattr(pyav, "CONVERT_THREADS", threads)
        converted[threads] = np.stack([pyav.to_rgb(frame, str(path)) for frame in frames])
    assert np.array_equal(converted[None], converted[1])
