"""check_data: every missing, unreadable, empty or too-short video is listed with a reason."""

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
    assert not report.ok and report.num_videos == 7 and report.num_bad == 6
    kinds = {problem.video_id: problem.kind for problem in report.problems}
    assert kinds == {
        "short": "too_short", "one": "too_short", "empty": "empty", "text": "unreadable", "cut": "unreadable",
        "missing": "missing",
    }  # fmt: skip
    assert report.shorter_than_span == 1  # good.mp4: 12 frames < 8 x 2
    text = report.format()
    assert text.startswith("PROBLEMS FOUND") and "3 frames, a clip needs 8" in text and "missing.mp4" in text
    assert "mid-stream" in next(p.reason for p in report.problems if p.video_id == "cut")
    assert report.counts() == {"too_short": 2, "empty": 1, "unreadable": 2, "missing": 1}


def test_clean_dataset_is_ok(motion_root):  # noqa: F811
    report = check_data(motion_root / "train" / "manifest.csv", num_frames=8, sampling_rate=2)
    assert report.ok and report.num_videos == 8 and report.num_classes == 4
    assert report.format().startswith("OK")


def test_check_video_and_annotation_errors(tmp_path):
    write_video(tmp_path / "a.mp4", num_frames=4)
    assert check_video(str(tmp_path / "a.mp4"), num_frames=4) is None
    assert check_video(str(tmp_path / "a.mp4"), num_frames=5)[0] == "too_short"
    (tmp_path / "bad.txt").write_text("a.mp4 0 1\n")
    with pytest.raises(AnnotationError, match=":1:"):
        check_data(tmp_path / "bad.txt")
