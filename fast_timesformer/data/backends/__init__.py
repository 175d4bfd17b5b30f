"""The video decoding backends behind `fast_timesformer.data.decoding.VideoReader`.

File by file::

    common.py      VideoDecodeError, the limits, check_path / check_limits / upright, the VideoSource protocol
    pyav.py        PyAVSource: PyAV (FFmpeg), always available with the [video] extra
    torchcodec.py  TorchCodecSource: torchcodec, used only when ``import torchcodec`` works

`resolve_backend` turns ``"auto"`` into a concrete name, `open_source` opens a file with that backend's
source. Both backend modules are imported only when a video is opened (or a backend resolved), so
importing the data package imports neither PyAV nor numpy. Imports point one way: ``decoding`` ->
this package -> ``common``; the backend modules import ``common`` only.
"""

from __future__ import annotations

import functools
import logging

from .common import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    VideoSource,
    check_limits,
    check_path,
    normalise_rotation,
    upright,
)

# The backend choice is logged under the reader's name, the logger users configure for video decoding.
logger = logging.getLogger("fast_timesformer.data.decoding")

BACKENDS = ("auto", "pyav", "torchcodec")


@functools.cache
def resolve_backend(backend: str) -> str:
    """Return the concrete backend for ``backend`` ("auto" -> "torchcodec" if it loads, else "pyav").

    The result is cached per process and logged once at INFO. Raises ImportError when an explicitly
    requested backend cannot be imported, and ValueError for an unknown name.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {BACKENDS}")
    why_not_torchcodec = ""
    if backend in ("auto", "torchcodec"):
        try:
            import torchcodec.decoders  # noqa: F401
        except Exception as error:  # torchcodec raises OSError/RuntimeError when its FFmpeg libs are missing
            if backend == "torchcodec":
                raise ImportError(
                    f"video backend 'torchcodec' was requested but does not load ({error}); "
                    "install a torchcodec matching your torch and FFmpeg, or use backend='pyav'"
                ) from error
            why_not_torchcodec = f" (torchcodec not available: {error})"
        else:
            logger.info("video backend: torchcodec")
            return "torchcodec"
    from .pyav import import_av  # here, not at the top: pyav.py imports numpy

    import_av()
    logger.info("video backend: pyav%s", why_not_torchcodec)
    return "pyav"


def open_source(backend: str, path: str, *, threads: int, limits: dict[str, float]) -> VideoSource:
    """Open ``path`` with the concrete ``backend`` ("pyav" or "torchcodec", from `resolve_backend`).

    ``limits`` holds ``max_pixels``, ``max_frames`` and ``max_duration``; raises `VideoDecodeError`.
    """
    if backend == "torchcodec":  # pragma: no cover - torchcodec is not installed in CI
        from .torchcodec import TorchCodecSource as source_cls
    elif backend == "pyav":
        from .pyav import PyAVSource as source_cls
    else:
        raise ValueError(f"open_source needs a concrete backend ('pyav' or 'torchcodec'), got {backend!r}")
    return source_cls(path, threads=threads, limits=limits)


__all__ = [
    "BACKENDS",
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "VideoDecodeError",
    "VideoSource",
    "check_limits",
    "check_path",
    "normalise_rotation",
    "open_source",
    "resolve_backend",
    "upright",
]
