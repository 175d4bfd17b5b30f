"""The built-in motion dataset: real files, deterministic bytes, and a label that only frame order carries."""

from __future__ import annotations

import csv
import hashlib

import numpy as np
import pytest
import torch
from video_fixtures import motion_root  # noqa: F401 - a pytest fixture

from fast_timesformer.data import (
    MOTION_CLASSES,
    VideoDataset,
    dense_indices,
    read_annotations,
    read_folder,
    read_video_frames,
    segment_indices,
)
from fast_timesformer.data.synthetic import (
    frames_sha256,
    generate_motion_dataset,
    render_clip,
    verify_motion_dataset,
)


def flash_colours(clip: np.ndarray) -> list[str]:
    """Per image of a (T, H, W, 3) clip: "red" / "blue" for a flash frame, "." otherwise."""
    means = clip.reshape(len(clip), -1, 3).mean(1)
    return [
        "red" if m[0] > 180 and m[2] < 100 else "blue" if m[2] > 180 and m[0] < 100 else "." for m in means
    ]


def white_start(image: np.ndarray) -> int:
    """Column where the white half of the bar starts (the bar wraps around the canvas)."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    columns = ((r > 180) & (g > 180) & (b > 180)).mean(0) > 0.7
    return int(next(c for c in range(len(columns)) if columns[c] and not columns[c - 1]))


def test_classes_are_sorted():
    assert list(MOTION_CLASSES) == sorted(MOTION_CLASSES) and len(MOTION_CLASSES) >= 4


@pytest.mark.parametrize("label", range(4))
def test_each_class_shows_its_motion_and_flash_order(label):
    clip = render_clip(label, rng=np.random.default_rng(label), num_frames=16, size=32)
    assert clip.shape == (16, 32, 32, 3) and np.array_equal(clip[0::2], clip[1::2])  # images held 2 frames
    images = clip[::2]
    colours = flash_colours(images)
    direction, order = MOTION_CLASSES[label].split("_", 1)
    flashes = [c for c in colours if c != "."]
    assert flashes == (["red"] * 2 + ["blue"] * 2 if order == "red_first" else ["blue"] * 2 + ["red"] * 2)
    first, second = colours.index(flashes[0]), colours.index(flashes[-1])
    assert first < 4 <= second  # one flash per half
    visible = [t for t, c in enumerate(colours) if c == "."]
    edges = [white_start(images[t]) for t in visible]
    sign = 1 if direction == "right" else -1
    for (t0, e0), (t1, e1) in zip(zip(visible, edges), zip(visible[1:], edges[1:])):
        assert (e1 - e0) % 32 == (sign * 2 * (t1 - t0)) % 32  # 2 px per image


def test_classes_differ_only_in_order_and_flash_colour():
    # One random draw, four labels: right_red_first and left_blue_first are the same frames reversed
    # (likewise right_blue_first and left_red_first); between the pairs only the pure-colour flash frames
    # trade colours. So no single frame and no order-free pooling of frames can tell the classes apart.
    clips = {
        name: render_clip(label, rng=np.random.default_rng(7)) for label, name in enumerate(MOTION_CLASSES)
    }
    assert np.array_equal(clips["right_red_first"], clips["left_blue_first"][::-1])
    assert np.array_equal(clips["right_blue_first"], clips["left_red_first"][::-1])

    def scene_frames(clip):
        return sorted(
            hashlib.sha256(f.tobytes()).hexdigest() for f, c in zip(clip, flash_colours(clip)) if c == "."
        )

    assert len({tuple(scene_frames(clip)) for clip in clips.values()}) == 1
    assert all(
        sorted(flash_colours(clip)) == sorted(flash_colours(clips["right_red_first"]))
        for clip in clips.values()
    )
    assert len({clip.tobytes() for clip in clips.values()}) == 4


def test_the_usual_samplers_see_every_image_once():
    # With each image held for 2 frames, these 8-frame index patterns hit the 8 images once each, so the
    # sampled frames of a class pair are the same multiset too (see the module docstring).
    dense = dense_indices(16, num_frames=8, sampling_rate=2, train=False)
    segment = segment_indices(16, num_frames=8, train=False)
    for indices in (dense, segment):
        assert sorted((indices // 2).tolist()) == list(range(8))
    right = render_clip(MOTION_CLASSES.index("right_red_first"), rng=np.random.default_rng(11))
    left = render_clip(MOTION_CLASSES.index("left_blue_first"), rng=np.random.default_rng(11))
    for indices in (dense, segment):
        assert sorted(right[i].tobytes() for i in indices.tolist()) == sorted(
            left[i].tobytes() for i in indices.tolist()
        )


def test_per_class_frame_statistics_are_indistinguishable():
    # Independent draws: per-class averages of per-frame statistics agree within sampling noise.
    rng = np.random.default_rng(0)
    stats = {label: [] for label in range(4)}
    for index in range(160):
        label = index % 4
        clip = render_clip(label, rng=rng).astype(np.float32)
        stats[label].append(np.concatenate([clip.mean((1, 2)), clip.std((1, 2))], axis=1).mean(0))  # (6,)
    means = np.stack([np.mean(stats[label], 0) for label in range(4)])
    spread = np.stack([np.std(stats[label], 0) for label in range(4)]).mean(0) / np.sqrt(40)
    assert (np.abs(means - means.mean(0)) < 4 * spread + 1e-6).all()


def test_files_manifest_and_readers_agree(motion_root):  # noqa: F811
    train = motion_root / "train"
    assert (motion_root / "classes.txt").read_text().split() == list(MOTION_CLASSES)
    with open(train / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["path", "label", "frames", "sha256"] and len(rows) == 8
    assert all(row["frames"] == "16" for row in rows)
    from_manifest = read_annotations(train / "manifest.csv")
    from_folders = read_folder(train)
    assert from_manifest.classes == from_folders.classes == list(MOTION_CLASSES)
    by_path = {r.path: r.label for r in from_folders}
    assert all(by_path[r.path] == r.label for r in from_manifest)
    both = read_annotations(motion_root / "manifest.csv", split="val")
    assert len(both) == 8 and all("/val/" in r.path for r in both)
    # decoded frames are the rendered ones, bit for bit, and match the manifest hash
    first = rows[0]
    video = read_video_frames(train / first["path"], range(16))
    assert frames_sha256(video) == first["sha256"]
    assert verify_motion_dataset(train / "manifest.csv") == []


def test_same_seed_same_bytes(tmp_path):
    a = generate_motion_dataset(tmp_path / "a", num_videos=4, splits=("train",), seed=3)
    b = generate_motion_dataset(tmp_path / "b", num_videos=4, splits=("train",), seed=3, num_workers=2)
    c = generate_motion_dataset(tmp_path / "c", num_videos=4, splits=("train",), seed=4)

    def hashes(manifest):
        with open(manifest, newline="") as handle:
            return [row["sha256"] for row in csv.DictReader(handle)]

    assert hashes(a) == hashes(b)
    assert hashes(a) != hashes(c)


def test_demo_style_dataset_items(motion_root):  # noqa: F811
    annotations = read_annotations(motion_root / "val" / "manifest.csv")
    dataset = VideoDataset(
        annotations, num_frames=8, sampling_rate=2, mode="val", crop_size=32, scale_range=(32, 32)
    )
    item = dataset[0]
    assert item["video"].shape == (8, 3, 32, 32) and item["label"] == 0
    assert torch.isfinite(item["video"]).all()


def test_argument_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="multiple of 4"):
        render_clip(0, rng=rng, num_frames=12)
    with pytest.raises(ValueError, match="speed"):
        render_clip(0, rng=rng, speed=5)
    with pytest.raises(ValueError, match="label"):
        render_clip(4, rng=rng)
