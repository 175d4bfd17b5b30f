"""Attention alone: time and peak memory of each mechanism against sequence length (issue 2).

What one measured call includes: the mechanism's ``attend(q, k, v, mask=None)`` -- everything that replaces
``softmax(q k^T / sqrt(d)) v`` -- on q, k, v of shape (1, 6 heads, N, 64) that are strided views of one
(1, N, 3, 6, 64) tensor, exactly as the model's fused qkv projection hands them over, and it returns
(1, N, 6*64) with the heads merged. Not included: the qkv and output projections (identical for every
mechanism). Fastformer's ``attend`` includes its own output transform (Linear 384 -> 384) and query residual.

Contenders:
- ``sdpa``: ``regular`` attention, ``torch.nn.functional.scaled_dot_product_attention`` (CPU flash kernel).
- ``performer``: FAVOR+ with 256 positive orthogonal random features (softmax kernel).
- ``fastformer``: additive attention (two softmax poolings).
- ``naive``: the eager ``softmax(q @ k.T * scale) @ v`` that Hugging Face's Timesformer runs, for reference
  (it builds the N x N matrix, so it stops at 8,192 tokens in the full run).

Timing: batch 1, float32, 2 threads, inference mode; per length the contenders are interleaved, order rotated
each round; medians reported. A 2048 x 2048 float32 matmul is timed in the same rounds: "of peak" is each
mechanism's FLOP/s (FlopCounterMode) over that matmul's FLOP/s, so machine load drifting between lengths
does not bend the efficiency numbers. Peak memory: one fresh spawn process per mechanism, high-water mark reset
before each measured call (see ``common.py``), so it is the call's extra memory over q, k, v and the module.

    python benchmarks/attention.py            # 64 ... 16,384 tokens, about 3 minutes on 2 cores
    python benchmarks/attention.py --quick    # 64 ... 6,272 tokens, fewer repeats
    python benchmarks/attention.py --short    # many short groups (divided attention's temporal step)

``--short`` measures what decides ``regular``'s path for short sequences: 392 groups (an 8 x 224 clip's 196
patch positions x batch 2) of T = 4 ... 64 tokens, the fused SDPA kernel against ``regular``'s ``attend``,
which uses the explicit product for T <= ``SHORT_SEQUENCE`` in CPU inference.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from fast_timesformer.attention import build_attention  # noqa: E402

HEADS, DIM_HEAD, NB_FEATURES = 6, 64, 256
TARGET_TOKENS = 6272  # 8 frames x 28 x 28 patches (8 x 448) -- the reference length
FULL_LENGTHS = [64, 128, 256, 512, 1024, 2048, 4096, TARGET_TOKENS, 8192, 16384]
QUICK_LENGTHS = [64, 256, 1024, 2048, 4096, TARGET_TOKENS]
NAIVE_MAX_TOKENS = 8192  # naive needs ~2 * 6 * N^2 * 4 bytes: 3.2 GiB at 8,192, 13 GiB at 16,384
MECHANISMS = ("sdpa", "performer", "fastformer", "naive")
TARGETS = {"performer": 5.0, "fastformer": 20.0}  # speed-up over sdpa at TARGET_TOKENS


def naive_attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Eager softmax attention as Hugging Face's Timesformer computes it: (B, H, N, d) -> (B, N, H*d)."""
    scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # (B, H, N, N)
    out = scores.softmax(dim=-1) @ v
    b, h, n, d = out.shape
    return out.transpose(1, 2).reshape(b, n, h * d)


