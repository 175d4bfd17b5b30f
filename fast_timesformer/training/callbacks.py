"""Training safety: atomic, finite checkpoints and the error raised when the loss stops being finite.

* :class:`RunCheckpoint` is Lightning's ``ModelCheckpoint`` with two fixes: ``last.ckpt`` is rewritten at
  every save point (Lightning 2.6 writes it only when the monitored metric improved, so ``--ckpt_path last``
  could silently go back several epochs), and ``fast_dev_run`` writes nothing.
* :class:`RunCSVLogger` is Lightning's ``CSVLogger`` that continues an existing ``metrics.csv`` when a run
  is resumed (Lightning's deletes it), so the training curves of a resumed run are complete.
* :class:`AtomicCheckpointIO` is a Lightning ``CheckpointIO`` plugin. Every checkpoint (``last.ckpt``, the
  best one, ``trainer.save_checkpoint``) is written to a temporary file in the same folder, flushed to
  disk and then renamed over the target, so a write that fails halfway -- a full disk, a killed job --
  leaves the previous checkpoint intact and loadable; a failed write is a one-line
  :class:`CheckpointWriteError` naming the path and the free space. It refuses to write weights that are
  NaN or infinite. Loading uses ``torch.load(weights_only=True)`` unless the caller explicitly asks
  otherwise, and a bad file is a one-line ``CheckpointError``.
* :class:`NonFiniteLossError` is what :class:`~fast_timesformer.training.VideoClassifier` raises when a
  training loss is NaN or infinite, before the backward pass, so no bad step reaches the weights.

The ``fast-timesformer`` command installs the plugin by default; with the Python API pass
``Trainer(plugins=[AtomicCheckpointIO()])``.
"""

from __future__ import annotations

import os
import pickle
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.plugins.io import TorchCheckpointIO

from fast_timesformer.checkpoints import CheckpointError, atomic_write, non_finite_tensors
from fast_timesformer.checkpoints.files import REDOWNLOAD, read_torch_file
from fast_timesformer.errors import FastTimeSformerError


class NonFiniteLossError(FastTimeSformerError, RuntimeError):
    """The training loss became NaN or infinite; training stopped before the bad step was applied."""


class NonFiniteWeightsError(FastTimeSformerError, RuntimeError):
    """A checkpoint was about to be written with NaN or infinite weights."""


class CheckpointWriteError(FastTimeSformerError, OSError):
    """A checkpoint could not be written (full disk, no permission); the previous file at its path is kept."""

    def __init__(self, path: str, folder: str, error: BaseException) -> None:
        reason = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        try:
            free = f"{shutil.disk_usage(folder).free / 1e6:.0f} MB free there"
        except OSError:
            free = "free space unknown"
        super().__init__(
            f"could not write checkpoint {path} ({reason}; {free}). The previous checkpoint at that path is "
            f"kept and loadable; free disk space or point --trainer.default_root_dir elsewhere, then resume "
            f"with --ckpt_path last"
        )


class RunCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that keeps ``last.ckpt`` current whether or not the monitored metric improved.

    Takes exactly ``ModelCheckpoint``'s arguments (``monitor``, ``mode``, ``filename``, ``save_last`` ...).
    """

    _last_written_step = -1

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        # A multi-label model logs val/mAP, not val/top1: follow it unless the user chose a monitor.
        if getattr(pl_module, "multilabel", False) and self.monitor == "val/top1":
            self.monitor = "val/mAP"
        super().setup(trainer, pl_module, stage)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.fast_dev_run:  # Lightning 2.6 would write last.ckpt even for a fast_dev_run
            super().on_train_end(trainer, pl_module)

    def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, torch.Tensor]) -> None:
        super()._save_topk_checkpoint(trainer, monitor_candidates)
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, monitor_candidates)  # no new best: still record progress

    def _save_last_checkpoint(self, trainer: Any, monitor_candidates: dict[str, torch.Tensor]) -> None:
        if self._last_written_step == trainer.global_step:
            return  # written a moment ago by _save_topk_checkpoint
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step


class RunCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to the ``metrics.csv`` already in its folder instead of deleting it."""

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        path = os.path.join(self.log_dir, "metrics.csv")
        previous = None
        if os.path.isfile(path):
            with open(path, newline="", encoding="utf-8") as file:
                previous = file.read()
        experiment = super().experiment  # Lightning's writer removes the file here
        if previous:
            with open(path, "w", newline="", encoding="utf-8") as file:
                file.write(previous)
            header = previous.splitlines()[0].split(",")
            experiment.metrics_keys = sorted(set(experiment.metrics_keys) | set(header))
        return experiment


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write checkpoints atomically (temporary file + fsync + rename) and refuse non-finite weights."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Save ``checkpoint`` to ``path``; the previous file at ``path`` survives any failure."""
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        bad = non_finite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteWeightsError(
                f"refusing to write checkpoint {path}: {len(bad)} weight tensor(s) contain NaN or inf "
                f"(first: {bad[0]}). The previous checkpoint is kept; lower the learning rate or enable "
                "gradient clipping (--trainer.gradient_clip_val 1.0)."
            )
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(folder, exist_ok=True)
            atomic_write((path, lambda tmp: _torch_save(checkpoint, tmp)))
        except (OSError, RuntimeError) as error:  # a full disk: torch's "unexpected pos" RuntimeError
            raise CheckpointWriteError(path, folder, error) from None

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | None = lambda storage, loc: storage,
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        """Load a checkpoint; ``weights_only`` defaults to True (no arbitrary code from pickles).

        An unreadable, empty, truncated or malicious file raises a one-line
        :class:`~fast_timesformer.checkpoints.CheckpointError` naming it (never an unpickling traceback).
        """
        try:
            return super().load_checkpoint(
                path, map_location=map_location, weights_only=weights_only is not False
            )
        except FileNotFoundError:
            raise CheckpointError(path, "no such file", "check the path (or use --ckpt_path last)") from None
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile):
            if isinstance(path, (str, os.PathLike)) and os.path.isfile(path):
                read_torch_file(Path(path))  # raises the reader's precise CheckpointError
            raise CheckpointError(path, "unreadable PyTorch checkpoint", REDOWNLOAD) from None


def _torch_save(checkpoint: dict[str, Any], path: str | os.PathLike) -> None:
    with open(path, "wb") as file:
        torch.save(checkpoint, file)


__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "RunCSVLogger",
    "RunCheckpoint",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
]
