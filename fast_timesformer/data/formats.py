"""Readers of the annotation files public video datasets ship: Kinetics CSV, Something-Something v2 JSON,
UCF101 split lists.

Each returns an `AnnotationSet`; the layouts they expect are in `fast_timesformer.data.annotations`'s
docstring, and `read_annotations` picks the reader for a file. Imports only ``records.py``.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path

from .records import (
    AnnotationError,
    AnnotationSet,
    VideoRecord,
    empty_annotation,
    given_classes,
    is_within,
    join_root,
    load_class_file,
    outside_root,
    read_text_lines,
    resolve_label_lists,
    resolve_labels,
)


def _built(root: Path, video: Path, file: Path, line: int | None, allow_outside: bool) -> str:
    """A video path built from annotation fields (label folder, id), refused if the fields lead out of root."""
    joined = os.path.normpath(video)
    if not allow_outside and not is_within(joined, root):
        raise outside_root(file, line, os.path.relpath(joined, root), root)
    return joined


def read_kinetics_csv(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
    allow_outside_root: bool = False,
) -> AnnotationSet:
    """Read an official Kinetics CSV (see the module docstring for where files are expected).

    ``split`` keeps only rows whose ``split`` column equals it (the official files hold one split each).
    """
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    lines = read_text_lines(path, encoding)
    reader = csv.DictReader(lines)
    required = {"youtube_id", "time_start", "time_end"}
    columns = set(reader.fieldnames or [])
    if not required <= columns:
        raise AnnotationError(path, 1, f"Kinetics CSV header needs {sorted(required)}, got {sorted(columns)}")
    if "label" not in columns:
        raise AnnotationError(
            path, 1, "no 'label' column (an unlabelled test split?); it cannot train or evaluate"
        )
    entries: list[tuple[int, str, str]] = []
    tokens: list[tuple[int, str]] = []
    for number, row in enumerate(reader, start=2):
        if None in row or any(row[name] is None for name in required | {"label"}):
            raise AnnotationError(path, number, f"expected {len(reader.fieldnames)} columns like the header")
        try:
            start, end = int(float(row["time_start"])), int(float(row["time_end"]))
        except ValueError:
            raise AnnotationError(path, number, "time_start/time_end must be numbers of seconds") from None
        if split is not None and row.get("split") != split:
            continue
        entries.append((number, row["label"], f"{row['youtube_id']}_{start:06d}_{end:06d}"))
        tokens.append((number, row["label"]))
    if not entries:
        raise empty_annotation(path, "header only")
    labels, names = resolve_labels(path, tokens, given_classes(classes, encoding))
    folder_of: dict[str, Path] = {}
    for label_name in {label for _, label, _ in entries}:
        for candidate in (root_dir / label_name, root_dir / label_name.replace(" ", "_")):
            if not allow_outside_root and not is_within(candidate, root_dir):
                raise outside_root(path, None, label_name, root_dir)
            if candidate.is_dir():
                folder_of[label_name] = candidate
                break
        else:
            folder_of[label_name] = root_dir  # flat layout
    records = [
        VideoRecord(
            path=_built(root_dir, folder_of[label_name] / f"{stem}.mp4", path, number, allow_outside_root),
            label=label,
            video_id=stem,
        )  # fmt: skip
        for (number, label_name, stem), label in zip(entries, labels)
    ]
    return AnnotationSet(records=records, classes=names, source=str(path), format="kinetics_csv")


def _ssv2_classes(path: Path, classes: Sequence[str] | str | os.PathLike | None, encoding: str) -> list[str]:
    if classes is not None and not (
        isinstance(classes, (str, os.PathLike)) and str(classes).endswith(".json")
    ):
        return given_classes(classes, encoding) or []
    candidates = (
        [Path(classes)]
        if classes is not None
        else [path.parent / "something-something-v2-labels.json", path.parent / "labels.json"]
    )
    for candidate in candidates:
        if candidate.is_file():
            try:
                mapping = json.loads("\n".join(read_text_lines(candidate, encoding)))
            except json.JSONDecodeError as error:
                raise AnnotationError(candidate, error.lineno, f"invalid JSON: {error.msg}") from None
            if not isinstance(mapping, dict):
                raise AnnotationError(candidate, None, "expected an object {template: id}")
            ordered = sorted(mapping.items(), key=lambda item: int(item[1]))
            return [name for name, _ in ordered]
    raise AnnotationError(
        path,
        None,
        "no labels file found; put something-something-v2-labels.json next to it or pass classes=",
    )


def read_ssv2_json(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    allow_outside_root: bool = False,
) -> AnnotationSet:
    """Read a Something-Something v2 split JSON (see the module docstring)."""
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    try:
        entries = json.loads("\n".join(read_text_lines(path, encoding)))
    except json.JSONDecodeError as error:
        raise AnnotationError(path, error.lineno, f"invalid JSON: {error.msg}") from None
    if not isinstance(entries, list):
        raise AnnotationError(path, None, "expected a JSON list of {id, template, ...} entries")
    if not entries:
        raise empty_annotation(path, "empty JSON list")
    names = _ssv2_classes(path, classes, encoding)
    index = {name: i for i, name in enumerate(names)}
    records = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict) or "id" not in entry:
            raise AnnotationError(path, None, f"entry {position} has no 'id'")
        if "template" not in entry:
            raise AnnotationError(
                path, None, f"entry {position} (id {entry['id']}) has no 'template' (test split?)"
            )
        name = entry["template"].replace("[", "").replace("]", "")
        if name not in index:
            raise AnnotationError(path, None, f"entry {position} (id {entry['id']}): unknown label {name!r}")
        video_id = str(entry["id"])
        video = _built(root_dir, root_dir / f"{video_id}.webm", path, None, allow_outside_root)
        records.append(VideoRecord(path=video, label=index[name], video_id=video_id))
    return AnnotationSet(records=records, classes=names, source=str(path), format="ssv2_json")


def read_ucf101(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    allow_outside_root: bool = False,
) -> AnnotationSet:
    """Read a UCF101 ``trainlist0N.txt`` / ``testlist0N.txt`` with ``classInd.txt`` (see the module docstring)."""
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    if classes is None or isinstance(classes, (str, os.PathLike)):
        class_file = Path(classes) if classes is not None else path.parent / "classInd.txt"
        names = []
        for number, raw in enumerate(read_text_lines(class_file, encoding), start=1):
            fields = raw.split()
            if not fields:
                continue
            if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) != len(names) + 1:
                raise AnnotationError(
                    class_file, number, f"expected '{len(names) + 1} ClassName', got {raw!r}"
                )
            names.append(fields[1])
    else:
        names = list(classes)
    index = {name: i for i, name in enumerate(names)}
    records = []
    for number, raw in enumerate(read_text_lines(path, encoding), start=1):
        fields = raw.split()
        if not fields:
            continue
        if len(fields) > 2:
            raise AnnotationError(
                path, number, f"expected 'Class/video.avi [label]', got {len(fields)} fields"
            )
        relative = fields[0]
        folder = relative.replace("\\", "/").split("/")[0]
        if len(fields) == 2:
            if not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(names):
                raise AnnotationError(path, number, f"unknown label {fields[1]!r}: expected 1..{len(names)}")
            label = int(fields[1]) - 1
        elif folder in index:
            label = index[folder]
        else:
            raise AnnotationError(
                path, number, f"unknown label: class folder {folder!r} is not in classInd.txt"
            )
        records.append(
            VideoRecord(
                path=join_root(root_dir, relative, file=path, line=number, allow_outside=allow_outside_root),
                label=label,
                video_id=Path(relative).stem,
            )  # fmt: skip
        )
    if not records:
        raise empty_annotation(path, "no lines")
    return AnnotationSet(records=records, classes=names, source=str(path), format="ucf101")


def _charades_classes(path: Path, classes: Sequence[str] | str | os.PathLike | None, encoding: str):
    """(class ids, display names) from ``Charades_v1_classes.txt`` (``c000 Holding some clothes``) or ``classes``."""
    given = given_classes(classes, encoding)
    if given is None and (path.parent / "Charades_v1_classes.txt").is_file():
        given = load_class_file(path.parent / "Charades_v1_classes.txt", encoding)
    if given is None:
        return None, None
    ids = [line.split(None, 1)[0] for line in given]
    names = [line.split(None, 1)[1] if len(line.split(None, 1)) == 2 else line for line in given]
    return ids, names


def read_charades_csv(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    allow_outside_root: bool = False,
    multilabel: bool = True,
) -> AnnotationSet:
    """Read a Charades CSV (``id,...,actions,length``; actions ``c092 11.90 21.20;c147 0.00 12.60``) as
    multi-label records: the video ``<root>/<id>.mp4`` has every action class listed (their times are
    not used). Classes: ``Charades_v1_classes.txt`` beside the CSV (``c000 Holding some clothes``; the
    names are the descriptions, in file order) or ``classes``; otherwise the sorted action ids seen.
    """
    path = Path(path)
    if not multilabel:
        raise AnnotationError(
            path, None, "Charades annotations are multi-label (a video holds several actions); train them with "
            "--model.task multilabel (read_annotations(..., multilabel=True))",
        )  # fmt: skip
    root_dir = Path(root) if root is not None else path.parent
    reader = csv.DictReader(read_text_lines(path, encoding))
    columns = set(reader.fieldnames or [])
    if not {"id", "actions"} <= columns:
        raise AnnotationError(path, 1, f"Charades CSV header needs 'id' and 'actions', got {sorted(columns)}")
    ids, names = _charades_classes(path, classes, encoding)
    entries: list[tuple[int, str]] = []
    groups: list[tuple[int, list[str]]] = []
    for number, row in enumerate(reader, start=2):
        if None in row or row["id"] is None or row["actions"] is None:
            raise AnnotationError(path, number, f"expected {len(reader.fieldnames)} columns like the header")
        actions = []
        for action in filter(None, (part.strip() for part in row["actions"].split(";"))):
            fields = action.split()
            if len(fields) != 3:
                raise AnnotationError(
                    path, number, f"action {action!r} is not 'class start end' (e.g. 'c092 11.90 21.20')"
                )
            actions.append(fields[0])
        entries.append((number, row["id"].strip()))
        groups.append((number, actions))
    if not entries:
        raise empty_annotation(path, "header only")
    label_lists, found = resolve_label_lists(path, groups, ids)
    records = [
        VideoRecord(
            path=_built(root_dir, root_dir / f"{video}.mp4", path, number, allow_outside_root),
            label=group[0] if group else -1,
            video_id=video,
            labels=group,
        )  # fmt: skip
        for (number, video), group in zip(entries, label_lists)
    ]
    return AnnotationSet(records=records, classes=names or found, source=str(path), format="charades_csv")


__all__ = ["read_charades_csv", "read_kinetics_csv", "read_ssv2_json", "read_ucf101"]
