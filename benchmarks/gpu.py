"""Everything a GPU user needs to know, in one prepared run (about 8 minutes on a current data-centre GPU).

    python benchmarks/gpu.py                      # on the card: writes benchmarks/results/gpu_<card>.json
    python benchmarks/gpu.py --device cpu --quick # the same code paths with tiny models, in seconds (tested)

Sections, in this order (correctness first; the JSON is rewritten after every measured row, so a run cut
short by a timeout keeps everything it measured):

1. **sdpa**: which SDPA kernel runs for our ``regular`` attention in float16 / bfloat16 (aten op names seen
   by the profiler), and a forward restricted with ``torch.nn.attention.sdpa_kernel`` to flash /
   memory-efficient only, proving that no silent math fallback is needed.
2. **autocast**: bf16 autocast logits against float32 (top-1 agreement, relative error) for ``regular``,
   ``performer`` and ``fastformer``; every matmul inside FAVOR+'s ``attend`` must run in float32.
3. **compile**: ``torch.compile`` output against eager (float32, inference).
4. **train**: a training step of the base 8x224 model in bf16 autocast with AdamW, with and without
   ``torch.compile`` and gradient checkpointing: step time, clips/s, peak memory, MFU against a bf16 matmul
   probe timed in the same run and against the card's datasheet peak.
5. **inference**: clips/s and peak memory in bf16 autocast and float32 for the base 8x224, HR 16x448 and
   L 96x224 presets (divided) and the joint layout at 16x224 and 64x224: ours ``regular`` / ``performer`` /
   ``fastformer``, Hugging Face ``transformers``' Timesformer (eager: it has no SDPA path) and lucidrains'
   ``timesformer-pytorch`` (divided only; skipped, with the reason, where it is not installed), with ratios.
6. **fit**: a few-step Lightning ``fit`` of :class:`VideoClassifier` on the demo's real encoded videos with
   ``accelerator=gpu, precision=bf16-mixed``, then the same under DDP on one device (NCCL).

``--budget-s`` (default 480) is a soft limit: a section that would start after it is recorded as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, command_line, format_table, machine_info  # noqa: E402

MECHANISMS = ("regular", "performer", "fastformer")
#: Dense bfloat16 tensor-core peaks from the vendors' datasheets (TFLOP/s, no sparsity), by device name.
DATASHEET_BF16_TFLOPS = {
    "B200": 2250.0,
    "H200": 989.0,
    "GH200": 989.0,
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 756.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "RTX 4090": 165.0,
}
#: Dims that replace the presets' under ``--quick`` (a few MFLOPs per clip: the code paths, not the numbers).
QUICK_DIMS = dict(dim=32, depth=2, heads=2, dim_head=16, patch_size=8, num_classes=4)


# -- bookkeeping -----------------------------------------------------------------------------------------
class Run:
    """Device, budget and the results document, saved after every row."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.monotonic()
        self.card = torch.cuda.get_device_name(self.device) if self.cuda else "cpu"
        slug = re.sub(r"[^a-z0-9]+", "_", self.card.lower()).strip("_")
        self.path = (
            Path(args.out) if args.out else RESULTS / f"gpu_{slug}{'_quick' if args.quick else ''}.json"
        )
        self.doc: dict[str, Any] = {
            "command": command_line(),
            "machine": machine_info(),
            "device": self.describe_device(),
            "settings": {
                "quick": args.quick,
                "warmup": args.warmup,
                "repeats": args.repeats,
                "budget_s": args.budget_s,
                "compile_backend": args.compile_backend,
                "timing": "median of interleaved-free repeats after warm-up, torch.cuda.synchronize() "
                "around each call; peak memory from torch.cuda.max_memory_allocated (None on CPU)",
            },
            "note": "CPU-side facts in 'machine' are for the host; the host may be shared with other jobs.",
            "sections": {},
        }
        self.save()

    def describe_device(self) -> dict[str, Any]:
        if not self.cuda:
            return {"name": "cpu", "threads": torch.get_num_threads()}
        props = torch.cuda.get_device_properties(self.device)
        return {
            "name": self.card,
            "capability": f"{props.major}.{props.minor}",
            "memory_gib": round(props.total_memory / 2**30, 1),
            "multiprocessors": props.multi_processor_count,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
            "datasheet_bf16_tflops": datasheet_peak(self.card),
        }

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def over_budget(self, reserve_s: float = 0.0) -> bool:
        return self.elapsed() + reserve_s > self.args.budget_s

    def section(self, name: str) -> dict[str, Any]:
        self.doc["sections"].setdefault(name, {"rows": []})
        return self.doc["sections"][name]

    def add(self, name: str, row: dict[str, Any]) -> None:
        self.section(name)["rows"].append(row)
        self.save()

    def save(self) -> None:
        self.doc["elapsed_s"] = round(self.elapsed(), 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.doc, indent=2, default=str) + "\n")
        tmp.replace(self.path)  # atomic: a kill mid-write never leaves a truncated file


