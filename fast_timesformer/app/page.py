"""The web page of ``fast-timesformer app``: one column per weights folder, each view guarded on its own.

:class:`Analyser` holds the loaded models and does the work without Gradio (so it can be used and tested
alone): it checks an upload (size, then the library's reader limits with the upload duration limit, before
anything is decoded), then per model scores the top-k labels with the stored multi-view protocol
(:class:`~fast_timesformer.inference.Predictor`), the timeline (:func:`~fast_timesformer.inference.timeline`)
and the attention overlay (:func:`~fast_timesformer.inference.explain_video`), timing each step. A view that
fails shows its reason in its column; the top-k labels do not depend on the other two.

:func:`build_page` lays it out with Gradio; :func:`serve` makes a temporary folder for uploads and results
(Gradio's upload cache included), queues requests with a stated concurrency, listens on 127.0.0.1 unless
told otherwise and removes the folder when the server stops.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fast_timesformer.errors import FastTimeSformerError, OptionError

DEFAULT_MAX_UPLOAD_MB = 200.0  #: uploads larger than this are refused (by Gradio, then again here)
DEFAULT_MAX_UPLOAD_SECONDS = 600.0  #: videos declaring a longer duration are refused before decoding
DEFAULT_CONCURRENCY = 1  #: requests analysed at once; the others wait in the queue, shown their place
DEFAULT_QUEUE_SIZE = 16  #: requests waiting at most; more get "the queue is full"
VIDEO_TYPES = [".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v", ".mpg", ".mpeg", ".y4m", ".gif"]
RESULTS_KEPT = 8  #: result folders kept in the temporary folder (older ones are deleted)


class UploadError(FastTimeSformerError, ValueError):
    """An upload the page cannot use (too large, too long, not a video): shown as a message in the page."""


@dataclass
class LoadedModel:
    """One weights folder, loaded once."""

    name: str
    weights: str
    predictor: Any  #: a fast_timesformer.inference.Predictor
    load_seconds: float
    lock: threading.Lock = field(default_factory=threading.Lock)  # Grad-CAM hooks: one request per model


@dataclass
class ModelResult:
    """What one model found for one video; a view that failed has its reason in ``problems``."""

    name: str
    protocol: str
    predictions: list[dict[str, Any]] = field(default_factory=list)  #: [{"label", "probability"}]
    timings: dict[str, float] = field(default_factory=dict)  #: step -> seconds
    views: int = 0  #: clips x crops scored for the top-k labels
    timeline_png: str | None = None
    segments: list[list[Any]] = field(default_factory=list)  #: [start_s, end_s, label, probability]
    timeline_protocol: str = ""
    attention_png: str | None = None
    attention_mp4: str | None = None
    attention_label: str = ""
    problems: dict[str, str] = field(default_factory=dict)  #: view -> reason

    @property
    def seconds_per_clip(self) -> float | None:
        """Seconds per scored view of the top-k step (decoding included)."""
        if not self.views or "top-k" not in self.timings:
            return None
        return self.timings["top-k"] / self.views


def _model_name(weights: str, model: Any, taken: set[str]) -> str:
    config = getattr(model, "config", {}) or {}
    folder = Path(weights).name or str(weights)
    if folder == "weights":  # the demo's layout: DEMO/weights -> name it after DEMO
        folder = Path(weights).resolve().parent.name
    attention = config.get("attention", "")
    kind = config.get("attention_type", "")
    name = f"{folder} ({', '.join(x for x in (kind, attention) if x)})" if (kind or attention) else folder
    base, n = name, 2
    while name in taken:
        name, n = f"{base} #{n}", n + 1
    return name


def demo_videos(weights: str | os.PathLike, *, limit: int = 64) -> list[tuple[str, str]]:
    """The demo's validation videos as (label, path), when ``weights`` is a demo's ``DEMO/weights`` folder.

    ``fast-timesformer demo --output DEMO`` writes ``DEMO/weights`` and ``DEMO/data/val/manifest.csv``
    (columns ``path,label,...``, paths relative to ``DEMO/data/val``); anything else gives ``[]``.
    """
    manifest = Path(weights).resolve().parent / "data" / "val" / "manifest.csv"
    if not manifest.is_file():
        return []
    found = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = manifest.parent / (row.get("path") or "")
            if row.get("path") and path.is_file():
                found.append((f"{row.get('label', '?')} / {Path(row['path']).name}", str(path)))
            if len(found) >= limit:
                break
    return found


class Analyser:
    """The models of the page and the work of one request, without Gradio.

    Args:
        weights: weights folders, one column each (loaded now; an unreadable one raises at once).
        workdir: folder for per-request results (the caller owns and removes it).
        device: torch device of every model.
        batch_size: views per forward pass.
        top_k: labels shown per model.
        max_upload_mb: larger uploads are refused.
        max_upload_seconds: videos declaring a longer duration are refused before decoding.
        max_pixels, max_frames, max_duration, allow_images: the library's reader limits
            (:class:`~fast_timesformer.data.VideoReader`); the duration limit is the smaller of the two.
        timeline: compute the timeline view; explain: compute the attention view.
    """

    def __init__(
        self,
        weights: Sequence[str | os.PathLike],
        *,
        workdir: str | os.PathLike,
        device: str = "cpu",
        batch_size: int = 8,
        top_k: int = 5,
        max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
        max_upload_seconds: float = DEFAULT_MAX_UPLOAD_SECONDS,
        max_pixels: int | None = None,
        max_frames: int | None = None,
        max_duration: float | None = None,
        allow_images: bool = False,
        timeline: bool = True,
        explain: bool = True,
    ) -> None:
        from fast_timesformer.data import DEFAULT_MAX_DURATION, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS
        from fast_timesformer.inference import Predictor
        from fast_timesformer.inference.devices import resolve_device

        if not weights:
            raise OptionError("give at least one weights folder (--weights DIR)")
        for option, value in (
            ("top_k", top_k), ("max_upload_mb", max_upload_mb), ("max_upload_seconds", max_upload_seconds),
        ):  # fmt: skip
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise OptionError(f"{option} must be a positive number, got {value!r}")
        self.workdir = Path(workdir)
        self.top_k = int(top_k)
        self.max_upload_mb = float(max_upload_mb)
        self.max_upload_seconds = float(max_upload_seconds)
        self.limits = {
            "max_pixels": max_pixels or DEFAULT_MAX_PIXELS,
            "max_frames": max_frames or DEFAULT_MAX_FRAMES,
            "max_duration": min(max_duration or DEFAULT_MAX_DURATION, self.max_upload_seconds),
            "allow_images": allow_images,
        }
        self.with_timeline, self.with_explain = timeline, explain
        device = resolve_device(device)
        self.models: list[LoadedModel] = []
        for folder in weights:
            begin = time.perf_counter()
            predictor = Predictor.from_pretrained(folder, device=device, batch_size=batch_size, **self.limits)
            name = _model_name(os.fspath(folder), predictor.model, {m.name for m in self.models})
            self.models.append(LoadedModel(name, os.fspath(folder), predictor, time.perf_counter() - begin))
        self.examples = [video for folder in weights for video in demo_videos(folder)]

    # -- one request --------------------------------------------------------------------------------
    def check_upload(self, path: str | os.PathLike | None) -> Any:
        """The upload's metadata, checked: size, then the reader's limits (nothing is decoded past one frame).

        Raises :class:`UploadError` with a sentence for the page.
        """
        from fast_timesformer.data import VideoDecodeError, VideoReader

        if not path:
            raise UploadError("no video given: upload a file or pick a demo video")
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise UploadError(f"{os.path.basename(path)}: the uploaded file is missing; upload it again")
        size_mb = os.path.getsize(path) / 1e6
        if size_mb > self.max_upload_mb:
            raise UploadError(
                f"{os.path.basename(path)} is {size_mb:.1f} MB, over the {self.max_upload_mb:g} MB upload "
                "limit (start the app with a larger --max-upload-mb)"
            )
        try:
            with VideoReader(path, **self.limits) as reader:
                return reader.metadata
        except VideoDecodeError as error:
            fix = f" ({error.fix})" if error.fix else ""
            raise UploadError(
                f"{os.path.basename(path)} is not a video this page can use: {error.reason}{fix}"
            ) from None

    def analyse_model(self, model: LoadedModel, path: str, out: Path) -> ModelResult:
        """Top-k labels, timeline and attention overlay of one video by one model (each step guarded)."""
        from fast_timesformer.inference import explain_video, timeline

        predictor = model.predictor
        prep = predictor.preprocessing
        result = ModelResult(name=model.name, protocol=predictor.protocol)
        result.views = prep.num_temporal_clips * prep.num_spatial_crops
        with model.lock:
            begin = time.perf_counter()
            try:
                scores = predictor.scores(path)
                values, indices = scores.topk(min(self.top_k, len(predictor.class_names)))
                result.predictions = [
                    {"label": predictor.class_names[int(i)], "probability": float(v)}
                    for v, i in zip(values, indices)
                ]
            except Exception as error:  # noqa: BLE001 - shown in the page, the other views still run
                result.problems["top-k"] = _reason(error)
            result.timings["top-k"] = time.perf_counter() - begin
            if self.with_timeline:
                begin = time.perf_counter()
                try:
                    line = timeline(
                        predictor, path, output=out / "timeline", progress=False, top_k=self.top_k
                    )
                    png = out / "timeline" / "timeline.png"
                    result.timeline_png = str(png) if png.is_file() else None
                    result.segments = [
                        [round(s.start_s, 2), round(s.end_s, 2), s.label, round(s.probability, 4)]
                        for s in line.segments
                    ]
                    result.timeline_protocol = line.protocol
                except Exception as error:  # noqa: BLE001
                    result.problems["timeline"] = _reason(error)
                result.timings["timeline"] = time.perf_counter() - begin
            if self.with_explain:
                begin = time.perf_counter()
                try:
                    explained = explain_video(path, output=out / "attention", predictor=predictor)
                    result.attention_png = explained.files.get("png")
                    result.attention_mp4 = explained.files.get("mp4")
                    result.attention_label = (
                        f"{explained.label} ({100 * explained.probability:.1f}%), "
                        f"{', '.join(explained.methods)}, frames {explained.frame_indices}"
                    )
                except Exception as error:  # noqa: BLE001
                    result.problems["attention"] = _reason(error)
                result.timings["attention"] = time.perf_counter() - begin
        return result

    def analyse(self, path: str | os.PathLike | None) -> tuple[str, list[ModelResult]]:
        """Check the upload, then run every model; returns (status line, one result per model).

        Raises :class:`UploadError` for an upload the page cannot use.
        """
        begin = time.perf_counter()
        meta = self.check_upload(path)
        checked = time.perf_counter() - begin
        out = self.workdir / "results" / uuid.uuid4().hex
        out.mkdir(parents=True)
        self._prune()
        results = []
        for index, model in enumerate(self.models):
            result = self.analyse_model(model, os.fspath(path), out / str(index))
            result.timings = {"check": checked, **result.timings}
            results.append(result)
        status = (
            f"**{os.path.basename(os.fspath(path))}**: {meta.width}x{meta.height}, {meta.fps:.3g} fps, "
            f"{meta.duration:.2f} s ({meta.num_frames} frames); analysed by {len(results)} "
            f"model{'s' if len(results) > 1 else ''} in {time.perf_counter() - begin:.2f} s"
        )
        return status, results

    def _prune(self) -> None:
        folders = sorted((self.workdir / "results").iterdir(), key=lambda p: p.stat().st_mtime)
        for old in folders[:-RESULTS_KEPT]:
            shutil.rmtree(old, ignore_errors=True)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if not isinstance(error, FastTimeSformerError) else text


def _info_markdown(result: ModelResult) -> str:
    steps = ", ".join(f"{step} {seconds:.2f} s" for step, seconds in result.timings.items())
    per_clip = result.seconds_per_clip
    lines = [
        f"**Protocol:** {result.protocol} ({result.views} view{'s' if result.views != 1 else ''})",
        f"**Time per step:** {steps}" + (f"; {1000 * per_clip:.0f} ms per clip" if per_clip else ""),
    ]
    if result.timeline_protocol:
        lines.append(f"**Timeline:** {result.timeline_protocol}")
    if result.attention_label:
        lines.append(f"**Attention:** middle clip, centre crop; {result.attention_label}")
    lines += [f"**{view} unavailable:** {reason}" for view, reason in result.problems.items()]
    return "\n\n".join(lines)


def _comparison_markdown(results: Sequence[ModelResult]) -> str:
    rows = ["| model | top-1 | probability | ms per clip | total s |", "|---|---|---|---|---|"]
    for r in results:
        top = r.predictions[0] if r.predictions else {"label": "-", "probability": float("nan")}
        per_clip = r.seconds_per_clip
        rows.append(
            f"| {r.name} | {top['label']} | {100 * top['probability']:.1f}% | "
            f"{1000 * per_clip:.0f} | {sum(r.timings.values()):.2f} |"
            if per_clip
            else f"| {r.name} | {top['label']} | - | - | {sum(r.timings.values()):.2f} |"
        )
    return "\n".join(rows)


PER_MODEL_OUTPUTS = 6  # label, info, timeline image, segments, attention image, attention clip


def build_page(analyser: Analyser, *, concurrency: int = DEFAULT_CONCURRENCY) -> Any:
    """The Gradio Blocks of the page (not launched). Element ids: ``status``, ``comparison``, ``top-k-N``,
    ``info-N``, ``timeline-N``, ``segments-N``, ``attention-N``, ``attention-clip-N`` (N: model index)."""
    import gradio as gr

    limits = analyser.limits
    intro = (
        "# FastTimeSformer\nUpload a video (or pick a demo validation video): each model shows its top-"
        f"{analyser.top_k} labels, the timeline of windows and segments, and where it looks (attention "
        f"overlay).\n\nLimits: {analyser.max_upload_mb:g} MB, {limits['max_duration']:g} s, "
        f"{limits['max_pixels']} pixels per frame, {limits['max_frames']} frames. Queue: {concurrency} "
        f"request{'s' if concurrency > 1 else ''} analysed at a time, others wait in line. Models: "
        + "; ".join(f"**{m.name}** (loaded in {m.load_seconds:.2f} s)" for m in analyser.models)
    )
    with gr.Blocks(title="FastTimeSformer", analytics_enabled=False, delete_cache=(600, 3600)) as page:
        gr.Markdown(intro, elem_id="intro")
        with gr.Row():
            upload = gr.File(
                label="Upload a video", file_types=VIDEO_TYPES, type="filepath", elem_id="upload"
            )
            with gr.Column():
                pick = gr.Dropdown(
                    choices=analyser.examples, value=None, label="…or pick a demo validation video",
                    visible=bool(analyser.examples), elem_id="pick",
                )  # fmt: skip
                run = gr.Button("Analyse", variant="primary", elem_id="analyse")
        status = gr.Markdown("Waiting for a video.", elem_id="status")
        comparison = gr.Markdown(visible=len(analyser.models) > 1, elem_id="comparison")
        outputs: list[Any] = [status, comparison]
        with gr.Row(equal_height=False):
            for index, model in enumerate(analyser.models):
                with gr.Column():
                    gr.Markdown(f"## {model.name}")
                    outputs += [
                        gr.Label(
                            label="top-k labels", num_top_classes=analyser.top_k, elem_id=f"top-k-{index}"
                        ),
                        gr.Markdown(f"**Protocol:** {model.predictor.protocol}", elem_id=f"info-{index}"),
                        gr.Image(label="timeline", type="filepath", elem_id=f"timeline-{index}"),
                        gr.Dataframe(
                            headers=["start s", "end s", "label", "probability"],
                            label="segments",
                            interactive=False,
                            elem_id=f"segments-{index}",
                        ),  # fmt: skip
                        gr.Image(
                            label="attention: frames with heatmaps",
                            type="filepath",
                            elem_id=f"attention-{index}",
                        ),
                        gr.Video(label="attention overlay clip", elem_id=f"attention-clip-{index}"),
                    ]

        def respond(path: str | None) -> list[Any]:
            try:
                line, results = analyser.analyse(path)
            except UploadError as error:
                return [f"**Cannot use this file:** {error}", ""] + [None] * (
                    PER_MODEL_OUTPUTS * len(analyser.models)
                )
            values: list[Any] = [line, _comparison_markdown(results)]
            for r in results:
                label = {p["label"]: p["probability"] for p in r.predictions} or None
                values += [
                    label,
                    _info_markdown(r),
                    r.timeline_png,
                    r.segments or None,
                    r.attention_png,
                    r.attention_mp4,
                ]
            return values

        def from_upload(path: str | None) -> list[Any]:
            return respond(path)

        def from_pick(path: str | None) -> list[Any]:
            return respond(path) if path else [gr.skip()] * len(outputs)

        def from_button(uploaded: str | None, picked: str | None) -> list[Any]:
            return respond(uploaded or picked)

        events = {"concurrency_limit": concurrency, "concurrency_id": "analyse"}
        upload.upload(from_upload, inputs=upload, outputs=outputs, **events)
        pick.change(from_pick, inputs=pick, outputs=outputs, **events)
        run.click(from_button, inputs=[upload, pick], outputs=outputs, **events)
    return page


def serve(
    weights: Sequence[str | os.PathLike],
    *,
    host: str = "127.0.0.1",
    port: int = 7860,
    concurrency: int = DEFAULT_CONCURRENCY,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    block: bool = True,
    **options: Any,
) -> Any:
    """Load the models, build the page and serve it; returns when the server stops (``block``).

    Uploads (Gradio's cache) and results live in one temporary folder, removed when the server stops.
    ``options`` are :class:`Analyser`'s keywords (``workdir`` excepted). With ``block=False`` returns
    ``(page, url, workdir)``; the caller calls ``page.close()`` and removes ``workdir``.
    """
    for option, value in (("concurrency", concurrency), ("queue_size", queue_size), ("port", port)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise OptionError(f"{option} must be a positive integer, got {value!r}")
    workdir = Path(tempfile.mkdtemp(prefix="fast-timesformer-app-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # Gradio's upload cache: under our folder
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        # the weights first, then Gradio: a bad --weights is named as such, with or without the [app] extra
        analyser = Analyser(weights, workdir=workdir, **options)
        try:
            import gradio  # noqa: F401
        except ImportError:
            raise OptionError("the app needs Gradio: pip install 'fast-timesformer[app]'") from None
        page = build_page(analyser, concurrency=concurrency)
        page.queue(max_size=queue_size, default_concurrency_limit=concurrency)
        max_mb = analyser.max_upload_mb
        _, url, _ = page.launch(
            server_name=host, server_port=port, max_file_size=int(max_mb * 1e6), allowed_paths=[str(workdir)],
            share=False, inbrowser=False, prevent_thread_lock=True, show_error=True, quiet=True,
            ssr_mode=False, footer_links=[],
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if not block:
        return page, url, workdir
    print(
        f"fast-timesformer app: serving on {url} (Ctrl+C to stop); temporary files in {workdir}", flush=True
    )
    try:
        page.block_thread()
    finally:
        page.close()
        shutil.rmtree(workdir, ignore_errors=True)
    return None


__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_MAX_UPLOAD_SECONDS",
    "DEFAULT_QUEUE_SIZE",
    "Analyser",
    "ModelResult",
    "UploadError",
    "build_page",
    "demo_videos",
    "serve",
]
