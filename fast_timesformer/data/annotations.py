"""Read the annotation formats video datasets ship with into one `AnnotationSet` (records + class names).

Formats (``read_annotations(path, format=...)``; ``"auto"`` picks one from the path):

* ``"list"`` — one video per line, ``path label`` separated by whitespace or a comma (CSV quoting works
  for paths with commas or spaces). An optional header row naming the columns (``path,label,...``) allows
  extra columns, e.g. the built-in dataset's ``manifest.csv``. Labels are integers or class names. This
  is also the official TimeSformer/PySlowFast Kinetics format (``path label``, space separated).
* ``"folder"`` — a directory tree ``root/<class>/<video>``; classes are the sorted folder names
  (`read_folder`).
* ``"kinetics_csv"`` — the official Kinetics CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``).
  Files are found where the ActivityNet downloader writes them:
  ``<root>/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4`` — the label folder may also use
  underscores for spaces, and when neither folder exists the file is expected directly in ``<root>``.
* ``"ssv2_json"`` — Something-Something v2 ``something-something-v2-{train,validation}.json``; classes
  from ``something-something-v2-labels.json`` (template -> id) next to it or passed as ``classes``;
  videos at ``<root>/<id>.webm``; the class of an entry is its template with ``[`` ``]`` removed.
* ``"charades_csv"`` — the Charades CSV (``id,...,actions,length``), multi-label: every action class of
  ``<root>/<id>.mp4``; names from ``Charades_v1_classes.txt`` beside it (`read_charades_csv`). Multi-label
  lists are ``"list"`` files whose label field lists classes (``path a,b``), read with ``multilabel=True``.
* ``"ucf101"`` — UCF101 split files ``trainlist0N.txt`` (``Class/v_Class_gXX_cYY.avi 1-based-label``) and
  ``testlist0N.txt`` (path only, class from the folder), with ``classInd.txt`` next to them; labels become
  0-based.

Paths in an annotation are relative to ``root``, which defaults to the annotation file's folder.
Class names travel with the records: ``classes`` may be given (a list, or a text file with one name per
line); for lists, a ``classes.txt`` beside the annotation is used when present; otherwise classes are the
sorted label names, or ``"0" ... str(max)`` for integer labels.

Every malformed line raises `AnnotationError` naming the file and the 1-based line number.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from .formats import read_charades_csv, read_kinetics_csv, read_ssv2_json, read_ucf101
from .records import (
    AnnotationError,
    AnnotationSet,
    VideoRecord,
    empty_annotation,
    given_classes,
    join_root,
    load_class_file,
    read_text_lines,
    resolve_label_lists,
    resolve_labels,
)

logger = logging.getLogger(__name__)

VIDEO_EXTENSIONS = (
    ".mp4",
    ".avi",
    ".mkv",
    ".webm",
    ".mov",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".wmv",
    ".flv",
    ".ogv",
    ".3gp",
)
FORMATS = ("auto", "list", "folder", "kinetics_csv", "ssv2_json", "ucf101", "charades_csv")
_PATH_COLUMNS = ("path", "video", "filename", "file", "video_path")
_LABEL_COLUMNS = ("label", "class", "label_id", "class_id", "target")
_UCF_SPLIT = re.compile(r"^(train|test)list\d+\.txt$", re.IGNORECASE)
_LIST_SEPARATORS = re.compile(r"[,;|]")  # between the labels of a multi-label list


def _split(line: str) -> list[str]:
    if "," in line:
        return [field.strip() for field in next(csv.reader(io.StringIO(line)))]
    return line.split()


def _label_list_line(line: str) -> bool:
    """``path a,b`` (whitespace, then labels joined by , ; or |): a multi-label list line. Not CSV with a path
    holding spaces (``my clip.mp4,cat``: the part before the separator ends in a file extension)."""
    parts = line.split()
    if len(parts) != 2 or '"' in line or not _LIST_SEPARATORS.search(parts[1]):
        return False
    return not re.search(r"\.\w{2,4}$", _LIST_SEPARATORS.split(parts[1])[0])


def _video_id(relative: str) -> str:
    return os.path.splitext(relative)[0]


def read_list(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
    allow_outside_root: bool = False,
    multilabel: bool = False,
) -> AnnotationSet:
    """Read a ``path label`` list (whitespace or comma separated, optional header). See the module docstring.

    With a header that has a ``split`` column, ``split`` selects the rows of one split (required when the
    file holds several). With ``multilabel``, the label field is a list (``path a,b`` or ``path a;b``;
    in a CSV with a header, a quoted ``"a,b"``; an empty field is a video with no label) and each record
    gets ``labels``; a list like that read without ``multilabel`` is refused, naming the option.
    """
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    given = given_classes(classes, encoding)
    if given is None and (path.parent / "classes.txt").is_file() and path.name != "classes.txt":
        given = load_class_file(path.parent / "classes.txt", encoding)
        logger.info("using class names from %s", path.parent / "classes.txt")
    rows: list[tuple[int, str]] = []
    tokens: list[tuple[int, str]] = []
    path_col, label_col, split_col, sha_col, width = 0, 1, None, None, 2
    digests: list[str | None] = []
    header_seen = False
    splits_seen: set[str] = set()
    for number, raw in enumerate(read_text_lines(path, encoding), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = _split(line)
        if not header_seen and not rows:
            lowered = [f.lower() for f in fields]
            if any(name in lowered for name in _PATH_COLUMNS) and any(
                name in lowered for name in _LABEL_COLUMNS
            ):
                path_col = next(lowered.index(n) for n in _PATH_COLUMNS if n in lowered)
                label_col = next(lowered.index(n) for n in _LABEL_COLUMNS if n in lowered)
                split_col = lowered.index("split") if "split" in lowered else None
                sha_col = lowered.index("sha256") if "sha256" in lowered else None
                width, header_seen = len(fields), True
                continue
        listed = not header_seen and _label_list_line(line)
        if not multilabel and listed:
            raise AnnotationError(
                path, number,
                f"the label {line.split()[1]!r} is a list of labels: this is a multi-label annotation; train "
                "it with --model.task multilabel (read_annotations(..., multilabel=True))",
            )  # fmt: skip
        if multilabel and not header_seen:
            if listed:
                fields = line.split(None, 1)  # "path a,b,c": the path, then the label list
            elif "," in line and '"' not in line and " " not in line:
                fields = [fields[0], ";".join(fields[1:])]  # "path,a,b": the path, then labels
            elif len(fields) == 1:
                fields = [fields[0], ""]  # a path alone: a video with none of the classes
        if len(fields) != width:
            expected = f"{width} columns like the header" if header_seen else "2 fields 'path label'"
            raise AnnotationError(
                path,
                number,
                f"expected {expected}, got {len(fields)}: {line[:80]!r}; paths with spaces need "
                "the comma-separated form with quotes",
            )
        if split_col is not None:
            splits_seen.add(fields[split_col])
            if split is not None and fields[split_col] != split:
                continue
        rows.append((number, fields[path_col]))
        tokens.append((number, fields[label_col]))
        digests.append(fields[sha_col].lower() or None if sha_col is not None else None)
    if split is not None and split_col is None:
        raise AnnotationError(path, None, f"split={split!r} was given but the file has no 'split' column")
    if split is None and len(splits_seen) > 1:
        raise AnnotationError(
            path,
            None,
            f"the file holds several splits ({', '.join(sorted(splits_seen))}); pass split=",
        )
    if not rows:
        what = (
            f"no rows of split {split!r}" if split is not None else "only blank lines, comments or a header"
        )
        raise empty_annotation(path, what)
    if multilabel:
        groups = [(number, [t for t in _LIST_SEPARATORS.split(text) if t.strip()]) for number, text in tokens]
        label_lists, names = resolve_label_lists(
            path, [(n, [t.strip() for t in g]) for n, g in groups], given
        )
        labels = [group[0] if group else -1 for group in label_lists]
    else:
        for number, token in tokens:
            if _LIST_SEPARATORS.search(token) and (given is None or token not in given):
                raise AnnotationError(
                    path, number,
                    f"the label {token!r} is a list of labels: this is a multi-label annotation; train it "
                    "with --model.task multilabel (read_annotations(..., multilabel=True))",
                )  # fmt: skip
        labels, names = resolve_labels(path, tokens, given)
        label_lists = [None] * len(labels)
    records = [
        VideoRecord(
            path=join_root(root_dir, relative, file=path, line=number, allow_outside=allow_outside_root),
            label=label,
            video_id=_video_id(relative),
            sha256=digest,
            labels=group,
        )  # fmt: skip
        for (number, relative), label, digest, group in zip(rows, labels, digests, label_lists)
    ]
    return AnnotationSet(records=records, classes=names, source=str(path), format="list")


def read_folder(root: str | os.PathLike, *, extensions: Sequence[str] = VIDEO_EXTENSIONS) -> AnnotationSet:
    """Read a folder-per-class tree ``root/<class>/**/<video>``; classes are the sorted folder names.

    Args:
        root: the folder whose sub-folders are the classes.
        extensions: file suffixes counted as videos (case-insensitive).
    """
    root = Path(root)
    if not root.is_dir():
        raise AnnotationError(root, None, "not a directory; expected root/<class>/<video> folders")
    suffixes = tuple(ext.lower() for ext in extensions)
    classes = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")
    )
    if not classes:
        raise AnnotationError(root, None, "no class folders; expected root/<class>/<video> folders")
    records = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found += [
                os.path.join(dirpath, filename) for filename in filenames
                if not filename.startswith(".") and filename.lower().endswith(suffixes)
            ]  # fmt: skip
        for full in sorted(found):  # sorted paths: the same order on every filesystem
            records.append(
                VideoRecord(path=full, label=label, video_id=_video_id(os.path.relpath(full, root)))
            )
    if not records:
        raise empty_annotation(
            root, f"no files ending in {', '.join(suffixes[:4])}, ... under the class folders"
        )
    return AnnotationSet(records=records, classes=classes, source=str(root), format="folder")


def detect_format(path: str | os.PathLike) -> str:
    """Guess the annotation format of ``path`` (see the module docstring); never reads more than a line."""
    path = Path(path)
    if path.is_dir():
        return "folder"
    if path.suffix.lower() == ".json":
        return "ssv2_json"
    if _UCF_SPLIT.match(path.name):
        return "ucf101"
    if path.suffix.lower() == ".csv" and path.is_file():
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8", errors="replace").lower()
        if "youtube_id" in first:
            return "kinetics_csv"
        if "actions" in [column.strip() for column in first.split(",")]:
            return "charades_csv"
    return "list"


def read_annotations(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
    allow_outside_root: bool = False,
    multilabel: bool = False,
) -> AnnotationSet:
    """Read any supported annotation into an `AnnotationSet` (see the module docstring).

    Args:
        path: the annotation file, or the root folder for the folder-per-class format.
        format: "auto", "list", "folder", "kinetics_csv", "ssv2_json" or "ucf101".
        root: folder that relative video paths are joined to; default the annotation file's folder.
        classes: class names (a list, or a file with one per line; for SSv2 also the labels JSON).
        encoding: text encoding of the annotation files.
        split: rows of this split only, for files with a ``split`` column (lists with a header, Kinetics CSV).
        allow_outside_root: accept relative video paths that leave ``root`` (``../..``); refused by default.
        multilabel: records carry every class of their video (``labels``): label lists (``path a,b``) and
            the Charades CSV; other formats give one-class lists. Charades or label lists without it are
            refused with a message naming ``--model.task multilabel``.

    Duplicate entries (the same video listed twice) are kept, as listed, with a warning: each copy counts.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; choose one of {FORMATS}")
    if not os.path.lexists(path):
        raise AnnotationError(path, None, "annotation file not found; check the path")
    chosen = detect_format(path) if format == "auto" else format
    if chosen == "folder":
        if classes is not None:
            raise ValueError("classes= is not used with format='folder': classes are the sorted folder names")
        return _as_multilabel(read_folder(path)) if multilabel else read_folder(path)
    common = dict(root=root, classes=classes, encoding=encoding, allow_outside_root=allow_outside_root)
    if chosen == "list":
        annotation_set = read_list(path, split=split, multilabel=multilabel, **common)
    elif chosen == "charades_csv":
        if split is not None:
            raise ValueError("split= is not used with Charades CSVs: they hold one split per file")
        annotation_set = read_charades_csv(path, multilabel=multilabel, **common)
    elif chosen == "kinetics_csv":
        annotation_set = read_kinetics_csv(path, split=split, **common)
    elif split is not None:
        raise ValueError(f"split= is only used with 'list' and 'kinetics_csv' annotations, not {chosen!r}")
    else:
        annotation_set = {"ssv2_json": read_ssv2_json, "ucf101": read_ucf101}[chosen](path, **common)
    if multilabel:
        annotation_set = _as_multilabel(annotation_set)
    warn_duplicates(annotation_set)
    return annotation_set


