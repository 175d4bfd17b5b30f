"""Annotation formats and their errors (file and line number in every message)."""

from __future__ import annotations

import json
import os

import pytest
from video_fixtures import write_video

from fast_timesformer.data import AnnotationError, VideoReader, read_annotations, read_folder
from fast_timesformer.data.annotations import detect_format


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# -- "path label" lists --------------------------------------------------------------------------------


def test_whitespace_list_with_integer_labels(tmp_path):
    path = write(tmp_path / "train.txt", "# comment\nvideos/a.mp4 0\n\nvideos/b.mp4   2\n")
    annotations = read_annotations(path)
    assert annotations.format == "list" and len(annotations) == 2
    assert annotations.classes == ["0", "1", "2"]
    first = annotations[0]
    assert (
        first.path == str(tmp_path / "videos" / "a.mp4") and first.label == 0 and first.video_id == "videos/a"
    )
    assert annotations[1].label == 2


def test_comma_list_with_header_names_and_extra_columns(tmp_path):
    path = write(
        tmp_path / "list.csv",
        'path,label,frames\n"dir, with comma/x.mp4",cat,16\ny.mp4,dog,16\nz.mp4,cat,8\n',
    )
    annotations = read_annotations(path, root="/data")
    assert annotations.classes == ["cat", "dog"]  # sorted names
    assert [r.label for r in annotations] == [0, 1, 0]
    assert annotations[0].path == os.path.normpath("/data/dir, with comma/x.mp4")


def test_class_list_given_or_found_next_to_the_file(tmp_path):
    path = write(tmp_path / "val.txt", "a.mp4 dog\nb.mp4 1\n")
    annotations = read_annotations(path, classes=["cat", "dog"])
    assert [r.label for r in annotations] == [1, 1] and annotations.classes == ["cat", "dog"]
    write(tmp_path / "classes.txt", "zebra\ndog\n")
    assert [r.label for r in read_annotations(path)] == [1, 1]
    assert read_annotations(path).classes == ["zebra", "dog"]


def test_split_column_selects_rows(tmp_path):
    path = write(tmp_path / "all.csv", "split,path,label\ntrain,a.mp4,x\nval,b.mp4,y\ntrain,c.mp4,y\n")
    assert [r.video_id for r in read_annotations(path, split="train")] == ["a", "c"]
    with pytest.raises(AnnotationError, match="several splits"):
        read_annotations(path)


def test_unknown_label_names_file_and_line(tmp_path):
    path = write(tmp_path / "val.txt", "a.mp4 cat\nb.mp4 cow\n")
    with pytest.raises(AnnotationError) as info:
        read_annotations(path, classes=["cat", "dog"])
    assert (
        info.value.line == 2 and f"{path}:2" in str(info.value) and "unknown label 'cow'" in str(info.value)
    )
    with pytest.raises(AnnotationError, match=":2: unknown label '7'"):
        read_annotations(write(tmp_path / "ints.txt", "a.mp4 0\nb.mp4 7\n"), classes=["cat", "dog"])


def test_wrong_column_count_names_the_line(tmp_path):
    path = write(tmp_path / "train.txt", "a.mp4 0\nb.mp4 1 extra\n")
    with pytest.raises(AnnotationError, match=r"train.txt:2: expected 2 fields 'path label', got 3"):
        read_annotations(path)
    with pytest.raises(AnnotationError, match=":3: expected 3 columns"):
        read_annotations(write(tmp_path / "h.csv", "path,label,frames\na.mp4,0,4\nb.mp4,1\n"))


def test_mixed_label_kinds_is_an_error(tmp_path):
    with pytest.raises(AnnotationError, match=":2: label '3' is a number"):
        read_annotations(write(tmp_path / "m.txt", "a.mp4 cat\nb.mp4 3\n"))


def test_missing_and_empty_annotation_files(tmp_path):
    with pytest.raises(AnnotationError, match="not found"):
        read_annotations(tmp_path / "nope.txt")
    with pytest.raises(AnnotationError, match="no videos listed"):
        read_annotations(write(tmp_path / "empty.txt", ""))
    with pytest.raises(AnnotationError, match="no videos listed"):
        read_annotations(write(tmp_path / "header.csv", "path,label\n# nothing\n"))


def test_non_utf8_annotation_names_the_line(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"a.mp4 0\ncaf\xe9.mp4 1\n")
    with pytest.raises(AnnotationError) as info:
        read_annotations(path)
    assert info.value.line == 2 and "encoding='latin-1'" in str(info.value)
    assert read_annotations(path, encoding="latin-1")[1].path.endswith("café.mp4")


def test_non_utf8_video_name_in_a_folder_tree_still_opens(tmp_path):
    (tmp_path / "cls").mkdir()
    name = os.fsencode(str(tmp_path / "cls")) + b"/caf\xe9.mp4"
    write_video(os.fsdecode(name), num_frames=3)
    (record,) = read_folder(tmp_path).records
    with VideoReader(record.path) as reader:
        assert reader.metadata.num_frames == 3


