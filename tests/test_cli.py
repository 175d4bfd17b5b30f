"""The ``fast-timesformer`` command: LightningCLI fit/test (in-process), plain subcommands, DDP on CPU."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from fast_timesformer.cli import main
from fast_timesformer.data.synthetic import generate_motion_dataset


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("motion")
    generate_motion_dataset(root, num_videos={"train": 8, "val": 5}, num_frames=8, size=16, seed=0)
    return root


def write_config(path: Path, motion: Path, run: Path, **sections) -> Path:
    config = {
        "seed_everything": 0,
        "trainer": {
            "default_root_dir": str(run), "accelerator": "cpu", "devices": 1, "max_epochs": 1,
            "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
        },
        "model": {"preset": "timesformer_micro_8x32", "model_kwargs": {"dim": 32, "depth": 1, "heads": 2}, "lr": 3e-3},
        "data": {
            "train": str(motion / "train" / "manifest.csv"), "val": str(motion / "val" / "manifest.csv"),
            "num_frames": 4, "sampling_rate": 2, "crop_size": 16, "scale_range": [16, 20], "flip": False,
            "test_num_temporal_clips": 2, "test_num_spatial_crops": 3, "batch_size": 4, "eval_batch_size": 4,
            "num_workers": 0,
        },
    }  # fmt: skip
    for key, values in sections.items():
        config[key].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


@pytest.fixture(scope="module")
def trained(motion, tmp_path_factory):
    """One `fit` run shared by the tests below (1 epoch, 2 steps)."""
    tmp = tmp_path_factory.mktemp("run")
    config = write_config(tmp / "config.yaml", motion, tmp / "run")
    assert main(["fit", "--config", str(config)]) == 0
    return config, tmp / "run"


def test_fit_writes_config_metrics_and_checkpoints(trained):
    config, run = trained
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["num_frames"] == 4 and "num_frames" not in saved["model"]  # linked from data
    assert saved["seed_everything"] == 0 and saved["checkpoint"]["monitor"] == "val/top1"
    assert {"last.ckpt", "best.ckpt"} <= set(os.listdir(run / "checkpoints"))
    rows = read_csv(run / "metrics.csv")
    assert any(row["val/top1"] for row in rows) and any(row["train/loss_step"] for row in rows)


def test_resume_continues_the_run(trained, tmp_path):
    config, run = trained
    copy = tmp_path / "run"
    os.makedirs(copy / "checkpoints")
    for name in ("config.yaml", "metrics.csv"):
        (copy / name).write_bytes((run / name).read_bytes())
    (copy / "checkpoints" / "last.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    args = [
        "fit",
        "--config",
        str(config),
        "--trainer.default_root_dir",
        str(copy),
        "--trainer.max_epochs",
        "2",
    ]
    assert main([*args, "--ckpt_path", "last"]) == 0
    assert torch.load(copy / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4
    epochs = {row["epoch"] for row in read_csv(copy / "metrics.csv")}
    assert epochs == {"0", "1"}  # the resumed run appended to the curves instead of replacing them


def test_test_is_multi_view_and_writes_predictions(trained, caplog):
    config, run = trained
    caplog.set_level(logging.INFO)
    assert main(["test", "--config", str(config), "--ckpt_path", str(run / "checkpoints" / "best.ckpt")]) == 0
    predictions = read_csv(run / "test" / "predictions.csv")
    assert len(predictions) == 5 and predictions[0]["label"] in predictions[0]["top5"].split()
    assert (run / "test" / "config.yaml").is_file()
    assert "(4x2, 2 clips x 3 crops, 16px, mean of softmax; 5 videos)" in caplog.text


def test_export_then_classify(trained, motion, tmp_path, capsys):
    _, run = trained
    weights = tmp_path / "weights"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(weights)]) == 0
    config = json.loads((weights / "config.json").read_text())
    assert config["class_names"][0] == "left_blue_first"
    assert (
        config["preprocessing"]["num_temporal_clips"] == 2 and config["preprocessing"]["sampling_rate"] == 2
    )
    video = str(next((motion / "val" / "left_red_first").glob("*.mp4")))
    capsys.readouterr()
    assert main(["classify", video, "--weights", str(weights), "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    assert f"{video}  (4x2, 2 clips x 3 crops, 16px)" in text and text.count("%") == 2
    assert main(["classify", video, "--weights", str(weights), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    probabilities = [p["probability"] for p in report["results"][0]["predictions"]]
    assert len(probabilities) == 4 and sum(probabilities) == pytest.approx(1.0, abs=1e-4)


def test_classify_gives_the_test_predictions_for_a_one_crop_protocol(motion, tmp_path, capsys):
    # One centre crop after resizing the short side to scale_range[0]: classify must use the stored short
    # side (it once fell back to 256 px and zoomed into a 16 px video), so it agrees with `test` exactly.
    one_crop = {"scale_range": [20, 24], "test_num_temporal_clips": 1, "test_num_spatial_crops": 1}
    config = write_config(tmp_path / "config.yaml", motion, tmp_path / "run", data=one_crop)
    assert main(["fit", "--config", str(config)]) == 0
    checkpoint = str(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert main(["test", "--config", str(config), "--ckpt_path", checkpoint]) == 0
    expected = {row["video"]: row for row in read_csv(tmp_path / "run" / "test" / "predictions.csv")}
    weights = tmp_path / "weights"
    assert main(["export", checkpoint, str(weights)]) == 0
    assert json.loads((weights / "config.json").read_text())["preprocessing"]["short_side"] == 20
    capsys.readouterr()
    assert main(["classify", *expected, "--weights", str(weights), "--json"]) == 0
    for result in json.loads(capsys.readouterr().out)["results"]:
        top = result["predictions"][0]
        assert top["label"] == expected[result["video"]]["prediction"]
        assert top["probability"] == pytest.approx(float(expected[result["video"]]["probability"]), abs=1e-5)


def test_classify_a_corrupt_file_fails_naming_it(trained, motion, tmp_path, capsys):
    _, run = trained
    weights = tmp_path / "weights"
    assert main(["export", str(run / "checkpoints" / "last.ckpt"), str(weights)]) == 0
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(200))
    good = str(next((motion / "val" / "left_red_first").glob("*.mp4")))
    capsys.readouterr()
    assert main(["classify", str(corrupt), good, "--weights", str(weights)]) == 1
    captured = capsys.readouterr()
    assert f"error: {corrupt}:" in captured.err and good in captured.out  # the good file is still classified
    assert main(["classify", str(tmp_path / "missing.mp4"), "--weights", str(weights)]) == 1
    assert "missing.mp4: file not found" in capsys.readouterr().err


def test_fast_dev_run_and_print_config(motion, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", motion, tmp_path / "run")
    assert main(["fit", "--config", str(config), "--trainer.fast_dev_run", "1"]) == 0
    assert not list(tmp_path.glob("run/**/*.ckpt"))  # fast_dev_run writes no checkpoint
    capsys.readouterr()
    assert main(["fit", "--config", str(config), "--model.lr", "0.5", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["lr"] == 0.5 and printed["data"]["crop_size"] == 16


def test_unknown_options_and_commands_are_rejected_helpfully(motion, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", motion, tmp_path / "run")
    assert main(["fit", "--config", str(config), "--model.lrr", "1"]) == 2
    assert "lrr" in capsys.readouterr().err
    assert main(["classify", "x.mp4", "--weights", "w", "--topk", "3"]) == 2
    assert "did you mean --top-k?" in capsys.readouterr().err
    assert main(["fitt"]) == 2
    assert "unknown command 'fitt' (did you mean 'fit'?)" in capsys.readouterr().err
    assert main(["--help"]) == 0
    assert "classify" in capsys.readouterr().out


def test_check_data(motion, tmp_path, capsys):
    assert main(["check-data", str(motion / "val" / "manifest.csv")]) == 0
    assert "OK" in capsys.readouterr().out
    listing = tmp_path / "list.txt"
    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    listing.write_text(f"{motion / 'val' / 'left_red_first' / 'val_00001.mp4'} 0\nbad.mp4 1\n")
    report = tmp_path / "report.txt"
    assert main(["check-data", str(listing), "--report", str(report)]) == 1
    assert "bad.mp4" in capsys.readouterr().out and "bad.mp4" in report.read_text()


def test_ddp_on_two_cpu_processes_matches_one_process(trained, tmp_path):
    """Two gloo ranks split the test views (with DistributedSampler padding); per-video results must match."""
    config, run = trained
    checkpoint = str(run / "checkpoints" / "best.ckpt")
    # 5 videos x 1 clip x 3 crops = 15 views: DistributedSampler pads 2 ranks to 16 with a duplicate view.
    common = [
        "test",
        "--config",
        str(config),
        "--ckpt_path",
        checkpoint,
        "--data.test_num_temporal_clips",
        "1",
    ]
    ddp = ["--trainer.strategy", "ddp", "--trainer.devices", "2"]
    assert main([*common, "--trainer.default_root_dir", str(tmp_path / "single")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [
        sys.executable,
        "-m",
        "fast_timesformer",
        *common,
        "--trainer.default_root_dir",
        str(tmp_path / "ddp"),
        *ddp,
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for name in ("single", "ddp"):
        results[name] = {row["video"]: row for row in read_csv(tmp_path / name / "test" / "predictions.csv")}
        rows = [row for row in read_csv(tmp_path / name / "test" / "metrics.csv") if row.get("test/top1")]
        results[name + "_metrics"] = {k: float(v) for k, v in rows[-1].items() if k.startswith("test/") and v}
    assert results["single"].keys() == results["ddp"].keys() and len(results["ddp"]) == 5
    for video, row in results["single"].items():
        assert row["prediction"] == results["ddp"][video]["prediction"]
        assert float(row["probability"]) == pytest.approx(
            float(results["ddp"][video]["probability"]), abs=1e-5
        )
    for key in ("test/top1", "test/mean_class_accuracy"):
        assert results["single_metrics"][key] == pytest.approx(results["ddp_metrics"][key])


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=[path.stem for path in CONFIGS])
def test_shipped_configs_parse(config, capsys):
    assert main(["fit", "--config", str(config), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["preset"] and printed["data"]["num_frames"] >= 1


@pytest.mark.parametrize("task", ["motion", "long"])
def test_demo_configs_are_the_demo_recipes_and_train(task, motion, tmp_path):
    from dataclasses import asdict

    from fast_timesformer.data.synthetic_long import generate_long_dataset
    from fast_timesformer.training.demo import demo_recipe

    name = "demo" if task == "motion" else f"demo_{task}"
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml").read_text())
    recipe = asdict(demo_recipe("regular", task))
    model, data = config["model"], config["data"]
    assert model["model_kwargs"] == recipe["model_kwargs"] and model["preset"] == recipe["preset"]
    for key in ("lr", "weight_decay", "warmup_epochs"):
        assert model[key] == recipe[key], key
    assert config["trainer"]["max_epochs"] == recipe["epochs"] and data["batch_size"] == recipe["batch_size"]
    assert data["num_frames"] == recipe["num_frames"] and data["crop_size"] == recipe["size"]
    if task == "long":
        generate_long_dataset(tmp_path / "long", num_videos={"train": 8, "val": 4})
    root = motion if task == "motion" else tmp_path / "long"
    assert main([
        "fit", "--config", str(CONFIGS[[p.stem for p in CONFIGS].index(name)]),
        "--data.train", str(root / "train" / "manifest.csv"), "--data.val", str(root / "val" / "manifest.csv"),
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    ]) == 0  # fmt: skip
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("attention", ["performer", "fastformer"])
def test_swap_config_fine_tunes_regular_weights_with_linear_attention(attention, motion, tmp_path):
    from fast_timesformer import FastTimeSformer
    from fast_timesformer.data.synthetic import MOTION_CLASSES

    folder = Path(__file__).resolve().parents[1] / "configs"
    swap, demo = (
        yaml.safe_load((folder / f"{name}.yaml").read_text()) for name in ("swap_to_linear", "demo")
    )
    assert swap["data"] == demo["data"]  # the demo's data, read the demo's way
    assert swap["trainer"]["max_epochs"] == demo["trainer"]["max_epochs"] // 4  # a quarter of its steps
    torch.manual_seed(0)
    regular = FastTimeSformer(
        num_frames=8, image_size=16, patch_size=8, dim=32, depth=1, heads=2, num_classes=4, pos_emb="rotary"
    )
    regular.save_pretrained(str(tmp_path / "regular"), class_names=list(MOTION_CLASSES))
    assert main([
        "fit", "--config", str(folder / "swap_to_linear.yaml"),
        "--model.pretrained", str(tmp_path / "regular"), "--model.model_kwargs.attention", attention,
        "--data.train", str(motion / "train" / "manifest.csv"), "--data.val", str(motion / "val" / "manifest.csv"),
        "--trainer.default_root_dir", str(tmp_path / "run"), "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false",
    ]) == 0  # fmt: skip
    state = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    shared = "model.blocks.0.attn.qkv.weight"  # the projections carry over, then fine-tune
    before = regular.state_dict()[shared.removeprefix("model.")].flatten()
    assert torch.cosine_similarity(state[shared].flatten(), before, dim=0) > 0.95  # loaded, not drawn
    if attention == "fastformer":
        assert "model.blocks.0.attn.w_q" in state
    else:
        assert any(key.startswith("model.blocks.0.attn.") and "projection" in key for key in state)


def test_fit_cli_protects_the_run_folder(trained, tmp_path, capsys):
    config, run = trained
    copy = tmp_path / "run"
    os.makedirs(copy / "checkpoints")
    (copy / "checkpoints" / "last.ckpt").write_bytes((run / "checkpoints" / "last.ckpt").read_bytes())
    (copy / "metrics.csv").write_text((run / "metrics.csv").read_text() + "0,,7,,,9.9,,,\n")
    args = ["fit", "--config", str(config), "--trainer.default_root_dir", str(copy)]
    assert main(args) == 1
    assert "already holds the checkpoints" in capsys.readouterr().err
    assert main([*args, "--ckpt_path", "last", "--model.lr", "0.5"]) == 1
    assert "--model.lr 0.5" in capsys.readouterr().err
    for bad in ("/nonexistent.ckpt", str(copy / "metrics.csv")):
        assert main([*args, "--ckpt_path", bad]) == 1
        err = capsys.readouterr().err
        assert "Traceback" not in err and err.count("\n") == 1
    assert main([*args, "--trainer.accelerator", "cuda"]) == 1
    assert "not available" in capsys.readouterr().err
    assert main([*args, "--ckpt_path", "last", "--trainer.max_epochs", "2"]) == 0
    steps = [int(row["step"]) for row in read_csv(copy / "metrics.csv")]
    assert steps == sorted(steps) and 7 not in steps[:4]  # the row logged after the checkpoint was dropped


def test_fit_by_max_steps_alone_with_a_warm_cosine_schedule(motion, tmp_path):
    # Lightning estimates max_steps-only runs without loading the data: the schedule still needs an epoch.
    config = write_config(
        tmp_path / "config.yaml", motion, tmp_path / "run", model={"scheduler": "cosine", "warmup_epochs": 1}
    )
    assert (
        main(["fit", "--config", str(config), "--trainer.max_epochs", "null", "--trainer.max_steps", "3"])
        == 0
    )
    rates = [float(row["lr"]) for row in read_csv(tmp_path / "run" / "metrics.csv") if row["lr"]]
    assert len(rates) == 3 and rates[0] < rates[1]  # warming up over the 2 steps of an epoch (8 videos / 4)


@pytest.mark.slow
def test_fit_with_compile_trains_the_eager_model(motion, tmp_path):
    # --model.compile true: torch.compile in place (nn.Module.compile), so the checkpoint has the eager model's
    # names and loads into an uncompiled model; and the compiled forward computes the eager loss (step 0, the
    # same seed, weights and batch: before any update the two runs must agree to float rounding).
    losses = {}
    for name, extra in (("eager", []), ("compiled", ["--model.compile", "true"])):
        config = write_config(tmp_path / f"{name}.yaml", motion, tmp_path / name)
        args = ["fit", "--config", str(config), "--trainer.max_epochs", "null", "--trainer.max_steps", "1"]
        assert main([*args, "--trainer.limit_val_batches", "0", *extra]) == 0
        losses[name] = float(read_csv(tmp_path / name / "metrics.csv")[0]["train/loss_step"])
    state = torch.load(tmp_path / "compiled" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in state)
    from fast_timesformer.training import VideoClassifier

    eager = VideoClassifier(preset="timesformer_micro_8x32", model_kwargs={"dim": 32, "depth": 1, "heads": 2},
                            num_classes=4, num_frames=4, image_size=16)  # fmt: skip
    eager.load_state_dict(state)  # strict: the same names and shapes as an uncompiled model
    assert losses["compiled"] == pytest.approx(losses["eager"], rel=1e-5)
