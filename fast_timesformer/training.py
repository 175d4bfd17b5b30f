"""Lightning training: ``VideoClassifier`` (a LightningModule around a plain FastTimeSformer) and
``VideoDataModule`` (a LightningDataModule over :mod:`fast_timesformer.data`).

Both have typed, keyword-only constructors, so ``fast-timesformer fit/validate/test/predict`` (LightningCLI)
exposes exactly these arguments as ``--model.*`` and ``--data.*`` and YAML configs cannot drift from the
Python API::

    from lightning.pytorch import Trainer
    from fast_timesformer.callbacks import AtomicCheckpointIO
    from fast_timesformer.training import VideoClassifier, VideoDataModule

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
  :mod:`fast_timesformer.evaluation`), printed with the protocol ("8x32, 1 clip x 3 crops, 224px").
* **Safety**: a NaN/inf loss stops training with :class:`~fast_timesformer.callbacks.NonFiniteLossError`
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
import random
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.utilities import rank_zero_info
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torchmetrics.classification import MulticlassAccuracy

from fast_timesformer.callbacks import NonFiniteLossError
from fast_timesformer.data import VideoDataset, collate_videos, read_annotations, read_folder
from fast_timesformer.evaluation import (
    MultiViewAccumulator,
    describe_protocol,
    format_metrics,
    video_metrics,
)
from fast_timesformer.model import FastTimeSformer
from fast_timesformer.presets import PRESETS, create_model

# -- learning-rate schedules (multipliers of the base LR, one call per optimizer step) ------------------


class WarmupCosine:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to ``min_ratio`` at ``total`` steps."""

    def __init__(self, *, total: int, warmup: int, min_ratio: float) -> None:
        self.total, self.warmup, self.min_ratio = max(1, total), max(0, warmup), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupSteps:
    """Linear warm-up, then the LR times ``gamma`` at each milestone step (the paper: epochs 11 and 14)."""

    def __init__(self, *, milestones: Sequence[int], gamma: float, warmup: int) -> None:
        self.milestones, self.gamma, self.warmup = sorted(milestones), gamma, max(0, warmup)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        return self.gamma ** sum(step >= milestone for milestone in self.milestones)


def parameter_groups(model: FastTimeSformer, weight_decay: float) -> list[dict[str, Any]]:
    """Two optimizer groups: decayed weights, and (decay 0) ``no_weight_decay()`` names + 1-D tensors."""
    skip = model.no_weight_decay()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if name in skip or param.ndim <= 1 else decay).append(param)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _seed_for(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across processes and Python versions)."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value * 1_000_003 + int(part) + 0x632BE59BD9B4E019) % (2**63)
    return value


def seed_all(seed: int) -> None:
    """Seed Python's, torch's (CPU and CUDA) and, when installed, numpy's global RNGs."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
    except ImportError:  # numpy is optional
        return
    np.random.seed(seed % 2**32)


def _global_rng_states() -> tuple[Any, Any]:
    try:
        import numpy as np
    except ImportError:
        return random.getstate(), None
    return random.getstate(), np.random.get_state()


def _restore_global_rng_states(states: tuple[Any, Any]) -> None:
    random.setstate(states[0])
    if states[1] is not None:
        import numpy as np

        np.random.set_state(states[1])


class SeededItems(Dataset):
    """Makes item ``i`` of epoch ``e`` a function of ``(seed, e, i)``, whatever RNG the dataset draws from.

    Keys are ``(index, epoch)`` pairs, as yielded by :class:`EpochIndexSampler`; each item is computed
    under a forked RNG seeded from them, so the augmentations of a batch do not depend on the process,
    the worker, the number of workers or the point a run was resumed from.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, epoch = key
        states = _global_rng_states()
        with torch.random.fork_rng(devices=[]):
            seed_all(_seed_for(self.seed, epoch, index))
            try:
                return self.dataset[index]
            finally:
                _restore_global_rng_states(states)


class EpochIndexSampler(DistributedSampler):
    """``DistributedSampler`` (order from ``(seed, epoch)``, one shard per rank) yielding ``(index, epoch)``."""

    def __iter__(self):
        epoch = self.epoch
        return ((index, epoch) for index in super().__iter__())