def datasheet_peak(name: str) -> float | None:
    """The datasheet dense bf16 TFLOP/s of the card called ``name`` (longest matching key), or None."""
    matches = [key for key in DATASHEET_BF16_TFLOPS if key.lower() in name.lower()]
    return DATASHEET_BF16_TFLOPS[max(matches, key=len)] if matches else None


def sync(run: Run) -> None:
    if run.cuda:
        torch.cuda.synchronize(run.device)


def reset_memory(run: Run) -> None:
    gc.collect()
    if run.cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(run.device)


def peak_mib(run: Run) -> float | None:
    return torch.cuda.max_memory_allocated(run.device) / 2**20 if run.cuda else None


def time_calls(run: Run, fn: Callable[[], Any], *, warmup: int, repeats: int) -> list[float]:
    """Seconds of ``repeats`` calls after ``warmup`` untimed ones, synchronised around each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(run)
        start = time.perf_counter()
        fn()
        sync(run)
        times.append(time.perf_counter() - start)
    return times


def autocast(run: Run, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on the run's device, or nothing for float32."""
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=run.device.type, dtype=dtype)


def is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# -- models ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    """One model geometry: a preset (or its layout changed) at ``frames`` x ``size`` with ``batch`` clips."""

    name: str
    preset: str
    layout: str  # "divided" | "joint"
    frames: int
    size: int
    batch: int


def workloads(run: Run) -> list[Workload]:
    """The geometries of the inference table (batch sized for an 80-140 GiB card; halved on OOM)."""
    if run.args.quick:
        return [
            Workload("base 8x224 (quick: 4x32)", "timesformer_base_8x224", "divided", 4, 32, 2),
            Workload("joint 16x224 (quick: 4x32)", "timesformer_base_8x224", "joint", 4, 32, 1),
        ]
    return [
        Workload("base 8x224", "timesformer_base_8x224", "divided", 8, 224, 64),
        Workload("HR 16x448", "timesformer_hr_16x448", "divided", 16, 448, 8),
        Workload("L 96x224", "timesformer_l_96x224", "divided", 96, 224, 8),
        Workload("joint 16x224", "timesformer_base_8x224", "joint", 16, 224, 16),
        Workload("joint 64x224", "timesformer_base_8x224", "joint", 64, 224, 2),
    ]


def geometry(run: Run, work: Workload) -> dict[str, Any]:
    """Constructor arguments shared by every contender at ``work``."""
    from fast_timesformer.presets import PRESETS

    config = {**PRESETS[work.preset], "num_frames": work.frames, "image_size": work.size}
    if run.args.quick:
        config.update(QUICK_DIMS)
    config["drop_path"] = 0.0
    return config


def build_ours(run: Run, work: Workload, attention: str) -> torch.nn.Module:
    from fast_timesformer import FastTimeSformer

    torch.manual_seed(0)
    config = geometry(run, work)
    model = FastTimeSformer(**config, attention=attention, attention_type=f"{work.layout}_space_time")
    return model.to(run.device)


def build_hf(run: Run, work: Workload) -> torch.nn.Module:
    from transformers import TimesformerConfig, TimesformerForVideoClassification

    torch.manual_seed(0)
    c = geometry(run, work)
    config = TimesformerConfig(
        image_size=c["image_size"], patch_size=c["patch_size"], num_frames=c["num_frames"],
        hidden_size=c["dim"], num_hidden_layers=c["depth"], num_attention_heads=c["heads"],
        intermediate_size=int(c.get("mlp_ratio", 4.0) * c["dim"]), num_labels=c["num_classes"],
        attention_type=f"{work.layout}_space_time",
    )  # fmt: skip
    return TimesformerForVideoClassification(config).to(run.device)


