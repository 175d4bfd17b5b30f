"""VideoClassifier / VideoDataModule (fast_timesformer.training) and the safety net of fast_timesformer.training.callbacks.

Real Lightning Trainers on CPU, real .mp4 files from the built-in motion dataset, a one-block model.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from lightning.pytorch import Callback, Trainer, seed_everything

from fast_timesformer.data import TooManyBadVideos
from fast_timesformer.data.synthetic import generate_motion_dataset
from fast_timesformer.training import (
    VideoClassifier,
    VideoDataModule,
    WarmupCosine,
    WarmupSteps,
    parameter_groups,
)
from fast_timesformer.training.callbacks import (
    AtomicCheckpointIO,
    NonFiniteLossError,
    NonFiniteWeightsError,
    RunCheckpoint,
)

TINY = {"dim": 32, "depth": 1, "heads": 2, "dim_head": 16}


@pytest.fixture(scope="module")
def motion(tmp_path_factory):
    root = tmp_path_factory.mktemp("motion")
    generate_motion_dataset(root, num_videos={"train": 12, "val": 5}, num_frames=8, size=16, seed=0)
    return root


def make_data(root, **overrides) -> VideoDataModule:
    options = dict(
        train=str(root / "train" / "manifest.csv"), val=str(root / "val" / "manifest.csv"), num_frames=4,
        sampling_rate=2, crop_size=16, scale_range=(16, 20), flip=False, batch_size=4, num_workers=0, seed=0,
        test_num_temporal_clips=2, test_num_spatial_crops=1,
    )  # fmt: skip
    return VideoDataModule(**{**options, **overrides})


def make_model(data: VideoDataModule, **overrides) -> VideoClassifier:
    options = dict(
        model_kwargs=TINY, num_classes=data.num_classes, num_frames=4, image_size=16, lr=3e-3, seed=0
    )
    return VideoClassifier(**{**options, **overrides})


def make_trainer(root, **overrides) -> Trainer:
    options = dict(
        accelerator="cpu", devices=1, max_epochs=1, logger=False, enable_progress_bar=False,
        enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(root),
        plugins=[AtomicCheckpointIO()], enable_checkpointing=False,
    )  # fmt: skip
    return Trainer(**{**options, **overrides})


# -- optimisation -------------------------------------------------------------------------------------------


def test_no_weight_decay_for_embeddings_norms_and_biases():
    model = VideoClassifier(model_kwargs=TINY, num_classes=4).model
    decay, no_decay = parameter_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    skipped = {names[id(p)] for p in no_decay["params"]}
    assert {"pos_embed", "cls_token", "time_embed"} <= skipped
    assert "blocks.0.norm1.weight" in skipped and "head.bias" in skipped
    assert all(p.ndim > 1 for p in decay["params"]) and "head.weight" not in skipped
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0


def test_schedules():
    cosine = WarmupCosine(total=110, warmup=10, min_ratio=0.01)
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(60) == pytest.approx(0.01 + 0.99 * 0.5)
    assert cosine(110) == pytest.approx(0.01) and cosine(500) == pytest.approx(0.01)
    steps = WarmupSteps(milestones=[11, 14], gamma=0.1, warmup=0)  # the paper's, in epochs of 1 step
    assert [steps(s) for s in (0, 10, 11, 13, 14, 20)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])


def test_sgd_nesterov_and_step_schedule(motion, tmp_path):
    data = make_data(motion)
    model = make_model(
        data, optimizer="sgd", lr=0.005, weight_decay=1e-4, scheduler="step", lr_milestones=[1]
    )
    trainer = make_trainer(tmp_path, max_epochs=2, limit_val_batches=0)
    trainer.fit(model, data)
    optimizer = trainer.optimizers[0]
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["nesterov"]
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.0005)  # x0.1 after epoch 1


def test_recipe_options_together(motion, tmp_path):
    # bf16-mixed, gradient checkpointing, label smoothing, clipping, drop path and warm-up in one short run.
    data = make_data(motion)
    model = make_model(
        data, grad_checkpointing=True, label_smoothing=0.1, warmup_epochs=0.5,
        model_kwargs={**TINY, "drop_path": 0.1},
    )  # fmt: skip
    trainer = make_trainer(tmp_path, precision="bf16-mixed", gradient_clip_val=1.0, fast_dev_run=2)
    trainer.fit(model, data)
    assert model.model.grad_checkpointing
    assert math.isfinite(float(trainer.callback_metrics["train/loss"]))


def test_fine_tuning_from_pretrained_weights_trains_in_training_mode(motion, tmp_path):
    # from_pretrained hands back an eval-mode model; a fine-tune must still drop paths and checkpoint blocks.
    from fast_timesformer import FastTimeSformer

    data = make_data(motion)
    tiny = FastTimeSformer(num_frames=4, image_size=16, num_classes=4, **{**TINY, "depth": 2})
    tiny.save_pretrained(str(tmp_path / "w"))
    model = make_model(
        data, pretrained=str(tmp_path / "w"), grad_checkpointing=True, model_kwargs={"drop_path": 0.1}
    )
    seen = []

    class Modes(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            seen.append(all(module.training for module in pl_module.model.modules()))

    make_trainer(tmp_path, max_steps=2, limit_val_batches=1, val_check_interval=1, callbacks=[Modes()]).fit(
        model, data
    )
    assert seen == [True, True]  # also after the validation in between
    assert model.model.blocks[-1].drop_path.drop_prob == pytest.approx(0.1)  # the override is applied


def test_performer_redraw_is_a_function_of_seed_and_step(motion, tmp_path):
    # Two independent runs stand in for two DDP ranks: same (seed, step) -> identical features, no messages.
    data = make_data(motion)
    features = []
    for _ in range(2):
        seed_everything(0)
        model = make_model(data, model_kwargs={**TINY, "attention": "performer"}, redraw_interval=2, seed=7)
        initial = model.model.performer_modules()[0].projection_matrix.clone()
        make_trainer(tmp_path, max_steps=3, limit_val_batches=0).fit(model, data)
        features.append(model.model.performer_modules()[0].projection_matrix)
        assert not torch.equal(initial, features[-1])  # redrawn at step 2
    assert torch.equal(features[0], features[1])


# -- evaluation through Lightning -----------------------------------------------------------------------


def test_multi_view_test_is_video_level(motion, tmp_path):
    data = make_data(motion, test_num_temporal_clips=2, test_num_spatial_crops=3, eval_batch_size=4)
    model = make_model(data)
    trainer = make_trainer(tmp_path)
    metrics = trainer.test(model, data, verbose=False)[0]
    results = model.test_results
    assert results["num_videos"] == 5 and results["video"].tolist() == list(range(5))
    assert results["protocol"] == "4x2, 2 clips x 3 crops, 16px, mean of softmax"
    assert metrics["test/top1"] == pytest.approx(results["top1"])
    torch.testing.assert_close(results["scores"].sum(-1), torch.ones(5))


# -- exact resumption ---------------------------------------------------------------------------------------


class StopAfterEpoch(Callback):
    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def _fit(root, motion, *, callbacks=(), ckpt_path=None, epochs=2):
    seed_everything(0)
    data = make_data(motion, scale_range=(16, 24))  # random crops: augmentation must resume exactly too
    model = make_model(data, warmup_epochs=1, model_kwargs={**TINY, "drop_path": 0.2, "ff_dropout": 0.1})
    checkpoint = RunCheckpoint(
        dirpath=str(root / "checkpoints"), filename="best", monitor="val/top1", mode="max", save_last=True
    )
    trainer = make_trainer(
        root, max_epochs=epochs, enable_checkpointing=True, callbacks=[checkpoint, *callbacks]
    )
    trainer.fit(model, data, ckpt_path=ckpt_path)
    return model, trainer


def test_resumed_run_equals_uninterrupted_run(motion, tmp_path):
    straight, _ = _fit(tmp_path / "straight", motion)
    _fit(tmp_path / "resumed", motion, callbacks=[StopAfterEpoch(0)])
    last = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 0 and last["global_step"] == 3  # the interruption happened after epoch 0
    resumed, trainer = _fit(tmp_path / "resumed", motion, ckpt_path="last")
    assert trainer.global_step == 6
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    assert os.path.getsize(tmp_path / "resumed" / "checkpoints" / "best.ckpt") > 0


# -- safety ------------------------------------------------------------------------------------------------


class NaNAfter(torch.nn.Module):
    """Cross-entropy that returns NaN from its ``n``-th call on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n, self.calls = n, 0

    def forward(self, logits, labels):
        self.calls += 1
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return loss * float("nan") if self.calls >= self.n else loss


