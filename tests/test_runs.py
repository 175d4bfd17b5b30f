"""Run folders: fit never overwrites a run unasked; resume reads the checkpoint safely and tidies metrics."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from fast_timesformer.checkpoints import CheckpointError
from fast_timesformer.errors import OptionError
from fast_timesformer.training.callbacks import AtomicCheckpointIO, CheckpointWriteError
from fast_timesformer.training.runs import prepare_fit, stale_temporaries, truncate_metrics


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > PWNED",))


def test_truncate_metrics_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("epoch,step,loss\n0,0,1.0\n0,1,0.9\n1,2,0.8\n1,3,0.7\n1,")
    assert truncate_metrics(path, 2) == 3  # steps 2, 3 and the torn last line
    assert path.read_text() == "epoch,step,loss\n0,0,1.0\n0,1,0.9\n"


def test_prepare_fit_refuses_a_folder_with_checkpoints_and_cleans_leftovers(tmp_path):
    checkpoints = tmp_path / "checkpoints"
    checkpoints.mkdir()
    (tmp_path / "config.yaml").write_text("x: 1\n")
    (checkpoints / ".last.ckpt.abc.tmp").write_bytes(b"0" * 100)
    assert prepare_fit(root=tmp_path, checkpoint_dir=checkpoints, ckpt_path=None, overwrite=False,
                       hyperparameters={}) is None  # fmt: skip
    assert not (tmp_path / "config.yaml").exists() and not stale_temporaries(checkpoints)
    (checkpoints / "last.ckpt").write_bytes(b"x")
    with pytest.raises(OptionError, match="--ckpt_path last.*--overwrite"):
        prepare_fit(
            root=tmp_path, checkpoint_dir=checkpoints, ckpt_path=None, overwrite=False, hyperparameters={}
        )
    prepare_fit(root=tmp_path, checkpoint_dir=checkpoints, ckpt_path=None, overwrite=True, hyperparameters={})
    assert not (checkpoints / "last.ckpt").exists()


def test_bad_checkpoint_files_are_one_line_errors(tmp_path):
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    evil = tmp_path / "evil.ckpt"
    evil.write_bytes(pickle.dumps(_Evil()))
    io = AtomicCheckpointIO()
    for file in (empty, evil, tmp_path / "missing.ckpt"):
        with pytest.raises(CheckpointError):
            io.load_checkpoint(file)
    assert not (tmp_path / "PWNED").exists()


def test_a_failed_checkpoint_write_names_the_path(tmp_path, monkeypatch):
    def full_disk(obj, file, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing")

    monkeypatch.setattr(torch, "save", full_disk)  # the error torch raises on ENOSPC, without filling a disk
    target = tmp_path / "last.ckpt"
    with pytest.raises(CheckpointWriteError, match="last.ckpt.*previous checkpoint"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}}, target)
    assert not stale_temporaries(tmp_path)
