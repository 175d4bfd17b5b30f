"""``VideoClassifier``: the LightningModule around a plain FastTimeSformer (the data side is
:class:`~fast_timesformer.training.datamodule.VideoDataModule`).

Both have typed, keyword-only constructors, so ``fast-timesformer fit/validate/test/predict`` (LightningCLI)
exposes exactly these arguments as ``--model.*`` and ``--data.*`` and YAML configs cannot drift from the
Python API::

    from lightning.pytorch import Trainer
    from fast_timesformer.training import AtomicCheckpointIO, VideoClassifier, VideoDataModule

    data = VideoDataModule(train="train.txt", val="val.txt", num_frames=8, sampling_rate=32, crop_size=224)
    model = VideoClassifier(preset="timesformer_base_8x224", num_classes=data.num_classes)
    Trainer(max_epochs=15, plugins=[AtomicCheckpointIO()]).fit(model, data)

What it adds to the plain model:

* **Optimisation**: AdamW (default) or SGD with Nesterov momentum (the paper's recipe); no weight decay on
  ``model.no_weight_decay()`` (position/time embeddings, CLS) nor on 1-D parameters (norms, biases); a
  per-step cosine schedule with linear warm-up, or the paper's step schedule (x0.1 at epochs 11 and 14);
  label smoothing. Gradient clipping, ``bf16-mixed`` and gradient accumulation are Trainer options.
* **Metrics**: clip-level accuracy while training; video-level top-1 / top-5 / mean class accuracy over
  every view (temporal clips x spatial crops) in validation and testing, correct under DDP (see
  :mod:`fast_timesformer.training.evaluation`), printed with the protocol ("8x32, 1 clip x 3 crops, 224px").
* **Safety**: a NaN/inf loss stops training with :class:`~fast_timesformer.training.callbacks.NonFiniteLossError`
  before the bad step is applied (all ranks agree, so DDP does not hang).
* **Exact resumption**: every source of randomness is a function of the seed and the position in the run
  -- the shuffle of ``(seed, epoch)``, the augmentation of an item of ``(seed, epoch, index)``, dropout and
  drop path of ``(seed, epoch, batch, rank)`` -- and the seed travels in the checkpoint, so a run resumed
  from an end-of-epoch checkpoint (``--ckpt_path last``) gives the same weights as an uninterrupted one.
* **Performer features**: ``redraw_interval`` redraws every FAVOR+ layer's features every N optimizer steps
  from a generator seeded by ``(seed, global_step)``, so all ranks draw identical features without
  communicating.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics.classification import MulticlassAccuracy

from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.errors import OptionError
from fast_timesformer.inference.views import format_metrics
from fast_timesformer.presets import PRESETS, create_model
from fast_timesformer.training.callbacks import NonFiniteLossError
from fast_timesformer.training.datamodule import VideoDataModule
from fast_timesformer.training.evaluation import (
    MultiViewAccumulator,
    multilabel_metrics,
    per_class_average_precision,
    tune_thresholds,
    video_metrics,
)
from fast_timesformer.training.optim import WarmupCosine, WarmupSteps, parameter_groups
from fast_timesformer.training.precision import check_cpu_precision
from fast_timesformer.training.seeding import seed_all, seed_for


def _pos_weight(value: float | list[float], classes: int) -> torch.Tensor:
    """``--model.pos_weight``: one number for every class, or one per class (positive, finite)."""
    values = [value] * classes if isinstance(value, (int, float)) else list(value)
    if len(values) != classes or not all(
        isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values
    ):
        raise OptionError(
            f"--model.pos_weight must be 'auto', a positive number or {classes} positive numbers (one per "
            f"class), got {value!r}"
        )
    return torch.tensor(values, dtype=torch.float32)


def _check_optimizer_options(**given: Any) -> None:
    """Refuse optimizer values that cannot work before the model is built, naming the ``--model.`` option
    (torch would stop later with ``ValueError: Invalid learning rate`` and a traceback)."""

    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    rules = {
        "lr": (lambda v: number(v) and v > 0, "a positive number"),
        "weight_decay": (lambda v: number(v) and v >= 0, "0 or more"),
        "momentum": (lambda v: number(v) and 0 <= v < 1, "in [0, 1)"),
        "warmup_epochs": (lambda v: number(v) and v >= 0, "0 or more"),
        "min_lr_ratio": (lambda v: number(v) and 0 <= v <= 1, "in [0, 1]"),
        "lr_gamma": (lambda v: number(v) and v > 0, "a positive number"),
        "label_smoothing": (lambda v: number(v) and 0 <= v < 1, "in [0, 1)"),
    }
    problems = [
        f"--model.{name} must be {wanted}, got {given[name]!r}"
        for name, (ok, wanted) in rules.items()
        if not ok(given[name])
    ]
    betas = given["betas"]
    if not (len(betas) == 2 and all(number(b) and 0 <= b < 1 for b in betas)):
        problems.append(f"--model.betas must be two numbers in [0, 1), got {list(betas)!r}")
    if problems:
        raise OptionError("; ".join(problems))


class VideoClassifier(LightningModule):
    """Train, validate, test and predict a :class:`~fast_timesformer.model.FastTimeSformer` video classifier.

    Args:
        preset: starting configuration, a name from :data:`fast_timesformer.presets.PRESETS`.
        model_kwargs: constructor arguments that replace the preset's (e.g. ``{"attention": "performer",
            "drop_path": 0.1}``); unknown names are an error of the model.
        pretrained: weights to start from (our folder, Hugging Face folder, official ``.pyth``, ImageNet ViT),
            loaded with :func:`fast_timesformer.weights.from_pretrained`; the head is replaced when
            ``num_classes`` differs.
        num_classes: classifier outputs (the CLI links it to the data's class count).
        num_frames: frames per clip the model is built for (the CLI links it to ``data.num_frames``).
        image_size: crop side the model is built for (the CLI links it to ``data.crop_size``).
        optimizer: "adamw" (default) or "sgd" (momentum with Nesterov, the paper's choice).
        lr: peak learning rate (after warm-up).
        weight_decay: decoupled (AdamW) or L2 (SGD) decay for weights; never for embeddings, norms, biases.
        momentum: SGD momentum.
        betas: AdamW betas.
        scheduler: "cosine" (per step, with warm-up), "step" (the paper's x``lr_gamma`` at ``lr_milestones``)
            or "constant".
        warmup_epochs: linear warm-up length in epochs (fractions allowed).
        min_lr_ratio: final LR of the cosine schedule as a fraction of ``lr``.
        lr_milestones: epochs at which the step schedule multiplies the LR by ``lr_gamma`` (paper: 11, 14).
        lr_gamma: step-schedule factor.
        label_smoothing: cross-entropy label smoothing.
        grad_checkpointing: recompute blocks in the backward pass (less memory, ~30% more compute).
        compile: ``torch.compile`` the network (``nn.Module.compile``: in place, checkpoints keep their
            names). Pays off on a GPU; on a CPU the model is matmul-bound (BENCHMARKS.md has the number).
        redraw_interval: redraw Performer features every this many optimizer steps (None: never).
        ensemble: how views of a video are combined in val/test/predict: "softmax" (mean of probabilities,
            default) or "sum" (sum of logits, the official code).
        seed: seed of the per-epoch re-seeding and of Performer redraws (None: the run's ``seed_everything``
            value, else 0).
    """

    def __init__(
        self,
        *,
        preset: str = "timesformer_micro_8x32",
        model_kwargs: dict[str, Any] | None = None,
        pretrained: str | None = None,
        num_classes: int | None = None,
        num_frames: int | None = None,
        image_size: int | None = None,
        optimizer: Literal["adamw", "sgd"] = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        momentum: float = 0.9,
        betas: tuple[float, float] = (0.9, 0.999),
        scheduler: Literal["cosine", "step", "constant"] = "cosine",
        warmup_epochs: float = 0.0,
        min_lr_ratio: float = 0.01,
        lr_milestones: list[int] | None = None,
        lr_gamma: float = 0.1,
        label_smoothing: float = 0.0,
        grad_checkpointing: bool = False,
        compile: bool = False,
        redraw_interval: int | None = None,
        ensemble: Literal["softmax", "sum"] = "softmax",
        task: Literal["single", "multilabel"] = "single",
        pos_weight: float | list[float] | Literal["auto"] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if task not in ("single", "multilabel"):
            raise OptionError(f"--model.task must be 'single' or 'multilabel', got {task!r}")
        if pos_weight is not None and task != "multilabel":
            raise OptionError("--model.pos_weight is for --model.task multilabel (binary cross-entropy)")
        if task == "multilabel" and ensemble == "sum":
            raise OptionError(
                "--model.ensemble sum combines softmax logits; multi-label views are averaged sigmoids"
            )
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; available: {sorted(PRESETS)}")
        if optimizer not in ("adamw", "sgd"):
            raise ValueError(f"unknown optimizer {optimizer!r}; expected 'adamw' or 'sgd'")
        if scheduler not in ("cosine", "step", "constant"):
            raise ValueError(f"unknown scheduler {scheduler!r}; expected 'cosine', 'step' or 'constant'")
        if redraw_interval is not None and redraw_interval <= 0:
            raise ValueError(
                f"redraw_interval must be a positive number of steps or None, got {redraw_interval}"
            )
        _check_optimizer_options(
            lr=lr, weight_decay=weight_decay, momentum=momentum, betas=betas, warmup_epochs=warmup_epochs,
            min_lr_ratio=min_lr_ratio, lr_gamma=lr_gamma, label_smoothing=label_smoothing,
        )  # fmt: skip
        self.save_hyperparameters()
        overrides = dict(model_kwargs or {})
        for name, value in (
            ("num_classes", num_classes),
            ("num_frames", num_frames),
            ("image_size", image_size),
        ):
            if value is not None:
                overrides[name] = value
        if pretrained:
            from fast_timesformer.weights import from_pretrained

            # from_pretrained returns eval mode (for inference). Lightning keeps each submodule's mode, so a
            # fine-tune would otherwise run with drop path, dropout and gradient checkpointing switched off.
            self.model = from_pretrained(pretrained, **overrides).train()
        else:
            self.model = create_model(preset, **overrides)
        self.model.set_grad_checkpointing(grad_checkpointing)
        if compile:
            self.model.compile()
        classes = self.model.num_classes
        self.multilabel = task == "multilabel"
        if (
            self.multilabel
        ):  # sigmoid per class; "auto": ones now (checkpoints load), the data's ratios in setup()
            if pos_weight is None:
                weight = None
            elif pos_weight == "auto":
                weight = torch.ones(classes)
            else:
                weight = _pos_weight(pos_weight, classes)
            self.loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
        else:
            self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.train_accuracy = MulticlassAccuracy(num_classes=classes)
        method = "sigmoid" if self.multilabel else ensemble
        self.val_views = MultiViewAccumulator(method=method)
        self.test_views = MultiViewAccumulator(method=method)
        self.predict_views = MultiViewAccumulator(method=method)
        #: multi-label: per-class probability thresholds, tuned on validation (F1), saved with the weights
        self.thresholds: list[float] | None = None
        # Filled from the datamodule in setup() (or from a checkpoint) and saved with every checkpoint,
        # so `fast-timesformer export` can write class names and preprocessing next to the weights.
        self.class_names: list[str] | None = None
        self.preprocessing: Preprocessing | None = None
        self.test_results: dict[str, Any] = {}
        self._last_redraw_step = -1

    # -- forward and seeding ------------------------------------------------------------------------
    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Logits (B, num_classes) for float clips (B, T, C, H, W)."""
        return self.model(video)

    @property
    def seed(self) -> int:
        """The run's seed: ``seed`` if given, else the ``seed_everything`` value, else 0."""
        if self.hparams.seed is not None:
            return int(self.hparams.seed)
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    # -- hooks ------------------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Pick up class names and preprocessing from the datamodule, for checkpoints and exports."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if isinstance(datamodule, VideoDataModule):
            self.class_names = list(datamodule.classes)
            self.preprocessing = datamodule.preprocessing()
            if len(self.class_names) != self.model.num_classes:
                raise ValueError(
                    f"the data has {len(self.class_names)} classes but the model has {self.model.num_classes} "
                    "outputs: set --model.num_classes (the fast-timesformer command links them automatically)"
                )
            if self.multilabel != bool(datamodule.hparams.multilabel):
                raise OptionError(
                    "--model.task multilabel needs --data.multilabel true and the other way round (the "
                    "fast-timesformer command links them)"
                )
            if (
                self.multilabel
                and self.hparams.pos_weight == "auto"
                and stage == "fit"
                and datamodule.hparams.train
            ):
                frequency = torch.tensor(datamodule.label_frequencies()).clamp(1e-3, 1.0)
                self.loss_fn.pos_weight.copy_((1 - frequency) / frequency)  # negatives / positives

    def on_fit_start(self) -> None:
        # bf16 on a CPU that emulates it is slower than float32: say so once (training/precision.py).
        check_cpu_precision(self.trainer.precision, self.device.type)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and drop path draw from the global RNG: seed it per batch so a resumed run continues
        # exactly (data augmentation is seeded per item by the datamodule, independently of this).
        seed_all(seed_for(self.seed, self.current_epoch, batch_idx, self.global_rank))
        interval = self.hparams.redraw_interval
        step = self.global_step
        if interval and step > 0 and step % interval == 0 and step != self._last_redraw_step:
            # The same (seed, step) on every rank: identical features everywhere, no communication needed.
            self.model.redraw_features(torch.Generator().manual_seed(seed_for(self.seed, step)))
            self._last_redraw_step = step

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fast_timesformer"] = {
            "class_names": self.class_names,
            "preprocessing": None if self.preprocessing is None else self.preprocessing.to_dict(),
            "seed": self.seed,
            "model_config": dict(self.model.config),
            "task": self.hparams.task,
            "thresholds": self.thresholds,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("fast_timesformer") or {}
        self.class_names = extra.get("class_names") or self.class_names
        if extra.get("preprocessing"):
            self.preprocessing = Preprocessing.from_dict(extra["preprocessing"])
        if extra.get("thresholds") is not None:
            self.thresholds = list(extra["thresholds"])
        if extra.get("seed") is not None and self.hparams.seed is None:
            self.hparams.seed = int(extra["seed"])  # a resumed run continues the same random streams

    # -- steps ------------------------------------------------------------------------------------
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        video, labels = batch["video"], batch["label"]
        if labels.numel() == 0:
            # Every video of the batch was unreadable (counted by the datamodule). A zero loss that touches
            # every parameter keeps DDP's gradient all-reduce in step with the other ranks.
            return sum(param.sum() for param in self.model.parameters()) * 0.0
        logits = self.model(video)
        loss = self.loss_fn(logits.float() if self.multilabel else logits, labels)
        self._stop_if_not_finite(loss, batch_idx)
        size = labels.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
        if not self.multilabel:
            self.train_accuracy(logits.detach(), labels)
            self.log(
                "train/acc", self.train_accuracy, prog_bar=True, on_step=False, on_epoch=True, batch_size=size
            )
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False)
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch_idx: int) -> None:
        bad = not bool(torch.isfinite(loss.detach()))
        if self.trainer.world_size > 1:  # every rank must stop together, or the others hang in all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise NonFiniteLossError(
                f"training loss is {float(loss.detach())} at epoch {self.current_epoch}, batch {batch_idx} "
                f"(global step {self.global_step}); stopped before this step changed the weights, and no "
                "checkpoint was written for it. Try a lower --model.lr, gradient clipping "
                "(--trainer.gradient_clip_val 1.0), warm-up (--model.warmup_epochs), or bf16-mixed instead "
                "of 16-mixed precision."
            )

    def _eval_step(
        self, batch: dict[str, Any], views: MultiViewAccumulator, stage: str
    ) -> torch.Tensor | None:
        labels = batch["label"]
        if labels.numel() == 0:
            return None  # every view of the batch was unreadable (counted by the datamodule)
        logits = self.model(batch["video"])
        views.update(logits, labels, batch["index"], batch["view"])
        if stage != "predict" and bool((labels >= 0).all()):
            if self.multilabel:
                loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
            else:
                loss = F.cross_entropy(logits.float(), labels)
            self.log(
                f"{stage}/loss",
                loss,
                on_step=False,
                on_epoch=True,
                batch_size=labels.shape[0],
                sync_dist=True,
            )
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_views, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_views, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        logits = self._eval_step(batch, self.predict_views, "predict")
        if logits is None:
            return None
        return {"index": batch["index"], "view": batch["view"], "logits": logits.float()}

    def on_validation_epoch_end(self) -> None:
        self._log_video_metrics(self.val_views, "val")

    def on_test_epoch_end(self) -> None:
        self._log_video_metrics(self.test_views, "test")

    def _log_video_metrics(self, views: MultiViewAccumulator, stage: str) -> None:
        predictions = views.compute()  # gathered from every rank, duplicates removed
        views.reset()
        if len(predictions.video) == 0:
            return
        if self.multilabel:
            if stage == "val":  # thresholds follow the model: tuned on every validation, kept with it
                self.thresholds = [
                    round(float(t), 4) for t in tune_thresholds(predictions.scores, predictions.labels)
                ]
            thresholds = None if self.thresholds is None else torch.tensor(self.thresholds)
            metrics = multilabel_metrics(predictions.scores, predictions.labels, thresholds)
        else:
            metrics = video_metrics(predictions.scores, predictions.labels)
        # Already identical on every rank after the gather, so no further reduction is needed.
        self.log_dict({f"{stage}/{name}": value for name, value in metrics.items()}, prog_bar=stage == "val")
        protocol = self._protocol(stage)
        if stage == "test" or self.trainer.state.fn != "fit":
            rank_zero_info(f"{stage}: {format_metrics(metrics, protocol, num_videos=len(predictions.video))}")
        results = {
            "stage": stage,
            "protocol": protocol,
            "num_videos": len(predictions.video),
            **metrics,
            "video": predictions.video.cpu(),
            "scores": predictions.scores.cpu(),
            "probabilities": predictions.probabilities(self.hparams.ensemble).cpu(),
            "labels": predictions.labels.cpu(),
            "thresholds": self.thresholds,
        }
        if self.multilabel:
            results["per_class_ap"] = per_class_average_precision(predictions.scores, predictions.labels)
        if stage == "test" or self.trainer.state.fn != "fit":
            self.test_results = results
            self._write_predictions(results)

    def _write_predictions(self, results: dict[str, Any]) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if not isinstance(datamodule, VideoDataModule) or not self.trainer.loggers:
            return
        directory = self.trainer.log_dir  # a collective call under DDP: every rank asks, rank 0 writes
        if self.trainer.is_global_zero:
            path = datamodule.write_predictions(results, self.class_names, directory)
            rank_zero_info(f"per-video predictions: {path}")

    def on_predict_epoch_end(self) -> None:
        predictions = self.predict_views.compute()
        self.predict_views.reset()
        self.test_results = {
            "stage": "predict",
            "protocol": self._protocol("predict"),
            "video": predictions.video.cpu(),
            "scores": predictions.scores.cpu(),
            "probabilities": predictions.probabilities(self.hparams.ensemble).cpu(),
            "labels": predictions.labels.cpu(),
        }
        self._write_predictions(self.test_results)

    def _protocol(self, stage: str) -> str:
        datamodule = getattr(self.trainer, "datamodule", None)
        if isinstance(datamodule, VideoDataModule):
            return datamodule.protocol(stage, method="sigmoid" if self.multilabel else self.hparams.ensemble)
        return "protocol unknown"

    # -- optimisation ------------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = parameter_groups(self.model, hp.weight_decay)
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=hp.lr, betas=tuple(hp.betas))
        if hp.scheduler == "constant" and hp.warmup_epochs == 0:
            return {"optimizer": optimizer}
        total = int(self.trainer.estimated_stepping_batches)
        if math.isinf(self.trainer.num_training_batches):
            # With max_steps and no max_epochs, Lightning estimates the steps without loading the data;
            # warm-up epochs and milestones still need an epoch's length.
            self.trainer.fit_loop.setup_data()
        batches = self.trainer.num_training_batches
        steps_per_epoch = (
            max(1, math.ceil(batches / self.trainer.accumulate_grad_batches))
            if math.isfinite(batches)
            else total
        )
        warmup = round(hp.warmup_epochs * steps_per_epoch)
        if hp.scheduler == "cosine":
            schedule = WarmupCosine(total=total, warmup=warmup, min_ratio=hp.min_lr_ratio)
        else:
            milestones = [] if hp.scheduler == "constant" else (hp.lr_milestones or [11, 14])
            schedule = WarmupSteps(
                milestones=[m * steps_per_epoch for m in milestones], gamma=hp.lr_gamma, warmup=warmup
            )
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


__all__ = ["VideoClassifier"]