def test_non_finite_loss_stops_training_without_a_nan_checkpoint(motion, tmp_path):
    data = make_data(motion)
    model = make_model(data)
    model.loss_fn = NaNAfter(3)
    checkpoint = RunCheckpoint(
        dirpath=str(tmp_path), filename="step{step}", every_n_train_steps=1, save_top_k=-1, save_last=True
    )
    trainer = make_trainer(tmp_path, max_epochs=5, enable_checkpointing=True, callbacks=[checkpoint])
    with pytest.raises(
        NonFiniteLossError, match=r"training loss is nan at epoch 0, batch 2 .*global step 2.*--model.lr"
    ):
        trainer.fit(model, data)
    assert all(torch.isfinite(p).all() for p in model.parameters())  # the bad step never reached the weights
    last = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert last["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values() if t.is_floating_point())


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    io = AtomicCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)
    with pytest.raises(
        NonFiniteWeightsError, match=r"refusing to write checkpoint .*last.ckpt.*model.head.weight"
    ):
        io.save_checkpoint({"state_dict": {"model.head.weight": torch.tensor([1.0, float("nan")])}}, path)
    assert torch.equal(io.load_checkpoint(path)["state_dict"]["w"], torch.ones(2))


def test_failed_checkpoint_write_keeps_the_previous_one(motion, tmp_path, monkeypatch):
    # A Trainer saves last.ckpt after epoch 0; the save after epoch 1 dies halfway through writing.
    data = make_data(motion)
    model = make_model(data)
    real_save = torch.save
    calls = []

    def failing_save(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real_save(obj, file, *args, **kwargs)
        file.write(b"PK\x03\x04 half a checkpoint")  # some bytes reach the disk ...
        raise OSError(28, "No space left on device")  # ... then the disk is full

    monkeypatch.setattr(torch, "save", failing_save)
    checkpoint = RunCheckpoint(dirpath=str(tmp_path), filename="unused", save_top_k=0, save_last=True)
    trainer = make_trainer(
        tmp_path, max_epochs=2, enable_checkpointing=True, callbacks=[checkpoint], limit_val_batches=0
    )
    with pytest.raises(OSError, match="No space left"):
        trainer.fit(model, data)
    monkeypatch.setattr(torch, "save", real_save)
    survivor = AtomicCheckpointIO().load_checkpoint(tmp_path / "last.ckpt")
    assert survivor["epoch"] == 0 and survivor["global_step"] == 3
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]  # no temporary file left behind