def build_call(mechanism: str, tokens: int, seed: int = 0):
    """The zero-argument call to measure: one mechanism's attend on fresh q, k, v (model-like strides)."""
    torch.manual_seed(seed)
    qkv = torch.randn(1, tokens, 3, HEADS, DIM_HEAD).permute(2, 0, 3, 1, 4)  # (3, 1, H, N, d) view
    q, k, v = qkv.unbind(0)
    if mechanism == "naive":
        attend = naive_attend
    else:
        name = {"sdpa": "regular"}.get(mechanism, mechanism)
        kwargs = {"nb_features": NB_FEATURES} if name == "performer" else None
        module = build_attention(
            name, HEADS * DIM_HEAD, heads=HEADS, dim_head=DIM_HEAD, attention_kwargs=kwargs
        ).eval()

        def attend(q, k, v):
            return module.attend(q, k, v, None)

    def call() -> torch.Tensor:
        with torch.inference_mode():
            return attend(q, k, v)

    return call


SHORT_GROUPS, SHORT_LENGTHS = 392, (4, 8, 16, 32, 64)


def build_short_call(contender: str, tokens: int, seed: int = 0):
    """``sdpa`` (the fused kernel) or ``regular`` (its attend) on SHORT_GROUPS groups of ``tokens``."""
    torch.manual_seed(seed)
    qkv = torch.randn(SHORT_GROUPS, tokens, 3, HEADS, DIM_HEAD).permute(2, 0, 3, 1, 4)  # (3, G, H, T, d)
    q, k, v = qkv.unbind(0)
    module = build_attention("regular", HEADS * DIM_HEAD, heads=HEADS, dim_head=DIM_HEAD).eval()

    def call() -> torch.Tensor:
        with torch.inference_mode():
            if contender == "sdpa":
                out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
                return out.transpose(1, 2).reshape(SHORT_GROUPS, tokens, HEADS * DIM_HEAD)
            return module.attend(q, k, v, None)

    return call


