"""The timeline of a long video: window planning, the streaming reader, scoring, segments, files, the CLI."""

from __future__ import annotations

import csv
import json
import weakref
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_fixtures import write_audio_only, write_still_png, write_truncated, write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.cli import main
from fast_timesformer.data import VideoDecodeError, VideoReader, collate_videos
from fast_timesformer.data.sampling import dense_indices, segment_indices
from fast_timesformer.data.streaming import StreamingVideoReader, WindowError, plan_windows, stream_windows
from fast_timesformer.data.synthetic import MOTION_CLASSES, render_clip, write_clip
from fast_timesformer.data.transforms import normalize
from fast_timesformer.inference import Predictor, timeline
from fast_timesformer.inference.timeline import merge_segments

# 4 frames x 4 apart: a 16-frame (0.53 s) window at 30 fps.
PREP = Preprocessing(num_frames=4, sampling_rate=4, crop_size=32, short_side=32, num_spatial_crops=3)


def tiny_model(num_classes: int = 3, num_frames: int = 4, image_size: int = 32) -> FastTimeSformer:
    torch.manual_seed(0)
    return FastTimeSformer(
        num_frames=num_frames, num_classes=num_classes, image_size=image_size, patch_size=8, dim=32,
        depth=2, heads=2, dim_head=16, pos_emb="rotary",
    ).eval()  # fmt: skip


def window_scores_by_hand(model, path, prep, starts_clips: int) -> torch.Tensor:
    """Per test clip, the mean over crops of softmax(model(view)) -- the Predictor's own views."""
    dataset = Predictor(model, preprocessing=prep.replace(num_temporal_clips=starts_clips)).views(path)
    batch = collate_videos([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        probabilities = model(batch["video"]).softmax(-1)  # (clips * crops, C)
    return probabilities.view(starts_clips, prep.num_spatial_crops, -1).mean(1)


# -- which frames a window samples ---------------------------------------------------------------------
def test_dense_windows_are_the_test_clips_of_dense_sampling():
    # 90 frames, span 16: test clips of num_clips=2 start at 0 and 37 -- a stride of 37 frames.
    windows = plan_windows(90, 30.0, num_frames=4, sampling="dense", sampling_rate=4, stride_s=37 / 30)
    for k in range(2):
        expected = dense_indices(
            90, num_frames=4, sampling_rate=4, train=False, clip_idx=k, num_clips=2, fps=30
        )
        assert list(windows[k].frames) == expected.tolist()
    assert [round(w.start_s * 30) for w in windows] == [0, 37, 74] and windows[-1].end_s == pytest.approx(3.0)
    # Default stride: half a window; a tail shorter than a stride gets one window aligned to the end.
    windows = plan_windows(100, 30.0, num_frames=4, sampling="dense", sampling_rate=4)
    assert [round(w.start_s * 30) for w in windows] == [0, 8, 16, 24, 32, 40, 48, 56, 64, 72, 80, 84]
    assert windows[-1].end_s == pytest.approx(100 / 30)
    # 60 fps: the span keeps its duration in seconds (32 frames), as dense_indices rescales it.
    assert plan_windows(200, 60.0, num_frames=4, sampling="dense", sampling_rate=4)[0].end_s == pytest.approx(
        16 / 30
    )


def test_short_video_gets_one_window_sampled_like_a_short_clip():
    (window,) = plan_windows(10, 30.0, num_frames=4, sampling="dense", sampling_rate=4, out_of_range="loop")
    assert list(window.frames) == dense_indices(10, num_frames=4, sampling_rate=4, train=False).tolist()
    assert (window.start_s, window.end_s) == (0.0, pytest.approx(10 / 30))


def test_segment_windows_treat_each_stretch_as_a_whole_video():
    windows = plan_windows(
        300, 30.0, num_frames=8, sampling="segment", sampling_rate=32, window_s=2.0, stride_s=1.0
    )
    assert [round(w.start_s * 30) for w in windows] == list(range(0, 241, 30))
    assert list(windows[3].frames) == (90 + segment_indices(60, num_frames=8, train=False)).tolist()
    (short,) = plan_windows(
        50, 30.0, num_frames=8, sampling="segment", sampling_rate=32
    )  # default 4 s window
    assert list(short.frames) == segment_indices(50, num_frames=8, train=False).tolist()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"stride_s": 0.0}, "stride must be positive"),
        ({"stride_s": -1.0}, "stride must be positive"),
        ({"window_s": 2.0}, "cannot be used with dense sampling"),
        ({"sampling": "uniform"}, "unknown sampling"),
    ],
)
def test_window_options_that_cannot_work(kwargs, message):
    args = {"num_frames": 4, "sampling": "dense", "sampling_rate": 4, **kwargs}
    with pytest.raises(WindowError, match=message):
        plan_windows(100, 30.0, **args)