def test_checkpoints_load_with_weights_only(motion, tmp_path):
    _, trainer = _fit(tmp_path, motion, epochs=1)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    extra = checkpoint["fast_timesformer"]
    assert extra["class_names"] == [
        "left_blue_first",
        "left_red_first",
        "right_blue_first",
        "right_red_first",
    ]
    assert extra["preprocessing"]["num_temporal_clips"] == 2 and extra["model_config"]["dim"] == 32


def test_datamodule_errors_are_helpful(motion):
    with pytest.raises(ValueError, match="at least one of train, val, test or predict"):
        VideoDataModule()
    data = make_data(motion, val=None)
    with pytest.raises(ValueError, match="`test` needs --data.test"):
        data.setup("test")
    with pytest.raises(ValueError, match="unknown preset 'nope'"):
        VideoClassifier(preset="nope")


def test_unreadable_videos_are_skipped_counted_and_capped(motion, tmp_path):
    listing = tmp_path / "train.txt"
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    good = [
        f"{motion / 'train' / r.split(',')[0]} {r.split(',')[1]}"
        for r in (motion / "train" / "manifest.csv").read_text().split()[1:]
    ]
    listing.write_text("\n".join([*good, f"{tmp_path / 'broken.mp4'} left_red_first"]) + "\n")
    classes = str(motion / "classes.txt")
    data = make_data(motion, train=str(listing), classes=classes, max_bad_fraction=0.2)
    make_trainer(tmp_path, limit_val_batches=0).fit(make_model(data), data)
    assert data.datasets["train"].tracker.num_bad == 1  # skipped and counted, training went on

    strict = make_data(motion, train=str(listing), classes=classes, max_bad_fraction=0.0)
    with pytest.raises(TooManyBadVideos, match="1 of 13 videos could not be decoded"):
        make_trainer(tmp_path, limit_val_batches=0).fit(make_model(strict), strict)
    assert "broken.mp4" in (tmp_path / "bad_videos_train.txt").read_text()