def short_main(args: Any) -> None:
    """The ``--short`` table: fused SDPA vs ``regular`` on many short groups, interleaved, medians."""
    from fast_timesformer.attention.regular import SHORT_SEQUENCE

    rows = []
    for tokens in SHORT_LENGTHS:
        calls = {c: build_short_call(c, tokens) for c in ("sdpa", "regular")}
        times, clean = common.interleaved_clean(
            calls, warmup=args.warmup or 3, repeats=args.repeats or 25, max_seconds=args.max_seconds or 60
        )
        row = {"groups": SHORT_GROUPS, "tokens": tokens, "explicit": tokens <= SHORT_SEQUENCE}
        for c in calls:
            row[f"{c}_ms"] = common.summary(times[c])["median_s"] * 1e3
            row[f"{c}_timing"] = common.summary(times[c])
        row["speedup"] = row["sdpa_ms"] / row["regular_ms"]
        row["clean"] = clean
        rows.append(row)
        print(f"T={tokens:3d}: sdpa {row['sdpa_ms']:.2f} ms  regular {row['regular_ms']:.2f} ms", flush=True)
    columns = [
        ("tokens per group", "tokens", "d"), ("regular uses", "path", ""), ("fused SDPA ms", "sdpa_ms", ".2f"),
        ("regular ms", "regular_ms", ".2f"), ("x", "speedup", ".2f"),
    ]  # fmt: skip
    for row in rows:
        row["path"] = "explicit" if row["explicit"] else "SDPA"
    print()
    print(common.format_table(rows, columns))
    path = common.write_results(
        common.results_name(args, "attention_short"),
        {
            "what": f"{SHORT_GROUPS} groups x 6 heads x T tokens x 64, float32, inference mode: "
            "fused SDPA against regular attention's attend",
            "short_sequence_threshold": SHORT_SEQUENCE,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


def repeats_for(seconds_per_call: float, quick: bool) -> int:
    """Enough repeats for a stable median, bounded so the whole sweep stays a few minutes."""
    budget = 1.5 if quick else 4.0  # seconds per contender per length
    return max(3, min(25 if not quick else 9, math.ceil(budget / max(seconds_per_call, 1e-4))))


def crossover(lengths: list[int], slow: list[float], fast: list[float]) -> float | None:
    """Token count above which ``fast`` stays faster than ``slow`` (log-log interpolation); None if never."""
    ratios = [math.log(s / f) for s, f in zip(slow, fast)]  # > 0 where ``fast`` wins
    if ratios[-1] <= 0:
        return None
    i = len(ratios) - 1
    while i > 0 and ratios[i - 1] > 0:
        i -= 1
    if i == 0:
        return float(lengths[0])  # wins everywhere measured
    x0, x1 = math.log(lengths[i - 1]), math.log(lengths[i])
    y0, y1 = ratios[i - 1], ratios[i]
    return math.exp(x0 + (x1 - x0) * (-y0) / (y1 - y0))


def loglog_slope(lengths: list[int], values: list[float | None], min_tokens: int = 1024) -> float | None:
    """Least-squares slope of log(value) on log(tokens) for tokens >= min_tokens (1: linear, 2: quadratic)."""
    points = [(math.log(n), math.log(v)) for n, v in zip(lengths, values) if n >= min_tokens and v]
    if len(points) < 2:
        return None
    mx = statistics.fmean(x for x, _ in points)
    my = statistics.fmean(y for _, y in points)
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def plot(rows: list[dict[str, Any]], crossovers: dict[str, float | None], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mechanism in MECHANISMS:
        points = [r for r in rows if r["mechanism"] == mechanism and r.get("median_ms")]
        if points:
            ax_time.plot(
                [r["tokens"] for r in points], [r["median_ms"] for r in points], "o-", label=mechanism
            )
        mem = [r for r in points if r.get("peak_mib")]
        if mem:
            ax_mem.plot([r["tokens"] for r in mem], [r["peak_mib"] for r in mem], "o-", label=mechanism)
    for name, tokens in crossovers.items():
        if tokens:
            ax_time.axvline(tokens, ls=":", c="grey")
            ax_time.annotate(f"{name} < sdpa\nfrom {tokens:.0f}", (tokens, ax_time.get_ylim()[0]), fontsize=8)
    for ax, label in ((ax_time, "time per call (ms, median)"), (ax_mem, "peak extra memory (MiB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens N (batch 1, 6 heads x 64)")
        ax.set_ylabel(label)
        ax.axvline(TARGET_TOKENS, ls="--", c="black", lw=0.8)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.suptitle(f"attention alone: float32, {torch.get_num_threads()} threads, {common.cpu_model()}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="short groups: fused SDPA vs regular's attend")
    args = parser.parse_args()
    common.start(args)
    if args.short:
        return short_main(args)
    lengths = QUICK_LENGTHS if args.quick else FULL_LENGTHS
    name = common.results_name(args, "attention_quick" if args.quick else "attention")
    peak = common.matmul_peak_gflops(repeats=5 if args.quick else 9)
    print(f"matmul peak (float32, {args.threads} threads): {peak['gflops']:.1f} GFLOP/s")

    rows: list[dict[str, Any]] = []
    for tokens in lengths:
        mechanisms = [m for m in MECHANISMS if m != "naive" or tokens <= NAIVE_MAX_TOKENS]
        calls = {m: build_call(m, tokens) for m in mechanisms}
        first = {m: common.time_once(calls[m]) for m in mechanisms}  # also the first warm-up call
        repeats = args.repeats or repeats_for(max(first.values()), args.quick)
        warmup = args.warmup if args.warmup is not None else 1
        probe, probe_flops = common.matmul_probe()
        budget = args.max_seconds or 8 * repeats * sum(first.values()) + 20
        times, clean = common.interleaved_clean(
            {**calls, "matmul_probe": probe}, warmup=warmup, repeats=repeats, max_seconds=budget
        )
        run_peak = common.probe_gflops(times["matmul_probe"], probe_flops)  # best GFLOP/s in these rounds
        for m in mechanisms:
            stats = common.summary(times[m])
            flops = common.count_flops(calls[m])
            rows.append(
                {
                    "mechanism": m,
                    "tokens": tokens,
                    "median_ms": stats["median_s"] * 1e3,
                    "flops": flops,
                    "gflops_per_s": flops / stats["median_s"] / 1e9,
                    "fraction_of_peak": common.fraction_of_peak(flops, stats["median_s"], run_peak),
                    "matmul_gflops_same_rounds": run_peak,
                    "timing": stats,
                    "clean": clean,
                    "warmup": warmup + 1,
                }
            )
        line = "  ".join(f"{m} {statistics.median(times[m]) * 1e3:8.2f} ms" for m in mechanisms)
        flag = " DISTURBED" if clean["disturbed"] else ""
        print(f"N={tokens:6d} (x{repeats}, matmul {run_peak:.0f} GFLOP/s{flag}): {line}", flush=True)
        del calls

    if not args.no_memory:
        for m in MECHANISMS:
            lens = [n for n in lengths if m != "naive" or n <= NAIVE_MAX_TOKENS]
            memory = dict(
                zip(lens, common.peak_memory_many(build_call, [(m, n) for n in lens], threads=args.threads))
            )
            for row in rows:
                if row["mechanism"] == m and row["tokens"] in memory:
                    result = memory[row["tokens"]]
                    row["peak_mib"] = common.mib(result.get("peak_extra_bytes"))
                    row["memory"] = result

    sdpa = {r["tokens"]: r for r in rows if r["mechanism"] == "sdpa"}
    for row in rows:
        row["speedup_vs_sdpa"] = sdpa[row["tokens"]]["median_ms"] / row["median_ms"]
    crossovers, slopes, targets = {}, {}, {}
    for m in MECHANISMS:
        mine = [r for r in rows if r["mechanism"] == m]
        slopes[m] = {
            "time": loglog_slope([r["tokens"] for r in mine], [r["median_ms"] for r in mine]),
            "memory": loglog_slope([r["tokens"] for r in mine], [r.get("peak_mib") for r in mine]),
        }
        if m in ("performer", "fastformer"):
            crossovers[m] = crossover(
                [r["tokens"] for r in mine],
                [sdpa[r["tokens"]]["median_ms"] for r in mine],
                [r["median_ms"] for r in mine],
            )
            at = next((r for r in mine if r["tokens"] == TARGET_TOKENS), None)
            if at is not None:
                targets[m] = {
                    "speedup_at_6272": at["speedup_vs_sdpa"],
                    "target": TARGETS[m],
                    "met": at["speedup_vs_sdpa"] >= TARGETS[m],
                    "memory_loglog_slope": slopes[m]["memory"],
                }

    columns = [
        ("mechanism", "mechanism", ""),
        ("tokens", "tokens", "d"),
        ("median ms", "median_ms", ".2f"),
        ("x vs sdpa", "speedup_vs_sdpa", ".2f"),
        ("GFLOP/s", "gflops_per_s", ".1f"),
        ("of peak", "fraction_of_peak", ".0%"),
        ("peak MiB", "peak_mib", ".1f"),
    ]
    print()
    print(
        common.format_table(
            sorted(rows, key=lambda r: (MECHANISMS.index(r["mechanism"]), r["tokens"])), columns
        )
    )
    print(
        "\ncrossover (tokens above which the mechanism beats sdpa):",
        {k: v and round(v) for k, v in crossovers.items()},
    )
    print("log-log slopes (time, memory) over N >= 1024:", slopes)
    print("targets at 6,272 tokens:", targets)

    png = common.RESULTS / f"{name}.png"
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    plot(rows, crossovers, png)
    path = common.write_results(
        name,
        {
            "what": "attend(q, k, v) only: batch 1, 6 heads x 64, float32, inference mode; "
            "no qkv/output projection (fastformer includes its transform + query residual)",
            "dtype": "float32",
            "matmul_peak": peak,
            "rows": rows,
            "crossover_tokens": crossovers,
            "loglog_slopes_n_ge_1024": slopes,
            "targets": targets,
            "plot": str(png.relative_to(common.RESULTS.parent.parent)),
        },
    )
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
