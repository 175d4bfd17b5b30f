"""``fast-timesformer fit / validate / test / predict``: LightningCLI over the training module and datamodule.

LightningCLI builds the options from the typed constructors of
:class:`~fast_timesformer.training.VideoClassifier` (``--model.*``),
:class:`~fast_timesformer.training.VideoDataModule` (``--data.*``), the Trainer (``--trainer.*``) and the
checkpoint callback (``--checkpoint.*``), so the command line and the Python API cannot drift. What this file
adds is the run-folder layout: one folder per run, no ``version_N``, atomic checkpoints.
"""

from __future__ import annotations

import os
from typing import Any

COMMANDS = ("fit", "validate", "test", "predict")


def run(args: list[str] | None) -> int:
    """Run LightningCLI on ``args`` (None: read ``sys.argv``, as a console script must)."""
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.plugins.io import CheckpointIO

    from fast_timesformer.training import (
        AtomicCheckpointIO,
        RunCheckpoint,
        RunCSVLogger,
        VideoClassifier,
        VideoDataModule,
    )

    class RunConfig(SaveConfigCallback):
        """Saves the resolved config.yaml into the run folder (fit) or its <stage>/ subfolder."""

        def setup(self, trainer, pl_module, stage) -> None:
            # A fresh fit must not overwrite another run's config; a resumed fit and evaluations may.
            resuming = bool(self.config.get("ckpt_path"))
            self.overwrite = getattr(stage, "value", stage) != "fit" or resuming
            super().setup(trainer, pl_module, stage)

    class VideoCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.num_frames", "model.num_frames")
            parser.link_arguments("data.crop_size", "model.image_size")
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
            return super().instantiate_trainer(**kwargs)

    VideoCLI(
        VideoClassifier,
        VideoDataModule,
        args=args,
        save_config_callback=RunConfig,
        trainer_defaults={"default_root_dir": "runs"},
        auto_configure_optimizers=False,  # VideoClassifier builds its own (parameter groups, schedules)
        parser_kwargs={"prog": "fast-timesformer"},
    )
    return 0


__all__ = ["COMMANDS", "run"]
