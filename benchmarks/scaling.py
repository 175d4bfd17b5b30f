"""Scaling curves: whole-model time and peak memory against tokens, per mechanism and layout (issue 6, item 3).

The model is the benchmark's small configuration (dim 384, depth 4, 6 heads of 64, patch 16), batch 1, float32,
inference mode, 2 threads, random weights. Two sweeps grow the token count 1 + T * N:

- ``resolution``: 8 frames at 112 ... 640 px (N = 49 ... 1,600 patches per frame; 393 ... 12,801 tokens).
  In the divided layout this lengthens the *spatial* attention (N + 1 tokens), where linear attention can win.
- ``frames``: 224 px at 8 ... 64 frames (1,569 ... 12,545 tokens). In the divided layout this lengthens only
  the *temporal* attention (T tokens), which stays short: exact attention keeps winning there.

In the joint layout every token attends to every other, so both sweeps lengthen the one attention.
For each (layout, sweep) the three mechanisms are timed interleaved per point (medians), peak memory is the
extra resident memory of one call (one spawn process per mechanism and curve, high-water mark reset before
each call; see ``common.py``), and the crossover is the token count above which a linear mechanism stays
faster than ``regular`` (log-log interpolation between measured points).

    python benchmarks/scaling.py            # both sweeps, both layouts (~13 minutes on 2 cores)
    python benchmarks/scaling.py --quick    # fewer points, fewer repeats
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from attention import crossover, loglog_slope  # noqa: E402

from fast_timesformer import FastTimeSformer  # noqa: E402

DIM, DEPTH, HEADS, DIM_HEAD, PATCH, NB_FEATURES = 384, 4, 6, 64, 16, 256
MECHANISMS = ("regular", "performer", "fastformer")
LAYOUTS = ("divided", "joint")
SWEEPS = {
    "resolution": [(8, s) for s in (112, 160, 224, 320, 448, 640)],
    "frames": [(t, 224) for t in (8, 16, 32, 64)],
}
QUICK_SWEEPS = {"resolution": [(8, s) for s in (112, 224, 448)], "frames": [(t, 224) for t in (8, 32)]}


def tokens(frames: int, size: int) -> int:
    return 1 + frames * (size // PATCH) ** 2


def build_call(mechanism: str, layout: str, frames: int, size: int):
    """One inference pass of the small model (batch 1) at this geometry."""
    torch.manual_seed(0)
    model = FastTimeSformer(
        num_frames=frames, image_size=size, patch_size=PATCH, dim=DIM, depth=DEPTH, heads=HEADS,
        dim_head=DIM_HEAD, num_classes=400, attention=mechanism, attention_type=f"{layout}_space_time",
        attention_kwargs={"nb_features": NB_FEATURES} if mechanism == "performer" else None,
    ).eval()  # fmt: skip
    video = torch.randn(1, frames, 3, size, size, generator=torch.Generator().manual_seed(1))

    def call() -> torch.Tensor:
        with torch.inference_mode():
            return model(video)

    return call


def plot(rows: list[dict[str, Any]], crossovers: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    sweeps = sorted({r["sweep"] for r in rows}, reverse=True)
    fig, axes = plt.subplots(2, 2 * len(sweeps), figsize=(6 * len(sweeps) * 2 / 1.6, 8), squeeze=False)
    for col, (sweep, layout) in enumerate((s, lay) for s in sweeps for lay in LAYOUTS):
        ax_time, ax_mem = axes[0][col], axes[1][col]
        for mechanism in MECHANISMS:
            pts = [r for r in rows if (r["sweep"], r["layout"], r["mechanism"]) == (sweep, layout, mechanism)]
            pts.sort(key=lambda r: r["tokens"])
            ax_time.plot([r["tokens"] for r in pts], [r["median_ms"] for r in pts], "o-", label=mechanism)
            mem = [r for r in pts if r.get("peak_mib")]
            ax_mem.plot([r["tokens"] for r in mem], [r["peak_mib"] for r in mem], "o-", label=mechanism)
        for mechanism, where in crossovers.get(f"{layout}/{sweep}", {}).items():
            if where:
                ax_time.axvline(where, ls=":", c="grey")
                ax_time.annotate(
                    f"{mechanism}\n< regular\nfrom {where:.0f}", (where, ax_time.get_ylim()[0]), fontsize=7
                )
        ax_time.set_title(f"{layout}, {sweep} sweep", fontsize=10)
        for ax, label in ((ax_time, "ms per clip (median)"), (ax_mem, "peak extra memory (MiB)")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # minor labels overlap
            ax.set_xlabel("tokens (1 + T x N)")
            ax.set_ylabel(label)
            ax.grid(True, which="both", alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
    fig.suptitle(
        f"FastTimeSformer (dim 384, depth 4, 6 heads) batch 1, float32, {torch.get_num_threads()} threads, "
        f"{common.cpu_model()}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--sweeps", nargs="*", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--layouts", nargs="*", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--replot", action="store_true", help="redraw the PNG from the results JSON only")
    args = parser.parse_args()
    name = common.results_name(args, "scaling_quick" if args.quick else "scaling")
    if args.replot:
        saved = json.loads((common.RESULTS / f"{name}.json").read_text())
        plot(saved["rows"], saved["crossover_tokens"], common.RESULTS / f"{name}.png")
        print(f"redrew {common.RESULTS / f'{name}.png'} from {name}.json")
        return
    common.start(args)
    sweeps = {k: v for k, v in (QUICK_SWEEPS if args.quick else SWEEPS).items() if k in args.sweeps}

    rows: list[dict[str, Any]] = []
    for sweep, points in sweeps.items():
        for layout in args.layouts:
            for frames, size in points:
                calls = {m: build_call(m, layout, frames, size) for m in MECHANISMS}
                first = {m: common.time_once(calls[m]) for m in MECHANISMS}
                budget = 2.0 if args.quick else 6.0
                repeats = args.repeats or max(3, min(9, int(budget / max(first.values()))))
                warmup = args.warmup if args.warmup is not None else 1
                probe, probe_flops = common.matmul_probe()
                times, clean = common.interleaved_clean(
                    {**calls, "matmul_probe": probe},
                    warmup=warmup,
                    repeats=repeats,
                    max_seconds=args.max_seconds or 6 * repeats * sum(first.values()) + 20,
                )
                run_peak = common.probe_gflops(times["matmul_probe"], probe_flops)
                for m in MECHANISMS:
                    stats = common.summary(times[m])
                    flops = common.count_flops(calls[m])
                    rows.append(
                        {
                            "sweep": sweep, "layout": layout, "mechanism": m, "frames": frames, "size": size,
                            "tokens": tokens(frames, size), "median_ms": stats["median_s"] * 1e3,
                            "gflops": flops / 1e9,
                            "fraction_of_peak": common.fraction_of_peak(flops, stats["median_s"], run_peak),
                            "matmul_gflops_same_rounds": run_peak, "warmup": warmup + 1, "timing": stats, "clean": clean,
                        }
                    )  # fmt: skip
                del calls
                line = "  ".join(f"{m} {statistics.median(times[m]) * 1e3:8.1f} ms" for m in MECHANISMS)
                print(
                    f"{layout:7s} {frames:2d}x{size:3d} ({tokens(frames, size):5d} tokens, x{repeats}): {line}",
                    flush=True,
                )
            if not args.no_memory:
                for m in MECHANISMS:
                    arg_list = [(m, layout, frames, size) for frames, size in points]
                    for (_, _, frames, size), result in zip(
                        arg_list, common.peak_memory_many(build_call, arg_list, threads=args.threads)
                    ):
                        row = next(
                            r for r in rows
                            if (r["sweep"], r["layout"], r["mechanism"], r["frames"], r["size"])
                            == (sweep, layout, m, frames, size)
                        )  # fmt: skip
                        row["peak_mib"] = common.mib(result.get("peak_extra_bytes"))
                        row["memory"] = result

    crossovers: dict[str, dict[str, float | None]] = {}
    slopes: dict[str, dict[str, Any]] = {}
    for sweep in sweeps:
        for layout in args.layouts:
            key = f"{layout}/{sweep}"
            curve = {
                m: sorted(
                    (r for r in rows if (r["sweep"], r["layout"], r["mechanism"]) == (sweep, layout, m)),
                    key=lambda r: r["tokens"],
                )
                for m in MECHANISMS
            }
            lengths = [r["tokens"] for r in curve["regular"]]
            regular = [r["median_ms"] for r in curve["regular"]]
            for m in MECHANISMS:
                for r, base in zip(curve[m], regular):
                    r["speedup_vs_regular"] = base / r["median_ms"]
            crossovers[key] = {
                m: crossover(lengths, regular, [r["median_ms"] for r in curve[m]])
                for m in ("performer", "fastformer")
            }
            slopes[key] = {
                m: {
                    "time": loglog_slope(lengths, [r["median_ms"] for r in curve[m]], min_tokens=1500),
                    "memory": loglog_slope(lengths, [r.get("peak_mib") for r in curve[m]], min_tokens=1500),
                }
                for m in MECHANISMS
            }

    columns = [
        ("sweep", "sweep", ""), ("layout", "layout", ""), ("mechanism", "mechanism", ""),
        ("T", "frames", "d"), ("px", "size", "d"), ("tokens", "tokens", "d"), ("median ms", "median_ms", ".1f"),
        ("x vs regular", "speedup_vs_regular", ".2f"), ("of peak", "fraction_of_peak", ".0%"),
        ("peak MiB", "peak_mib", ".0f"),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    print("\ncrossover tokens (linear mechanism faster than regular from):")
    for key, value in crossovers.items():
        print(f"  {key}: " + ", ".join(f"{m} {'never' if v is None else round(v)}" for m, v in value.items()))
    png = common.RESULTS / f"{name}.png"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, crossovers, png)
    path = common.write_results(
        name,
        {
            "what": "whole-model inference, batch 1, float32, dim 384 depth 4 heads 6x64, performer 256 features",
            "rows": rows,
            "crossover_tokens": crossovers,
            "loglog_slopes_tokens_ge_1500": slopes,
            "plot": str(png.relative_to(common.RESULTS.parent.parent)),
        },
    )
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
