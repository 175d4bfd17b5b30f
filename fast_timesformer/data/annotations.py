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
import io
import json
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fast_timesformer.errors import FastTimeSformerError

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
FORMATS = ("auto", "list", "folder", "kinetics_csv", "ssv2_json", "ucf101")
_PATH_COLUMNS = ("path", "video", "filename", "file", "video_path")
_LABEL_COLUMNS = ("label", "class", "label_id", "class_id", "target")
_UCF_SPLIT = re.compile(r"^(train|test)list\d+\.txt$", re.IGNORECASE)


class AnnotationError(FastTimeSformerError, ValueError):
    """A problem in an annotation file; ``path`` and ``line`` (1-based, or None) locate it."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.line, self.reason))


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: an absolute-or-root-joined ``path``, a 0-based ``label``, a stable ``video_id``."""

    path: str
    label: int
    video_id: str


@dataclass
class AnnotationSet:
    """Records plus the class names their labels index (``classes[record.label]``)."""

    records: list[VideoRecord]
    classes: list[str]
    source: str = ""
    format: str = ""
    extra: dict = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[VideoRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> VideoRecord:
        return self.records[index]


def _read_text(path: Path, encoding: str) -> list[str]:
    """The file's lines, with a line-numbered error for bytes that are not valid ``encoding``."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise AnnotationError(path, None, "annotation file not found; check the path") from None
    except IsADirectoryError:
        raise AnnotationError(path, None, "is a directory; use format='folder' for class folders") from None
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise AnnotationError(
            path,
            line,
            f"bytes {data[error.start : error.end]!r} are not valid {encoding}; re-save the file as UTF-8 "
            "or pass encoding='latin-1' (or the encoding it was written in)",
        ) from None
    return text.lstrip("\ufeff").splitlines()


def _split(line: str) -> list[str]:
    if "," in line:
        return [field.strip() for field in next(csv.reader(io.StringIO(line)))]
    return line.split()


def _load_class_file(path: Path, encoding: str) -> list[str]:
    names = [line.strip() for line in _read_text(path, encoding)]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise AnnotationError(path, None, "class file is empty; it needs one class name per line")
    if len(set(names)) != len(names):
        raise AnnotationError(path, None, "class file lists a name twice")
    return names


def _given_classes(classes: Sequence[str] | str | os.PathLike | None, encoding: str) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        return _load_class_file(Path(classes), encoding)
    return [str(name) for name in classes]


def _resolve_labels(
    path: Path, tokens: list[tuple[int, str]], classes: list[str] | None
) -> tuple[list[int], list[str]]:
    """Turn label tokens (line number, text) into 0-based ints and the class list."""
    if classes is not None:
        index = {name: i for i, name in enumerate(classes)}
        labels = []
        for line, token in tokens:
            if token in index:
                labels.append(index[token])
            elif token.lstrip("-").isdigit() and 0 <= int(token) < len(classes):
                labels.append(int(token))
            else:
                shown = ", ".join(classes[:8]) + (", ..." if len(classes) > 8 else "")
                raise AnnotationError(
                    path,
                    line,
                    f"unknown label {token!r}: not one of the {len(classes)} classes ({shown}) "
                    f"nor an index in [0, {len(classes)}); fix the label or the class list",
                )
        return labels, list(classes)
    numeric = [token.lstrip("-").isdigit() for _, token in tokens]
    if all(numeric):
        labels = [int(token) for _, token in tokens]
        for (line, token), label in zip(tokens, labels):
            if label < 0:
                raise AnnotationError(
                    path, line, f"negative label {token!r}; labels are 0-based class indices"
                )
        return labels, [str(i) for i in range(max(labels) + 1)]
    if any(numeric):
        line, token = tokens[numeric.index(True)]
        raise AnnotationError(
            path,
            line,
            f"label {token!r} is a number but other labels are class names; use one kind, or pass "
            "classes=[...] so numbers are indices into it",
        )
    names = sorted({token for _, token in tokens})
    index = {name: i for i, name in enumerate(names)}
    return [index[token] for _, token in tokens], names


def _join(root: Path, relative: str) -> str:
    return os.path.normpath(os.path.join(root, relative))


def _video_id(relative: str) -> str:
    return os.path.splitext(relative)[0]


def _empty(path: Path, what: str) -> AnnotationError:
    return AnnotationError(path, None, f"no videos listed ({what}); the dataset would be empty")


def read_list(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
) -> AnnotationSet:
    """Read a ``path label`` list (whitespace or comma separated, optional header). See the module docstring.

    With a header that has a ``split`` column, ``split`` selects the rows of one split (required when the
    file holds several).
    """
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    given = _given_classes(classes, encoding)
    if given is None and (path.parent / "classes.txt").is_file() and path.name != "classes.txt":
        given = _load_class_file(path.parent / "classes.txt", encoding)
        logger.info("using class names from %s", path.parent / "classes.txt")
    rows: list[tuple[int, str]] = []
    tokens: list[tuple[int, str]] = []
    path_col, label_col, split_col, width = 0, 1, None, 2
    header_seen = False
    splits_seen: set[str] = set()
    for number, raw in enumerate(_read_text(path, encoding), start=1):
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
                width, header_seen = len(fields), True
                continue
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
        raise _empty(path, what)
    labels, names = _resolve_labels(path, tokens, given)
    records = [
        VideoRecord(path=_join(root_dir, relative), label=label, video_id=_video_id(relative))
        for (_, relative), label in zip(rows, labels)
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
        raise _empty(root, f"no files ending in {', '.join(suffixes[:4])}, ... under the class folders")
    return AnnotationSet(records=records, classes=classes, source=str(root), format="folder")


def read_kinetics_csv(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
) -> AnnotationSet:
    """Read an official Kinetics CSV (see the module docstring for where files are expected).

    ``split`` keeps only rows whose ``split`` column equals it (the official files hold one split each).
    """
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    lines = _read_text(path, encoding)
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
        raise _empty(path, "header only")
    labels, names = _resolve_labels(path, tokens, _given_classes(classes, encoding))
    folder_of: dict[str, Path] = {}
    for label_name in {label for _, label, _ in entries}:
        for candidate in (root_dir / label_name, root_dir / label_name.replace(" ", "_")):
            if candidate.is_dir():
                folder_of[label_name] = candidate
                break
        else:
            folder_of[label_name] = root_dir  # flat layout
    records = [
        VideoRecord(path=str(folder_of[label_name] / f"{stem}.mp4"), label=label, video_id=stem)
        for (_, label_name, stem), label in zip(entries, labels)
    ]
    return AnnotationSet(records=records, classes=names, source=str(path), format="kinetics_csv")


def _ssv2_classes(path: Path, classes: Sequence[str] | str | os.PathLike | None, encoding: str) -> list[str]:
    if classes is not None and not (
        isinstance(classes, (str, os.PathLike)) and str(classes).endswith(".json")
    ):
        return _given_classes(classes, encoding) or []
    candidates = (
        [Path(classes)]
        if classes is not None
        else [path.parent / "something-something-v2-labels.json", path.parent / "labels.json"]
    )
    for candidate in candidates:
        if candidate.is_file():
            try:
                mapping = json.loads("\n".join(_read_text(candidate, encoding)))
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
) -> AnnotationSet:
    """Read a Something-Something v2 split JSON (see the module docstring)."""
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    try:
        entries = json.loads("\n".join(_read_text(path, encoding)))
    except json.JSONDecodeError as error:
        raise AnnotationError(path, error.lineno, f"invalid JSON: {error.msg}") from None
    if not isinstance(entries, list):
        raise AnnotationError(path, None, "expected a JSON list of {id, template, ...} entries")
    if not entries:
        raise _empty(path, "empty JSON list")
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
        records.append(
            VideoRecord(path=str(root_dir / f"{video_id}.webm"), label=index[name], video_id=video_id)
        )
    return AnnotationSet(records=records, classes=names, source=str(path), format="ssv2_json")


def read_ucf101(
    path: str | os.PathLike,
    *,
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
) -> AnnotationSet:
    """Read a UCF101 ``trainlist0N.txt`` / ``testlist0N.txt`` with ``classInd.txt`` (see the module docstring)."""
    path = Path(path)
    root_dir = Path(root) if root is not None else path.parent
    if classes is None or isinstance(classes, (str, os.PathLike)):
        class_file = Path(classes) if classes is not None else path.parent / "classInd.txt"
        names = []
        for number, raw in enumerate(_read_text(class_file, encoding), start=1):
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
    for number, raw in enumerate(_read_text(path, encoding), start=1):
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
        records.append(VideoRecord(path=_join(root_dir, relative), label=label, video_id=Path(relative).stem))
    if not records:
        raise _empty(path, "no lines")
    return AnnotationSet(records=records, classes=names, source=str(path), format="ucf101")


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
    return "list"


def read_annotations(
    path: str | os.PathLike,
    *,
    format: str = "auto",
    root: str | os.PathLike | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    encoding: str = "utf-8",
    split: str | None = None,
) -> AnnotationSet:
    """Read any supported annotation into an `AnnotationSet` (see the module docstring).

    Args:
        path: the annotation file, or the root folder for the folder-per-class format.
        format: "auto", "list", "folder", "kinetics_csv", "ssv2_json" or "ucf101".
        root: folder that relative video paths are joined to; default the annotation file's folder.
        classes: class names (a list, or a file with one per line; for SSv2 also the labels JSON).
        encoding: text encoding of the annotation files.
        split: rows of this split only, for files with a ``split`` column (lists with a header, Kinetics CSV).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown annotation format {format!r}; choose one of {FORMATS}")
    if not os.path.lexists(path):
        raise AnnotationError(path, None, "annotation file not found; check the path")
    chosen = detect_format(path) if format == "auto" else format
    if chosen == "folder":
        if classes is not None:
            raise ValueError("classes= is not used with format='folder': classes are the sorted folder names")
        return read_folder(path)
    if chosen == "list":
        return read_list(path, root=root, classes=classes, encoding=encoding, split=split)
    if chosen == "kinetics_csv":
        return read_kinetics_csv(path, root=root, classes=classes, encoding=encoding, split=split)
    if split is not None:
        raise ValueError(f"split= is only used with 'list' and 'kinetics_csv' annotations, not {chosen!r}")
    reader = {"ssv2_json": read_ssv2_json, "ucf101": read_ucf101}
    return reader[chosen](path, root=root, classes=classes, encoding=encoding)
