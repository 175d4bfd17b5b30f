"""One training run on the demo's data, with its validation curve against training wall-clock time.

Shared by ``accuracy.py`` (the study) and ``swap_finetune.py``: both fit ``VideoClassifier`` with Lightning
exactly as ``fast-timesformer fit`` does, then report video-level top-1 on the validation split (the demo's
protocol) with the curve, the optimizer steps, steps per second and the seconds spent training (validation
time excluded from the clock).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any


def curve_callback() -> Any:
    """A Lightning callback recording (training seconds, step, val top-1) after every validation pass."""
    from lightning.pytorch.callbacks import Callback

    class Curve(Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.start, self.validating, self.points = time.perf_counter(), 0.0, []

        def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
            self.val_start = time.perf_counter()

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            if trainer.sanity_checking or not hasattr(self, "start"):
                return
            seconds = self.val_start - self.start - self.validating
            self.validating += time.perf_counter() - self.val_start
            top1 = trainer.callback_metrics.get("val/top1")
            if top1 is not None:
                self.points.append(
                    {"seconds": round(seconds, 2), "step": trainer.global_step, "top1": float(top1)}
                )

        def training_seconds(self) -> float:
            return time.perf_counter() - self.start - self.validating

    return Curve()


def fit(
    recipe: Any,
    datamodule: Any,
    seed: int,
    *,
    pretrained: str | None = None,
    max_steps: int | None = None,
    validate: bool = True,
    trainer_kwargs: dict[str, Any] | None = None,
    **changes: Any,
) -> tuple[Any, dict[str, Any]]:
    """Fit the demo model of ``recipe`` (``changes`` replace recipe fields first); returns (classifier, row).

    ``pretrained``: start from these weights (``VideoClassifier(pretrained=...)``, the recipe's model
    arguments overriding the stored ones, e.g. another attention). ``max_steps``: stop after this many
    optimizer steps (the schedule spans them) instead of the recipe's epochs. ``validate=False`` skips the
    per-epoch validation (no curve), for runs that are only tested at the end. ``trainer_kwargs`` go to
    Lightning's ``Trainer`` (e.g. ``max_time``).
    """
    from lightning.pytorch import Trainer, seed_everything

    from fast_timesformer.training.demo import recipe_classifier

    recipe = replace(recipe, **changes)
    seed_everything(seed, verbose=False)
    classifier = recipe_classifier(recipe, datamodule.num_classes, seed, pretrained=pretrained)
    curve = curve_callback()
    trainer = Trainer(
        max_epochs=-1 if max_steps else recipe.epochs, max_steps=max_steps or -1, accelerator="cpu", devices=1,
        logger=False, enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
        enable_progress_bar=False, callbacks=[curve], limit_val_batches=None if validate else 0,
        precision=recipe.precision, **(trainer_kwargs or {}),
    )  # fmt: skip
    trainer.fit(classifier, datamodule=datamodule)
    seconds = curve.training_seconds()
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    steps = trainer.global_step
    return classifier, {
        "val_top1": float(classifier.test_results["top1"]),
        "steps": steps,
        "train_seconds": round(seconds, 2),
        "steps_per_s": steps / seconds if seconds > 0 else None,
        "curve": curve.points,
        "model_kwargs": dict(classifier.hparams["model_kwargs"]),
        "lr": recipe.lr,
        "epochs": None if max_steps else recipe.epochs,
    }


def evaluate(classifier: Any, datamodule: Any) -> float:
    """Video-level validation top-1 of ``classifier`` as it is (no training)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(
        accelerator="cpu", devices=1, logger=False, enable_checkpointing=False, enable_model_summary=False,
        enable_progress_bar=False,
    )  # fmt: skip
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    return float(classifier.test_results["top1"])
