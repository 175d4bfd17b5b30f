"""Which torch devices this machine has, and a clear error for one it lacks.

``torch.device("cuda")`` succeeds everywhere; the failure comes later, at the first tensor moved there,
as ``AssertionError: Torch not compiled with CUDA enabled`` or a driver message. Every command that takes
``--device`` resolves it here first, so the user reads which device is missing and which ones exist.
"""

from __future__ import annotations

import torch

from fast_timesformer.errors import OptionError

#: Device types the option accepts; anything else is a typo.
KNOWN_TYPES = ("cpu", "cuda", "mps", "xpu")


def available_devices() -> list[str]:
    """The devices this process can use, e.g. ``["cpu", "cuda:0", "cuda:1"]``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        found += [f"xpu:{i}" for i in range(xpu.device_count())]
    return found


def resolve_device(name: str | torch.device, *, option: str = "--device") -> torch.device:
    """``name`` as a torch device, checked to exist on this machine.

    Raises :class:`~fast_timesformer.errors.OptionError` naming the option, the value and the devices
    that exist (a CPU-only torch build is named as such).
    """
    if isinstance(name, torch.device):
        device = name
    else:
        try:
            device = torch.device(str(name).strip())
        except (RuntimeError, ValueError):
            device = None
        if device is None or device.type not in KNOWN_TYPES:
            raise OptionError(
                f"{option} {name!r} is not a device; expected one of {', '.join(KNOWN_TYPES)} (optionally "
                f"with an index, e.g. cuda:1); this machine has: {', '.join(available_devices())}"
            )
    have = available_devices()
    if device.type == "cpu":
        return device
    if device.type == "cuda" and not torch.cuda.is_available():
        why = (
            "this torch build has no CUDA support (a CPU-only wheel)"
            if torch.version.cuda is None
            else "no CUDA GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)"
        )
        raise OptionError(f"{option} {name!r}: {why}; this machine has: {', '.join(have)}")
    index = device.index
    wanted = f"{device.type}:{index}" if index is not None else device.type
    if not any(d == wanted or d.split(":")[0] == wanted for d in have):
        raise OptionError(f"{option} {name!r} is not available; this machine has: {', '.join(have)}")
    return device


__all__ = ["KNOWN_TYPES", "available_devices", "resolve_device"]
