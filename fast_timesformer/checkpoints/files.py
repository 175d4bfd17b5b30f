"""Checkpoint files read without unpickling code, and weight files written atomically.

Reading: safetensors files are validated against their header before a tensor is read; torch files only ever
go through ``torch.load(weights_only=True)``; official / timm / DDP wrappers and prefixes are removed; NaN or
infinite weights are refused. Writing: :func:`atomic_write` (temporary file, fsync, rename, folder fsync)
is the one way this package puts a weights or checkpoint file on disk. Every problem is a
:class:`CheckpointError` naming the file, the problem and the fix.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from fast_timesformer.errors import FastTimeSformerError


class CheckpointError(FastTimeSformerError, ValueError):
    """A checkpoint that cannot be used; the message names the file, the problem and the fix."""

    def __init__(self, file: str | Path, problem: str, fix: str | None = None) -> None:
        self.file, self.problem, self.fix = str(file), problem, fix
        super().__init__(f"{file}: {problem}" + (f". Fix: {fix}" if fix else ""))


# -- reading files without unpickling code ------------------------------------------------------------
_SAFETENSORS_ITEMSIZE = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
    "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1,
}  # fmt: skip
REDOWNLOAD = "download or copy the file again"


def check_safetensors_header(file: Path) -> None:
    """Validate a safetensors header against the file before any tensor is read.

    Catches truncated files and headers whose offsets disagree with the shapes, overlap, leave gaps or point
    outside the file -- the ways a damaged or hostile file could make a reader misbehave.
    """
    size = file.stat().st_size
    with open(file, "rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise CheckpointError(file, f"truncated safetensors file ({size} bytes, no header)", REDOWNLOAD)
        length = int.from_bytes(prefix, "little")
        if length > size - 8:
            raise CheckpointError(
                file, f"truncated safetensors file: the header needs {length} bytes, the file has {size - 8}",
                REDOWNLOAD,
            )  # fmt: skip
        if length > 100_000_000:
            raise CheckpointError(file, f"implausible safetensors header size ({length} bytes)", REDOWNLOAD)
        try:
            header = json.loads(handle.read(length))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(file, f"corrupt safetensors header ({error})", REDOWNLOAD) from None
    if not isinstance(header, dict):
        raise CheckpointError(file, "corrupt safetensors header (not a JSON object)", REDOWNLOAD)
    spans = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
            itemsize = _SAFETENSORS_ITEMSIZE[dtype]
            numel = math.prod(int(s) for s in shape)
            if not all(isinstance(v, int) and v >= 0 for v in (begin, end, *shape)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(
                file, f"corrupt safetensors header entry for tensor {name!r}: {info}", REDOWNLOAD
            ) from None
        if end - begin != numel * itemsize:
            raise CheckpointError(
                file,
                f"inconsistent safetensors header: tensor {name!r} ({dtype}, shape {shape}) needs "
                f"{numel * itemsize} bytes but its data_offsets [{begin}, {end}] span {end - begin}",
                REDOWNLOAD,
            )
        spans.append((begin, end, name))
    spans.sort()
    for (_, previous_end, previous), (begin, _, name) in zip(spans, spans[1:]):
        if begin < previous_end:
            raise CheckpointError(
                file, f"inconsistent safetensors header: the data of tensors {previous!r} and {name!r} overlaps",
                REDOWNLOAD,
            )  # fmt: skip
    position = 0
    for begin, end, name in spans:
        if begin != position:
            raise CheckpointError(
                file, f"inconsistent safetensors header: the data of tensor {name!r} leaves a gap at byte {position}",
                REDOWNLOAD,
            )  # fmt: skip
        position = end
    available = size - 8 - length
    if position > available:
        raise CheckpointError(
            file, f"truncated safetensors file: the header describes {position} bytes of tensor data, the file "
            f"holds {available}", REDOWNLOAD,
        )  # fmt: skip
    if position < available:
        raise CheckpointError(
            file,
            f"inconsistent safetensors header: {available - position} bytes after the last tensor",
            REDOWNLOAD,
        )


def read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    """Load a validated safetensors file (memory-mapped)."""
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise CheckpointError(
            file,
            "reading .safetensors needs the safetensors package",
            "pip install 'fast-timesformer[weights]'",
        ) from None
    check_safetensors_header(file)
    try:
        return load_file(file)
    except Exception as error:  # the library's own validation, after ours
        raise CheckpointError(file, f"unreadable safetensors file ({error})", REDOWNLOAD) from None


def read_torch_file(file: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (no code runs); memory-mapped for zip checkpoints.

    The file is sniffed first, so an empty file, a safetensors file or text gets its own message instead of
    the unpickler's (``EOFError``, ``101``).
    """
    if file.is_file() and file.stat().st_size == 0:
        raise CheckpointError(file, "the file is empty (0 bytes)", REDOWNLOAD)
    magic = _magic(file)
    if _looks_like_safetensors(magic):
        raise CheckpointError(
            file, "a safetensors weights file, not a PyTorch checkpoint",
            "load weights with --weights / --model.pretrained / from_pretrained (a weights folder or this file)",
        )  # fmt: skip
    if not (magic.startswith(b"PK") or magic.startswith(b"\x80")):
        raise CheckpointError(
            file, f"not a checkpoint: unknown file format (starts with {magic[:8]!r})",
            "pass a .safetensors, .pth/.pyth/.bin/.ckpt (torch.save) file or a model folder",
        )  # fmt: skip
    is_zip = magic.startswith(b"PK")
    if is_zip and not zipfile.is_zipfile(file):
        raise CheckpointError(
            file, "truncated or corrupt zip archive (its central directory is missing)", REDOWNLOAD
        )
    try:
        with warnings.catch_warnings():  # "Detected pickle protocol 4 ...": noise before our own message
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(file, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as error:
        text = str(error)
        found = re.search(r"Unsupported (global|operand)[^.\n]*", text)
        reason = found.group(0).strip() if found else (text.strip().splitlines() or [type(error).__name__])[0]
        raise CheckpointError(
            file,
            f"refused to unpickle: the file holds Python objects beyond tensors and plain containers ({reason})",
            "only open checkpoints you trust; if you trust this one, load it yourself and re-save "
            "just its state dict (torch.save(obj['model_state'], path)) or convert it to safetensors",
        ) from None
    except Exception as error:  # noqa: BLE001  garbage bytes reach the unpickler's internals (IndexError ...)
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(file, f"unreadable PyTorch checkpoint ({reason})", REDOWNLOAD) from None


def read_file(file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors of one checkpoint file (wrappers and prefixes removed) and the extras beside them (``cfg``)."""
    if not file.is_file():
        raise CheckpointError(file, "no such file", "check the path")
    if _looks_like_safetensors(_magic(file)):  # anything else, an empty file too, is read_torch_file's
        return read_safetensors(file), {}
    return unwrap_state_dict(read_torch_file(file), file)


def _magic(file: Path) -> bytes:
    with open(file, "rb") as handle:
        return handle.read(16)


def _looks_like_safetensors(magic: bytes) -> bool:
    return len(magic) >= 9 and magic[8:9] == b"{" and int.from_bytes(magic[:8], "little") < 2**40


_WRAPPER_KEYS = ("model_state", "state_dict", "model", "module")
_PREFIXES = ("module.", "_orig_mod.", "model.")  # DDP, torch.compile, the official wrapper (in that order)


def unwrap_state_dict(obj: Any, file: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Find the state dict in a loaded torch object (bare, or under the official/timm/DDP wrapper keys)."""
    extras: dict[str, Any] = {}
    for _ in range(3):
        if not isinstance(obj, Mapping):
            raise CheckpointError(file, f"expected a dict of tensors, found {type(obj).__name__}")
        if isinstance(obj.get("cfg"), str):
            extras["cfg"] = obj["cfg"]
        if obj and all(isinstance(value, torch.Tensor) for value in obj.values()):
            break
        inner = next((key for key in _WRAPPER_KEYS if isinstance(obj.get(key), Mapping)), None)
        if inner is None:
            raise CheckpointError(
                file, f"no state dict found (top-level keys {sorted(map(str, obj))[:12]})",
                f"expected a dict of tensors, or one under {list(_WRAPPER_KEYS)}",
            )  # fmt: skip
        extras.setdefault("wrapper", inner)
        obj = obj[inner]
    state_dict = {}
    for key, value in obj.items():
        for prefix in _PREFIXES:
            key = key.removeprefix(prefix)
        state_dict[key] = value
    return state_dict, extras


def non_finite_tensors(state_dict: Mapping[str, Any]) -> list[str]:
    """Names of the floating-point tensors in ``state_dict`` that hold a NaN or an infinity."""
    return [
        name
        for name, value in state_dict.items()
        if isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not bool(torch.isfinite(value).all())
    ]


def check_finite(state_dict: Mapping[str, torch.Tensor], file: Path) -> None:
    """Refuse NaN or infinite values in any floating-point tensor."""
    bad = non_finite_tensors(state_dict)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise CheckpointError(
            file, f"non-finite weights (NaN or inf) in {len(bad)} tensor(s): {shown}",
            "the training run that wrote it diverged; use an earlier checkpoint",
        )  # fmt: skip


# -- writing files atomically -------------------------------------------------------------------------
def atomic_write(*files: tuple[str | os.PathLike, Callable[[Path], None]]) -> None:
    """Write each ``(path, write)`` through ``write(temporary_path)``, then rename them all into place.

    Each temporary file lies in its target's folder, is flushed to disk and gets ordinary permissions (0666
    minus the umask, as ``open`` gives; ``mkstemp``'s 0600 would hide an exported model from a serving
    process). Only when every file is written are they renamed over their targets, in the order given, and
    the folders synced: a write that fails halfway -- a full disk, a killed job -- leaves the previous files
    intact and loadable.
    """
    staged: list[tuple[Path, Path]] = []
    try:
        for path, write in files:
            path = Path(path)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            staged.append((Path(tmp), path))
            write(Path(tmp))
            os.chmod(tmp, 0o666 & ~_umask())  # after the write: a writer may replace the file it was given
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        for tmp, path in staged:
            os.replace(tmp, path)  # atomic on POSIX and Windows when both are on one filesystem
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    for folder in {path.parent for _, path in staged}:
        fsync_dir(folder)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(directory: str | os.PathLike) -> None:
    """Make renames in ``directory`` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = [
    "REDOWNLOAD",
    "CheckpointError",
    "atomic_write",
    "check_finite",
    "check_safetensors_header",
    "fsync_dir",
    "non_finite_tensors",
    "read_file",
    "read_safetensors",
    "read_torch_file",
    "unwrap_state_dict",
]
