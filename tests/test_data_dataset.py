"""VideoDataset items, multi-view evaluation indexing, and the bad-video path through DataLoader workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader
from video_fixtures import frame_ids, motion_root, write_video  # noqa: F401 - motion_root is a fixture

from fast_timesformer.data import (
    BadSample,
    BadVideoTracker,
    TooManyBadVideos,
    VideoDataset,
    VideoRecord,
    collate_videos,
)

CLASSES = ["a", "b"]
SMALL = dict(crop_size=32, scale_range=(32, 40))


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Three good 48x64 clips of 40, 40 and 3 frames, plus a corrupt one."""
    root = tmp_path_factory.mktemp("videos")
    good = [write_video(root / f"v{i}.mp4", num_frames=n) for i, n in enumerate((40, 40, 3))]
    (root / "corrupt.mp4").write_text("not a video")
    records = [VideoRecord(path=str(p), label=i % 2, video_id=p.stem) for i, p in enumerate(good)]
    bad = VideoRecord(path=str(root / "corrupt.mp4"), label=1, video_id="corrupt")
    return records, bad


def test_train_items(videos):
    records, _ = videos
    dataset = VideoDataset(records, CLASSES, num_frames=8, sampling_rate=4, mode="train", **SMALL)
    assert len(dataset) == 3 and dataset.num_views == 1
    item = dataset[1]
    assert set(item) == {"video", "label", "index", "video_id", "view"}
    assert item["video"].shape == (8, 3, 32, 32) and item["video"].dtype == torch.float32
    assert (item["label"], item["index"], item["video_id"], item["view"]) == (1, 1, "v1", 0)
    torch.manual_seed(0)
    first = dataset[0]["video"]
    torch.manual_seed(0)
    assert torch.equal(first, dataset[0]["video"])  # reproducible under the global seed
    assert not torch.equal(first, dataset[0]["video"])  # and different on the next draw


def test_short_video_fills_the_clip(videos, tmp_path):
    records, _ = videos
    one = write_video(tmp_path / "one_frame.mp4", num_frames=1)
    for sampling in ("dense", "segment"):
        dataset = VideoDataset(
            [VideoRecord(str(one), 0, "one")], CLASSES, num_frames=8, sampling=sampling, **SMALL
        )
        assert dataset[0]["video"].shape == (8, 3, 32, 32)
    for policy in ("loop", "repeat_last"):
        dataset = VideoDataset(
            records[2:], CLASSES, num_frames=8, sampling_rate=32, mode="test", out_of_range=policy, **SMALL
        )
        assert dataset[0]["video"].shape == (8, 3, 32, 32)
    one = VideoDataset(records[2:], CLASSES, num_frames=8, sampling="segment", mode="train", **SMALL)
    assert one[0]["video"].shape == (8, 3, 32, 32)


def test_multi_view_test_mode_lengths_and_ids(videos):
    records, _ = videos
    dataset = VideoDataset(
        records[:2],
        CLASSES,
        num_frames=4,
        sampling_rate=4,
        mode="test",
        num_temporal_clips=2,
        num_spatial_crops=3,
        **SMALL,
    )
    assert len(dataset) == 2 * 6 and dataset.num_views == 6
    items = [dataset[i] for i in range(len(dataset))]
    assert [item["index"] for item in items] == [0] * 6 + [1] * 6
    assert [item["view"] for item in items] == list(range(6)) * 2
    assert {item["video_id"] for item in items[:6]} == {"v0"}
    assert dataset.locate(7) == (1, 0, 1)
    # views differ: three crops of one clip, and two clips in time
    assert not torch.equal(items[0]["video"], items[2]["video"])
    assert not torch.equal(items[0]["video"], items[3]["video"])
    # temporal clip k of 2 on 40 frames, span 16: starts 0 and 12
    raw = VideoDataset(
        records[:1], CLASSES, num_frames=4, sampling_rate=4, mode="test", num_temporal_clips=2, **SMALL
    )
    assert raw.clip_indices(40, fps=30.0, clip=1, generator=None).tolist() == [12, 17, 22, 27]
    with pytest.raises(IndexError):
        dataset.locate(12)


