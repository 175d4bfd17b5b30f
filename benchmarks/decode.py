"""Clip decoding per DataLoader worker: PyAVSource with and without skipping non-reference packets.

`fast_timesformer.data.backends.pyav.PyAVSource` can leave out of the decoder the packets of non-reference
pictures that are on screen at none of the requested times (``skip_non_reference``, the default). This
script times one clip -- open the file, probe, seek, decode, convert the selected frames to RGB -- with the
old path (``skip_non_reference=False`` and PyAV's default swscale threads, i.e. the code before) and the new
one (skipping, ``pyav.CONVERT_THREADS = 1``), interleaved in one run; on the main row also each change alone:

- **Kinetics-like**: the file of ``benchmarks/data.py`` (10 s, 340x256, H.264 crf 23, 30 fps, x264's default
  GOP and B-frames), 8 frames with stride 32 at a random start (``dense_indices``, train);
- **SSv2-like**: 4 s, 427x240, 12 fps, 8 frames one per segment (``segment_indices``, train), as VP9 WebM
  (the codec SSv2 ships; not skipped, a control) and as H.264 MP4.

Every call of a contender uses the next of the same seeded list of clips, and each call's frames are checked
equal between the paths. One torch thread and ``--decode-threads`` FFmpeg threads (1: a DataLoader worker on
a core of its own); ``--thread-types`` also tries FFmpeg's thread_type (``SLICE`` is PyAV's default).

Usage::

    python benchmarks/decode.py                    # -> benchmarks/results/decode.json
    python benchmarks/decode.py --timer cpu        # CPU time of the decoding thread: for a busy machine
    python benchmarks/decode.py --consumer 300     # workers needed to feed 300 clips/s
    python benchmarks/decode.py --quick            # smoke test
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
from data import write_kinetics_like  # noqa: E402

from fast_timesformer.data import (  # noqa: E402
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    dense_indices,
    segment_indices,
)
from fast_timesformer.data.backends import pyav  # noqa: E402
from fast_timesformer.data.backends.pyav import PyAVSource  # noqa: E402

LIMITS = {
    "max_pixels": DEFAULT_MAX_PIXELS,
    "max_frames": DEFAULT_MAX_FRAMES,
    "max_duration": DEFAULT_MAX_DURATION,
}


class ThreadTypeSource(PyAVSource):
    """`PyAVSource` with FFmpeg's ``thread_type`` set before the codec opens (PyAVSource leaves PyAV's)."""

    def __init__(self, path: str, *, thread_type: str | None, **kwargs: Any):
        self._thread_type = thread_type
        super().__init__(path, **kwargs)

    def _open_stream(self, **kwargs: Any) -> None:
        if self._thread_type is not None:
            self.container.streams.video[0].thread_type = self._thread_type
        super()._open_stream(**kwargs)


def write_ssv2_like(path: Path, codec: str) -> Path:
    """4 s of 427x240 (H.264: 426x240) at 12 fps with moving content; VP9 (WebM) or H.264 (MP4, x264 defaults)."""
    import av

    # SSv2 ships 427x240 VP9; x264 needs an even width for 4:2:0.
    height, width, frames = 240, 427 if codec != "libx264" else 426, 48
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    options = {"crf": "23"} if codec == "libx264" else {"crf": "32", "b": "0", "deadline": "realtime"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=12, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.stack(
                [
                    127 + 100 * np.sin((x + 7 * t) / 19.0),
                    127 + 100 * np.sin((y - 5 * t) / 29.0),
                    127 + 100 * np.sin((x - y + 3 * t) / 37.0),
                ],
                axis=-1,
            )
            frame = av.VideoFrame.from_ndarray(image.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def decode_clip(path: str, indices: list[int], **source_args: Any) -> tuple[torch.Tensor, int, int]:
    """What `VideoReader.get_frames` does for one clip: (frames (T, 3, H, W), frames decoded, packets skipped)."""
    source = ThreadTypeSource(path, limits=LIMITS, **source_args)
    try:
        unique = sorted(set(indices))
        times = [source.start + i / source.fps for i in unique]
        picked = source.frames_at(times, tolerance=source.tolerance, allow_past_end=not source.exact)
        by_index = dict(zip(unique, picked.unbind(0)))
        frames = torch.stack([by_index[i] for i in indices])  # (T, C, H, W)
        return frames, source.frames_decoded, source.packets_skipped
    finally:
        source.close()


def clips(name: str, num_video_frames: int, count: int) -> list[list[int]]:
    """``count`` seeded train clips of workload ``name``."""
    generator = torch.Generator().manual_seed(0)
    if name.startswith("kinetics"):
        draw = lambda: dense_indices(  # noqa: E731
            num_video_frames, num_frames=8, sampling_rate=32, train=True, generator=generator, fps=30.0
        )
    else:
        draw = lambda: segment_indices(num_video_frames, num_frames=8, train=True, generator=generator)  # noqa: E731
    return [draw().tolist() for _ in range(count)]


# Contenders: (skip_non_reference, pyav.CONVERT_THREADS == 1). "old" is the code before either change.
PATHS = {"old": (False, False), "new": (True, True)}
ATTRIBUTION = {"skip only": (True, False), "1-thread RGB only": (False, True)}


def bench_workload(
    path: Path,
    name: str,
    *,
    threads: int,
    thread_type: str | None,
    warmup: int,
    repeats: int,
    max_seconds: float,
    paths: dict[str, tuple[bool, bool]],
) -> dict[str, Any]:
    """The ``paths`` interleaved on the same clips; every call's frames compared with the old path's."""
    with _opened(path) as probe:
        num_video_frames, codec = probe.num_frames, probe.codec
    todo = clips(
        name, num_video_frames, 4 * (warmup + repeats) + 16
    )  # interleaved_clean may run extra rounds
    state: dict[str, dict[str, Any]] = {}
    outputs: dict[str, list[torch.Tensor]] = {label: [] for label in paths}

    def contender(label: str, skip: bool, one_thread: bool) -> Callable[[], None]:
        state[label] = {"next": 0, "decoded": [], "skipped": []}

        def call() -> None:
            record = state[label]
            pyav.CONVERT_THREADS = 1 if one_thread else None
            frames, decoded, skipped = decode_clip(
                str(path), todo[record["next"] % len(todo)], threads=threads, thread_type=thread_type,
                skip_non_reference=skip,
            )  # fmt: skip
            record["next"] += 1
            record["decoded"].append(decoded)
            record["skipped"].append(skipped)
            outputs[label].append(frames)

        return call

    times, info = common.interleaved_clean(
        {label: contender(label, *flags) for label, flags in paths.items()},
        warmup=warmup,
        repeats=repeats,
        max_seconds=max_seconds,
    )
    pyav.CONVERT_THREADS = 1
    pairs = min(len(frames) for frames in outputs.values())
    for label, frames in outputs.items():
        if not all(torch.equal(outputs["old"][i], frames[i]) for i in range(pairs)):
            raise SystemExit(f"{name}: the {label!r} path returned different frames from the old path")
    result: dict[str, Any] = {"workload": name, "codec": codec, "threads": threads,
                              "thread_type": thread_type or "default (PyAV: SLICE)",
                              "bit_identical_clips": pairs, **info}  # fmt: skip
    for label in paths:
        stats = common.summary(times[label])
        result[label] = {
            **stats,
            "clips_per_s": 1.0 / stats["median_s"],
            "mean_frames_decoded": statistics.mean(state[label]["decoded"]),
            "mean_packets_skipped": statistics.mean(state[label]["skipped"]),
        }
    result["speedup"] = result["new"]["clips_per_s"] / result["old"]["clips_per_s"]
    return result


class _opened:
    """``with _opened(path) as source``: a PyAVSource closed on exit."""

    def __init__(self, path: Path):
        self.source = PyAVSource(str(path), threads=1, limits=LIMITS)

    def __enter__(self) -> PyAVSource:
        return self.source

    def __exit__(self, *exc: Any) -> None:
        self.source.close()


def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0])
    parser.set_defaults(threads=1)  # one torch thread: what a DataLoader worker gets
    parser.add_argument("--consumer", type=float, default=100.0, help="clips/s the training loop consumes")
    parser.add_argument("--decode-threads", type=int, nargs="+", default=[1, 2], help="FFmpeg thread counts")
    parser.add_argument(
        "--thread-types", nargs="+", default=["default", "AUTO"], help="FFmpeg thread_type values"
    )
    args = parser.parse_args()
    common.start(args)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    repeats = args.repeats if args.repeats is not None else (5 if args.quick else 25)
    max_seconds = args.max_seconds if args.max_seconds is not None else (20 if args.quick else 90)
    results = []
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        files = {
            "kinetics-like 340x256 h264 8x32": write_kinetics_like(folder / "kinetics.mp4"),
            "ssv2-like 427x240 vp9 8 uniform": write_ssv2_like(folder / "ssv2.webm", "libvpx-vp9"),
            "ssv2-like 426x240 h264 8 uniform": write_ssv2_like(folder / "ssv2.mp4", "libx264"),
        }
        for threads in args.decode_threads:
            for thread_type in args.thread_types:
                for name, path in files.items():
                    if name.startswith("ssv2") and (threads, thread_type) != (1, "default"):
                        continue  # thread settings only on the main workload: keep the run short
                    kind = None if thread_type == "default" else thread_type
                    main_row = name.startswith("kinetics") and (threads, kind) == (1, None)
                    result = bench_workload(
                        path, name, threads=threads, thread_type=kind, warmup=warmup, repeats=repeats,
                        max_seconds=max_seconds, paths={**PATHS, **(ATTRIBUTION if main_row else {})},
                    )  # fmt: skip
                    result["workers_for_consumer"] = {
                        label: math.ceil(args.consumer / result[label]["clips_per_s"])
                        for label in ("old", "new")
                    }
                    results.append(result)
                    print(
                        f"{name}, {threads} thread(s) {result['thread_type']}: {result['speedup']:.2f}x",
                        flush=True,
                    )
    rows = [
        {
            "workload": r["workload"],
            "threads": f"{r['threads']} {r['thread_type'].split(' ')[0]}",
            "old_ms": 1000 * r["old"]["median_s"],
            "new_ms": 1000 * r["new"]["median_s"],
            "old_cps": r["old"]["clips_per_s"],
            "new_cps": r["new"]["clips_per_s"],
            "speedup": r["speedup"],
            "skip_only": r["skip only"]["clips_per_s"] / r["old"]["clips_per_s"]
            if "skip only" in r
            else None,
            "sws_only": r["1-thread RGB only"]["clips_per_s"] / r["old"]["clips_per_s"]
            if "skip only" in r
            else None,
            "decoded": f"{r['old']['mean_frames_decoded']:.0f} -> {r['new']['mean_frames_decoded']:.0f}",
            "workers": f"{r['workers_for_consumer']['old']} -> {r['workers_for_consumer']['new']}",
            "clean": "no" if r["disturbed"] else "yes",
        }
        for r in results
    ]
    print()
    print(
        f"timer: {args.timer}; median of {repeats} clean calls per contender; workers for {args.consumer:g} clips/s"
    )
    print(
        common.format_table(
            rows,
            [
                ("workload", "workload", ""),
                ("FFmpeg threads", "threads", ""),
                ("old ms", "old_ms", ".1f"),
                ("new ms", "new_ms", ".1f"),
                ("old clips/s", "old_cps", ".1f"),
                ("new clips/s", "new_cps", ".1f"),
                ("new/old", "speedup", ".2f"),
                ("skip only/old", "skip_only", ".2f"),
                ("1-thread RGB only/old", "sws_only", ".2f"),
                ("frames decoded", "decoded", ""),
                (f"workers for {args.consumer:g}/s", "workers", ""),
                ("clean", "clean", ""),
            ],
        )
    )
    path = common.write_results(
        args.out or "decode",
        {"timer": args.timer, "torch_threads": args.threads, "warmup": warmup, "repeats": repeats,
         "consumer_clips_per_s": args.consumer, "results": results},
    )  # fmt: skip
    print(f"\nwrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
