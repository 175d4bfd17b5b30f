"""Run folders: what ``fit`` checks before it writes into one, so that no run is lost or mixed with another.

A run folder (``--trainer.default_root_dir``) holds ``config.yaml``, ``metrics.csv`` and
``checkpoints/{best,last}.ckpt``. Before a ``fit`` starts, :func:`prepare_fit` decides what the folder is:

* **resumed** (``--ckpt_path last`` or a path): the checkpoint is read first with the safe reader
  (``weights_only``, memory-mapped, so a corrupt, empty or malicious file is a one-line
  :class:`~fast_timesformer.errors.CheckpointError` and no second copy is held), optimizer options that a
  resumed run would silently ignore (its optimizer and schedule come back from the checkpoint) are refused
  when they differ from the run's, and the rows of ``metrics.csv`` logged *after* that checkpoint (a run
  killed between two saves) are dropped, since the resumed run logs those steps again;
* **new**, into a folder that already holds checkpoints: refused, unless ``--overwrite`` is given, which
  removes that run's checkpoints, metrics and config first (nothing is overwritten without being asked);
* **new**, into a folder with a ``config.yaml`` / ``metrics.csv`` but no checkpoint (a run that failed
  before its first save, e.g. a wrong option): those leftovers are removed, so the corrected rerun starts
  clean instead of meeting Lightning's "config.yaml exists" error.

In every case the temporary files of checkpoint saves that were killed halfway (``.last.ckpt.*.tmp``, up to
a checkpoint's size each; see :func:`~fast_timesformer.checkpoints.atomic_write`) are removed.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fast_timesformer.checkpoints.files import CheckpointError, read_torch_file
from fast_timesformer.errors import OptionError

logger = logging.getLogger(__name__)

#: Keywords that ``--ckpt_path`` takes besides a path (Lightning's).
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")

#: ``--model.*`` options a resumed run cannot change: the optimizer state and the schedule are restored from
#: the checkpoint, so a new value would be written into config.yaml and silently ignored.
RESUME_FIXED = (
    "optimizer",
    "lr",
    "weight_decay",
    "momentum",
    "betas",
    "scheduler",
    "warmup_epochs",
    "min_lr_ratio",
    "lr_milestones",
    "lr_gamma",
)

#: What a run folder holds besides its checkpoints (removed with them by ``--overwrite``).
RUN_FILES = ("config.yaml", "metrics.csv", "hparams.yaml")


def is_global_zero() -> bool:
    """True in the process that owns the run folder (rank 0 of node 0; DDP's other ranks only read)."""
    return all(int(os.environ.get(name, "0") or 0) == 0 for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def stale_temporaries(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Leftovers of killed atomic checkpoint saves in ``checkpoint_dir`` (``.NAME.ckpt.XXXX.tmp``)."""
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return []
    return sorted(
        path for path in folder.iterdir() if path.name.startswith(".") and path.name.endswith(".tmp")
    )


def remove_stale_temporaries(checkpoint_dir: str | os.PathLike) -> int:
    """Remove :func:`stale_temporaries`; returns the bytes freed (logged when anything was removed)."""
    freed = 0
    removed = 0
    for path in stale_temporaries(checkpoint_dir):
        try:
            size = path.stat().st_size
            path.unlink()
        except OSError:
            continue  # gone already, or not ours to remove: leave it
        freed += size
        removed += 1
    if removed:
        logger.warning(
            "removed %d temporary file(s) of interrupted checkpoint saves in %s (%.1f MB)",
            removed,
            checkpoint_dir,
            freed / 1e6,
        )
    return freed


def checkpoints_in(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """The ``*.ckpt`` files of a run's checkpoint folder."""
    folder = Path(checkpoint_dir)
    return sorted(folder.glob("*.ckpt")) if folder.is_dir() else []


def read_training_checkpoint(path: str | os.PathLike, *, option: str = "--ckpt_path") -> dict[str, Any]:
    """A Lightning checkpoint read safely (``weights_only``, memory-mapped), or a one-line error.

    Raises :class:`~fast_timesformer.errors.OptionError` for a path that is not a file and
    :class:`~fast_timesformer.errors.CheckpointError` for an unreadable, empty, truncated or malicious file
    or one that is not a training checkpoint (a weights folder's ``model.safetensors``, a bare state dict).
    """
    file = Path(path)
    if not file.is_file():
        what = "a folder" if file.is_dir() else "no such file"
        raise OptionError(
            f"{option} {path}: {what}; give a .ckpt written by `fast-timesformer fit` (e.g. RUN/checkpoints/"
            f"last.ckpt) or `{option} last` to resume the run in --trainer.default_root_dir"
        )
    if file.stat().st_size == 0:
        raise CheckpointError(file, "empty file (0 bytes)", "use another checkpoint, e.g. best.ckpt")
    checkpoint = read_torch_file(file)
    if not isinstance(checkpoint, Mapping) or not isinstance(checkpoint.get("state_dict"), Mapping):
        raise CheckpointError(
            file,
            "not a training checkpoint (no Lightning state_dict)",
            "give a .ckpt written by `fast-timesformer fit`; for a weights folder or an official / Hugging "
            "Face checkpoint use --model.pretrained",
        )
    return dict(checkpoint)


def changed_options(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``--model.NAME: saved -> current`` for every :data:`RESUME_FIXED` option that differs."""
    changes = []
    for name in RESUME_FIXED:
        if name in saved and name in current and not _same(saved[name], current[name]):
            changes.append(f"--model.{name} {current[name]!r} (the run has {saved[name]!r})")
    return changes


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=0.0)
    return a == b


def truncate_metrics(path: str | os.PathLike, step: int) -> int:
    """Drop the rows of ``metrics.csv`` logged at ``step`` or later; returns how many were dropped.

    Lightning's CSV logger writes ``step = global_step - 1`` for the last optimizer step before a save, and a
    checkpoint holds the ``global_step`` it was saved at: rows with ``step >= global_step`` were logged
    after it and a resumed run logs them again. The file is replaced atomically.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    text = path.read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows or "step" not in rows[0]:
        return 0
    column = rows[0].index("step")
    kept = [rows[0]]
    for row in rows[1:]:
        try:
            logged = int(float(row[column]))
        except (IndexError, ValueError):
            logged = None  # a torn last line of a killed write: drop it too
        if logged is not None and logged < step:
            kept.append(row)
    dropped = len(rows) - len(kept)
    if dropped:
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows(kept)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(out.getvalue(), encoding="utf-8")
        os.replace(tmp, path)
        logger.warning(
            "%s: dropped %d row(s) logged after the checkpoint (step >= %d); the resumed run logs them again",
            path,
            dropped,
            step,
        )
    return dropped


def prepare_fit(
    *,
    root: str | os.PathLike,
    checkpoint_dir: str | os.PathLike,
    ckpt_path: str | None,
    overwrite: bool,
    hyperparameters: Mapping[str, Any],
) -> dict[str, Any] | None:
    """Check and tidy a run folder before ``fit`` writes into it (see the module docstring).

    ``ckpt_path`` is what the user passed (None, a keyword or a path); ``hyperparameters`` are the
    LightningModule's. Returns the checkpoint that will be resumed (read safely), or None for a new run.
    Only the process that owns the folder (:func:`is_global_zero`) removes or rewrites files.
    """
    root = Path(root)
    checkpoint_dir = Path(checkpoint_dir)
    owner = is_global_zero()
    if owner:
        remove_stale_temporaries(checkpoint_dir)
    resume = None
    if ckpt_path == "last":
        last = checkpoint_dir / "last.ckpt"
        resume = last if last.is_file() else None
        if resume is None and owner:
            logger.warning("--ckpt_path last: no %s yet, so this is a new run", last)
    elif ckpt_path is not None and ckpt_path not in CKPT_KEYWORDS:
        resume = Path(ckpt_path)
    if resume is not None:
        if overwrite:
            raise OptionError(
                "--overwrite starts a new run and --ckpt_path resumes one: give only one of them"
            )
        checkpoint = read_training_checkpoint(resume)
        changes = changed_options(checkpoint.get("hyper_parameters") or {}, hyperparameters)
        if changes:
            raise OptionError(
                f"resuming {resume}: " + "; ".join(changes) + " would be ignored, because a resumed run "
                "restores its optimizer and learning-rate schedule from the checkpoint. Drop the option "
                "to resume as the run was, or start a new run (another --trainer.default_root_dir) "
                "from these weights with --model.pretrained after `fast-timesformer export`"
            )
        if owner and "global_step" in checkpoint:
            truncate_metrics(root / "metrics.csv", int(checkpoint["global_step"]))
        return checkpoint
    existing = checkpoints_in(checkpoint_dir)
    if existing and not overwrite:
        names = ", ".join(path.name for path in existing[:4]) + (" ..." if len(existing) > 4 else "")
        raise OptionError(
            f"{root} already holds the checkpoints of another run ({names}): resume it with "
            "--ckpt_path last, write the new run elsewhere (--trainer.default_root_dir NEW_DIR), or pass "
            "--overwrite to delete that run and start again"
        )
    if owner:
        leftovers = [root / name for name in RUN_FILES if (root / name).is_file()]
        for path in [*existing, *leftovers]:
            path.unlink()
        if existing:
            logger.warning("--overwrite: removed the earlier run in %s", root)
        elif leftovers:
            logger.warning(
                "removed %s left in %s by a run that saved no checkpoint",
                ", ".join(path.name for path in leftovers),
                root,
            )
    return None


__all__ = [
    "CKPT_KEYWORDS",
    "RESUME_FIXED",
    "RUN_FILES",
    "changed_options",
    "checkpoints_in",
    "is_global_zero",
    "prepare_fit",
    "read_training_checkpoint",
    "remove_stale_temporaries",
    "stale_temporaries",
    "truncate_metrics",
]