# -- the streaming reader ------------------------------------------------------------------------------
def test_stream_gives_the_frames_random_access_gives_for_vfr_and_rotated_files(tmp_path):
    pts = [0, 1, 2, 3, 10, 11, 12, 20, 21, 22, 23, 40, 41, 45, 50, 52, 60, 61, 62, 63]
    vfr = write_video(tmp_path / "vfr.mp4", pts=pts, num_frames=len(pts), options={"bf": "0"})
    rotated = write_video(
        tmp_path / "rot.mp4", rotation=90, pix_fmt="yuv444p", num_frames=40, width=48, height=32
    )
    for path in (vfr, rotated):
        reader = StreamingVideoReader(path)
        meta = reader.metadata
        windows = plan_windows(meta.num_frames, meta.fps, num_frames=4, sampling="dense", sampling_rate=2)
        with VideoReader(path) as random_access:
            for window, frames in stream_windows(reader, windows):
                assert torch.equal(frames, random_access.get_frames(list(window.frames)))
        assert reader.frames_decoded <= meta.num_frames and not reader.problems  # stops after the last window
    assert StreamingVideoReader(rotated).metadata.rotation == 90  # upright: 32 wide, 48 high
    assert next(stream_windows(StreamingVideoReader(rotated), windows))[1].shape[-2:] == (48, 32)


def test_only_the_frames_of_coming_windows_are_kept(tmp_path):
    path = write_video(tmp_path / "long.mp4", num_frames=600, width=32, height=32)
    reader = StreamingVideoReader(path)
    windows = plan_windows(600, 30.0, num_frames=4, sampling="dense", sampling_rate=4)
    alive: weakref.WeakSet = weakref.WeakSet()

    def track(frame):
        copy = frame.clone()
        alive.add(copy)
        return copy

    peak = 0
    for _window, _frames in stream_windows(reader, windows, transform=track):
        peak = max(peak, len(alive))
    assert len(windows) == 74 and reader.frames_decoded == 600
    assert peak <= 2 * 4 + 1  # two overlapping windows' frames at most, whatever the length


def test_broken_packet_in_the_middle_is_skipped_and_located(tmp_path):
    path = write_video(tmp_path / "ok.mp4", num_frames=120, options={"g": "10", "bf": "0"})
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts * stream.time_base, p.pos, p.size) for p in container.demux(stream) if p.size]
    when, position, size = next(p for p in packets if p[0] >= 2.0)  # the packet of the frame at 2 s
    data = bytearray(path.read_bytes())
    data[position : position + size] = (
        np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    )
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with pytest.raises(VideoDecodeError, match="mid-stream"), VideoReader(broken) as reader:
        reader.get_frames(range(120))  # random access stops there: the file really is broken
    result = timeline(tiny_model(), broken, preprocessing=PREP, window_views=1)
    assert [p.kind for p in result.problems] == ["broken packet"]
    problem = result.problems[0]  # placed between the packets in flight in FFmpeg's decoding threads
    assert (
        problem.start_s - 1e-6 <= float(when) <= problem.end_s + 1e-6
        and problem.end_s - problem.start_s < 0.2
    )
    assert result.skipped_windows == 0 and result.windows[-1].end_s == pytest.approx(4.0)  # kept going
    assert problem.describe() in json.dumps(result.to_dict()) and "broken packet" in problem.describe()
    exact = timeline(tiny_model(), broken, preprocessing=PREP, window_views=1, threads=1).problems
    assert exact[0].describe().startswith("broken packet at 2.00 s: InvalidDataError")  # one thread: exact


def test_truncated_file_scores_what_it_has_and_says_where_it_ends(tmp_path):
    path = write_truncated(tmp_path / "cut.mp4", keep=0.8)  # about 32 of its 60 frames
    result = timeline(tiny_model(), path, preprocessing=PREP, window_views=1)
    assert [p.kind for p in result.problems] == ["stream ended early"]
    assert result.skipped_windows > 0 and result.windows
    assert result.segments[-1].end_s == pytest.approx(result.duration_s) and result.duration_s < 2.0


# -- scoring -------------------------------------------------------------------------------------------
def test_window_probabilities_equal_the_predictors_test_clips(tmp_path):
    path = write_video(tmp_path / "clip.mp4", num_frames=90, width=64, height=48)  # resized to 42x32, 3 crops
    model = tiny_model()
    result = timeline(model, path, preprocessing=PREP, stride=37 / 30, batch_size=5)
    expected = window_scores_by_hand(model, path, PREP, starts_clips=2)
    torch.testing.assert_close(result.probabilities[:2], expected, rtol=1e-4, atol=1e-5)
    assert len(result.windows) == 3 and result.frames_decoded == 90
    # One crop instead of three: the stored short side, centre crop -- Predictor with 1 crop.
    one = timeline(model, path, preprocessing=PREP, stride=37 / 30, window_views=1)
    expected = window_scores_by_hand(model, path, PREP.replace(num_spatial_crops=1), starts_clips=2)
    torch.testing.assert_close(one.probabilities[:2], expected, rtol=1e-4, atol=1e-5)


