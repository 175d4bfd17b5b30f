"""``fast-timesformer fit / validate / test / predict``: LightningCLI over the training module and datamodule.

LightningCLI builds the options from the typed constructors of
:class:`~fast_timesformer.training.VideoClassifier` (``--model.*``),
:class:`~fast_timesformer.training.VideoDataModule` (``--data.*``), the Trainer (``--trainer.*``) and the
checkpoint callback (``--checkpoint.*``), so the command line and the Python API cannot drift. What this file
adds is the run-folder layout: one folder per run, no ``version_N``, atomic checkpoints, and the checks of
:mod:`fast_timesformer.training.runs` before a ``fit`` writes anything (no run is overwritten without
``--overwrite``; ``--ckpt_path`` files read safely; a bad device or option is one line).
"""

from __future__ import annotations

import os
from typing import Any

COMMANDS = ("fit", "validate", "test", "predict")


def run(args: list[str] | None) -> int:
    """Run LightningCLI on ``args`` (None: read ``sys.argv``, as a console script must)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import CheckpointIO

    from fast_timesformer.errors import OptionError
    from fast_timesformer.training import (
        AtomicCheckpointIO,
        RunCheckpoint,
        RunCSVLogger,
        VideoClassifier,
        VideoDataModule,
    )
    from fast_timesformer.training.runs import CKPT_KEYWORDS, prepare_fit, read_training_checkpoint

    class VideoCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument(
                "--overwrite",
                type=bool,
                default=False,
                help="fit only: delete the run already in --trainer.default_root_dir (its checkpoints, "
                "metrics and config) and start a new one there",
            )
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.num_frames", "model.num_frames")
            parser.link_arguments("data.crop_size", "model.image_size")
            # --model.task multilabel reads label lists and gives multi-hot targets (--data.multilabel)
            parser.link_arguments("model.task", "data.multilabel", compute_fn=_is_multilabel)
            parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/top1",
                    "checkpoint.mode": "max",
                    "checkpoint.filename": "best",  # one best.ckpt, replaced when a better epoch comes
                    "checkpoint.save_last": True,
                    "checkpoint.save_top_k": 1,
                    "checkpoint.auto_insert_metric_name": False,
                    "checkpoint.enable_version_counter": False,  # always last.ckpt / best.ckpt, even in a moved run
                }
            )

        def instantiate_trainer(self, **kwargs: Any):
            # One folder per run, no version_N, so that `--ckpt_path last` finds it again:
            #   ROOT/config.yaml, metrics.csv, checkpoints/{last,best}.ckpt        (fit)
            #   ROOT/<validate|test|predict>/config.yaml, metrics.csv, predictions.csv
            config = self._get(self.config_init, "trainer", default={})
            root = config.get("default_root_dir") or os.getcwd()
            if config.get("logger") in (None, True):
                version = "" if self.subcommand == "fit" else self.subcommand
                kwargs["logger"] = RunCSVLogger(save_dir=root, name="", version=version)
            for callback in (
                self._get(self.config_init, "checkpoint", default=None),
                *(config.get("callbacks") or []),
            ):
                if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                    callback.dirpath = os.path.join(root, "checkpoints")
            plugins = config.get("plugins") or []
            plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
            if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
                kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
            try:
                return super().instantiate_trainer(**kwargs)
            except MisconfigurationException as problem:  # e.g. --trainer.accelerator cuda without CUDA
                first = str(problem).strip().splitlines()[0]
                raise OptionError(f"--trainer options: {first}") from None

        def _parse_ckpt_path(self) -> None:
            # Lightning reads --ckpt_path here (for its hyperparameters) before anything else: check the
            # file with the safe reader first, so a bad one is a one-line CheckpointError, not a traceback.
            subcommand = self.config.get("subcommand")
            ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
            if ckpt_path is not None and ckpt_path not in CKPT_KEYWORDS:
                read_training_checkpoint(ckpt_path)
            super()._parse_ckpt_path()

        def before_fit(self) -> None:
            # Checked here, after the options and before anything is written: whether this run resumes,
            # starts fresh or would overwrite another run (fast_timesformer.training.runs).
            callback = self.trainer.checkpoint_callback
            prepare_fit(
                root=self.trainer.default_root_dir,
                checkpoint_dir=getattr(callback, "dirpath", None)
                or os.path.join(self.trainer.default_root_dir, "checkpoints"),
                ckpt_path=self._get(self.config, "ckpt_path"),
                overwrite=bool(self._get(self.config, "overwrite")),
                hyperparameters=dict(self.model.hparams),
            )

        def _check_evaluation_checkpoint(self) -> None:
            ckpt_path = self._get(self.config, "ckpt_path")
            if ckpt_path is not None and ckpt_path not in CKPT_KEYWORDS:
                read_training_checkpoint(ckpt_path)  # a bad file: one line, before the data is touched

        before_validate = before_test = before_predict = _check_evaluation_checkpoint

    VideoCLI(
        VideoClassifier,
        VideoDataModule,
        args=args,
        # fit: prepare_fit has cleared or refused the folder, so the config may be (re)written; evaluations
        # write theirs into RUN/<stage>/, replaced by the next evaluation.
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"default_root_dir": "runs"},
        auto_configure_optimizers=False,  # VideoClassifier builds its own (parameter groups, schedules)
        parser_kwargs={"prog": "fast-timesformer"},
    )
    return 0


__all__ = ["COMMANDS", "run"]


def _is_multilabel(task: str) -> bool:
    return task == "multilabel"
