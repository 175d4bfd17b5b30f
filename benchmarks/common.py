"""Shared benchmark machinery: machine facts, interleaved timing, FLOPs, peak memory, results files.

Every benchmark in this folder follows nanoGPT's ``bench.py`` discipline:

- **Warm-up** calls first (allocator, oneDNN primitive caches, lazy initialisation), never timed.
- **Synchronise** before reading the clock (a no-op on CPU; ``torch.cuda.synchronize()`` on a GPU).
- **Interleave** the contenders: repeat r times A, B, C, rotating the order each round, so that a burst of
  load from something else on the machine hits every contender alike; report **medians** and ratios.
- A **derived efficiency number**: FLOPs counted by ``torch.utils.flop_counter.FlopCounterMode`` over the
  measured time, as a fraction of this machine's measured float32 matmul peak (an MFU-style number).

Peak memory on CPU: each configuration runs in a fresh ``multiprocessing`` *spawn* process. After the model
and inputs exist (and one warm-up call), the kernel's high-water mark of resident memory is reset by writing
``5`` to ``/proc/self/clear_refs``; after one measured call ``VmHWM`` minus the resident size before the call
is the peak *extra* memory the call needed (activations, attention matrices, workspaces). Where the kernel
refuses the reset, ``ru_maxrss`` is used instead and the result says so. The child runs with glibc's mmap
threshold pinned at 128 KiB (``MALLOC_MMAP_THRESHOLD_``): otherwise glibc raises it dynamically after the
warm-up call, keeps freed tensors of up to 32 MiB in its heap, and the measured call reuses them without
raising the resident size -- the peak would read as ~0.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"
THREADS = 2  # the project's reference machine has 2 cores; every published number uses 2 threads


# -- machine -------------------------------------------------------------------------------------------
def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    """The vector-ISA flags that decide float32/bf16 speed (AVX2, AVX-512 and its BF16 extension, AMX)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []
    )
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "avx_vnni")
    return [flag for flag in wanted if flag in flags]


def _version(module: str) -> str | None:
    try:
        return __import__(module).__version__
    except Exception:  # not installed, or no __version__
        return None


def machine_info() -> dict[str, Any]:
    """Everything a reader needs to know to compare a number with theirs."""
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        # 1/5/15-minute load averages: above ~2 on this 2-core machine, something else was running.
        "load_average_at_start": _LOAD_AT_START,
        "load_average_at_end": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_busy_fraction_before_start": _BUSY_AT_START,
        "timer": "thread CPU time (1 thread)" if _CLOCK is time.thread_time else "wall clock (perf_counter)",
        "allocator": _ALLOCATOR,
        "allocator_environment": {
            key: value
            for key, value in os.environ.items()
            if key.startswith(("MALLOC_", "THP_", "LD_PRELOAD"))
        },
        "mkldnn_bf16_supported": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "einops": _version("einops"),
        "transformers": _version("transformers"),
        "timesformer_pytorch": _package_version("timesformer-pytorch"),
        "platform": platform.platform(),
    }


def _package_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


_LOAD_AT_START: tuple[float, ...] | None = None


def busy_fraction(seconds: float = 1.0) -> float:
    """Fraction of all CPUs busy (not idle / iowait) over ``seconds``, from /proc/stat; 0.0 if unreadable."""

    def sample() -> tuple[int, int]:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except OSError:
        return 0.0
    return 1.0 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_for_quiet(max_wait_s: float, threshold: float = 0.25) -> float:
    """Wait (up to ``max_wait_s``) until less than ``threshold`` of the CPUs is busy; returns the last reading.

    Timings on a 2-core machine shared with other jobs are meaningless for anything with small kernels: a
    2-thread OpenMP region waits a whole scheduler slice whenever one of its threads is preempted.
    """
    deadline = time.monotonic() + max_wait_s
    busy = busy_fraction()
    while busy >= threshold and time.monotonic() < deadline:
        print(f"  machine {busy:.0%} busy before we start; waiting for it to calm down", flush=True)
        time.sleep(20)
        busy = busy_fraction()
    return busy


def setup(threads: int = THREADS, seed: int = 0) -> None:
    """Pin intra-op threads (and a single inter-op thread), seed torch, note the machine's load."""
    global _LOAD_AT_START
    if _LOAD_AT_START is None and hasattr(os, "getloadavg"):
        _LOAD_AT_START = os.getloadavg()
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set once in this process
        pass
    torch.manual_seed(seed)