def lucidrains_missing() -> str | None:
    """Why lucidrains' timesformer-pytorch cannot run here, or None when it can."""
    try:
        import timesformer_pytorch  # noqa: F401
    except ImportError:
        return "timesformer-pytorch is not installed (pip install --no-deps timesformer-pytorch; needs only einops)"
    return None


def build_lucidrains(run: Run, work: Workload) -> torch.nn.Module:
    from timesformer_pytorch import TimeSformer

    torch.manual_seed(0)
    c = geometry(run, work)
    model = TimeSformer(
        dim=c["dim"], num_frames=c["num_frames"], num_classes=c["num_classes"], image_size=c["image_size"],
        patch_size=c["patch_size"], depth=c["depth"], heads=c["heads"], dim_head=c["dim_head"],
    )  # fmt: skip
    return model.to(run.device)


def contenders(run: Run, work: Workload) -> dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]]:
    """name -> builder of a logits function video (B, T, C, H, W) -> (B, classes)."""
    out: dict[str, Callable[[], Callable[[torch.Tensor], torch.Tensor]]] = {
        f"ours:{name}": (lambda name=name: build_ours(run, work, name)) for name in MECHANISMS
    }

    def hf() -> Callable[[torch.Tensor], torch.Tensor]:
        model = build_hf(run, work)
        return lambda video: model(pixel_values=video).logits

    out["transformers"] = hf
    if work.layout == "divided" and lucidrains_missing() is None:
        out["lucidrains"] = lambda: build_lucidrains(run, work)
    return out


def video(run: Run, work: Workload, batch: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(1)
    clip = torch.randn(batch, work.frames, 3, work.size, work.size, generator=generator)  # (B, T, C, H, W)
    return clip.to(run.device)


# -- 1. SDPA backends ------------------------------------------------------------------------------------
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cuDNN",
    "aten::_scaled_dot_product_fused_attention_overrideable": "fused (overrideable)",
    "aten::_scaled_dot_product_attention_math": "math (unfused)",
}


