"""The model's CPU fast paths, each against the plain computation it replaces (issue 6, profile fixes).

1. Fused temporal projection: ``temporal_fc`` composed with the temporal attention's output projection
   (``Block.fuse_temporal_fc``) against the two layers applied one after the other, on the benchmarks'
   small config (dim 384, depth 4, 6 heads, 8x224, batch 2, random weights), float32: inference
   (``inference_mode``) and a training step (forward, sum of logits, backward; no optimiser), both variants
   timed interleaved in one process, medians and ratios. The fusion removes 2 * D^2 * (rows - heads *
   dim_head) FLOPs per block: about 5% of this config's forward pass (1.9% of the base model's at batch 1).
2. Allocator steady state: the base model's (dim 768, depth 12) 8x224 inference pass repeated in a fresh
   spawn process with
   ``fast_timesformer.inference.tune_allocator()`` and in one without, reporting page faults per pass and the
   peak resident memory after each pass -- the tuned allocator must stop faulting without growing.

    python benchmarks/fast_paths.py            # ~3 minutes on 2 cores
    python benchmarks/fast_paths.py --quick    # fewer repeats and passes
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

FRAMES, SIZE, CLASSES = 8, 224, 400


def base_model(**overrides: int) -> torch.nn.Module:
    from fast_timesformer import FastTimeSformer

    torch.manual_seed(0)
    return FastTimeSformer(num_frames=FRAMES, image_size=SIZE, num_classes=CLASSES, **overrides)


def small_model() -> torch.nn.Module:
    return base_model(dim=384, depth=4, heads=6, dim_head=64)  # benchmarks/model.py's small config


def video(batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, FRAMES, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def fused_projection(args: Any) -> list[dict[str, Any]]:
    """Interleaved timings of the fused and the plain temporal projection, inference and training step."""
    from fast_timesformer.model import Block

    model, clip = small_model(), video(batch=2)

    def variant(fused: bool, mode: str):
        def call() -> None:
            Block.fuse_temporal_fc = fused
            if mode == "infer":
                with torch.inference_mode():
                    model(clip)
            else:
                model.zero_grad(set_to_none=True)
                model(clip).sum().backward()

        return call

    rows = []
    try:
        for mode, repeats in (("infer", 5 if args.quick else 15), ("train", 3 if args.quick else 9)):
            model.train(mode == "train")  # drop path 0: the training step fuses too
            times, clean = common.interleaved_clean(
                {"fused": variant(True, mode), "plain": variant(False, mode)},
                warmup=args.warmup if args.warmup is not None else 1,
                repeats=args.repeats or repeats,
                max_seconds=args.max_seconds or 600,
            )
            medians = {name: statistics.median(seconds) for name, seconds in times.items()}
            rows.append({
                "mode": mode, "fused_ms": 1000 * medians["fused"], "plain_ms": 1000 * medians["plain"],
                "speedup": medians["plain"] / medians["fused"], "timings_s": times, "clean": clean,
            })  # fmt: skip
    finally:
        Block.fuse_temporal_fc = True
    return rows


def _passes(queue: Any, tuned: bool, passes: int, threads: int) -> None:
    """Spawn child: ``passes`` inference passes; page faults and peak RSS after each."""
    from fast_timesformer.inference.runtime import tune_allocator

    applied = tune_allocator() if tuned else False
    torch.set_num_threads(threads)
    model, clip = base_model().eval(), video()
    faults, peak_mib = [], []
    with torch.inference_mode():
        for _ in range(passes):
            before = common.minor_faults()
            model(clip)
            faults.append(common.minor_faults() - before)
            peak_mib.append(common.mib(common.hwm_bytes()))  # VmHWM: ru_maxrss would carry the parent's
    queue.put({"tuned": applied, "faults_per_pass": faults, "peak_rss_mib_after_pass": peak_mib})


def allocator_steady_state(args: Any) -> list[dict[str, Any]]:
    passes = 5 if args.quick else 21
    context = mp.get_context("spawn")
    rows = []
    for tuned in (True, False):
        queue = context.Queue()
        process = context.Process(target=_passes, args=(queue, tuned, passes, args.threads))
        process.start()
        result = queue.get()
        process.join()
        later = result["faults_per_pass"][1:]
        peaks = result["peak_rss_mib_after_pass"]
        rows.append({
            "allocator": "tuned" if tuned else "default", "applied": result["tuned"], "passes": passes,
            "first_pass_faults": result["faults_per_pass"][0], "median_faults_after_first": statistics.median(later),
            "peak_rss_mib_first_pass": peaks[0], "peak_rss_mib_last_pass": peaks[-1], **result,
        })  # fmt: skip
    return rows


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    args = parser.parse_args()
    if args.allocator != "default":
        raise SystemExit("fast_paths.py compares the allocators itself: leave --allocator at its default")
    common.start(args)
    fused = fused_projection(args)
    print("fused temporal projection, small config 8x224 batch 2, float32, interleaved:")
    print(common.format_table(fused, [
        ("mode", "mode", ""), ("fused ms", "fused_ms", ".0f"), ("plain ms", "plain_ms", ".0f"),
        ("speed-up", "speedup", ".3f"),
    ]))  # fmt: skip
    allocator = allocator_steady_state(args)
    print("\nallocator, base model 8x224 inference passes in a fresh process each:")
    print(common.format_table(allocator, [
        ("allocator", "allocator", ""), ("passes", "passes", "d"), ("faults, first pass", "first_pass_faults", ","),
        ("faults per later pass (median)", "median_faults_after_first", ",.0f"),
        ("peak RSS MiB after first pass", "peak_rss_mib_first_pass", ".0f"),
        ("peak RSS MiB after last pass", "peak_rss_mib_last_pass", ".0f"),
    ]))  # fmt: skip
    path = common.write_results(
        common.results_name(args, "fast_paths_quick" if args.quick else "fast_paths"),
        {
            "what": "model fast paths against the plain computation, float32: fused projection on the small config (8x224, batch 2), allocator on the base model (8x224, batch 1)",
            "fused_temporal_projection": fused,
            "allocator_steady_state": allocator,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