# -- timing --------------------------------------------------------------------------------------------
def sync(device: str = "cpu") -> None:
    """Wait for queued device work before reading the clock (CPU work is synchronous)."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()


#: The clock every timing uses: wall time by default; ``--timer cpu`` switches to the calling thread's CPU time.
_CLOCK: Callable[[], float] = time.perf_counter


def time_once(fn: Callable[[], Any], device: str = "cpu") -> float:
    """Seconds for one call of ``fn``, synchronised on both sides."""
    sync(device)
    start = _CLOCK()
    fn()
    sync(device)
    return _CLOCK() - start


def interleaved(
    fns: Mapping[str, Callable[[], Any]], *, warmup: int, repeats: int, device: str = "cpu"
) -> dict[str, list[float]]:
    """Time every contender ``repeats`` times, alternating them (order rotated each round).

    Returns name -> list of seconds. Each contender first gets ``warmup`` untimed calls.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate: no contender always goes first
        for name in order:
            times[name].append(time_once(fns[name], device))
    return times


def _jiffies() -> tuple[int, int]:
    """(busy clock ticks of all CPUs, clock ticks used by this process) from /proc."""
    cpu = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    busy = sum(cpu) - cpu[3] - cpu[4]  # all but idle and iowait
    own = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return busy, int(own[11]) + int(own[12])  # utime + stime, all threads


_TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


def minor_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is missing: not Unix)."""
    try:
        import resource
    except ImportError:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def timed_call(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, float]:
    """(wall seconds of one call, CPU seconds that *other* processes used meanwhile)."""
    busy0, own0 = _jiffies()
    seconds = time_once(fn, device)
    busy1, own1 = _jiffies()
    if _CLOCK is time.thread_time:
        return seconds, 0.0  # CPU time of our only thread: other processes cannot stretch it
    return seconds, max(0, (busy1 - busy0) - (own1 - own0)) * _TICK


def interleaved_clean(
    fns: Mapping[str, Callable[[], Any]],
    *,
    warmup: int,
    repeats: int,
    max_seconds: float,
    device: str = "cpu",
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Like :func:`interleaved`, but calls during which other processes used the CPU are discarded.

    This 2-core machine is shared: a burst of someone else's work during a call stretches it (and a 2-thread
    OpenMP region waits a whole scheduler slice whenever one of its threads is preempted). Each call is
    therefore timed together with the CPU time *other* processes used meanwhile (/proc/stat minus our own
    /proc/self/stat); a call is clean if that is at most 2 clock ticks + 5% of its duration. Rounds continue
    (order rotated) until every contender has ``repeats`` clean calls or ``max_seconds`` have passed. The
    medians then use clean calls only -- or all calls, flagged ``disturbed``, if fewer than ``repeats`` // 2
    + 1 clean ones could be had.
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    samples: dict[str, list[tuple[float, bool]]] = {name: [] for name in names}
    faults: dict[str, list[int]] = {name: [] for name in names}  # minor page faults of each call
    start, rounds = time.monotonic(), 0
    while True:
        order = names[rounds % len(names) :] + names[: rounds % len(names)]
        for name in order:
            faults_before = minor_faults()
            seconds, others = timed_call(fns[name], device)
            faults[name].append(minor_faults() - faults_before)
            samples[name].append((seconds, others <= 2 * _TICK + 0.05 * seconds))
        rounds += 1
        clean = {name: sum(ok for _, ok in samples[name]) for name in names}
        if rounds >= repeats and (min(clean.values()) >= repeats or time.monotonic() - start > max_seconds):
            break
    enough = min(clean.values()) >= repeats // 2 + 1
    times = {name: [s for s, ok in samples[name] if ok or not enough] for name in names}
    info = {
        "rounds": rounds,
        "clean_calls": clean,
        "used": "clean calls" if enough else "all calls (disturbed: too few clean ones)",
        "disturbed": not enough,
        # Fresh pages the kernel had to fault in (and zero) per call, median: allocator behaviour, not compute.
        "page_faults_per_call": {name: int(statistics.median(faults[name])) for name in names},
    }
    return times, info


def summary(seconds: list[float]) -> dict[str, Any]:
    """Median (the number we report) plus the spread, so a disturbed measurement is visible."""
    ordered = sorted(seconds)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return {
        "median_s": statistics.median(ordered),
        "min_s": ordered[0],
        "max_s": ordered[-1],
        "iqr_over_median": (q3 - q1) / statistics.median(ordered) if len(ordered) > 1 else 0.0,
        "repeats": len(ordered),
        "all_s": [round(s, 6) for s in seconds],
    }


# -- FLOPs and the machine's limit ---------------------------------------------------------------------
def count_flops(fn: Callable[[], Any]) -> int:
    """Floating-point operations of one call (multiply and add counted separately: 2 per MAC).

    FlopCounterMode counts matmuls, convolutions and attention kernels; element-wise work (softmax, exp,
    GELU, LayerNorm) is not counted, which is the usual MFU convention.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_flop_formulas()) as counter:
        fn()
    return int(counter.get_total_flops())