def sdpa_ops(fn: Callable[[], Any]) -> dict[str, int]:
    """Kernel family -> calls of the SDPA implementations that ``fn`` dispatched to (from the profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    counts: dict[str, int] = {}
    for event in prof.key_averages():
        if event.key in SDPA_OPS:
            counts[SDPA_OPS[event.key]] = counts.get(SDPA_OPS[event.key], 0) + event.count
    return counts


def count_exact_attention_calls(model: torch.nn.Module, fn: Callable[[], Any]) -> int:
    """How many times a ``regular`` attention module ran during ``fn``."""
    from fast_timesformer.attention.regular import RegularAttention

    calls = [0]
    handles = [
        m.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
        for m in model.modules()
        if isinstance(m, RegularAttention)
    ]
    try:
        fn()
    finally:
        for handle in handles:
            handle.remove()
    return calls[0]


def section_sdpa(run: Run) -> None:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    work = workloads(run)[0]
    dtypes = (torch.float16, torch.bfloat16) if run.cuda else (torch.bfloat16,)
    model = build_ours(run, work, "regular").eval()
    clip = video(run, work, 2)
    for dtype in dtypes:
        for grad in (False, True):
            for restricted in (False, True):
                row: dict[str, Any] = {"dtype": str(dtype).removeprefix("torch."), "autograd": grad}
                row["allowed"] = "flash + memory-efficient" if restricted else "default"

                def forward(dtype: torch.dtype = dtype, grad: bool = grad) -> None:
                    with torch.set_grad_enabled(grad), autocast(run, dtype):
                        out = model(clip)
                    if grad:
                        out.float().sum().backward()

                guard = (
                    sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])
                    if restricted
                    else contextlib.nullcontext()
                )
                try:
                    with guard:
                        row["attention_calls"] = count_exact_attention_calls(model, forward)
                        row["sdpa_kernels"] = sdpa_ops(forward)
                    row["ok"] = True
                except RuntimeError as error:  # sdpa_kernel raises when no allowed kernel fits
                    row["ok"], row["error"] = False, str(error).splitlines()[0][:300]
                kernels = row.get("sdpa_kernels", {})
                row["fused_calls"] = sum(n for k, n in kernels.items() if not k.startswith("math"))
                row["math_calls"] = kernels.get("math (unfused)", 0)
                run.add("sdpa", row)
                model.zero_grad(set_to_none=True)
    rows = run.section("sdpa")["rows"]
    print("\n## SDPA kernels for `regular` attention (profiler op counts)\n")
    print(
        format_table(
            [
                {**r, "kernels": ", ".join(f"{k} x{n}" for k, n in r.get("sdpa_kernels", {}).items())}
                for r in rows
            ],
            [
                ("dtype", "dtype", ""),
                ("autograd", "autograd", ""),
                ("allowed", "allowed", ""),
                ("ok", "ok", ""),
                ("attention calls", "attention_calls", ""),
                ("kernels", "kernels", ""),
                ("math", "math_calls", ""),
            ],
        )  # fmt: skip
    )
    if not run.cuda:
        print("(CPU: inference on short sequences takes the explicit-product fast path, not SDPA, by design)")


# -- 2. bf16 autocast against float32; FAVOR+ stays float32 -----------------------------------------------
MATMUL_OPS = ("mm", "bmm", "addmm", "baddbmm", "matmul", "_scaled_dot_product")


@contextlib.contextmanager
def record_matmul_dtypes(model: torch.nn.Module) -> Iterator[list[str]]:
    """Dtypes of every matmul-family aten op run inside the ``attend`` of the FAVOR+ layers of ``model``."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from fast_timesformer.attention.performer import PerformerAttention

    seen: list[str] = []
    inside = [False]

    class Recorder(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
            out = func(*args, **(kwargs or {}))
            if inside[0] and func.__name__.split(".")[0].startswith(MATMUL_OPS):
                first = out[0] if isinstance(out, tuple | list) else out
                seen.append(str(first.dtype).removeprefix("torch."))
            return out

    patched = []
    for module in model.modules():
        if isinstance(module, PerformerAttention):
            original = module.attend

            def attend(*a: Any, _original: Callable = original, **k: Any) -> Any:
                inside[0] = True
                try:
                    return _original(*a, **k)
                finally:
                    inside[0] = False

            module.attend = attend  # instance attribute: shadows the method for this check only
            patched.append(module)
    try:
        with Recorder():
            yield seen
    finally:
        for module in patched:
            del module.attend


def section_autocast(run: Run) -> None:
    work = workloads(run)[0]
    clip = video(run, work, 8 if run.cuda else 4)
    for name in MECHANISMS:
        model = build_ours(run, work, name).eval()
        with torch.no_grad():
            reference = model(clip).float()
            with autocast(run, torch.bfloat16):
                if name == "performer":
                    with record_matmul_dtypes(model) as favor_dtypes:
                        low = model(clip)
                else:
                    favor_dtypes = []
                    low = model(clip)
        low = low.float()
        row = {
            "attention": name,
            "batch": clip.shape[0],
            "logits_dtype_under_autocast": "bfloat16 (cast to float32 for comparison)",
            "top1_agreement": float((low.argmax(-1) == reference.argmax(-1)).float().mean()),
            "relative_error": float((low - reference).norm() / reference.norm()),
        }
        if name == "performer":
            row["favor_matmuls"] = len(favor_dtypes)
            row["favor_matmul_dtypes"] = sorted(set(favor_dtypes))
            row["favor_float32"] = bool(favor_dtypes) and set(favor_dtypes) == {"float32"}
        run.add("autocast", row)
        del model
    print("\n## bf16 autocast vs float32 logits (random init, random clips)\n")
    print(
        format_table(
            run.section("autocast")["rows"],
            [
                ("attention", "attention", ""),
                ("top-1 agreement", "top1_agreement", ".1%"),
                ("relative error", "relative_error", ".2e"),
                ("FAVOR+ matmuls float32", "favor_float32", ""),
            ],
        )  # fmt: skip
    )


# -- 3. torch.compile == eager -----------------------------------------------------------------------------
def section_compile(run: Run) -> None:
    work = workloads(run)[0]
    clip = video(run, work, 2)
    for name in MECHANISMS:
        model = build_ours(run, work, name).eval()
        compiled = torch.compile(model, backend=run.args.compile_backend)
        start = time.perf_counter()
        with torch.no_grad():
            eager = model(clip)
            fast = compiled(clip)
        seconds = time.perf_counter() - start
        diff = float((fast - eager).abs().max())
        rel = float((fast - eager).norm() / eager.norm())
        run.add(
            "compile",
            {
                "attention": name,
                "backend": run.args.compile_backend,
                "max_abs_diff": diff,
                "relative_error": rel,
                "equal_within_1e-4": rel < 1e-4,
                "first_call_s": round(seconds, 2),
            },
        )
        del model, compiled
        torch._dynamo.reset()
    print("\n## torch.compile vs eager (float32 inference)\n")
    print(
        format_table(
            run.section("compile")["rows"],
            [
                ("attention", "attention", ""),
                ("backend", "backend", ""),
                ("max |diff|", "max_abs_diff", ".2e"),
                ("relative error", "relative_error", ".2e"),
                ("ok", "equal_within_1e-4", ""),
                ("compile + first call (s)", "first_call_s", ""),
            ],
        )  # fmt: skip
    )


# -- 4. training step with MFU -------------------------------------------------------------------------------
def matmul_probe_tflops(run: Run) -> float:
    """The device's bf16 matmul rate measured now: the fastest of several square matmuls (TFLOP/s)."""
    n = 8192 if run.cuda else 256
    a = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=run.device, dtype=torch.bfloat16)
    times = time_calls(run, lambda: a @ b, warmup=3, repeats=10 if run.cuda else 3)
    return 2 * n**3 / min(times) / 1e12