def test_evaluation_short_side(videos):
    records, _ = videos
    official = VideoDataset(records, CLASSES, num_frames=4, mode="test", crop_size=32, scale_range=(36, 40))
    assert official.eval_transform.short_side == 36  # one crop: the low end of the training scale range
    three = VideoDataset(records, CLASSES, num_frames=4, mode="test", num_spatial_crops=3, crop_size=32)
    assert three.eval_transform.short_side == 32  # three crops: the crop size
    given = VideoDataset(records, CLASSES, num_frames=4, mode="test", crop_size=32, short_side=48)
    assert given.eval_transform.short_side == 48 and given[0]["video"].shape == (4, 3, 32, 32)


def test_val_mode_is_deterministic(videos):
    records, _ = videos
    dataset = VideoDataset(records, CLASSES, num_frames=4, sampling_rate=4, mode="val", **SMALL)
    assert len(dataset) == 3 and torch.equal(dataset[0]["video"], dataset[0]["video"])


def test_the_clip_comes_from_the_sampled_frames(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=40, width=32, height=32)
    dataset = VideoDataset(
        [VideoRecord(str(path), 0, "v")], CLASSES, num_frames=4, sampling_rate=4, mode="test",
        crop_size=32, scale_range=(32, 32), mean=(0, 0, 0), std=(1 / 255, 1 / 255, 1 / 255),
    )  # fmt: skip
    clip = dataset[0]["video"].round().to(torch.uint8)  # undo normalisation: back to pixel values
    assert frame_ids(clip) == [0, 5, 10, 15]  # linspace(0, 15, 4)


def test_cache_frames_decodes_each_video_once(tmp_path):
    path = write_video(tmp_path / "v.mp4", num_frames=40, width=32, height=32)
    records = [VideoRecord(str(path), 0, "v")]
    kwargs = dict(
        num_frames=4, sampling_rate=4, mode="test", num_temporal_clips=2, crop_size=32, scale_range=(32, 32)
    )
    plain = VideoDataset(records, CLASSES, **kwargs)
    cached = VideoDataset(records, CLASSES, cache_frames=True, **kwargs)
    expected = [plain[i]["video"] for i in range(2)]
    assert torch.equal(cached[0]["video"], expected[0])
    path.unlink()  # from now on only the cache can serve this video
    assert torch.equal(cached[1]["video"], expected[1])
    assert isinstance(plain[0], BadSample)  # the uncached dataset needs the file (clip 0 is not its last)


def test_bad_video_becomes_a_bad_sample_not_none(videos):
    records, bad = videos
    dataset = VideoDataset([records[0], bad], CLASSES, num_frames=4, sampling_rate=4, mode="train", **SMALL)
    sample = dataset[1]
    assert isinstance(sample, BadSample) and sample.path == bad.path and sample.index == 1
    assert "not a video" in sample.reason
    missing = VideoDataset([VideoRecord("/no/such/video.mp4", 0, "gone")], CLASSES, num_frames=4, **SMALL)[0]
    assert (
        isinstance(missing, BadSample)
        and missing.reason == "file not found (check the path, or the annotation root for a dataset)"
    )
    batch = collate_videos([dataset[0], sample])
    assert batch["video"].shape == (1, 4, 3, 32, 32)
    assert batch["label"].tolist() == [0] and batch["index"].tolist() == [0]
    assert batch["skipped"] == [(bad.path, sample.reason)]


def test_all_bad_batch_is_empty_not_a_crash(videos):
    _, bad = videos
    dataset = VideoDataset(
        [bad, bad],
        CLASSES,
        num_frames=4,
        mode="test",
        num_spatial_crops=3,
        crop_size=32,
        scale_range=(32, 32),
    )
    batch = collate_videos([dataset[0], dataset[1]])
    assert batch["video"].shape == (0, 4, 3, 32, 32)
    assert batch["label"].shape == (0,) and batch["video_id"] == [] and len(batch["skipped"]) == 2