def _cpu_sdpa_flop_formulas() -> dict[Any, Callable[..., int]]:
    """FLOP formulas for the CPU flash-attention kernels, which torch 2.13's FlopCounterMode leaves out.

    Without these, exact attention on CPU would count as 0 FLOPs. Same formulas torch uses for the GPU
    kernels: 2 matmuls forward; backward recomputes the scores and does 4 more.
    """
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    aten = torch.ops.aten

    def forward(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    def backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_backward_flop_count(grad_out, query, key, value)

    return {
        aten._scaled_dot_product_flash_attention_for_cpu: forward,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: backward,
    }


def matmul_peak_gflops(
    *, sizes: tuple[int, ...] = (1024, 2048), dtype: torch.dtype = torch.float32, repeats: int = 7
) -> dict[str, Any]:
    """This machine's practical matmul peak: the best median GFLOP/s of square ``a @ b`` over ``sizes``.

    The denominator of every "fraction of peak" number. Measured, not taken from a datasheet: on a shared
    2-core VM the datasheet number is meaningless.
    """
    per_size = {}
    for n in sizes:
        a = torch.randn(n, n, dtype=dtype)
        b = torch.randn(n, n, dtype=dtype)
        out = torch.empty(n, n, dtype=dtype)
        call = lambda a=a, b=b, out=out: torch.mm(a, b, out=out)  # noqa: E731
        times = interleaved({"mm": call}, warmup=2, repeats=repeats)["mm"]
        per_size[n] = 2 * n**3 / statistics.median(times) / 1e9
    return {
        "gflops": max(per_size.values()),
        "per_size_gflops": {str(n): round(v, 1) for n, v in per_size.items()},
        "dtype": str(dtype).replace("torch.", ""),
        "method": f"square torch.mm, sizes {list(sizes)}, median of {repeats} after 2 warm-up, best size",
    }


def matmul_probe(n: int = 2048) -> tuple[Callable[[], Any], int]:
    """A square float32 matmul to time *interleaved with* the contenders, and its FLOPs.

    On a shared machine the available compute drifts; dividing each contender's FLOP/s by the matmul rate
    measured in the same rounds gives a fraction of peak that does not depend on when the peak was measured.
    """
    a, b, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    return (lambda: torch.mm(a, b, out=out)), 2 * n**3


def probe_gflops(probe_seconds: list[float], probe_flops: int) -> float:
    """The machine's matmul rate in a set of rounds: the *fastest* probe call (GFLOP/s).

    The fastest, not the median: this shared VM's rate drifts (turbo, neighbours), and a probe that happens
    to run slow would make every contender look closer to the limit than it is. Against the best rate seen in
    the same rounds, "fraction of peak" errs low, never high.
    """
    return probe_flops / min(probe_seconds) / 1e9


def fraction_of_peak(flops: float, seconds: float, peak_gflops: float) -> float:
    """Achieved FLOP/s over the measured matmul peak."""
    return flops / seconds / (peak_gflops * 1e9)


# -- peak memory (one fresh spawn process per configuration) ------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def hwm_bytes() -> int:
    """Peak resident memory of this process (VmHWM; unlike ru_maxrss, not carried over an exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS counter (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak_memory_here(build: Callable[[], Callable[[], Any]]) -> dict[str, Any]:
    """In the current process: build the call, warm it once, then measure one call's extra peak RSS."""
    fn = build()
    fn()  # warm-up: lazily created buffers and primitive caches are not the call's working memory
    import gc

    gc.collect()
    before = _rss_bytes()
    exact = _reset_hwm()
    maxrss_before = _maxrss_bytes()
    fn()
    if exact:
        peak = hwm_bytes()
        method = "VmHWM after reset (/proc/self/clear_refs=5) minus RSS before the call"
    else:
        peak = max(_maxrss_bytes(), before)
        method = "ru_maxrss minus RSS before the call (lower bound: high-water not resettable)"
        if _maxrss_bytes() == maxrss_before:
            method += "; the call did not raise the process high-water mark"
    return {"peak_extra_bytes": max(peak - before, 0), "rss_before_bytes": before, "method": method}


def _maxrss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _memory_child(queue: Any, build: Callable[..., Callable[[], Any]], arg_list: list, threads: int) -> None:
    setup(threads)
    for index, args in enumerate(arg_list):
        try:
            result = measure_peak_memory_here(lambda args=args: build(*args))
        except BaseException as error:  # e.g. out of memory: report it and go on with the next one
            result = {"error": f"{type(error).__name__}: {error}"}
        queue.put((index, result))
    queue.put(None)


def peak_memory_many(
    build: Callable[..., Callable[[], Any]],
    arg_list: list[tuple],
    *,
    threads: int = THREADS,
    timeout: float = 900,
) -> list[dict[str, Any]]:
    """Extra peak RSS of one call of ``build(*args)()`` for each ``args``, in one fresh spawn process.

    ``build`` must be a module-level function (picklable) that constructs the model and inputs and returns
    the zero-argument call to measure. The configurations run one after the other; the high-water mark is
    reset before each measured call, and what one configuration freed has left the resident set (see the
    module docstring), so they do not disturb each other. ``timeout`` applies to each configuration.
    """
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_memory_child, args=(queue, build, list(arg_list), threads))
    start_memory_child(process)
    results: list[dict[str, Any] | None] = [None] * len(arg_list)
    while True:
        try:
            item = queue.get(timeout=timeout)
        except Exception:  # timeout, or a child that died (e.g. killed for memory)
            break
        if item is None:
            break
        results[item[0]] = item[1]
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
        process.join()
    error = {"error": f"no result from the child process (exit code {process.exitcode})"}
    return [result if result is not None else dict(error) for result in results]


