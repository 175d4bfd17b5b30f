"""The built-in long-clip dataset: real files, deterministic bytes, and a label that neither an order-free
nor a local model can read (see the proofs in fast_timesformer/data/synthetic_long.py)."""

from __future__ import annotations

import csv
import time
from collections import Counter

import numpy as np
import pytest
import torch

from fast_timesformer.data import VideoDataset, dense_indices, read_annotations, read_video_frames
from fast_timesformer.data.synthetic import clip_rng, frames_sha256, verify_motion_dataset
from fast_timesformer.data.synthetic_long import (
    EVENT_COLOURS,
    EVENT_SHADES,
    LONG_CLASSES,
    PLACEMENTS,
    event_geometry,
    generate_long_dataset,
    long_events,
    long_masks,
    render_long_clip,
)


def moved_right(early: dict, late: dict, size: int) -> bool:
    """Is the late square right of the early one around the wrap-around canvas (offset in (0, size/2))?"""
    return 0 < (late["x"] - early["x"]) % size < size // 2


def read_label(clip: np.ndarray) -> int:
    """Solve a "far" clip from its pixels alone: find each colour's early and late square, compare columns."""
    size, side = clip.shape[1], clip.shape[1] // 8
    bits = []
    for colour in ("red", "blue"):
        found = {}
        for t, frame in enumerate(clip):
            mask = (frame == np.array(EVENT_COLOURS[colour], dtype=np.uint8)).all(-1)  # (H, W)
            if mask.any():
                columns = np.flatnonzero(mask.any(0))
                # the square's left edge: the filled column whose left neighbour (around the wrap) is empty
                left = next(int(c) for c in columns if not mask[:, (c - 1) % size].any())
                assert mask.sum() == side * side
                found.setdefault("early" if t < len(clip) // 2 else "late", {"x": left})
        bits.append(moved_right(found["early"], found["late"], size))
    return _label(bits)


def read_label_at_one_place(clip: np.ndarray) -> int:
    """Solve a "near" clip the way a temporal attention at one patch can: find a column that shows the colour
    early and its shade late (moved right) or the shade early and the colour late (moved left)."""
    bits = []
    for colour in ("red", "blue"):
        tone = {
            name: (clip == np.array(value[colour], dtype=np.uint8)).all(-1).all(1)  # (T, W): whole columns
            for name, value in (("colour", EVENT_COLOURS), ("shade", EVENT_SHADES))
        }
        early, late = slice(0, len(clip) // 4), slice(len(clip) - len(clip) // 4, None)
        right = (tone["shade"][early].any(0) & tone["colour"][late].any(0)).any()
        left = (tone["colour"][early].any(0) & tone["shade"][late].any(0)).any()
        assert right != left  # exactly one of the two patterns exists somewhere
        bits.append(bool(right))
    return _label(bits)


def _label(bits: list[bool]) -> int:
    return LONG_CLASSES.index(f"red_{'right' if bits[0] else 'left'}_blue_{'right' if bits[1] else 'left'}")


def test_classes_are_sorted_and_name_both_moves():
    assert list(LONG_CLASSES) == sorted(LONG_CLASSES) and len(LONG_CLASSES) == 4
    assert {name.split("_")[1] for name in LONG_CLASSES} == {name.split("_")[3] for name in LONG_CLASSES}


@pytest.mark.parametrize("placement", PLACEMENTS)
@pytest.mark.parametrize("num_frames,size", [(32, 64), (64, 64), (16, 32)])
def test_events_follow_the_label_and_sit_a_whole_clip_apart(num_frames, size, placement):
    quarter, span = num_frames // 4, num_frames // 8  # default: two events fill a quarter
    _, height, least, most = event_geometry(size, placement)
    for index in range(200):
        label = index % 4
        rng = np.random.default_rng(index)
        events = long_events(label, rng=rng, num_frames=num_frames, size=size, placement=placement)
        frames = [t for e in events for t in range(e["start"], e["start"] + span)]
        assert len(set(frames)) == len(frames)  # one event per frame at most
        for colour, expected in zip(("red", "blue"), LONG_CLASSES[label].split("_")[1::2]):
            early, late = (e for e in events if e["colour"] == colour)
            assert early["when"] == "early" and late["when"] == "late"
            assert early["start"] + span <= quarter and late["start"] >= num_frames - quarter
            # a window of T/2 + 1 consecutive frames cannot hold a frame of both shapes of one colour
            assert late["start"] - (early["start"] + span - 1) >= num_frames // 2 + 1
            shift = (late["x"] - early["x"]) % size
            assert moved_right(early, late, size) == (expected == "right")
            assert min(shift, size - shift) in range(least, most + 1)  # far from 0 and size/2
            assert (early["y"] == late["y"]) or height < size


def test_placements_draw_the_same_times_and_columns():
    # "near" and "far" differ in the shapes only: the same draw gives the same event times and columns.
    for index in range(20):
        near, far = (
            long_events(index % 4, rng=np.random.default_rng(index), placement=placement)
            for placement in ("near", "far")
        )
        assert [(e["start"], e["x"]) for e in near] == [(e["start"], e["x"]) for e in far]
    with pytest.raises(ValueError, match="unknown placement 'wide'; choose one of near, far"):
        long_events(0, rng=np.random.default_rng(0), placement="wide")


@pytest.mark.parametrize("num_frames", [32, 64])
def test_the_pixels_carry_the_label(num_frames):
    for index in range(12):
        far = render_long_clip(
            index % 4, rng=clip_rng(5, "train", index), num_frames=num_frames, placement="far"
        )
        assert far.shape == (num_frames, 64, 64, 3) and far.dtype == np.uint8
        assert read_label(far) == index % 4
        assert len({frame.tobytes() for frame in far}) > num_frames // 2  # mostly distinct images
        near = render_long_clip(index % 4, rng=clip_rng(5, "train", index), num_frames=num_frames)
        assert read_label_at_one_place(near) == index % 4


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_one_draw_shows_the_same_frames_for_every_class(placement):
    # Same random state, four labels: the same multiset of frames in different orders, so a model that
    # ignores frame order (space_only: frame features averaged, no time embedding) cannot beat chance.
    clips = [render_long_clip(label, rng=np.random.default_rng(3), placement=placement) for label in range(4)]
    multisets = {tuple(sorted(frame.tobytes() for frame in clip)) for clip in clips}
    assert len(multisets) == 1
    assert len({clip.tobytes() for clip in clips}) == 4
    # dense sampling of the whole clip takes every frame once
    assert dense_indices(32, num_frames=32, sampling_rate=1, train=False).tolist() == list(range(32))


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_each_quarter_alone_is_label_free(placement):
    # The early shapes' positions, and the late ones', are uniform for every class; only their relation
    # (the control at the end) tells the classes apart. Bins of size/8 columns, 2,000 draws per class.
    size, draws, bins = 64, 2000, 8
    histograms = {}
    relation = Counter()
    for label in range(4):
        rng = np.random.default_rng(100 + label)
        counts = np.zeros((2, 2, 2, bins), dtype=int)  # (colour, when, axis, bin)
        for _ in range(draws):
            events = long_events(label, rng=rng, size=size, placement=placement)
            for e in events:
                c, w = list(EVENT_COLOURS).index(e["colour"]), int(e["when"] == "late")
                counts[c, w, 0, e["x"] * bins // size] += 1
                counts[c, w, 1, e["y"] * bins // size] += 1
            relation[
                label, moved_right(events[0], events[1], size), moved_right(events[2], events[3], size)
            ] += 1
        histograms[label] = counts
    expected = draws / bins
    for counts in histograms.values():
        # binomial sd ~ 14.8 for 250 expected: 5 sd bounds a fair die; a line instead of a torus shifts ~100
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected * (1 - 1 / bins))
    for label, name in enumerate(LONG_CLASSES):
        bits = (name.split("_")[1] == "right", name.split("_")[3] == "right")
        assert relation[(label, *bits)] == draws  # the relation alone decides the class


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_per_class_frame_statistics_are_indistinguishable(placement):
    # Independent draws: per class, the mean colour of every frame (so of each quarter, of every window)
    # agrees within sampling noise.
    per_class = {label: [] for label in range(4)}
    rng = np.random.default_rng(0)
    for index in range(240):
        clip = render_long_clip(index % 4, rng=rng, num_frames=16, size=32, placement=placement)
        clip = clip.astype(np.float32)
        per_class[index % 4].append(clip.mean((1, 2)))  # (T, 3)
    means = np.stack([np.mean(per_class[label], 0) for label in range(4)])  # (4, T, 3)
    spread = np.stack([np.std(per_class[label], 0) for label in range(4)]).mean(0) / np.sqrt(60)
    assert (np.abs(means - means.mean(0)) < 4.5 * spread + 1e-6).all()


def test_files_manifest_and_readers_agree(tmp_path):
    start = time.perf_counter()
    manifest = generate_long_dataset(tmp_path, num_videos={"train": 8, "val": 4})
    assert time.perf_counter() - start < 5.0  # 12 clips of 32 x 64 x 64: ~0.3 s on one core
    assert (tmp_path / "classes.txt").read_text().split() == list(LONG_CLASSES)
    with open(tmp_path / "train" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "frames", "sha256"] and len(rows) == 8
    assert Counter(row["label"] for row in rows) == {name: 2 for name in LONG_CLASSES}  # balanced
    assert all(row["frames"] == "32" for row in rows)
    annotations = read_annotations(tmp_path / "train" / "manifest.csv")
    assert annotations.classes == list(LONG_CLASSES)
    assert len(read_annotations(manifest, split="val")) == 4
    # decoded frames equal the rendered ones bit for bit, and match the manifest hash
    video = read_video_frames(tmp_path / "train" / rows[1]["path"], range(32))  # (T, C, H, W)
    rendered = render_long_clip(1, rng=clip_rng(0, "train", 1))
    assert torch.equal(video.permute(0, 2, 3, 1), torch.from_numpy(rendered))
    assert frames_sha256(video) == rows[1]["sha256"]
    assert verify_motion_dataset(tmp_path / "train" / "manifest.csv") == []
    assert verify_motion_dataset(manifest) == []
    dataset = VideoDataset(
        annotations, num_frames=32, sampling_rate=1, mode="val", crop_size=64, scale_range=(64, 64)
    )
    item = dataset[2]
    assert item["video"].shape == (32, 3, 64, 64) and item["label"] == 2
    assert torch.isfinite(item["video"]).all()


def test_same_seed_same_bytes(tmp_path):
    def hashes(**kwargs):
        manifest = generate_long_dataset(
            tmp_path / str(len(list(tmp_path.iterdir()))), splits=("train",), **kwargs
        )
        with open(manifest, newline="") as handle:
            return [(row["path"], row["sha256"]) for row in csv.DictReader(handle)]

    a = hashes(num_videos=4, seed=3)
    assert a == hashes(num_videos=4, seed=3, num_workers=2)
    assert [h for _, h in a] != [h for _, h in hashes(num_videos=4, seed=4)]


def test_argument_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="multiple of 4"):
        render_long_clip(0, rng=rng, num_frames=30)
    with pytest.raises(ValueError, match="num_frames >= 16"):
        render_long_clip(0, rng=rng, num_frames=12, event_frames=2)
    with pytest.raises(ValueError, match="size"):
        render_long_clip(0, rng=rng, size=60)
    with pytest.raises(ValueError, match="label"):
        render_long_clip(4, rng=rng)
    with pytest.raises(ValueError, match="no count"):
        generate_long_dataset("unused", num_videos={"train": 4})


def test_masks_mark_where_each_colour_moved():
    for index in range(6):
        label, rng = index % 4, lambda: clip_rng(2, "val", index)  # noqa: B023 -- used in this iteration
        clip, masks, events = (
            render_long_clip(label, rng=rng()),
            long_masks(label, rng=rng()),
            long_events(label, rng=rng()),
        )
        for name, (early, late) in (("red changed", events[:2]), ("blue changed", events[2:])):
            frames = {t for e in (early, late) for t in range(e["start"], e["start"] + 4)}
            assert set(np.flatnonzero(masks[name].any((1, 2))).tolist()) == frames
            shift = min((late["x"] - early["x"]) % 64, (early["x"] - late["x"]) % 64)
            # full-height stripes 32 px wide, tones of 16: the tones differ on min(shift, 32 - shift) columns
            assert masks[name].sum() == 64 * min(shift, 32 - shift) * len(frames)
        assert (clip[masks["events"]] != 40).any(-1).all() and not (
            masks["events"] & masks["distractors"]
        ).any()
