"""Data-path throughput: decoded + transformed clips per second per worker, and built-in dataset generation.

Measures, in one process with one torch thread (what one DataLoader worker gets):

(a) a Kinetics-like video written here (10 s, 340x256, H.264 crf 23, 30 fps, x264's default GOP) sampled
    "8x32" train-style: random span, 8 frames, short-side jitter to [256, 320], random 224 crop, normalise;
(b) items of the built-in motion dataset as the demo reads them (16-frame 32x32 clips, 8 frames with
    dense stride 2, 32 crop), through `VideoDataset`, decoded every time and with ``cache_frames=True``
    (decoded once, then only sampled and transformed);
(c) the time to generate 1,000 built-in clips (render + encode + decode-and-hash), with 0 and 2 processes;
(d) for scale, the clips per second a tiny divided space-time model (dim 64, depth 2, 8x32x32) consumes
    in training on this CPU, so (b) can be compared with what training needs.

Usage::

    python benchmarks/data.py            # full run, writes benchmarks/results/data.json
    python benchmarks/data.py --quick    # fewer repeats and 200 generated clips (smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fast_timesformer.data import (  # noqa: E402
    TrainTransform,
    VideoDataset,
    VideoReader,
    dense_indices,
    read_annotations,
)
from fast_timesformer.data.synthetic import generate_motion_dataset  # noqa: E402


def machine_info() -> dict:
    import av
    import numpy

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "av": av.__version__,
        "ffmpeg_libavcodec": ".".join(map(str, av.library_versions["libavcodec"])),
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        # The machine may be shared: the 1-minute load average at the start says how busy it was.
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def write_kinetics_like(path: Path) -> Path:
    """10 s of 340x256 H.264 at 30 fps with moving content (so the encoder does real work)."""
    import av
    import numpy as np

    height, width, frames = 256, 340, 300
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            image = np.stack(
                [
                    127 + 100 * np.sin((x + 3 * t) / 17.0),
                    127 + 100 * np.sin((y - 2 * t) / 23.0),
                    127 + 100 * np.sin((x + y + t) / 31.0),
                ],
                axis=-1,
            )
            frame = av.VideoFrame.from_ndarray(image.clip(0, 255).astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def time_calls(function, *, warmup: int, repeats: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of this process) of each call after ``warmup`` untimed calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        times.append((time.perf_counter() - wall, time.process_time() - cpu))
    return times


def summarise(times: list[tuple[float, float]]) -> dict:
    """Medians of wall and CPU time. On a shared machine wall time includes waiting for a core; CPU time
    is the cost on a core of its own (this process runs one torch and one FFmpeg thread)."""
    wall = [w for w, _ in times]
    cpu = [c for _, c in times]
    return {
        "median_s": statistics.median(wall),
        "min_s": min(wall),
        "max_s": max(wall),
        "median_cpu_s": statistics.median(cpu),
        "repeats": len(times),
        "per_second": 1.0 / statistics.median(wall),
        "per_cpu_second": 1.0 / max(statistics.median(cpu), 1e-9),
    }


def bench_kinetics(path: Path, *, warmup: int, repeats: int) -> dict:
    """Decode and transform timed separately within each repeat, so both see the same machine load."""
    transform = TrainTransform(crop_size=224, scale_range=(256, 320))
    generator = torch.Generator().manual_seed(0)
    decoded: list[int] = []
    parts: dict[str, list[tuple[float, float]]] = {"decode": [], "transform": [], "decode_and_transform": []}

    def one_clip(record: bool):
        marks = [(time.perf_counter(), time.process_time())]
        with VideoReader(path, backend="pyav") as reader:
            meta = reader.metadata
            indices = dense_indices(
                meta.num_frames, num_frames=8, sampling_rate=32, train=True, generator=generator, fps=meta.fps
            )
            frames = reader.get_frames(indices)  # uint8 (8, 3, 256, 340)
            decoded.append(reader.frames_decoded)
        marks.append((time.perf_counter(), time.process_time()))
        transform(frames, generator=generator)  # float (8, 3, 224, 224)
        marks.append((time.perf_counter(), time.process_time()))
        if record:
            for name, (a, b) in {
                "decode": (0, 1),
                "transform": (1, 2),
                "decode_and_transform": (0, 2),
            }.items():
                parts[name].append((marks[b][0] - marks[a][0], marks[b][1] - marks[a][1]))

    for _ in range(warmup):
        one_clip(False)
    decoded.clear()
    for _ in range(repeats):
        one_clip(True)
    result = {name: summarise(times) for name, times in parts.items()}
    result["mean_frames_decoded_per_clip"] = statistics.mean(decoded)
    return result


def bench_builtin(root: Path, *, warmup: int, repeats: int, cache_frames: bool) -> dict:
    annotations = read_annotations(root / "train" / "manifest.csv")
    dataset = VideoDataset(
        annotations, num_frames=8, sampling_rate=2, mode="train", crop_size=32, scale_range=(32, 32),
        cache_frames=cache_frames,
    )  # fmt: skip
    if cache_frames:
        for index in range(len(dataset)):  # the first epoch fills the cache
            dataset[index]
    counter = iter(range(10**9))
    times = time_calls(lambda: dataset[next(counter) % len(dataset)], warmup=warmup, repeats=repeats)
    return summarise(times)


def bench_generation(num_clips: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        generate_motion_dataset(directory, num_videos=num_clips, splits=("train",), num_workers=workers)
        seconds = time.perf_counter() - start
        size = sum(f.stat().st_size for f in Path(directory).rglob("*.mp4"))
    return {"clips": num_clips, "workers": workers, "seconds": seconds, "clips_per_second": num_clips / seconds,
            "mean_file_bytes": size / num_clips}  # fmt: skip


def bench_model(*, warmup: int, repeats: int) -> dict | None:
    try:
        from fast_timesformer.model import FastTimeSformer
    except Exception as error:  # the model may be unavailable in a data-only checkout
        return {"skipped": str(error)}
    model = FastTimeSformer(
        num_frames=8, num_classes=4, image_size=32, patch_size=8, dim=64, depth=2, heads=4
    )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    video, labels = torch.randn(32, 8, 3, 32, 32), torch.randint(0, 4, (32,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(video), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    result = summarise(time_calls(step, warmup=warmup, repeats=repeats))
    result["batch_size"] = 32
    result["clips_per_second"] = 32 / result["median_s"]
    result["clips_per_cpu_second"] = 32 / result["median_cpu_s"]
    result["torch_threads"] = torch.get_num_threads()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 200 generated clips")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = one DataLoader worker)")
    parser.add_argument("--output", default=str(ROOT / "benchmarks" / "results" / "data.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warmup, repeats = (2, 10) if args.quick else (5, 40)
    generated = 200 if args.quick else 1000
    results: dict = {
        "machine": machine_info(),
        "settings": {"warmup": warmup, "repeats": repeats, "quick": args.quick},
    }
    with tempfile.TemporaryDirectory() as directory:
        video = write_kinetics_like(Path(directory) / "kinetics_like.mp4")
        results["kinetics_like_8x32"] = bench_kinetics(video, warmup=warmup, repeats=repeats)
        generate_motion_dataset(Path(directory) / "motion", num_videos=64, splits=("train",))
        motion = Path(directory) / "motion"
        for key, cached in (("builtin_item", False), ("builtin_item_cached", True)):
            results[key] = bench_builtin(motion, warmup=warmup, repeats=repeats * 5, cache_frames=cached)
    results["generate_1000" if generated == 1000 else f"generate_{generated}"] = [
        bench_generation(generated, workers) for workers in (0, 2)
    ]
    results["tiny_model_train_step"] = bench_model(warmup=3, repeats=max(10, repeats // 2))

    kinetics = results["kinetics_like_8x32"]
    rows = [
        ("(a) Kinetics-like 8x32, decode only", kinetics["decode"]),
        ("(a) Kinetics-like 8x32, transform only", kinetics["transform"]),
        ("(a) Kinetics-like 8x32, decode + transform", kinetics["decode_and_transform"]),
        ("(b) built-in dataset item (8x32x32), decoded", results["builtin_item"]),
        ("(b) built-in dataset item, cache_frames=True", results["builtin_item_cached"]),
    ]
    print(f"{'measurement':<48} {'wall ms':>9} {'per s':>8} {'CPU ms':>8} {'per CPU s':>10}")
    for name, stats in rows:
        print(
            f"{name:<48} {1000 * stats['median_s']:>9.2f} {stats['per_second']:>8.1f} "
            f"{1000 * stats['median_cpu_s']:>8.2f} {stats['per_cpu_second']:>10.1f}"
        )
    print(f"(a) frames decoded per 8-frame clip: {kinetics['mean_frames_decoded_per_clip']:.0f} of 300")
    for entry in next(v for k, v in results.items() if k.startswith("generate_")):
        print(f"(c) generate {entry['clips']} clips, {entry['workers']} workers: {entry['seconds']:.1f} s "
              f"({entry['clips_per_second']:.0f} clips/s, {entry['mean_file_bytes'] / 1024:.1f} KiB/clip)")  # fmt: skip
    for key in ("tiny_model_train_step",):
        model = results[key]
        if model and "median_s" in model:
            print(f"(d) tiny model training consumes {model['clips_per_second']:.0f} clips/s (batch 32, "
                  f"{1000 * model['median_s']:.0f} ms/step wall, {1000 * model['median_cpu_s']:.0f} ms CPU, "
                  f"{model['torch_threads']} threads)")  # fmt: skip
    print(
        f"machine: {results['machine']['cpu']}, {results['machine']['cores']} cores, torch {torch.__version__}"
    )
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