# -- folders -------------------------------------------------------------------------------------------


def test_folder_per_class_sorted_and_nested(tmp_path):
    for relative in [
        "b_class/x.mp4",
        "a_class/y.MP4",
        "a_class/sub/z.webm",
        "a_class/notes.txt",
        "c_class/.hidden.mp4",
    ]:
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_bytes(b"")
    annotations = read_annotations(tmp_path)
    assert annotations.format == "folder" and annotations.classes == ["a_class", "b_class", "c_class"]
    assert [(r.video_id, r.label) for r in annotations] == [
        ("a_class/sub/z", 0),
        ("a_class/y", 0),
        ("b_class/x", 1),
    ]


def test_folder_without_videos(tmp_path):
    with pytest.raises(AnnotationError, match="no class folders"):
        read_folder(tmp_path)
    (tmp_path / "cls").mkdir()
    with pytest.raises(AnnotationError, match="no videos listed"):
        read_folder(tmp_path)


# -- Kinetics, SSv2, UCF101 ----------------------------------------------------------------------------

KINETICS = """label,youtube_id,time_start,time_end,split
abseiling,--07WQ2iBlw,1,11,train
air drumming,-0Z0HjFzAVU,14,24,train
air drumming,zzz,0,10,val
"""


def test_kinetics_csv_paths_follow_the_downloader(tmp_path):
    path = write(tmp_path / "train.csv", KINETICS)
    (tmp_path / "air_drumming").mkdir()  # underscore variant on disk
    annotations = read_annotations(path, split="train")
    assert detect_format(path) == "kinetics_csv" and annotations.classes == ["abseiling", "air drumming"]
    first, second = annotations.records
    assert first.path == str(tmp_path / "--07WQ2iBlw_000001_000011.mp4")  # no label folder: flat
    assert second.path == str(tmp_path / "air_drumming" / "-0Z0HjFzAVU_000014_000024.mp4")
    assert (first.label, second.label, second.video_id) == (0, 1, "-0Z0HjFzAVU_000014_000024")
    assert len(read_annotations(path)) == 3


def test_kinetics_csv_errors(tmp_path):
    with pytest.raises(AnnotationError, match="no 'label' column"):
        read_annotations(
            write(tmp_path / "test.csv", "youtube_id,time_start,time_end,split\nabc,0,10,test\n")
        )
    with pytest.raises(AnnotationError, match=r"bad.csv:3: time_start"):
        read_annotations(write(tmp_path / "bad.csv", KINETICS.replace("14,24", "x,24")))


def test_ssv2_json_with_labels_file(tmp_path):
    labels = {"Holding something": "1", "Pushing something from left to right": "0"}
    write(tmp_path / "something-something-v2-labels.json", json.dumps(labels))
    entries = [
        {
            "id": "78687",
            "label": "holding potato",
            "template": "Holding [something]",
            "placeholders": ["potato"],
        },
        {"id": "42326", "label": "pushing a cup", "template": "Pushing [something] from left to right"},
    ]
    path = write(tmp_path / "something-something-v2-train.json", json.dumps(entries))
    annotations = read_annotations(path, root="/ssv2/videos")
    assert annotations.format == "ssv2_json"
    assert annotations.classes == ["Pushing something from left to right", "Holding something"]
    assert [(r.path, r.label, r.video_id) for r in annotations] == [
        ("/ssv2/videos/78687.webm", 1, "78687"), ("/ssv2/videos/42326.webm", 0, "42326"),
    ]  # fmt: skip
    unknown = write(tmp_path / "bad.json", json.dumps([{"id": "1", "template": "Dancing [something]"}]))
    with pytest.raises(AnnotationError, match="unknown label 'Dancing something'"):
        read_annotations(unknown)


def test_ucf101_split_files(tmp_path):
    write(tmp_path / "classInd.txt", "1 ApplyEyeMakeup\n2 Archery\n")
    train = write(
        tmp_path / "trainlist01.txt",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g01_c01.avi 2\n",
    )
    test = write(tmp_path / "testlist01.txt", "Archery/v_Archery_g02_c01.avi\n")
    annotations = read_annotations(train, root="/ucf")
    assert annotations.format == "ucf101" and annotations.classes == ["ApplyEyeMakeup", "Archery"]
    assert [(r.label, r.video_id) for r in annotations] == [
        (0, "v_ApplyEyeMakeup_g08_c01"),
        (1, "v_Archery_g01_c01"),
    ]
    assert annotations[0].path == "/ucf/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert [r.label for r in read_annotations(test)] == [1]
    with pytest.raises(AnnotationError, match=r"trainlist02.txt:1: unknown label '9'"):
        read_annotations(write(tmp_path / "trainlist02.txt", "Archery/v.avi 9\n"))


def test_unknown_format_name():
    with pytest.raises(ValueError, match="unknown annotation format"):
        read_annotations("x.txt", format="parquet")
