"""Features for search and reuse: one vector per video (and optionally per window of a long video).

:func:`embed_videos` turns video files into the model's pooled features -- the final-normed CLS token that
the classifier head reads (:meth:`~fast_timesformer.FastTimeSformer.forward_features`, shape (dim,)) --
averaged over the views the stored preprocessing makes of each file (the views of
:meth:`Predictor.views <fast_timesformer.inference.Predictor.views>`, the same clips and crops ``classify``
scores). Views of several files share a forward pass (``batch_size`` views at a time). A file that cannot be
read is reported in :attr:`Embeddings.errors` and skipped; the others go on.

With ``windows=True`` each file also gets one feature per window of its timeline: the windows of
:func:`~fast_timesformer.inference.timeline` (:func:`~fast_timesformer.data.streaming.plan_windows`,
decoded forward once by :func:`~fast_timesformer.data.streaming.stream_windows`, memory bounded whatever the
length), each the mean of its crops' features.

:meth:`Embeddings.save` writes ``.safetensors`` or ``.npy`` (chosen by the extension) plus an index CSV
(row -> path, label when known, views, windows); :func:`load_embeddings` reads them back and
:func:`nearest_neighbours` searches them by cosine similarity.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fast_timesformer.errors import FastTimeSformerError, OptionError

#: Output formats, by file extension.
FORMATS = (".safetensors", ".npy")


class EmbedError(FastTimeSformerError, ValueError):
    """Embedding cannot go on: no file could be read, an output that cannot be written, a bad features file."""


@dataclass
class Embeddings:
    """The features of the files that could be read, in input order, and what went wrong with the others.

    Attributes:
        paths: the N embedded files.
        features: (N, dim) float32 pooled features (the mean over each file's views).
        labels: per file, its label index when known (from an annotation file), else None.
        class_names: the names ``labels`` index (the annotation's classes), or None.
        num_views: per file, the views its feature averages.
        protocol: the views in words (``"8x32, 1 clip x 3 crops, 224px"``).
        window_features: (W, dim) float32 per-window features of all files, file after file (None without
            windows).
        window_video: (W,) int64 row in ``paths`` of each window.
        window_start_s, window_end_s: (W,) float32 times of each window in its video.
        errors: ``{"video": path, "error": reason}`` per skipped file.
    """

    paths: list[str]
    features: torch.Tensor
    labels: list[int | None]
    class_names: list[str] | None
    num_views: list[int]
    protocol: str
    window_features: torch.Tensor | None = None
    window_video: torch.Tensor | None = None
    window_start_s: torch.Tensor | None = None
    window_end_s: torch.Tensor | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def dim(self) -> int:
        """Feature width."""
        return int(self.features.shape[1])

    def num_windows(self) -> list[int]:
        """Per file, its windows (all 0 without windows)."""
        if self.window_video is None:
            return [0] * len(self.paths)
        return torch.bincount(self.window_video, minlength=len(self.paths)).tolist()

    def label_name(self, row: int) -> str:
        """The class name of a file's label ('' when unknown)."""
        label = self.labels[row]
        if label is None:
            return ""
        return (
            self.class_names[label] if self.class_names and 0 <= label < len(self.class_names) else str(label)
        )

    def save(
        self, output: str | os.PathLike, *, index: str | os.PathLike | None = None, overwrite: bool = False
    ) -> dict[str, Path]:
        """Write the features and the index CSV; returns {"features": path, "index": path[, "windows": path]}.

        ``output`` ends in ``.safetensors`` (tensors ``features`` (N, dim), ``labels`` (N,) with -1 where
        unknown and, with windows, ``window_features`` (W, dim), ``window_video``, ``window_start_s``,
        ``window_end_s``) or ``.npy`` (the (N, dim) array; windows in ``<stem>.windows.npy``). The index
        (default ``<stem>.csv``) has one row per feature row: ``row, path, label, label_index, views,
        windows, first_window``; with windows, ``<stem>.windows.csv`` has ``window, row, start_s, end_s``.
        Existing files are refused unless ``overwrite``; each file is written whole or not at all.
        """
        files = output_files(
            output, index=index, windows=self.window_features is not None, overwrite=overwrite
        )
        out = files["features"]
        out.parent.mkdir(parents=True, exist_ok=True)
        labels = torch.tensor([-1 if label is None else label for label in self.labels], dtype=torch.int64)
        if out.suffix == ".safetensors":
            from safetensors.torch import save_file

            tensors = {"features": self.features.contiguous(), "labels": labels}
            if self.window_features is not None:
                tensors.update(
                    window_features=self.window_features.contiguous(), window_video=self.window_video,
                    window_start_s=self.window_start_s, window_end_s=self.window_end_s,
                )  # fmt: skip
            metadata = {
                "protocol": self.protocol, "index": files["index"].name,
                "class_names": json.dumps(self.class_names),
            }  # fmt: skip
            _atomic(out, lambda tmp: save_file(tensors, tmp, metadata=metadata))
        else:
            import numpy as np

            def write_npy(array: torch.Tensor) -> Any:
                return lambda tmp: np.save(open(tmp, "wb"), array.numpy())  # noqa: SIM115 (np.save closes)

            _atomic(out, write_npy(self.features))
            if self.window_features is not None:
                _atomic(files["windows_npy"], write_npy(self.window_features))
        counts = self.num_windows()
        firsts = [sum(counts[:row]) for row in range(len(counts))]

        def write_index(tmp: str) -> None:
            with open(tmp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                writer.writerow(["row", "path", "label", "label_index", "views", "windows", "first_window"])
                for row, path in enumerate(self.paths):
                    label = self.labels[row]
                    writer.writerow(
                        [
                            row, path, self.label_name(row), "" if label is None else label,
                            self.num_views[row], counts[row], firsts[row] if counts[row] else "",
                        ]
                    )  # fmt: skip

        _atomic(files["index"], write_index)
        if self.window_features is not None:

            def write_windows(tmp: str) -> None:
                with open(tmp, "w", newline="", encoding="utf-8") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["window", "row", "start_s", "end_s"])
                    for w in range(len(self.window_video)):
                        writer.writerow(
                            [
                                w, int(self.window_video[w]), f"{float(self.window_start_s[w]):.3f}",
                                f"{float(self.window_end_s[w]):.3f}",
                            ]
                        )  # fmt: skip

            _atomic(files["windows"], write_windows)
        return {name: path for name, path in files.items()}


def output_files(
    output: str | os.PathLike, *, index: str | os.PathLike | None = None, windows: bool = False,
    overwrite: bool = False,
) -> dict[str, Path]:  # fmt: skip
    """The files :meth:`Embeddings.save` writes for ``output``, checked before any work starts.

    Raises :class:`~fast_timesformer.errors.OptionError` for an extension that is neither ``.safetensors``
    nor ``.npy``, an output that is a folder, or (without ``overwrite``) files that already exist.
    """
    out = Path(output)
    if out.suffix.lower() not in FORMATS:
        raise OptionError(
            f"--output {os.fspath(output)!r}: the extension chooses the format; end the name in "
            f"{' or '.join(FORMATS)} (e.g. features.safetensors)"
        )
    if out.is_dir():
        raise OptionError(
            f"--output {os.fspath(output)!r} is a folder; give a file name such as {out / 'features.npy'}"
        )
    out = out.with_suffix(out.suffix.lower())
    files = {"features": out, "index": Path(index) if index is not None else out.with_suffix(".csv")}
    if files["index"] == out:
        raise OptionError(f"--index {os.fspath(index)!r} is the features file itself; give another name")
    if windows:
        files["windows"] = out.with_name(out.stem + ".windows.csv")
        if out.suffix == ".npy":
            files["windows_npy"] = out.with_name(out.stem + ".windows.npy")
    existing = [os.fspath(path) for path in files.values() if os.path.lexists(path)]
    if existing and not overwrite:
        raise OptionError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; choose another --output "
            "or pass --overwrite (overwrite=True) to replace"
        )
    return files


def _atomic(path: Path, write: Any) -> None:
    """Write ``path`` through a temporary file beside it, so a failure leaves no half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        write(os.fspath(tmp))
        os.replace(tmp, path)
    except OSError as problem:
        raise EmbedError(f"cannot write {os.fspath(path)!r}: {problem.strerror or problem}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _predictor(weights: Any, device: Any, batch_size: int, options: dict[str, Any]) -> Any:
    """A Predictor from a weights folder, a Predictor, or a model."""
    from torch import nn

    from fast_timesformer.inference.predictor import Predictor

    if isinstance(weights, Predictor):
        if options:
            raise OptionError(f"reader limits {sorted(options)} go to the Predictor itself, not embed_videos")
        return weights
    if isinstance(weights, nn.Module):
        return Predictor(weights, device=device, batch_size=batch_size, **options)
    if isinstance(weights, (str, os.PathLike)):
        return Predictor.from_pretrained(weights, device=device, batch_size=batch_size, **options)
    raise TypeError(
        f"embed_videos needs a weights folder, a Predictor or a model, got {type(weights).__name__}"
    )


def _inputs(videos: Any) -> tuple[list[str], list[int | None], list[str] | None]:
    """(paths, labels, class names) from paths or an AnnotationSet."""
    records = getattr(videos, "records", None)
    if records is not None:  # an AnnotationSet (fast_timesformer.data.read_annotations)
        return [r.path for r in records], [r.label for r in records], list(videos.classes)
    if isinstance(videos, (str, os.PathLike)):
        videos = [videos]
    paths = [os.fspath(path) for path in videos]
    return paths, [None] * len(paths), None


@torch.inference_mode()
def embed_videos(
    videos: Sequence[str | os.PathLike] | Any,
    weights: Any,
    *,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    windows: bool = False,
    stride: float | None = None,
    window_views: int | None = None,
    progress: bool | None = False,
    output: str | os.PathLike | None = None,
    index: str | os.PathLike | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Embeddings:
    """Pooled features of video files (and optionally of every window of each), see the module docstring.

    Args:
        videos: video paths, or an :class:`~fast_timesformer.data.AnnotationSet` (from
            :func:`~fast_timesformer.data.read_annotations`): its labels and classes go into the index.
        weights: a weights folder, a :class:`~fast_timesformer.inference.Predictor` or a FastTimeSformer.
        batch_size: views per forward pass (views of several files are batched together).
        device: torch device (checked first: :func:`~fast_timesformer.inference.devices.resolve_device`).
        windows: also embed every window of each file's timeline (one feature per window).
        stride: seconds between window starts (default: half a window), with ``windows``.
        window_views: crops per window, 1 or 3 (default: the stored protocol's), with ``windows``.
        progress: a tqdm bar over the files (None: only on a terminal).
        output, index, overwrite: when ``output`` is given, :meth:`Embeddings.save` writes there (its
            names are checked before any work).
        options: the reader's limits (``max_pixels``, ``max_frames``, ``max_duration``, ``allow_images``),
            as :class:`~fast_timesformer.inference.Predictor` takes them.

    Raises :class:`EmbedError` when no file at all could be embedded (the reasons are in the message).
    """
    from tqdm import tqdm

    from fast_timesformer.data import VideoDecodeError, collate_videos
    from fast_timesformer.data.backends import check_path
    from fast_timesformer.inference.devices import resolve_device

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise OptionError(f"batch_size must be a positive integer, got {batch_size!r}")
    if window_views not in (None, 1, 3):
        raise OptionError(
            f"window_views must be 1 (centre crop) or 3 (left/centre/right), got {window_views!r}"
        )
    if stride is not None and not (isinstance(stride, (int, float)) and stride > 0):
        raise OptionError(f"stride must be a positive number of seconds, got {stride!r}")
    if output is not None:
        output_files(output, index=index, windows=windows, overwrite=overwrite)
    device = resolve_device(device)
    predictor = _predictor(weights, device, batch_size, options)
    paths, labels, class_names = _inputs(videos)
    if not paths:
        raise OptionError("no videos given: pass video files or an annotation file that lists some")
    model, dtype = predictor.model, next(predictor.model.parameters()).dtype

    kept: list[int] = []  # input positions that were embedded, in order
    sums: dict[int, torch.Tensor] = {}  # input position -> sum of its views' features (dim,)
    views_of: dict[int, int] = {}
    window_rows: dict[int, tuple[torch.Tensor, list[tuple[float, float]]]] = {}
    errors: list[dict[str, str]] = []
    pending: list[tuple[int, torch.Tensor]] = []  # (input position, views (V, T, C, H, W))

    def flush() -> None:
        batch = torch.cat([clips for _, clips in pending]).to(predictor.device, dtype)  # (B, T, C, H, W)
        features = model.forward_features(batch).float().cpu()  # (B, dim)
        start = 0
        for position, clips in pending:
            sums[position] = features[start : start + len(clips)].sum(0)
            start += len(clips)
        pending.clear()

    def fail(position: int, reason: str) -> None:
        errors.append({"video": paths[position], "error": reason})

    disable = None if progress is None else not progress
    for position in tqdm(range(len(paths)), desc="embed", unit="video", disable=disable):
        path = paths[position]
        try:
            check_path(path)
            dataset = predictor.views(path)
            batch = collate_videos([dataset[i] for i in range(len(dataset))])
            if batch["skipped"]:
                raise VideoDecodeError(path, str(batch["skipped"][0][1]))
            if windows:
                window_rows[position] = _window_features(predictor, path, stride, window_views, dtype)
        except (VideoDecodeError, FastTimeSformerError) as error:
            fix = f" ({error.fix})" if getattr(error, "fix", None) else ""
            fail(position, getattr(error, "reason", str(error)) + fix)
            continue
        views_of[position] = len(batch["video"])
        kept.append(position)
        pending.append((position, batch["video"]))
        if sum(len(clips) for _, clips in pending) >= predictor.batch_size:
            flush()
    if pending:
        flush()
    finite = [p for p in kept if torch.isfinite(sums[p]).all()]
    for position in kept:
        if position not in finite:
            fail(position, "the model gave non-finite features (its weights or preprocessing are broken)")
    kept = finite
    if not kept:
        reasons = "; ".join(f"{e['video']}: {e['error']}" for e in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise EmbedError(f"no video could be embedded: {reasons}{more}")
    errors.sort(key=lambda e: paths.index(e["video"]))
    result = Embeddings(
        paths=[paths[p] for p in kept],
        features=torch.stack([sums[p] / views_of[p] for p in kept]),  # (N, dim): mean over views
        labels=[labels[p] for p in kept], class_names=class_names, num_views=[views_of[p] for p in kept],
        protocol=predictor.protocol, errors=errors,
    )  # fmt: skip
    if windows:
        rows = [window_rows[p] for p in kept]
        result.window_features = torch.cat([features for features, _ in rows])  # (W, dim)
        result.window_video = torch.cat(
            [torch.full((len(times),), row, dtype=torch.int64) for row, (_, times) in enumerate(rows)]
        )
        times = torch.tensor([t for _, ts in rows for t in ts], dtype=torch.float32).reshape(-1, 2)  # (W, 2)
        result.window_start_s, result.window_end_s = times[:, 0].contiguous(), times[:, 1].contiguous()
    if output is not None:
        result.save(output, index=index, overwrite=overwrite)
    return result


def _window_features(
    predictor: Any, path: str, stride: float | None, window_views: int | None, dtype: torch.dtype
) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """(W, dim) features of a file's timeline windows (mean over each window's crops) and their times.

    The windows, crops and resize are the timeline's (:func:`~fast_timesformer.inference.timeline`): the
    same planning and streaming decoder, the reader's limits applied.
    """
    from fast_timesformer.data import VideoDecodeError
    from fast_timesformer.data.streaming import plan_windows, stream_windows
    from fast_timesformer.inference.timeline import open_stream, window_transforms

    prep, limits = predictor.preprocessing, dict(predictor.limits)
    allow_images = limits.pop("allow_images")
    views = prep.num_spatial_crops if window_views is None else window_views
    crops, resize = window_transforms(prep, views)
    reader = open_stream(path, limits, allow_images=allow_images)
    meta = reader.metadata
    planned = plan_windows(
        meta.num_frames, meta.fps, num_frames=prep.num_frames, sampling=prep.sampling,
        sampling_rate=prep.sampling_rate, stride_s=stride, out_of_range=prep.out_of_range,
    )  # fmt: skip
    features, times, pending = [], [], []  # pending: (window slot, one view (T, C, crop, crop))

    def flush() -> None:
        batch = torch.stack([view for _, view in pending])  # (B, T, C, crop, crop)
        batch = batch.to(predictor.device, dtype)
        rows = predictor.model.forward_features(batch).float().cpu()  # (B, dim)
        for (slot, _), row in zip(pending, rows):
            features[slot] += row / views  # mean of the window's crops
        pending.clear()

    for window, clip in stream_windows(reader, planned, transform=resize):
        features.append(torch.zeros(predictor.model.dim))
        times.append((window.start_s, window.end_s))
        pending.extend((len(features) - 1, view) for view in crops(clip))
        if len(pending) >= predictor.batch_size:
            flush()
    if pending:
        flush()
    if not features:
        problems = "; ".join(p.describe() for p in reader.problems) or "the stream holds no frames"
        raise VideoDecodeError(path, f"no window could be decoded: {problems}")
    order = sorted(range(len(times)), key=lambda k: times[k][0])  # stream order is by last frame
    return torch.stack([features[k] for k in order]), [times[k] for k in order]


def load_embeddings(path: str | os.PathLike, *, index: str | os.PathLike | None = None) -> Embeddings:
    """Read back what :meth:`Embeddings.save` wrote (features, index CSV and windows when present)."""
    path = Path(path)
    files = output_files(path, index=index, overwrite=True)
    if not path.is_file():
        raise EmbedError(
            f"features file {os.fspath(path)!r} not found; write it with `fast-timesformer embed`"
        )
    if not files["index"].is_file():
        raise EmbedError(f"index {os.fspath(files['index'])!r} not found; it is written beside the features")
    with open(files["index"], newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    window = {}
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(os.fspath(path), framework="pt") as handle:
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
                metadata = handle.metadata() or {}
        except (SafetensorError, OSError) as problem:
            raise EmbedError(f"cannot read features {os.fspath(path)!r}: {problem}") from None
        features, protocol = tensors.get("features"), metadata.get("protocol", "")
        class_names = json.loads(metadata.get("class_names", "null"))
        if "window_features" in tensors:
            window = {
                k: tensors[k] for k in ("window_features", "window_video", "window_start_s", "window_end_s")
            }
    else:
        import numpy as np

        try:
            features = torch.from_numpy(np.load(path, allow_pickle=False)).float()
        except ValueError as problem:
            raise EmbedError(f"cannot read features {os.fspath(path)!r}: {problem}") from None
        protocol = ""
        names = {(int(r["label_index"]), r["label"]) for r in rows if r["label_index"] != ""}
        class_names = None
        if names:
            class_names = [""] * (max(i for i, _ in names) + 1)
            for i, name in names:
                class_names[i] = name
        windows_npy = path.with_name(path.stem + ".windows.npy")
        if windows_npy.is_file():
            window["window_features"] = torch.from_numpy(np.load(windows_npy, allow_pickle=False)).float()
            counts = [int(r["windows"]) for r in rows]
            window["window_video"] = torch.repeat_interleave(torch.arange(len(rows)), torch.tensor(counts))
    if features is None or features.ndim != 2 or len(features) != len(rows):
        shape = None if features is None else tuple(features.shape)
        raise EmbedError(
            f"{os.fspath(path)!r} holds features of shape {shape} but its index lists {len(rows)} rows; "
            "they were not written together: embed again"
        )
    return Embeddings(
        paths=[r["path"] for r in rows], features=features.float(),
        labels=[int(r["label_index"]) if r["label_index"] != "" else None for r in rows],
        class_names=class_names, num_views=[int(r["views"]) for r in rows], protocol=protocol, **window,
    )  # fmt: skip


def nearest_neighbours(
    features: torch.Tensor, k: int = 5, *, queries: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most cosine-similar rows of ``features`` (N, dim) for each query; returns (indices, similarities).

    Without ``queries`` every row is a query and never its own neighbour: (N, k) each. With ``queries``
    (Q, dim): (Q, k), all rows are candidates. Similarities are in [-1, 1], most similar first.
    """
    if features.ndim != 2:
        raise OptionError(f"features must be (N, dim), got shape {tuple(features.shape)}")
    n = len(features)
    others = n - 1 if queries is None else n
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= others:
        raise OptionError(f"k must be an integer from 1 to {others} (the candidates per query), got {k!r}")
    candidates = torch.nn.functional.normalize(features.double(), dim=1)  # (N, dim) unit rows
    if queries is None:
        similarity = candidates @ candidates.T  # (N, N)
        similarity.fill_diagonal_(-float("inf"))  # a row is not its own neighbour
    else:
        if queries.ndim != 2 or queries.shape[1] != features.shape[1]:
            raise OptionError(f"queries must be (Q, {features.shape[1]}), got shape {tuple(queries.shape)}")
        similarity = torch.nn.functional.normalize(queries.double(), dim=1) @ candidates.T  # (Q, N)
    values, indices = similarity.topk(k, dim=1)
    return indices, values.float()


__all__ = ["FORMATS", "EmbedError", "Embeddings", "embed_videos", "load_embeddings", "nearest_neighbours"]