def test_video_shorter_than_a_window_is_one_window_equal_to_classify(tmp_path):
    path = write_video(tmp_path / "short.mp4", num_frames=10, width=40, height=32)
    model = tiny_model()
    result = timeline(model, path, preprocessing=PREP)
    predictor = Predictor(model, preprocessing=PREP)
    torch.testing.assert_close(result.probabilities[0], predictor.scores(path), rtol=1e-4, atol=1e-5)
    assert len(result.windows) == 1 and len(result.segments) == 1
    assert (result.segments[0].start_s, result.segments[0].end_s) == (0.0, pytest.approx(10 / 30))


def test_segments_follow_the_smoothing_rule():
    windows = plan_windows(160, 30.0, num_frames=4, sampling="dense", sampling_rate=4)  # 19 windows, 8 apart
    labels = [0] * 9 + [1] * 10
    labels[4] = 1  # one flicker
    probabilities = torch.nn.functional.one_hot(torch.tensor(labels), 2).float() * 0.8 + 0.1
    names = ["a", "b"]
    smoothed = merge_segments(probabilities, windows, names, duration_s=160 / 30, smoothing=3)
    assert [(s.label, s.windows) for s in smoothed] == [("a", (0, 8)), ("b", (9, 18))]
    boundary = (windows[8].centre_s + windows[9].centre_s) / 2  # half-way between the centres
    assert smoothed[0].end_s == smoothed[1].start_s == pytest.approx(boundary)
    assert (smoothed[0].start_s, smoothed[-1].end_s) == (0.0, pytest.approx(160 / 30))
    # the smoothed mean over its windows: window 0 averages 2 windows, 3-5 include the flicker (0.1 for "a")
    by_window = [0.9, 0.9, 0.9, (0.9 + 0.9 + 0.1) / 3, (0.9 + 0.1 + 0.9) / 3, (0.1 + 0.9 + 0.9) / 3, 0.9, 0.9]
    assert smoothed[0].probability == pytest.approx((sum(by_window) + (0.9 + 0.9 + 0.1) / 3) / 9)
    raw = merge_segments(probabilities, windows, names, duration_s=160 / 30, smoothing=1)
    assert [s.label for s in raw] == ["a", "b", "a", "b"]
    with pytest.raises(WindowError, match="odd"):
        merge_segments(probabilities, windows, names, duration_s=1.0, smoothing=2)


# -- the two-class test --------------------------------------------------------------------------------
DIRECTIONS = ("left", "right")


def motion_clip(direction: str, rng: np.random.Generator) -> np.ndarray:
    """One demo clip (8 frames, 16 px) of a random class moving ``direction``: (8, 16, 16, 3) uint8."""
    label = int(rng.choice([i for i, name in enumerate(MOTION_CLASSES) if name.startswith(direction)]))
    return render_clip(label, rng=rng, num_frames=8, size=16, hold=1)