def _as_multilabel(annotation_set: AnnotationSet) -> AnnotationSet:
    """Single-label formats read for a multi-label run: each video's one class as its list."""
    annotation_set.records = [
        record if record.labels is not None else dataclasses.replace(record, labels=(record.label,))
        for record in annotation_set.records
    ]
    return annotation_set


def duplicate_paths(annotation_set: AnnotationSet) -> dict[str, int]:
    """Video paths listed more than once, with how many times."""
    counts = Counter(record.path for record in annotation_set.records)
    return {path: count for path, count in counts.items() if count > 1}


def warn_duplicates(annotation_set: AnnotationSet) -> None:
    """Log a warning naming the duplicates: a twice-listed video weighs double in training and metrics."""
    duplicates = duplicate_paths(annotation_set)
    if duplicates:
        extra = sum(duplicates.values()) - len(duplicates)
        example, count = next(iter(duplicates.items()))
        logger.warning(
            "%s: %d videos are listed more than once (%d extra entries, e.g. %s x%d); each entry counts as "
            "listed -- remove the duplicates unless that weighting is intended",
            annotation_set.source, len(duplicates), extra, example, count,
        )  # fmt: skip


__all__ = [
    "FORMATS",
    "VIDEO_EXTENSIONS",
    "AnnotationError",
    "AnnotationSet",
    "VideoRecord",
    "detect_format",
    "duplicate_paths",
    "read_annotations",
    "read_folder",
    "read_kinetics_csv",
    "read_list",
    "read_ssv2_json",
    "read_ucf101",
]
