"""VideoReader on real files written by PyAV at test time: metadata, frame selection, seeking, odd inputs,
and every bad input of issue 3 giving a VideoDecodeError that names the file and the reason."""

from __future__ import annotations

import fractions
import io
import logging
import os
import pickle

import av
import numpy as np
import pytest
import torch
from video_fixtures import (
    MARK,
    frame_ids,
    pattern,
    write_audio_only,
    write_huge_y4m,
    write_truncated,
    write_video,
)

from fast_timesformer.data import VideoDecodeError, VideoReader, probe_video, read_video_frames
from fast_timesformer.data.decoding import resolve_backend

# -- metadata and frame selection ----------------------------------------------------------------------


def test_mp4_metadata_and_frames(tmp_path):
    path = write_video(tmp_path / "a.mp4", num_frames=30, width=64, height=48)
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert (meta.num_frames, meta.num_frames_exact, meta.width, meta.height) == (30, True, 64, 48)
        assert meta.fps == pytest.approx(30.0) and meta.duration == pytest.approx(1.0)
        assert meta.rotation == 0 and meta.backend == "pyav" and meta.codec == "h264"
        video = reader.get_frames([0, 5, 29])
        assert video.shape == (3, 3, 48, 64) and video.dtype == torch.uint8
        assert frame_ids(video) == [0, 5, 29]
        # Any order and repeats; the same reader can go backwards (it seeks).
        assert frame_ids(reader.get_frames([7, 3, 3, 20])) == [7, 3, 3, 20]
        assert frame_ids(reader.get_frames(torch.tensor([1, 2]))) == [1, 2]


def test_every_frame_matches_a_plain_decode(tmp_path):
    path = write_video(tmp_path / "a.mp4", num_frames=20)
    with av.open(str(path)) as container:
        reference = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    video = read_video_frames(path, list(range(20)))
    assert torch.equal(video.permute(0, 2, 3, 1), torch.from_numpy(reference))


def test_seeks_instead_of_decoding_the_whole_file(tmp_path):
    path = write_video(tmp_path / "long.mp4", num_frames=300, width=32, height=32, options={"g": "30"})
    with VideoReader(path) as reader:
        wanted = list(range(280, 296, 2))
        assert frame_ids(reader.get_frames(wanted)) == [i % 32 for i in wanted]
        # one probe frame + at most one GOP before the clip + the clip span
        assert reader.frames_decoded < 1 + 30 + 20
        before = reader.frames_decoded
        reader.get_frames([297, 299])  # just ahead: continues without seeking back
        assert reader.frames_decoded - before <= 4


def test_indices_out_of_range_are_a_value_error(tmp_path):
    path = write_video(tmp_path / "a.mp4", num_frames=10)
    with VideoReader(path) as reader:
        with pytest.raises(ValueError, match=r"\[0, 10\)"):
            reader.get_frames([10])
        with pytest.raises(ValueError):
            reader.get_frames([-1])
        with pytest.raises(ValueError, match="at least one"):
            reader.get_frames([])