@pytest.fixture(scope="module")
def direction_weights(tmp_path_factory) -> Path:
    """A tiny model trained in seconds to tell the demo's left-moving classes from its right-moving ones.

    It sees windows of two consecutive same-direction clips at every offset, as timeline windows do.
    """
    rng = np.random.default_rng(0)
    pairs = [
        np.concatenate([motion_clip(d, rng), motion_clip(d, rng)]) for _ in range(96) for d in DIRECTIONS
    ]
    videos = normalize(torch.from_numpy(np.stack(pairs)).flatten(0, 1).permute(0, 3, 1, 2)).view(
        -1, 16, 3, 16, 16
    )
    labels = torch.arange(len(pairs)) % 2
    model = tiny_model(num_classes=2, num_frames=8, image_size=16).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    for step in range(1500):  # usually stops within 600; numerics differ with the tests run before it
        batch = torch.randint(0, len(pairs) - 32, (16,), generator=generator)
        offsets = torch.randint(0, 9, (16,), generator=generator)
        clips = torch.stack([videos[b, o : o + 8] for b, o in zip(batch.tolist(), offsets.tolist())])
        loss = torch.nn.functional.cross_entropy(model(clips), labels[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 25 == 24:  # stop as soon as held-out windows are right
            model.eval()
            with torch.no_grad():
                held = [videos[b, o : o + 8] for b in range(len(pairs) - 32, len(pairs)) for o in (0, 4, 8)]
                truth = labels[len(pairs) - 32 :].repeat_interleave(3)
                accuracy = (model(torch.stack(held)).argmax(-1) == truth).float().mean()
            model.train()
            if accuracy >= 0.97:
                break
    assert accuracy >= 0.97, f"the direction model reached only {accuracy:.0%} on held-out windows"
    prep = Preprocessing(num_frames=8, sampling_rate=1, crop_size=16, short_side=16, num_spatial_crops=1)
    folder = tmp_path_factory.mktemp("weights") / "direction"
    model.eval().save_pretrained(folder, preprocessing=prep, class_names=list(DIRECTIONS))
    return folder


def test_two_concatenated_classes_give_two_segments_cut_within_a_stride(direction_weights, tmp_path):
    rng = np.random.default_rng(123)
    parts = []
    for direction in DIRECTIONS:  # two encoded clips: 5 demo clips moving left, then 6 moving right
        part = tmp_path / f"{direction}.mp4"
        write_clip(
            part,
            np.concatenate([motion_clip(direction, rng) for _ in range(5 if direction == "left" else 6)]),
        )
        parts.append(part)
    joined = tmp_path / "joined.mp4"
    with av.open(str(joined), "w") as out:  # concatenate them into one file with PyAV
        stream = out.add_stream("libx264rgb", rate=30, options={"qp": "0"})
        stream.width, stream.height, stream.pix_fmt = 16, 16, "rgb24"
        for part in parts:
            with av.open(str(part)) as source:
                for frame in source.decode(video=0):
                    image = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")
                    out.mux(stream.encode(image))
        out.mux(stream.encode())
    cut = 40 / 30  # 5 clips of 8 frames
    output = tmp_path / "out"
    assert (
        main(
            ["timeline", str(joined), "--weights", str(direction_weights), "--output", str(output), "--quiet"]
        )
        == 0
    )
    summary = json.loads((output / "timeline.json").read_text())
    segments = summary["segments"]
    assert [s["label"] for s in segments] == ["left", "right"], segments
    assert abs(segments[0]["end_s"] - cut) <= summary["stride_s"]
    assert summary["stride_s"] == pytest.approx(4 / 30, abs=1e-3) and summary["duration_s"] == pytest.approx(
        88 / 30, abs=1e-3
    )
    with open(output / "timeline.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(summary["windows"]) == 21 and {"label_1", "probability_2"} <= set(rows[0])
    assert [row["label"] for row in csv.DictReader(open(output / "segments.csv", newline=""))] == [
        "left",
        "right",
    ]
    assert (output / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- bad input -----------------------------------------------------------------------------------------
def test_bad_input_gets_a_clear_message(tmp_path, capsys):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    audio = write_audio_only(tmp_path / "sound.m4a")
    for path, reason in [
        (tmp_path / "missing.mp4", "file not found"),
        (text, "not a video"),
        (audio, "no video stream"),
    ]:
        with pytest.raises(VideoDecodeError, match=reason):
            timeline(tiny_model(), path, preprocessing=PREP)
    with pytest.raises(WindowError, match="window_views must be 1"):
        timeline(tiny_model(), audio, preprocessing=PREP, window_views=2)
    weights = tmp_path / "weights"
    tiny_model().save_pretrained(weights, preprocessing=PREP)
    assert main(["timeline", str(audio), "--weights", str(weights), "--output", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "no video stream" in err[0]
        and err[0].startswith("fast-timesformer timeline: error:")
    )


def test_the_reader_limits_and_still_images_are_checked_before_decoding(tmp_path, capsys):
    video = write_video(tmp_path / "clip.mp4", num_frames=8, width=64, height=48)
    weights = tmp_path / "weights"
    tiny_model().save_pretrained(weights, preprocessing=PREP)
    out = str(tmp_path / "o")
    assert (
        main(["timeline", str(video), "--weights", str(weights), "--output", out, "--max-pixels", "1000"])
        == 1
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "64x48" in err[0] and "--max-pixels" in err[0]
    with pytest.raises(VideoDecodeError, match="--max-frames"):
        timeline(Predictor(tiny_model(), preprocessing=PREP, max_frames=4), video)
    picture = tmp_path / "photo.png"
    write_still_png(picture)
    assert main(["timeline", str(picture), "--weights", str(weights), "--output", out]) == 1
    err = capsys.readouterr().err
    assert "a still image (png), not a video" in err and "--allow-images" in err
    assert len(timeline(tiny_model(), picture, preprocessing=PREP, allow_images=True).windows) == 1
    for option in (["--stride", "0"], ["--batch-size", "0"], ["--smoothing", "2"]):
        assert main(["timeline", str(video), "--weights", str(weights), "--output", out, *option]) == 2
        assert option[0] in capsys.readouterr().err