def test_collate_refuses_none():
    with pytest.raises(TypeError, match="never return None"):
        collate_videos([None])


def test_bad_file_in_a_dataloader_with_two_workers(videos):
    records, bad = videos
    dataset = VideoDataset(
        records + [bad], CLASSES, num_frames=4, sampling_rate=4, mode="train", max_bad_fraction=0.5, **SMALL
    )
    loader = DataLoader(dataset, batch_size=2, num_workers=2, collate_fn=collate_videos, timeout=60)
    seen, skipped = [], []
    for batch in loader:
        dataset.tracker.update(batch)
        assert batch["video"].shape[1:] == (4, 3, 32, 32)
        seen += batch["index"].tolist()
        skipped += batch["skipped"]
    assert sorted(seen) == [0, 1, 2]
    assert [path for path, _ in skipped] == [bad.path]
    assert dataset.tracker.num_bad == 1 and "1 of 4 videos unreadable" in dataset.tracker.summary()


def test_too_many_bad_videos_stops_with_a_report(videos, tmp_path):
    records, bad = videos
    report = tmp_path / "bad.json"
    dataset = VideoDataset(
        records + [bad],
        CLASSES,
        num_frames=4,
        mode="train",
        max_bad_fraction=0.1,
        report_path=report,
        **SMALL,
    )
    with pytest.raises(TooManyBadVideos, match="1 of 4 videos could not be decoded") as info:
        dataset.tracker.update(collate_videos([dataset[3], dataset[0]]))
    assert str(report) in str(info.value)
    content = json.loads(report.read_text())
    assert (
        content["num_bad"] == 1
        and content["bad"][0]["path"] == bad.path
        and "not a video" in content["bad"][0]["reason"]
    )


def test_tracker_counts_each_video_once(tmp_path):
    tracker = BadVideoTracker(num_videos=10, max_bad_fraction=0.2, report_path=tmp_path / "bad.txt")
    for _ in range(3):  # three views of one bad video
        tracker.update({"skipped": [("/x.mp4", "empty file (0 bytes)")]})
    assert tracker.num_bad == 1 and tracker.skipped_samples == 3
    tracker.record("/y.mp4", "file not found")
    with pytest.raises(TooManyBadVideos):
        tracker.record("/z.mp4", "file not found")
    lines = (tmp_path / "bad.txt").read_text().splitlines()
    assert lines[2:] == ["/x.mp4\tempty file (0 bytes)", "/y.mp4\tfile not found", "/z.mp4\tfile not found"]


def test_constructor_errors(videos):
    records, _ = videos
    with pytest.raises(ValueError, match="mode"):
        VideoDataset(records, CLASSES, num_frames=4, mode="eval")
    with pytest.raises(ValueError, match="outside the 1 classes"):
        VideoDataset(records, ["a"], num_frames=4)
    with pytest.raises(ValueError, match="classes"):
        VideoDataset(records, None, num_frames=4)


def test_a_bit_flip_is_a_bad_sample_when_checksums_are_verified(motion_root, tmp_path):  # noqa: F811
    import shutil

    from fast_timesformer.data import read_annotations

    copy = tmp_path / "train"
    shutil.copytree(motion_root / "train", copy)
    annotation_set = read_annotations(copy / "manifest.csv")
    victim = annotation_set.records[0]
    data = bytearray(Path(victim.path).read_bytes())
    data[len(data) // 2] ^= 0x10
    Path(victim.path).write_bytes(bytes(data))
    options = dict(num_frames=4, sampling_rate=2, crop_size=16, mode="test", num_spatial_crops=1)
    checked = VideoDataset(annotation_set.records, annotation_set.classes, cache_frames=True,
                           verify_checksums=True, max_bad_fraction=1.0, **options)  # fmt: skip
    assert isinstance(checked[0], BadSample) and "sha256" in checked[0].reason
    assert not isinstance(checked[1], BadSample)
    unchecked = VideoDataset(annotation_set.records, annotation_set.classes, cache_frames=True, **options)
    assert not isinstance(unchecked[0], BadSample)  # the flip still decodes: only the checksum sees it
