"""Timeline memory and speed: peak RSS must not grow with the video's length (streaming decode).

`fast_timesformer.inference.timeline` decodes a file forward once and keeps only the frames the windows still
to come need (`fast_timesformer.data.streaming.stream_windows`). This benchmark checks the claim on long
files, as the issue asks:

* three H.264 videos written here with PyAV (libx264 ``preset ultrafast``, yuv420p, 30 fps, a scrolling
  texture so every frame differs) and cached in ``--work``: **1 minute** and **30 minutes** at 64x48, and
  **10 minutes** at 1280x720 (each wanted 720p frame is really resized, to the model's short side of 64);
* each timeline runs in a **fresh subprocess**, so the peak RSS (``ru_maxrss``) is that run's alone. The child
  imports torch and PyAV, loads the weights folder into a `Predictor`, runs one warm-up forward pass of a
  full batch, notes its peak RSS (the *baseline*), then runs ``timeline(predictor, video, window_views=1)``
  with the default stride (half a window) and notes the peak RSS again. Reported: the peak (total) and the
  peak over the baseline (what the timeline pass added);
* model: the ``timesformer_tiny_8x64`` preset (8 frames x 64 px, patch 8, dim 128, depth 4, 4 heads,
  divided space-time attention, 10 classes, random weights, float32), saved with `save_pretrained`; its
  default protocol is dense 8x32 sampling, i.e. windows of 8.53 s every 4.27 s.

One run per video, no repeats: the memory number is a high-water mark, not a timing that needs a median;
windows per second are from that single pass (decode + resize + model) and move with the machine's load.
Target (the issue): the 30-minute video's peak RSS within 1.5x that of the 1-minute one. The script prints
PASS or FAIL against it and asserts nothing.

Usage::

    python benchmarks/timeline.py            # the issue's sizes; writes benchmarks/results/timeline.json
    python benchmarks/timeline.py --quick    # 1 and 5 minutes tiny, 1 minute 720p (smoke test)
    python benchmarks/timeline.py --work DIR # where the videos and weights are cached
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

FPS = 30
PRESET = "timesformer_tiny_8x64"
TARGET_RATIO = 1.5
#: (name, seconds, width, height): the issue's videos; --quick shortens them.
VIDEOS = [("tiny_1min", 60, 64, 48), ("tiny_30min", 1800, 64, 48), ("720p_10min", 600, 1280, 720)]
QUICK_VIDEOS = [("tiny_1min", 60, 64, 48), ("tiny_5min", 300, 64, 48), ("720p_1min", 60, 1280, 720)]
#: Outside the repository by default: the 720p file is about 100 MB and must not end up in a commit.
DEFAULT_WORK = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "fast_timesformer/timeline"


# -- inputs --------------------------------------------------------------------------------------------
def write_video(path: Path, *, seconds: int, width: int, height: int, fps: int = FPS) -> None:
    """Write ``seconds`` of H.264 (mpeg4 where libx264 is missing) with a texture scrolling 3 px per frame.

    Cheap on purpose: the frames are slices of one precomputed yuv420p canvas (no per-frame maths), and
    x264's ultrafast preset encodes 720p at several hundred frames per second on one core.
    """
    import av
    import numpy as np

    period = 256  # the texture repeats every 256 px, so the canvas needs only that much extra width
    x = np.arange(width + period, dtype=np.float32)
    y = np.arange(height, dtype=np.float32)[:, None]
    luma = (127 + 60 * np.sin(x / 13.0) + 60 * np.sin((x + 2 * y) / 29.0)).clip(0, 255).astype(np.uint8)
    chroma = np.full((height // 2, width), 128, dtype=np.uint8)  # U then V planes, (H/4, W) rows each
    try:
        av.codec.Codec("libx264", "w")
        codec, options = "libx264", {"preset": "ultrafast", "crf": "28"}
    except Exception:  # an FFmpeg build without libx264
        codec, options = "mpeg4", {"qscale": "5"}
    partial = path.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(seconds * fps):
            offset = (3 * t) % period
            planes = np.concatenate([luma[:, offset : offset + width], chroma])  # (H * 3/2, W) yuv420p
            for packet in stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)  # an interrupted run leaves no truncated file in the cache


def cached_video(work: Path, name: str, seconds: int, width: int, height: int) -> tuple[Path, float | None]:
    """(path, seconds spent writing it, None when it was cached)."""
    path = work / f"{name}_{width}x{height}_{seconds}s_{FPS}fps.mp4"
    if path.exists():
        return path, None
    print(f"  writing {path.name} ...", flush=True)
    begin = time.perf_counter()
    write_video(path, seconds=seconds, width=width, height=height)
    return path, time.perf_counter() - begin


def cached_weights(work: Path) -> Path:
    """The preset with seed-0 random weights as a weights folder (what a user hands to `timeline`)."""
    folder = work / f"weights_{PRESET}"
    if not (folder / "config.json").exists():
        import torch

        from fast_timesformer import create_model
        from fast_timesformer.checkpoints import save_pretrained

        torch.manual_seed(0)
        save_pretrained(create_model(PRESET), folder)
    return folder


# -- one timeline, in a fresh process ------------------------------------------------------------------
def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(video: str, weights: str, threads: int) -> dict[str, Any]:
    """Run in the subprocess: baseline peak RSS, one timeline pass, peak RSS after it."""
    import av  # noqa: F401  (in the baseline: the library's decoder is part of the fixed cost)
    import torch

    from fast_timesformer.inference import Predictor
    from fast_timesformer.inference.timeline import timeline

    common.setup(threads)
    predictor = Predictor.from_pretrained(weights)
    prep = predictor.preprocessing
    with torch.inference_mode():  # warm-up: oneDNN primitives and allocator pools are fixed cost too
        predictor.model(torch.zeros(predictor.batch_size, prep.num_frames, 3, prep.crop_size, prep.crop_size))
    baseline = _maxrss_mib()
    result = timeline(predictor, video, window_views=1, batch_size=predictor.batch_size)
    peak = _maxrss_mib()
    return {
        "windows": len(result.windows),
        "skipped_windows": result.skipped_windows,
        "problems": [p.describe() for p in result.problems],
        "seconds": result.seconds,
        "windows_per_second": result.windows_per_second,
        "frames_decoded": result.frames_decoded,
        "decode_fps": result.frames_decoded / result.seconds,
        "duration_s": result.duration_s,
        "protocol": result.protocol,
        "segments": len(result.segments),
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "peak_over_baseline_mib": peak - baseline,
        "dtype": str(next(predictor.model.parameters()).dtype).replace("torch.", ""),
        "torch_threads": torch.get_num_threads(),
    }


def run_child(video: Path, weights: Path, threads: int) -> dict[str, Any]:
    """One timeline in a fresh interpreter (its ru_maxrss is this run's alone); the child's JSON result."""
    command = [sys.executable, __file__, "--child", str(video), "--weights", str(weights)]
    command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"the child exited with {done.returncode}: {last}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- main ----------------------------------------------------------------------------------------------
def main() -> None:
    parser = common.base_parser(__doc__.split("\n", 1)[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of videos and weights")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)  # internal: the subprocess's video
    parser.add_argument("--weights", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.weights, args.threads)))
        return
    common.start(args)
    args.work.mkdir(parents=True, exist_ok=True)
    weights = cached_weights(args.work)
    rows = []
    for name, seconds, width, height in QUICK_VIDEOS if args.quick else VIDEOS:
        path, written_s = cached_video(args.work, name, seconds, width, height)
        print(f"  timeline of {path.name} ...", flush=True)
        row = {
            "video": name, "file": path.name, "duration": f"{seconds // 60} min", "seconds_declared": seconds,
            "resolution": f"{width}x{height}", "file_mib": path.stat().st_size / 2**20,
            "generation_s": written_s, **run_child(path, weights, args.threads),
        }  # fmt: skip
        rows.append(row)
        print(f"    {json.dumps({k: v for k, v in row.items() if k != 'problems'}, default=str)}", flush=True)

    columns = [
        ("video", "video", ""), ("duration", "duration", ""), ("resolution", "resolution", ""),
        ("windows", "windows", "d"), ("windows/s", "windows_per_second", ".1f"),
        ("decode fps", "decode_fps", ".0f"), ("peak RSS (MiB)", "peak_rss_mib", ".0f"),
        ("RSS over baseline (MiB)", "peak_over_baseline_mib", ".1f"),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    short, long = rows[0], rows[1]
    measured = "peak_rss_mib" in short and "peak_rss_mib" in long
    ratio = long["peak_rss_mib"] / short["peak_rss_mib"] if measured else None
    verdict = "PASS" if ratio is not None and ratio <= TARGET_RATIO else "FAIL"
    ratio_text = "not measured" if ratio is None else f"{ratio:.3f}"
    print(
        f"\npeak RSS {long['duration']} / {short['duration']} = {ratio_text} (target <= {TARGET_RATIO}): {verdict}"
    )
    generated = [f"{r['video']} {r['generation_s']:.0f} s" for r in rows if r["generation_s"] is not None]
    if generated:
        print("video generation: " + ", ".join(generated))
    path = common.write_results(
        common.results_name(args, "timeline") + ("_quick" if args.quick else ""),
        {
            "model": {"preset": PRESET, **_preset_config(), "weights": "random (seed 0)"},
            "dtype": rows[0].get("dtype"),
            "protocol": rows[0].get("protocol"),
            "window_views": 1,
            "stride": "default (half a window)",
            "decoder_threads": "0 (FFmpeg picks)",
            "warmup": "1 forward pass of one batch before the baseline; the timeline itself is not repeated",
            "repeats": 1,
            "memory_method": "ru_maxrss of a fresh subprocess per video: baseline after import + model "
            "load + warm-up, peak after the timeline pass",
            "videos": rows,
            "ratio_long_over_short_peak_rss": ratio,
            "target_ratio": TARGET_RATIO,
            "verdict": verdict,
        },
    )
    print(f"wrote {path}")


def _preset_config() -> dict[str, Any]:
    from fast_timesformer import PRESETS

    return dict(PRESETS[PRESET])


if __name__ == "__main__":
    main()