def count_flops(fn: Callable[[], Any]) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def section_train(run: Run) -> None:
    probe = matmul_probe_tflops(run)
    datasheet = datasheet_peak(run.card) if run.cuda else None
    section = run.section("train")
    section["bf16_matmul_probe_tflops"] = probe
    section["datasheet_bf16_tflops"] = datasheet
    work = workloads(run)[0]
    batch = 32 if run.cuda else 2
    for compiled in (False, True):
        for checkpointing in (False, True):
            if run.over_budget(reserve_s=150):
                run.add(
                    "train", {"compile": compiled, "grad_checkpointing": checkpointing, "skipped": "budget"}
                )
                continue
            row: dict[str, Any] = {"compile": compiled, "grad_checkpointing": checkpointing, "batch": batch}
            try:
                row.update(train_row(run, work, batch, compiled, checkpointing, probe, datasheet))
            except Exception as error:  # an OOM or compiler failure is a result, not the end of the run
                row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
            run.add("train", row)
            reset_memory(run)
            torch._dynamo.reset()
    print(f"\n## Training step, base 8x224, bf16 autocast, AdamW (probe {probe:.1f} TFLOP/s bf16"
          f"{f', datasheet {datasheet:.0f}' if datasheet else ''})\n")  # fmt: skip
    print(
        format_table(
            section["rows"],
            [
                ("compile", "compile", ""),
                ("checkpointing", "grad_checkpointing", ""),
                ("batch", "batch", ""),
                ("step (ms)", "step_ms", ".1f"),
                ("clips/s", "clips_per_s", ".1f"),
                ("peak MiB", "peak_mib", ".0f"),
                ("MFU (probe)", "mfu_probe", ".1%"),
                ("MFU (datasheet)", "mfu_datasheet", ".1%"),
                ("error", "error", ""),
            ],
        )  # fmt: skip
    )


