"""A local web page to try weights folders: drop a video, see what it predicts, when, and where it looks.

``fast-timesformer app --weights DIR`` (extra ``[app]``: Gradio) serves :mod:`fast_timesformer.app.page`
on 127.0.0.1. Nothing here is imported by ``import fast_timesformer``; Gradio is imported only when a page
is built.

page.py   Analyser (checks an upload, runs top-k / timeline / attention per model, times each step),
          build_page (the Gradio Blocks) and serve (temporary folder, queue, launch, clean-up)
"""

from fast_timesformer.app.page import (
    DEFAULT_CONCURRENCY,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_MAX_UPLOAD_SECONDS,
    Analyser,
    ModelResult,
    UploadError,
    build_page,
    demo_videos,
    serve,
)

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_MAX_UPLOAD_MB",
    "DEFAULT_MAX_UPLOAD_SECONDS",
    "Analyser",
    "ModelResult",
    "UploadError",
    "build_page",
    "demo_videos",
    "serve",
]