# -- the LightningModule -------------------------------------------------------------------------------


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
        redraw_interval: int | None = None,
        ensemble: Literal["softmax", "sum"] = "softmax",
        seed: int | None = None,
    ) -> None:
        super().__init__()
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

            self.model = from_pretrained(pretrained, **overrides)
        else:
            self.model = create_model(preset, **overrides)
        self.model.set_grad_checkpointing(grad_checkpointing)
        self.loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        classes = self.model.num_classes
        self.train_accuracy = MulticlassAccuracy(num_classes=classes)
        self.val_views = MultiViewAccumulator(method=ensemble)
        self.test_views = MultiViewAccumulator(method=ensemble)
        self.predict_views = MultiViewAccumulator(method=ensemble)
        # Filled from the datamodule in setup() (or from a checkpoint) and saved with every checkpoint,
        # so `fast-timesformer export` can write class names and preprocessing next to the weights.
        self.class_names: list[str] | None = None
        self.preprocessing: dict[str, Any] | None = None
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

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Dropout and drop path draw from the global RNG: seed it per batch so a resumed run continues
        # exactly (data augmentation is seeded per item by the datamodule, independently of this).
        seed_all(_seed_for(self.seed, self.current_epoch, batch_idx, self.global_rank))
        interval = self.hparams.redraw_interval
        step = self.global_step
        if interval and step > 0 and step % interval == 0 and step != self._last_redraw_step:
            # The same (seed, step) on every rank: identical features everywhere, no communication needed.
            self.model.redraw_features(torch.Generator().manual_seed(_seed_for(self.seed, step)))
            self._last_redraw_step = step

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["fast_timesformer"] = {
            "class_names": self.class_names,
            "preprocessing": self.preprocessing,
            "seed": self.seed,
            "model_config": dict(self.model.config),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        extra = checkpoint.get("fast_timesformer") or {}
        self.class_names = extra.get("class_names") or self.class_names
        self.preprocessing = extra.get("preprocessing") or self.preprocessing
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
        loss = self.loss_fn(logits, labels)
        self._stop_if_not_finite(loss, batch_idx)
        self.train_accuracy(logits.detach(), labels)
        size = labels.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=size)
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
        }
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
            return datamodule.protocol(stage, method=self.hparams.ensemble)
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
        steps_per_epoch = max(
            1, math.ceil(self.trainer.num_training_batches / self.trainer.accumulate_grad_batches)
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


# -- the LightningDataModule ---------------------------------------------------------------------------


class VideoDataModule(LightningDataModule):
    """Videos from annotation files (or folder-per-class trees) for every stage, with the official pipeline.

    Training clips are sampled at random (dense ``num_frames`` x ``sampling_rate``, or one random frame per
    segment), scale-jittered to a short side in ``scale_range``, randomly cropped to ``crop_size`` and
    flipped. Validation and testing score every view -- ``*_num_temporal_clips`` evenly spaced clips x
    ``*_num_spatial_crops`` crops (3: left/centre/right after resizing the short side to ``crop_size``; 1: a
    centre crop after resizing it to ``scale_range[0]``) -- and the model combines them per video.

    Args:
        train: training annotations: a "path label" list, Kinetics CSV, SSv2 JSON, UCF101 split file,
            a manifest of the built-in dataset, or a folder-per-class root.
        val: validation annotations (used during ``fit`` and by ``validate``).
        test: test annotations (``test``); defaults to ``val``.
        predict: videos for ``predict`` (same formats; their labels are copied next to the predictions).
        root: folder that relative paths in the annotation files are relative to.
        format: annotation format, or "auto" to detect it from the file.
        classes: class names: a list, a file with one name per line, or SSv2's labels JSON; default: from
            the first annotation file (for lists, a ``classes.txt`` beside it is used when present).
        num_frames: frames per clip.
        sampling: "dense" (``num_frames`` frames ``sampling_rate`` apart, Kinetics) or "segment"
            (one frame per equal segment, SSv2).
        sampling_rate: frame stride of dense sampling (32 in "8x32").
        crop_size: side of the square crops the model sees.
        scale_range: training short-side jitter range in pixels (official: 256-320 for 224 crops).
        flip: random horizontal flips in training (turn off when left/right matters, e.g. SSv2).
        mean: per-channel normalisation mean (TimeSformer: 0.45).
        std: per-channel normalisation std (TimeSformer: 0.225).
        out_of_range: what fills a clip longer than the video: "loop" or "repeat_last".
        val_num_temporal_clips: temporal clips per video in validation.
        val_num_spatial_crops: spatial crops per clip in validation (1 or 3).
        test_num_temporal_clips: temporal clips per video in testing (TimeSformer: 1).
        test_num_spatial_crops: spatial crops per clip in testing (TimeSformer: 3).
        batch_size: training clips per batch per device.
        eval_batch_size: views per batch per device in val/test/predict (default: ``batch_size``).
        num_workers: DataLoader worker processes per device.
        max_bad_fraction: stop with an error (and a report file) when more than this fraction of the videos
            of a split cannot be decoded; below it, bad videos are skipped and counted.
        cache_frames: decode each video once and keep its frames in memory (small datasets such as the
            built-in one: later epochs only crop and normalise). Each DataLoader worker keeps its own copy.
        seed: seed of the training sampler's shuffling and of augmentation (identical on every rank, as DDP
            requires; None: the run's ``seed_everything`` value, else 0).
    """

    def __init__(
        self,
        *,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        root: str | None = None,
        format: str = "auto",
        classes: str | list[str] | None = None,
        num_frames: int = 8,
        sampling: Literal["dense", "segment"] = "dense",
        sampling_rate: int = 32,
        crop_size: int = 224,
        scale_range: tuple[int, int] = (256, 320),
        flip: bool = True,
        mean: tuple[float, float, float] = (0.45, 0.45, 0.45),
        std: tuple[float, float, float] = (0.225, 0.225, 0.225),
        out_of_range: Literal["loop", "repeat_last"] = "loop",
        val_num_temporal_clips: int = 1,
        val_num_spatial_crops: int = 1,
        test_num_temporal_clips: int = 1,
        test_num_spatial_crops: int = 3,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        max_bad_fraction: float = 0.01,
        cache_frames: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not any((train, val, test, predict)):
            raise ValueError("VideoDataModule needs at least one of train, val, test or predict annotations")
        if sampling not in ("dense", "segment"):
            raise ValueError(f"unknown sampling {sampling!r}; expected 'dense' or 'segment'")
        # Not merged into the logged hparams: names such as num_frames and seed also exist on the model.
        self.save_hyperparameters(logger=False)
        self.classes = self._read_classes()
        self.datasets: dict[str, Any] = {}
        self._resumed_seed: int | None = None

    @property
    def seed(self) -> int:
        """The data seed: ``seed`` if given, else the one of the run being resumed, else the
        ``seed_everything`` value, else 0."""
        if self.hparams.seed is not None:
            return int(self.hparams.seed)
        if self._resumed_seed is not None:
            return self._resumed_seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints so that a resumed run shuffles and augments with the same seed."""
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") is not None:
            self._resumed_seed = int(state_dict["seed"])

    # -- classes, protocol, preprocessing -----------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (the CLI links it to ``--model.num_classes``)."""
        return len(self.classes)

    def _read_classes(self) -> list[str]:
        classes = self.hparams.classes
        if isinstance(classes, (list, tuple)):
            return [str(name) for name in classes]
        # A class file (text, or SSv2's labels JSON) is read by the annotation reader of the first split.
        source = self.hparams.train or self.hparams.val or self.hparams.test or self.hparams.predict
        return list(self._annotations(source, classes).classes)

    def _annotations(self, source: str, classes: list[str] | str | None = None):
        if os.path.isdir(source):
            annotations = read_folder(source)
            if isinstance(classes, list) and list(annotations.classes) != classes:
                raise ValueError(
                    f"the class folders of {source} ({len(annotations.classes)}) differ from the training "
                    f"classes ({len(classes)}): pass --data.classes with one list for every split"
                )
            return annotations
        return read_annotations(source, format=self.hparams.format, root=self.hparams.root, classes=classes)

    def views(self, stage: str) -> tuple[int, int]:
        """(temporal clips, spatial crops) scored per video in ``stage``."""
        hp = self.hparams
        if stage in ("val", "validate"):
            return hp.val_num_temporal_clips, hp.val_num_spatial_crops
        return hp.test_num_temporal_clips, hp.test_num_spatial_crops

    def protocol(self, stage: str, *, method: str | None = None) -> str:
        """The evaluation protocol of ``stage`` in words, e.g. "8x32, 1 clip x 3 crops, 224px"."""
        clips, crops = self.views(stage)
        hp = self.hparams
        return describe_protocol(
            num_frames=hp.num_frames, sampling_rate=hp.sampling_rate, sampling=hp.sampling,
            num_temporal_clips=clips, num_spatial_crops=crops, crop_size=hp.crop_size, method=method,
        )  # fmt: skip

    def preprocessing(self) -> dict[str, Any]:
        """What a weights folder must remember to classify new videos like the test split (config.json)."""
        hp = self.hparams
        clips, crops = self.views("test")
        return {
            "mean": list(hp.mean), "std": list(hp.std), "num_frames": hp.num_frames, "sampling": hp.sampling,
            "sampling_rate": hp.sampling_rate, "crop_size": hp.crop_size,
            "short_side": hp.crop_size if crops == 3 else hp.scale_range[0],
            "num_temporal_clips": clips, "num_spatial_crops": crops, "out_of_range": hp.out_of_range,
        }  # fmt: skip

    # -- datasets ----------------------------------------------------------------------------------
    def _dataset(self, source: str, mode: str) -> VideoDataset:
        hp = self.hparams
        annotations = self._annotations(source, self.classes)
        clips, crops = self.views("val" if mode == "val" else "test")
        return VideoDataset(
            annotations.records, self.classes, num_frames=hp.num_frames, sampling=hp.sampling,
            sampling_rate=hp.sampling_rate, mode=mode, crop_size=hp.crop_size, scale_range=tuple(hp.scale_range),
            num_temporal_clips=clips, num_spatial_crops=crops, flip=hp.flip and mode == "train",
            mean=tuple(hp.mean), std=tuple(hp.std), out_of_range=hp.out_of_range, seed=self.seed,
            max_bad_fraction=hp.max_bad_fraction, cache_frames=hp.cache_frames,
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        hp = self.hparams
        wanted: dict[str, tuple[str | None, str]] = {
            "fit": {"train": (hp.train, "train"), "val": (hp.val, "val")},
            "validate": {"val": (hp.val, "val")},
            "test": {"test": (hp.test or hp.val, "test")},
            "predict": {"predict": (hp.predict, "test")},
        }[stage]
        for split, (source, mode) in wanted.items():
            if split in self.datasets:
                continue
            if source is None:
                if split == "val":
                    continue  # fit without validation is allowed
                raise ValueError(f"`{stage}` needs --data.{split} (an annotation file or a folder of videos)")
            self.datasets[split] = self._dataset(source, mode)
            if self.trainer is not None:  # bad-video reports go next to the run's other files
                root = self.trainer.default_root_dir
                self.datasets[split].tracker.report_path = os.path.join(root, f"bad_videos_{split}.txt")

    def _loader(self, split: str, *, train: bool = False) -> DataLoader:
        hp = self.hparams
        dataset = self.datasets[split]
        sampler = None
        if train:
            # An explicit distributed sampler even on one process: the order depends only on (seed, epoch),
            # which Lightning sets every epoch, and each item's augmentation only on (seed, epoch, index),
            # so a resumed run sees exactly the batches an uninterrupted one would have seen.
            world = self.trainer.world_size if self.trainer is not None else 1
            rank = self.trainer.global_rank if self.trainer is not None else 0
            sampler = EpochIndexSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            dataset = SeededItems(dataset, self.seed)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            sampler=sampler,
            shuffle=False,
            num_workers=hp.num_workers,
            collate_fn=collate_videos,
            pin_memory=bool(
                self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
            ),
            # Safe for exact resumption: items are seeded from (seed, epoch, index), not from the worker.
            persistent_workers=hp.num_workers > 0,
            drop_last=False,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the videos the batch had to skip; stops the run past ``max_bad_fraction`` (with a report)."""
        if self.trainer is not None and isinstance(batch, dict) and batch.get("skipped"):
            split = (
                "train"
                if self.trainer.training
                else "val"
                if self.trainer.validating or self.trainer.sanity_checking
                else ("test" if self.trainer.testing else "predict")
            )
            if split in self.datasets:
                self.datasets[split].tracker.update(batch)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    # -- outputs -----------------------------------------------------------------------------------
    def write_predictions(
        self, results: dict[str, Any], class_names: list[str] | None, directory: str | None
    ) -> str:
        """Write ``predictions.csv`` (video, label, prediction, probability, top-5) into ``directory``."""
        import csv

        stage = results["stage"]
        records = self.datasets[stage].records
        names = class_names or [str(i) for i in range(results["scores"].shape[1])]
        probabilities = results["probabilities"]
        path = os.path.join(directory or ".", "predictions.csv")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["video", "label", "prediction", "probability", "top5"])
            for index, label, scores in zip(
                results["video"].tolist(), results["labels"].tolist(), probabilities
            ):
                top = scores.topk(min(5, len(names)))
                writer.writerow([
                    records[index].path,
                    names[label] if 0 <= label < len(names) else "",
                    names[int(top.indices[0])],
                    f"{float(top.values[0]):.6f}",
                    " ".join(names[int(i)] for i in top.indices),
                ])  # fmt: skip
        return path


__all__ = [
    "VideoClassifier",
    "VideoDataModule",
    "WarmupCosine",
    "WarmupSteps",
    "parameter_groups",
]
