"""bfloat16 on the CPU: whether this processor has bf16 units, and the one warning when it has none.

``fit --trainer.precision bf16-mixed`` on a CPU runs the model under ``torch.autocast("cpu",
dtype=torch.bfloat16)`` (Lightning's MixedPrecision plugin): matmuls and convolutions in bfloat16, weights,
optimizer state and the loss in float32, FAVOR+'s features in float32 (``attention/performer.py`` turns
autocast off there). On a CPU with AVX512-BF16 or AMX that is about 2x faster per optimizer step than float32
(BENCHMARKS.md, "bfloat16 training on the CPU"); on one without, oneDNN emulates bfloat16 and inference was
measured 7x *slower* than float32. :func:`check_cpu_precision` warns once in that case.

Detection reads the processor's flags (``avx512_bf16``, ``amx_bf16`` on x86; ``bf16`` on Arm) from
``/proc/cpuinfo``; ``torch.ops.mkldnn._is_mkldnn_bf16_supported()`` is no help here, since it is true for
any AVX-512 CPU, including the ones that only emulate bfloat16.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

#: /proc/cpuinfo flags that mean native bfloat16 arithmetic.
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


class SlowPrecisionWarning(UserWarning):
    """bfloat16 was asked for on a CPU that would emulate it (slower than float32)."""


@functools.lru_cache(maxsize=1)
def cpu_bf16_units(cpuinfo: str = "/proc/cpuinfo") -> bool | None:
    """True when the CPU has native bfloat16 units, False when it has none, None when it cannot be told."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, Arm
            return any(flag in value.split() for flag in BF16_FLAGS)
    return None


def is_bf16(precision: object) -> bool:
    """Lightning precision values that compute in bfloat16 (``bf16-mixed``, ``bf16-true``, ``bf16``)."""
    return str(precision).startswith("bf16")


_warned: set[str] = set()


def check_cpu_precision(precision: object, device_type: str) -> bool:
    """Warn once per process when bfloat16 is asked for on a CPU without bf16 units; True when it warned."""
    if device_type != "cpu" or not is_bf16(precision) or cpu_bf16_units() is not False:
        return False
    if "cpu-bf16" in _warned:
        return False
    _warned.add("cpu-bf16")
    warnings.warn(
        f"--trainer.precision {precision} on a CPU without bfloat16 units (no avx512_bf16 / amx_bf16 / bf16 "
        "flag in /proc/cpuinfo): oneDNN emulates bfloat16 there, which is slower than float32 (inference "
        "measured 7x slower). Use --trainer.precision 32-true on this machine.",
        SlowPrecisionWarning,
        stacklevel=2,
    )
    return True


__all__ = ["BF16_FLAGS", "SlowPrecisionWarning", "check_cpu_precision", "cpu_bf16_units", "is_bf16"]
