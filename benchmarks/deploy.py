"""Deployment runtimes side by side: eager PyTorch, ``torch.compile`` and onnxruntime (CPU), same run.

    python benchmarks/deploy.py            # small 8x224 config, batch 1, 3 mechanisms -> results/deploy.json
    python benchmarks/deploy.py --quick    # micro 8x32 config

For each attention mechanism (divided layout) the model is exported with ``fast-timesformer export``'s code
(:func:`fast_timesformer.inference.deploy.export_model`, the dynamo exporter, verified against eager), then
eager PyTorch (``torch.inference_mode``), the compiled model (``nn.Module.compile``, inductor) and the
onnxruntime session (intra-op threads = ``--threads``) score the same normalised clip, timed interleaved
(warm-up calls first; compile happens during warm-up), medians compared. Export and compile times are
reported too: they are what a user pays once.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import base_parser, format_table, interleaved_clean, results_name, start, summary, write_results  # noqa: E402

from fast_timesformer.presets import create_model  # noqa: E402

MECHANISMS = ("regular", "performer", "fastformer")


def measure(attention: str, preset: str, args, warmup: int, repeats: int) -> dict:
    """Eager, compiled and onnxruntime timings of one mechanism, interleaved."""
    from fast_timesformer.inference.deploy import export_model, onnx_session

    torch.manual_seed(0)
    model = create_model(preset, num_classes=400, attention=attention).eval()
    size = model.config["image_size"]
    clip = torch.randn(args.batch, model.config["num_frames"], 3, size, size)
    with tempfile.TemporaryDirectory() as folder:
        began = time.perf_counter()
        result = export_model(model, Path(folder) / "model.onnx")
        export_s = time.perf_counter() - began
        session = onnx_session(Path(folder) / "model.onnx", threads=args.threads)
    name = session.get_inputs()[0].name
    array = clip.numpy()
    compiled = create_model(preset, num_classes=400, attention=attention).eval()
    compiled.load_state_dict(model.state_dict())
    compiled.compile()
    began = time.perf_counter()
    with torch.inference_mode():
        compiled(clip)  # the first call compiles
    compile_s = time.perf_counter() - began

    def eager():
        with torch.inference_mode():
            return model(clip)

    def inductor():
        with torch.inference_mode():
            return compiled(clip)

    def onnxruntime():
        return session.run(None, {name: array})

    with torch.inference_mode():
        compile_gap = float((compiled(clip) - model(clip)).abs().max())
    times, info = interleaved_clean(
        {"eager": eager, "compile": inductor, "onnxruntime": onnxruntime},
        warmup=warmup, repeats=repeats, max_seconds=args.max_seconds or (60 if args.quick else 240),
    )  # fmt: skip
    medians = {key: summary(value)["median_s"] for key, value in times.items()}
    return {
        "attention": attention, "eager_ms": 1e3 * medians["eager"], "compile_ms": 1e3 * medians["compile"],
        "onnx_ms": 1e3 * medians["onnxruntime"], "compile_speedup": medians["eager"] / medians["compile"],
        "onnx_speedup": medians["eager"] / medians["onnxruntime"], "export_s": export_s, "compile_s": compile_s,
        "onnx_max_diff": result.max_abs_diff, "compile_max_diff": compile_gap, "disturbed": info["disturbed"],
        "timings": {key: summary(value) for key, value in times.items()}, "timing_info": info,
    }  # fmt: skip


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1, help="clips per call (default 1)")
    args = parser.parse_args()
    start(args)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 15)
    preset = "timesformer_micro_8x32" if args.quick else "timesformer_small_8x224"
    rows = []
    for attention in MECHANISMS:
        rows.append(measure(attention, preset, args, warmup, repeats))
        print(f"{attention}: eager {rows[-1]['eager_ms']:.1f} ms, compile {rows[-1]['compile_ms']:.1f} ms, "
              f"onnxruntime {rows[-1]['onnx_ms']:.1f} ms")  # fmt: skip
    columns = [
        ("attention", "attention", ""), ("eager ms", "eager_ms", ",.1f"), ("compile ms", "compile_ms", ",.1f"),
        ("onnxruntime ms", "onnx_ms", ",.1f"), ("eager / compile", "compile_speedup", ".2f"),
        ("eager / onnxruntime", "onnx_speedup", ".2f"), ("export s", "export_s", ".1f"),
        ("compile s", "compile_s", ".1f"), ("ONNX max diff", "onnx_max_diff", ".1e"), ("disturbed", "disturbed", ""),
    ]  # fmt: skip
    print(
        f"\n{preset}, batch {args.batch}, float32, {args.threads} threads, warm-up {warmup}, {repeats} repeats"
    )
    print(format_table(rows, columns))
    settings = {"preset": preset, "batch": args.batch, "dtype": "float32", "threads": args.threads,
                "warmup": warmup, "repeats": repeats, "exporter": "dynamo", "compile": "inductor"}  # fmt: skip
    path = write_results(
        results_name(args, "deploy" + ("_quick" if args.quick else "")), {"settings": settings, "rows": rows}
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