def peak_memory(
    build: Callable[..., Callable[[], Any]], *args: Any, threads: int = THREADS, timeout: float = 900
) -> dict[str, Any]:
    """Extra peak RSS of one call of ``build(*args)()``, measured in a fresh spawn process."""
    return peak_memory_many(build, [args], threads=threads, timeout=timeout)[0]


def start_memory_child(process: Any) -> None:
    """Start a spawn process with glibc's mmap threshold pinned, so freed tensors leave the resident set."""
    saved = {key: os.environ.get(key) for key in _MALLOC_ENV}
    os.environ.update(_MALLOC_ENV)
    try:
        process.start()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024), "MALLOC_TRIM_THRESHOLD_": str(128 * 1024)}


def mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else n_bytes / 2**20


# -- command line and results --------------------------------------------------------------------------
def base_parser(description: str) -> argparse.ArgumentParser:
    """Arguments every benchmark shares."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="smallest configurations, fewer repeats")
    parser.add_argument("--threads", type=int, default=THREADS, help="torch intra-op threads")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per contender")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per contender")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--out", default=None, help="results name (benchmarks/results/NAME.json)")
    parser.add_argument(
        "--timer",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: elapsed time (the default; needs a quiet machine). cpu: CPU time of the calling thread, "
        "with --threads 1 only -- immune to other processes time-sharing the cores",
    )
    parser.add_argument(
        "--max-seconds", type=float, default=None, help="cap on the timing rounds of one configuration"
    )
    parser.add_argument(
        "--allocator",
        choices=("default", "tuned"),
        default="default",
        help="default: glibc as a plain script gets it. tuned: fast_timesformer.inference.tune_allocator() "
        "(what the fast-timesformer command does) -- for every contender alike",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="wait up to S seconds for an idle machine first",
    )
    return parser


def start(args: argparse.Namespace) -> None:
    """Common start of every benchmark: threads, seed, clock, and a note of how busy the machine was."""
    global _CLOCK
    if args.timer == "cpu":
        if args.threads != 1:
            raise SystemExit("--timer cpu measures the calling thread only: use it with --threads 1")
        _CLOCK = time.thread_time
    setup(args.threads)
    global _ALLOCATOR
    if args.allocator == "tuned":
        from fast_timesformer.inference.runtime import tune_allocator

        if not tune_allocator():
            raise SystemExit("--allocator tuned: could not tune this platform's allocator (glibc only)")
    _ALLOCATOR = args.allocator
    global _BUSY_AT_START
    _BUSY_AT_START = wait_for_quiet(args.wait_quiet) if args.wait_quiet else busy_fraction()
    if _BUSY_AT_START > 0.25:
        print(f"WARNING: the machine was {_BUSY_AT_START:.0%} busy before this run; timings will be noisy")


_BUSY_AT_START: float | None = None
_ALLOCATOR = "default"


def results_name(args: argparse.Namespace, default: str) -> str:
    """``--out`` if given, else ``default`` plus a suffix for non-default threads / timer."""
    if args.out:
        return args.out
    suffix = "" if args.threads == THREADS else f"_{args.threads}thread"
    suffix += "_tuned_allocator" if getattr(args, "allocator", "default") == "tuned" else ""
    return default + suffix + ("_cpu" if args.timer == "cpu" else "")


def command_line() -> str:
    """The command that produced a result, as a user would type it."""
    return "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:])


def write_results(name: str, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus machine info and the command) to benchmarks/results/NAME.json."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {"command": command_line(), "machine": machine_info(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return path


def format_table(rows: list[dict[str, Any]], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: columns are (header, key, format spec); missing values print as '-'."""
    header = "| " + " | ".join(title for title, _, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for row in rows:
        cells = []
        for _, key, spec in columns:
            value = row.get(key)
            cells.append("-" if value is None else format(value, spec) if spec else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
