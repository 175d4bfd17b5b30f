"""The records every annotation reader produces, and the parsing helpers the readers share.

`VideoRecord` is one labelled video, `AnnotationSet` the records of one annotation with the class names
their labels index, `AnnotationError` the error for a malformed file (file and 1-based line number). The
helpers (`read_text_lines`, `load_class_file`, `given_classes`, `resolve_labels`, `join_root`,
`empty_annotation`) are what ``annotations.py`` (lists, folders, `read_annotations`) and ``formats.py``
(Kinetics, Something-Something v2, UCF101) have in common; this module imports neither of them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fast_timesformer.errors import FastTimeSformerError


class AnnotationError(FastTimeSformerError, ValueError):
    """A problem in an annotation file; ``path`` and ``line`` (1-based, or None) locate it."""

    def __init__(self, path: str | os.PathLike, line: int | None, reason: str):
        self.path = os.fspath(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        # Keep the three fields when the error is pickled across DataLoader workers.
        return (type(self), (self.path, self.line, self.reason))


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video: an absolute-or-root-joined ``path``, a 0-based ``label``, a stable ``video_id``."""

    path: str
    label: int
    video_id: str
    #: sha256 of the decoded frames (``synthetic.frames_sha256``) when the manifest has a ``sha256`` column
    sha256: str | None = None
    #: multi-label annotations: every class of the video (sorted, possibly empty); ``label`` is then the
    #: first of them, or -1 for a video with none. None for single-label annotations.
    labels: tuple[int, ...] | None = None


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


def read_text_lines(path: Path, encoding: str) -> list[str]:
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


def load_class_file(path: Path, encoding: str) -> list[str]:
    """Class names from a text file, one per line (blank lines and ``#`` comments skipped, no repeats)."""
    names = [line.strip() for line in read_text_lines(path, encoding)]
    names = [name for name in names if name and not name.startswith("#")]
    if not names:
        raise AnnotationError(path, None, "class file is empty; it needs one class name per line")
    if len(set(names)) != len(names):
        raise AnnotationError(path, None, "class file lists a name twice")
    return names


def given_classes(classes: Sequence[str] | str | os.PathLike | None, encoding: str) -> list[str] | None:
    """A reader's ``classes=`` as a list of names: None stays None, a path is read as a class file."""
    if classes is None:
        return None
    if isinstance(classes, (str, os.PathLike)):
        return load_class_file(Path(classes), encoding)
    return [str(name) for name in classes]


def resolve_labels(
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


def resolve_label_lists(
    path: Path, groups: list[tuple[int, list[str]]], classes: list[str] | None
) -> tuple[list[tuple[int, ...]], list[str]]:
    """Multi-label version of `resolve_labels`: each (line, [tokens]) group -> sorted class indices."""
    flat = [(line, token) for line, tokens in groups for token in tokens]
    if not flat:
        raise AnnotationError(path, None, "no labels at all in a multi-label annotation")
    indices, names = resolve_labels(path, flat, classes)
    out: list[tuple[int, ...]] = []
    position = 0
    for _, tokens in groups:
        out.append(tuple(sorted(set(indices[position : position + len(tokens)]))))
        position += len(tokens)
    return out, names


def join_root(
    root: Path,
    relative: str,
    *,
    file: Path | None = None,
    line: int | None = None,
    allow_outside: bool = False,
) -> str:
    """``relative`` (an annotation's video path) joined to ``root`` and normalised; absolute paths stay.

    A relative path that climbs out of ``root`` (``../../etc/passwd``) is an :class:`AnnotationError` unless
    ``allow_outside``: an annotation file from elsewhere must not make training open arbitrary files. An
    absolute path is the annotation author's explicit choice and is kept.
    """
    joined = os.path.normpath(os.path.join(root, relative))
    if not allow_outside and not os.path.isabs(relative) and not is_within(joined, root):
        raise outside_root(file, line, relative, root)
    return joined


def is_within(path: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether normalised ``path`` lies inside ``root`` (lexically; symlinks are the user's own)."""
    path, root = os.path.normpath(os.path.abspath(path)), os.path.normpath(os.path.abspath(root))
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def outside_root(file: Path | None, line: int | None, relative: str, root: Path) -> AnnotationError:
    """The error for a video path that leaves the annotation root."""
    return AnnotationError(
        file or root, line,
        f"video path {relative!r} leaves the root folder {str(root)!r}; fix the path, or allow it explicitly "
        "(allow_outside_root=True; --data.allow_outside_root true / --allow-outside-root on the command line)",
    )  # fmt: skip


def empty_annotation(path: Path, what: str) -> AnnotationError:
    """The error for an annotation that lists no videos; ``what`` says what was found instead."""
    return AnnotationError(path, None, f"no videos listed ({what}); the dataset would be empty")


__all__ = [
    "AnnotationError",
    "AnnotationSet",
    "VideoRecord",
    "empty_annotation",
    "given_classes",
    "resolve_label_lists",
    "is_within",
    "join_root",
    "load_class_file",
    "outside_root",
    "read_text_lines",
    "resolve_labels",
]