def train_row(
    run: Run,
    work: Workload,
    batch: int,
    compiled: bool,
    checkpointing: bool,
    probe: float,
    datasheet: float | None,
) -> dict[str, Any]:
    model = build_ours(run, work, "regular").train()
    model.set_grad_checkpointing(checkpointing)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=run.cuda)
    forward = torch.compile(model, backend=run.args.compile_backend) if compiled else model
    clip = video(run, work, batch)
    labels = torch.randint(0, model.num_classes, (batch,), device=run.device)

    def step() -> None:
        with autocast(run, torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(forward(clip), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    start = time.perf_counter()
    step()  # compilation happens here, outside the timing
    first = time.perf_counter() - start
    flops = count_flops(lambda: step_without_update(model, clip, labels, run))
    reset_memory(run)
    times = time_calls(run, step, warmup=run.args.warmup, repeats=run.args.repeats)
    seconds = statistics.median(times)
    achieved = flops / seconds / 1e12
    return {
        "first_step_s": round(first, 2),
        "step_ms": seconds * 1e3,
        "clips_per_s": batch / seconds,
        "peak_mib": peak_mib(run),
        "tflops_per_step": flops / 1e12,
        "achieved_tflops": achieved,
        "mfu_probe": achieved / probe,
        "mfu_datasheet": achieved / datasheet if datasheet else None,
        "flops_note": "forward + backward, eager model, FlopCounterMode (recomputation not counted)",
        "all_ms": [round(t * 1e3, 3) for t in times],
    }


def step_without_update(model: torch.nn.Module, clip: torch.Tensor, labels: torch.Tensor, run: Run) -> None:
    with autocast(run, torch.bfloat16):
        loss = torch.nn.functional.cross_entropy(model(clip), labels)
    loss.backward()
    model.zero_grad(set_to_none=True)


# -- 5. inference throughput and memory -------------------------------------------------------------------
def section_inference(run: Run) -> None:
    section = run.section("inference")
    section["lucidrains"] = lucidrains_missing() or "installed"
    for work in workloads(run):
        for dtype in (torch.bfloat16, torch.float32):
            for name, build in contenders(run, work).items():
                row: dict[str, Any] = {"workload": work.name, "dtype": str(dtype).removeprefix("torch."),
                                       "contender": name}  # fmt: skip
                if run.over_budget(reserve_s=60):
                    run.add("inference", {**row, "skipped": "budget"})
                    continue
                row.update(inference_row(run, work, dtype, build))
                run.add("inference", row)
                reset_memory(run)
    rows = section["rows"]
    for row in rows:  # ratios against transformers in the same workload and dtype
        hf = next((r for r in rows if r["contender"] == "transformers" and r["workload"] == row["workload"]
                   and r["dtype"] == row["dtype"] and r.get("clips_per_s")), None)  # fmt: skip
        if hf and row.get("clips_per_s"):
            row["vs_transformers"] = row["clips_per_s"] / hf["clips_per_s"]
    run.save()
    print("\n## Inference: clips/s and peak memory\n")
    if section["lucidrains"] != "installed":
        print(f"lucidrains column skipped: {section['lucidrains']}\n")
    print(
        format_table(
            rows,
            [
                ("workload", "workload", ""),
                ("dtype", "dtype", ""),
                ("contender", "contender", ""),
                ("batch", "batch", ""),
                ("clips/s", "clips_per_s", ".1f"),
                ("x transformers", "vs_transformers", ".2f"),
                ("peak MiB", "peak_mib", ".0f"),
                ("note", "error", ""),
            ],
        )  # fmt: skip
    )


def inference_row(
    run: Run, work: Workload, dtype: torch.dtype, build: Callable[[], Callable[[torch.Tensor], torch.Tensor]]
) -> dict[str, Any]:
    try:
        forward = build()
    except Exception as error:
        return {"error": f"build failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}"}
    if isinstance(forward, torch.nn.Module):
        forward.eval()
    batch = work.batch
    while batch >= 1:
        clip = video(run, work, batch)
        try:

            def call(clip: torch.Tensor = clip) -> None:
                with torch.no_grad(), autocast(run, dtype):
                    forward(clip)

            reset_memory(run)
            call()
            peak = peak_mib(run)
            times = time_calls(run, call, warmup=run.args.warmup, repeats=run.args.repeats)
            seconds = statistics.median(times)
            return {"batch": batch, "ms": seconds * 1e3, "clips_per_s": batch / seconds, "peak_mib": peak}
        except Exception as error:
            if not is_oom(error):
                return {
                    "batch": batch,
                    "error": f"{type(error).__name__}: {str(error).splitlines()[0][:200]}",
                }
            del clip
            reset_memory(run)
            batch //= 2
    return {"batch": 0, "error": "out of memory at batch 1"}


# -- 6. Lightning fit, plain and DDP ------------------------------------------------------------------------
def section_fit(run: Run) -> None:
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.strategies import DDPStrategy

    from fast_timesformer.training import VideoClassifier
    from fast_timesformer.training.demo import DemoRecipe, make_data, quiet_lightning

    recipe = DemoRecipe(num_train=32, num_val=16, batch_size=8)
    accelerator = "gpu" if run.cuda else "cpu"
    with tempfile.TemporaryDirectory() as root:
        datamodule = make_data(root, recipe, seed=0)
        for strategy in ("auto", "ddp"):
            row: dict[str, Any] = {
                "accelerator": accelerator,
                "precision": "bf16-mixed",
                "strategy": strategy,
            }
            if strategy == "ddp":
                backend = "nccl" if run.cuda else "gloo"
                row["process_group_backend"] = backend
                chosen: Any = DDPStrategy(process_group_backend=backend)
            else:
                chosen = "auto"
            seed_everything(0, verbose=False)
            model = VideoClassifier(preset=recipe.preset, model_kwargs=recipe.model_kwargs, num_classes=4,
                                    num_frames=recipe.num_frames, image_size=recipe.size, lr=recipe.lr)  # fmt: skip
            trainer = Trainer(
                accelerator=accelerator, devices=1, strategy=chosen, precision="bf16-mixed", max_epochs=1,
                limit_train_batches=4, limit_val_batches=1, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, default_root_dir=root,
            )  # fmt: skip
            start = time.perf_counter()
            try:
                with quiet_lightning():
                    trainer.fit(model, datamodule)
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
                row.update(ok=trainer.global_step == 4, steps=trainer.global_step, metrics=metrics)
                row["loss_finite"] = all(v == v and abs(v) != float("inf") for v in metrics.values())
            except Exception as error:
                row.update(ok=False, error=f"{type(error).__name__}: {str(error).splitlines()[0][:300]}")
                traceback.print_exc()
            row["seconds"] = round(time.perf_counter() - start, 2)
            run.add("fit", row)
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.destroy_process_group()
    print("\n## Lightning fit (VideoClassifier on the demo's encoded videos, 4 steps)\n")
    print(
        format_table(
            run.section("fit")["rows"],
            [
                ("accelerator", "accelerator", ""),
                ("precision", "precision", ""),
                ("strategy", "strategy", ""),
                ("steps", "steps", ""),
                ("ok", "ok", ""),
                ("seconds", "seconds", ""),
                ("error", "error", ""),
            ],
        )  # fmt: skip
    )


# -- main ----------------------------------------------------------------------------------------------------
SECTIONS: dict[str, Callable[[Run], None]] = {
    "sdpa": section_sdpa,
    "autocast": section_autocast,
    "compile": section_compile,
    "train": section_train,
    "inference": section_inference,
    "fit": section_fit,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny models and 1 repeat: the code paths only")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls (default 3; quick 0)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (default 10; quick 1)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="soft limit on the run's length")
    parser.add_argument("--compile-backend", default=None, help="torch.compile backend (default inductor; "
                        "eager (Dynamo capture only) with --device cpu --quick: no C++ compiler needed)")  # fmt: skip
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset to run")
    parser.add_argument(
        "--out", default=None, help="results file (default benchmarks/results/gpu_<card>.json)"
    )
    args = parser.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.quick else 3)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 10)
    if args.compile_backend is None:
        args.compile_backend = "eager" if args.quick and args.device == "cpu" else "inductor"
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {list(SECTIONS)}")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error("no CUDA device visible to torch; pass --device cpu --quick to test the script on a CPU")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    run = Run(args)
    if run.cuda:
        torch.backends.cuda.matmul.allow_tf32 = False  # float32 rows are true float32
    print(f"device: {run.card}; results: {run.path}", flush=True)
    for name in args.sections.split(","):
        if run.over_budget(reserve_s=0 if name == "fit" else 30):
            run.section(name)["skipped"] = f"budget of {args.budget_s:.0f} s spent"
            run.save()
            continue
        start = time.perf_counter()
        try:
            SECTIONS[name](run)
        except Exception as error:  # keep going: one broken section must not hide the others
            traceback.print_exc()
            run.section(name)["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
        run.section(name)["seconds"] = round(time.perf_counter() - start, 1)
        run.save()
        print(f"[{name}: {time.perf_counter() - start:.1f} s, total {run.elapsed():.0f} s]", flush=True)
    print(f"\nwrote {run.path}")
    return run.doc


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
