"""Training with Lightning (the ``train`` extra: lightning, torchmetrics, matplotlib, tqdm).

    module.py      VideoClassifier: the LightningModule around a plain FastTimeSformer
    datamodule.py  VideoDataModule: annotation files -> seeded, multi-view DataLoaders
    optim.py       learning-rate schedules and weight-decay groups
    seeding.py     what makes a resumed run exact (per-epoch / per-item / per-batch seeds)
    evaluation.py  video-level metrics, gathered across DDP ranks
    callbacks.py   atomic checkpoints, last.ckpt kept current, resumable CSV log, non-finite guards
    plots.py       training curves and confusion matrix (PNG)
    demo.py        ``fast-timesformer demo``: generate, train, evaluate, export, classify, control

Example::

    from lightning.pytorch import Trainer
    from fast_timesformer.training import AtomicCheckpointIO, VideoClassifier, VideoDataModule

    data = VideoDataModule(train="train.txt", val="val.txt", num_frames=8, sampling_rate=32, crop_size=224)
    model = VideoClassifier(preset="timesformer_base_8x224", num_classes=data.num_classes)
    Trainer(max_epochs=15, plugins=[AtomicCheckpointIO()]).fit(model, data)
"""

from fast_timesformer.training.callbacks import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    NonFiniteLossError,
    NonFiniteWeightsError,
    RunCheckpoint,
    RunCSVLogger,
)
from fast_timesformer.training.datamodule import VideoDataModule
from fast_timesformer.training.module import VideoClassifier
from fast_timesformer.training.optim import WarmupCosine, WarmupSteps, parameter_groups

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "NonFiniteLossError",
    "NonFiniteWeightsError",
    "RunCSVLogger",
    "RunCheckpoint",
    "VideoClassifier",
    "VideoDataModule",
    "WarmupCosine",
    "WarmupSteps",
    "parameter_groups",
]
