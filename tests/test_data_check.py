"""check_data: every video training would skip is listed with a reason, and nothing training uses."""

from __future__ import annotations

import pytest
from video_fixtures import motion_root, write_truncated, write_video  # noqa: F401 - motion_root is a fixture

from fast_timesformer.data import AnnotationError, check_data, check_video


def test_report_lists_every_problem(tmp_path):
    write_video(tmp_path / "good.mp4", num_frames=12)
    write_video(tmp_path / "short.mp4", num_frames=3)
    write_video(tmp_path / "one.mkv", num_frames=1)
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "text.mp4").write_text("hello")
    write_truncated(tmp_path / "cut.mp4")
    lines = [
        "good.mp4 0",
        "short.mp4 1",
        "one.mkv 1",
        "empty.mp4 0",
        "text.mp4 0",
        "cut.mp4 1",
        "missing.mp4 0",
    ]
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    report = check_data(tmp_path / "list.txt", num_frames=8, sampling_rate=2)
    assert not report.ok and report.num_videos == 7 and report.num_bad == 4
    kinds = {problem.video_id: problem.kind for problem in report.problems}
    assert kinds == {"empty": "empty", "text": "unreadable", "cut": "unreadable", "missing": "missing"}
    assert report.shorter_than_clip == 2  # short.mp4 and one.mkv: filled by looping, used by training
    assert report.shorter_than_span == 1  # good.mp4: 12 frames < 8 x 2
    text = report.format()
    assert text.startswith("PROBLEMS FOUND") and "missing.mp4" in text
    assert "2 videos have fewer frames than a clip" in text and "looping" in text
    assert "mid-stream" in next(p.reason for p in report.problems if p.video_id == "cut")
    assert report.counts() == {"empty": 1, "unreadable": 2, "missing": 1}

    # The check and the pipeline agree: what it reports is exactly what the dataset turns into BadSamples.
    from fast_timesformer.data import BadSample, VideoDataset, read_annotations

    annotation_set = read_annotations(tmp_path / "list.txt")
    dataset = VideoDataset(
        annotation_set.records, annotation_set.classes, num_frames=8, sampling_rate=2, mode="test",
        crop_size=16, num_temporal_clips=1, num_spatial_crops=1, max_bad_fraction=1.0,
    )  # fmt: skip
    skipped = {
        annotation_set.records[i].video_id for i in range(len(dataset)) if isinstance(dataset[i], BadSample)
    }
    # cut.mp4 (truncated) opens and gives clips from its intact start; it is reported all the same, since
    # every clip reaching the missing end is skipped.
    assert skipped == set(kinds) - {"cut"}


def test_a_bit_flip_is_caught_by_the_manifest_checksum(motion_root, tmp_path):  # noqa: F811
    import shutil

    copy = tmp_path / "motion"
    shutil.copytree(motion_root / "train", copy)
    victim = sorted(copy.rglob("*.mp4"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x10  # in the middle of the coded frames: the file still decodes
    victim.write_bytes(bytes(data))
    report = check_data(copy / "manifest.csv", num_frames=8)
    assert [(p.path, p.kind) for p in report.problems] == [(str(victim), "checksum")]
    assert report.checksums_verified == report.num_videos - 1
    assert check_data(copy / "manifest.csv", num_frames=8, verify_checksums=False).checksums_verified == 0


def test_paths_leaving_the_root_are_refused_and_duplicates_noted(tmp_path, caplog):
    (tmp_path / "data").mkdir()
    write_video(tmp_path / "data" / "a.mp4", num_frames=8)
    write_video(tmp_path / "outside.mp4", num_frames=8)
    (tmp_path / "data" / "list.txt").write_text("a.mp4 0\n../outside.mp4 1\n")
    with pytest.raises(AnnotationError, match=r"list.txt:2: video path '../outside.mp4' leaves the root"):
        check_data(tmp_path / "data" / "list.txt")
    report = check_data(tmp_path / "data" / "list.txt", allow_outside_root=True, num_frames=8)
    assert report.ok and report.num_videos == 2
    (tmp_path / "data" / "dup.txt").write_text("a.mp4 0\na.mp4 0\n")
    with caplog.at_level("WARNING"):
        report = check_data(tmp_path / "data" / "dup.txt", num_frames=8)
    assert report.duplicates == 1 and "listed more than once" in caplog.text
    assert "1 extra entries of videos listed more than once" in report.format()


def test_clean_dataset_is_ok(motion_root):  # noqa: F811
    report = check_data(motion_root / "train" / "manifest.csv", num_frames=8, sampling_rate=2)
    assert report.ok and report.num_videos == 8 and report.num_classes == 4
    assert report.format().startswith("OK")


def test_check_video_and_annotation_errors(tmp_path):
    write_video(tmp_path / "a.mp4", num_frames=4)
    assert check_video(str(tmp_path / "a.mp4")) is None
    assert check_video(str(tmp_path / "a.mp4"), max_frames=3)[0] == "unreadable"
    (tmp_path / "bad.txt").write_text("a.mp4 0 1\n")
    with pytest.raises(AnnotationError, match=":1:"):
        check_data(tmp_path / "bad.txt")