@pytest.mark.parametrize("suffix,codec", [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_unknown_frame_count_is_estimated(tmp_path, suffix, codec):
    path = write_video(tmp_path / f"a{suffix}", num_frames=30, codec=codec)
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert meta.num_frames_exact is False and meta.num_frames == 30
        assert frame_ids(reader.get_frames([0, 14, 29])) == [0, 14, 29]
        # Past an *estimated* end: the last frame, the one still on screen.
        assert frame_ids(reader.get_frames([29, 31, 40])) == [29, 29, 29]


def test_matroska_without_duration_counts_packets(tmp_path):
    # Written to a non-seekable stream (like a live recording), the muxer cannot go back to store the
    # duration: neither a frame count nor a duration is declared.
    class Unseekable(io.RawIOBase):
        def __init__(self, handle):
            self.handle = handle

        def writable(self):
            return True

        def write(self, data):
            return self.handle.write(data)

    path = tmp_path / "live.mkv"
    with open(path, "wb") as handle, av.open(Unseekable(handle), "w", format="matroska") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for i in range(20):
            for packet in stream.encode(av.VideoFrame.from_ndarray(pattern(i, 32, 32), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        assert container.duration is None and container.streams.video[0].frames == 0
    with VideoReader(path) as reader:
        assert (reader.metadata.num_frames, reader.metadata.num_frames_exact) == (20, False)
        assert frame_ids(reader.get_frames([0, 10, 19])) == [0, 10, 19]


def test_variable_frame_rate_selects_by_timestamp(tmp_path):
    # 12 frames with gaps: shown at these multiples of 1/30 s
    pts = [0, 1, 2, 3, 10, 11, 12, 20, 21, 22, 23, 40]
    # No B-frames: with them this VFR stream gets a wrong MP4 duration (a quirk of this test file).
    path = write_video(tmp_path / "vfr.mp4", pts=pts, num_frames=len(pts), options={"bf": "0"})
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert meta.num_frames == 12
        fps = meta.fps  # average rate: 12 frames over 41/30 s
        assert fps == pytest.approx(12 / (41 / 30), rel=1e-3)
        got = frame_ids(reader.get_frames(list(range(12))))
    times = [p / 30 for p in pts]
    # index i means "the frame on screen at i / fps"
    expected = [max(k for k, t in enumerate(times) if t <= i / fps + 1e-3) for i in range(12)]
    assert got == expected
    assert got != list(range(12))  # by index it would have been different


def test_odd_frame_size(tmp_path):
    path = write_video(tmp_path / "odd.mp4", width=63, height=47, pix_fmt="yuv444p", num_frames=5)
    video = read_video_frames(path, [0, 4])
    assert video.shape == (2, 3, 47, 63)
    assert frame_ids(video) == [0, 4]


def test_grayscale_source_becomes_rgb(tmp_path):
    path = write_video(tmp_path / "gray.mkv", codec="ffv1", pix_fmt="gray", num_frames=4)
    video = read_video_frames(path, [0, 3])
    assert video.shape == (2, 3, 48, 64)
    assert torch.equal(video[:, 0], video[:, 1]) and torch.equal(video[:, 1], video[:, 2])


@pytest.mark.parametrize("name,codec,pix_fmt", [("rgba.mov", "png", "rgba"), ("bgra.mkv", "ffv1", "bgra")])
def test_alpha_source_drops_alpha(tmp_path, name, codec, pix_fmt):
    path = write_video(tmp_path / name, codec=codec, pix_fmt=pix_fmt, num_frames=4)
    video = read_video_frames(path, [2])
    assert video.shape == (1, 3, 48, 64)
    assert video[0, :, 30, 30].tolist() == [16, 100, 50]  # pattern(2): exact, lossless codecs


def test_palette_source_is_expanded(tmp_path):
    palette = np.zeros((256, 4), np.uint8)
    palette[:, 0] = 255  # ARGB
    palette[1] = (255, 200, 30, 90)
    palette[2] = (255, 10, 220, 10)
    path = str(tmp_path / "palette.mov")
    with av.open(path, "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "pal8"
        for i in range(3):
            image = np.ones((24, 32), np.uint8)
            image[:8, :8] = 2
            frame = av.VideoFrame.from_ndarray((image, palette), format="pal8")
            frame.pts, frame.time_base = i, fractions.Fraction(1, 10)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    video = read_video_frames(path, [0, 2])
    assert video.shape == (2, 3, 24, 32)
    assert video[0, :, 20, 20].tolist() == [200, 30, 90] and video[1, :, 0, 0].tolist() == [10, 220, 10]


@pytest.mark.parametrize("rotation", [90, 270, 180])
def test_rotation_metadata_gives_upright_frames(tmp_path, rotation):
    # set_display_rotation writes the display matrix (counter-clockwise degrees, as VideoFrame.rotation
    # reads it back). Players (ffmpeg's autorotate) turn the picture counter-clockwise by that angle, so
    # the white top-left mark of the stored 64x48 frame ends up: 90 -> bottom-left, 270 -> top-right,
    # 180 -> bottom-right.
    path = write_video(tmp_path / "rot.mp4", rotation=rotation, pix_fmt="yuv444p", num_frames=5)
    with VideoReader(path) as reader:
        meta = reader.metadata
        assert meta.rotation == rotation
        video = reader.get_frames([0])[0]
    quarter = rotation in (90, 270)
    assert (meta.width, meta.height) == ((48, 64) if quarter else (64, 48))
    assert video.shape == (3, meta.height, meta.width)
    white = (video.float().mean(0) > 240).nonzero()
    top, left = white.min(0).values.tolist()
    bottom, right = white.max(0).values.tolist()
    assert bottom - top + 1 == MARK and right - left + 1 == MARK
    expected = {
        90: (meta.height - MARK, 0),
        270: (0, meta.width - MARK),
        180: (meta.height - MARK, meta.width - MARK),
    }
    assert (top, left) == expected[rotation]


def test_audio_stream_first(tmp_path):
    path = write_video(tmp_path / "audio_first.mp4", audio_first=True, num_frames=10)
    with av.open(str(path)) as container:
        assert container.streams[0].type == "audio"
    assert frame_ids(read_video_frames(path, [0, 9])) == [0, 9]


def test_non_utf8_file_name(tmp_path):
    name = os.fsencode(str(tmp_path)) + b"/caf\xe9.mp4"
    write_video(os.fsdecode(name), num_frames=4)
    assert frame_ids(read_video_frames(name, [3])) == [3]  # bytes path
    assert probe_video(os.fsdecode(name)).num_frames == 4  # str with surrogate escapes


# -- bad input: one VideoDecodeError each, naming the file and the reason ---------------------------------


def _decode_error(path, **limits) -> VideoDecodeError:
    with pytest.raises(VideoDecodeError) as info:
        with VideoReader(path, **limits) as reader:
            reader.get_frames(list(range(reader.metadata.num_frames)))
    error = info.value
    assert error.path == os.fspath(path) and os.fspath(path) in str(error)
    return error


def test_empty_file(tmp_path):
    (tmp_path / "empty.mp4").write_bytes(b"")
    assert "empty file" in _decode_error(tmp_path / "empty.mp4").reason


def test_text_file_named_mp4(tmp_path):
    (tmp_path / "notes.mp4").write_text("this is not a video\n" * 20)
    assert "not a video FFmpeg can open" in _decode_error(tmp_path / "notes.mp4").reason


def test_truncated_mp4_fails_mid_stream(tmp_path):
    path = write_truncated(tmp_path / "cut.mp4")
    with VideoReader(path) as reader:  # the index is intact: it opens and declares 60 frames
        assert reader.metadata.num_frames == 60
        reader.get_frames([0])  # the start decodes
        with pytest.raises(VideoDecodeError, match="truncated"):
            reader.get_frames([59])


def test_truncated_mp4_without_index_fails_at_open(tmp_path):
    full = write_video(tmp_path / "full.mp4", num_frames=30)  # index (moov) at the end: cut away
    (tmp_path / "cut.mp4").write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "not a video" in _decode_error(tmp_path / "cut.mp4").reason


def test_audio_only_file(tmp_path):
    error = _decode_error(write_audio_only(tmp_path / "sound.m4a"))
    assert "no video stream" in error.reason and "audio" in error.reason


def test_directory_and_dangling_symlink(tmp_path):
    assert "directory" in _decode_error(tmp_path).reason
    link = tmp_path / "gone.mp4"
    link.symlink_to(tmp_path / "missing.mp4")
    assert "dangling symlink" in _decode_error(link).reason
    assert "file not found" in _decode_error(tmp_path / "never.mp4").reason


def test_zero_decodable_frames(tmp_path):
    # Only the P-frames of a clip, re-muxed without their keyframe: packets exist, nothing decodes.
    source = write_video(tmp_path / "src.mp4", num_frames=12, options={"g": "100", "bf": "0"})
    target = tmp_path / "no_keyframe.mkv"
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None and not packet.is_keyframe:
                packet.stream = stream
                dst.mux(packet)
    assert "no decodable video frame" in _decode_error(target).reason


def test_huge_declared_resolution_is_refused_before_decoding(tmp_path):
    path = write_huge_y4m(tmp_path / "huge.y4m", side=12000)  # 144 Mpixel frames, ~200 MB each
    error = _decode_error(path)
    assert (
        "12000x12000" in error.reason
        and "refused before decoding" in error.reason
        and "max_pixels" in str(error)
    )


def test_limits_on_real_files(tmp_path):
    path = write_video(tmp_path / "a.mp4", num_frames=30)
    assert "max_pixels" in _decode_error(path, max_pixels=64 * 47).reason
    assert "max_frames" in _decode_error(path, max_frames=29).reason
    assert "max_duration" in _decode_error(path, max_duration=0.5).reason
    assert read_video_frames(path, [0], max_pixels=64 * 48, max_frames=30, max_duration=1.0).shape[0] == 1


def test_decode_error_survives_pickling():
    error = VideoDecodeError("/data/x.mp4", "empty file (0 bytes)", "re-download it")
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.reason, str(copy)) == (error.path, error.reason, str(error))


# -- backends ----------------------------------------------------------------------------------------------


def test_auto_backend_falls_back_to_pyav_and_logs(tmp_path, caplog):
    pytest.importorskip("av")
    try:
        import torchcodec.decoders  # noqa: F401

        pytest.skip("torchcodec loads here: 'auto' picks it")
    except Exception:
        pass
    resolve_backend.cache_clear()
    with caplog.at_level(logging.INFO, logger="fast_timesformer.data.decoding"):
        assert resolve_backend("auto") == "pyav"
    assert "video backend: pyav" in caplog.text
    path = write_video(tmp_path / "a.mp4", num_frames=3)
    assert probe_video(path).backend == "pyav"
    with pytest.raises(ImportError, match="backend='pyav'"):
        VideoReader(path, backend="torchcodec")
    with pytest.raises(ValueError, match="unknown video backend"):
        VideoReader(path, backend="decord")
    # importable without torchcodec
    from fast_timesformer.data.backends import torchcodec as torchcodec_backend

    with pytest.raises(ImportError):
        torchcodec_backend.TorchCodecSource(str(path), threads=1, limits={})


def test_torchcodec_and_pyav_give_the_same_frames(tmp_path):
    pytest.importorskip("torchcodec.decoders")
    path = write_video(tmp_path / "a.mp4", num_frames=30)
    indices = [0, 7, 8, 29]
    assert torch.equal(
        read_video_frames(path, indices, backend="torchcodec"),
        read_video_frames(path, indices, backend="pyav"),
    )


# -- errors and imports ------------------------------------------------------------------------------------


def test_data_errors_share_the_package_base_and_survive_pickling():
    from fast_timesformer.data import AnnotationError, TooManyBadVideos
    from fast_timesformer.errors import FastTimeSformerError

    errors = [
        (VideoDecodeError("/data/x.mp4", "empty file (0 bytes)", "re-download it"), RuntimeError),
        (AnnotationError("/data/train.csv", 3, "unknown label 'x'"), ValueError),
        (TooManyBadVideos("3 of 4 videos could not be decoded"), RuntimeError),
    ]
    for error, builtin in errors:
        assert isinstance(error, FastTimeSformerError) and isinstance(error, builtin)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error)
    decode_copy = pickle.loads(pickle.dumps(errors[0][0]))
    assert (decode_copy.path, decode_copy.reason, decode_copy.fix) == (
        "/data/x.mp4",
        "empty file (0 bytes)",
        "re-download it",
    )
    annotation_copy = pickle.loads(pickle.dumps(errors[1][0]))
    assert (annotation_copy.path, annotation_copy.line, annotation_copy.reason) == (
        "/data/train.csv",
        3,
        "unknown label 'x'",
    )


def test_importing_the_data_package_needs_neither_numpy_nor_av():
    import subprocess
    import sys

    # numpy and PyAV blocked: the package, its annotation readers and the error types still import.
    blocked = (
        "import sys; sys.modules['numpy'] = None; sys.modules['av'] = None\n"
        "import fast_timesformer.data\n"
        "from fast_timesformer.data import VideoDecodeError, read_annotations\n"
        "from fast_timesformer.data.decoding import DEFAULT_MAX_PIXELS, resolve_backend\n"
    )
    subprocess.run([sys.executable, "-c", blocked], check=True)
    # Neither is imported until a video is opened (torch itself may import numpy, so only av is checked).
    lazy = "import sys, fast_timesformer.data\nassert 'av' not in sys.modules, 'av imported at import time'\n"
    subprocess.run([sys.executable, "-c", lazy], check=True)
