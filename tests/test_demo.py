"""``fast-timesformer demo`` end to end, shrunk to seconds (the real recipe's accuracy and time are measured
by running it, see BENCHMARKS.md "The demo" and benchmarks/demo.py, not asserted here)."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from fast_timesformer.cli import main
from fast_timesformer.data.synthetic_long import LONG_CLASSES
from fast_timesformer.training.demo import DemoRecipe, demo_recipe, run_demo

TINY = DemoRecipe(
    num_train=8, num_val=4, epochs=1, batch_size=4, warmup_epochs=0.0,
    model_kwargs={"dim": 32, "heads": 2, "dim_head": 16, "depth": 1, "pos_emb": "rotary"},
)  # fmt: skip


def test_demo_writes_its_report(tmp_path, capsys):
    summary = run_demo(output=tmp_path, recipe=TINY, threads=1)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == json.loads(json.dumps(summary))
    for key in ("val_top1", "space_only_top1", "num_classes", "seconds", "protocol"):
        assert key in written
    assert written["num_classes"] == 4 and 0.0 <= written["val_top1"] <= 1.0
    assert written["protocol"] == "8x1, 1 clip x 1 crop, 16px"
    for name in (
        "training_curves.png",
        "confusion_matrix.png",
        "weights/model.safetensors",
        "weights/config.json",
    ):
        assert (tmp_path / name).stat().st_size > 0, name
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert written["classified"]["label"] in written["class_names"]
    out = capsys.readouterr().out
    assert "val top-1" in out and "space-only attention" in out and "(8x1, 1 clip x 1 crop, 16px)" in out

    # The exported weights classify like `fast-timesformer classify` with the stored preprocessing.
    config = json.loads((tmp_path / "weights" / "config.json").read_text())
    assert config["preprocessing"]["num_frames"] == 8 and config["model"]["pos_emb"] == "rotary"
    assert main(["classify", written["classified"]["video"], "--weights", str(tmp_path / "weights")]) == 0


def test_demo_rejects_unknown_options(capsys):
    assert main(["demo", "--epoch", "3"]) == 2
    assert "did you mean --epochs?" in capsys.readouterr().err


@pytest.mark.parametrize("attention", ["performer", "fastformer"])
def test_demo_trains_each_mechanism_with_its_recipe(attention, tmp_path, capsys):
    out = tmp_path / attention
    args = ["demo", "--attention", attention, "--output", str(out), "--num-train", "8", "--num-val", "4"]
    assert main([*args, "--epochs", "1", "--no-control", "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    recipe = demo_recipe(attention)
    assert summary["attention"] == attention and summary["recipe"]["lr"] == recipe.lr
    assert summary["recipe"]["model_kwargs"] == recipe.model_kwargs and summary["recipe"]["epochs"] == 1
    config = json.loads((out / "weights" / "config.json").read_text())["model"]
    assert config["attention"] == attention and config["pos_emb"] == recipe.model_kwargs["pos_emb"]
    assert f"{attention} attention" in capsys.readouterr().out
    assert (out / "training_curves.png").stat().st_size > 0


def test_demo_recipes_differ_from_regular_only_where_measured():
    regular = asdict(demo_recipe("regular"))
    assert regular == asdict(DemoRecipe())
    changed = {
        name: {key for key, value in asdict(demo_recipe(name)).items() if value != regular[key]}
        for name in ("performer", "fastformer")
    }
    assert changed == {"performer": {"attention", "lr", "epochs"}, "fastformer": {"attention", "epochs"}}
    with pytest.raises(ValueError, match="unknown demo attention 'favor'; choose one of regular"):
        demo_recipe("favor")
    long = asdict(demo_recipe("regular", "long"))
    assert all(
        asdict(demo_recipe(name, "long")) == {**long, "attention": name}
        for name in ("performer", "fastformer")
    )


def test_demo_long_task_writes_its_report(tmp_path, capsys):
    out = tmp_path / "long"
    args = ["demo", "--task", "long", "--output", str(out), "--num-train", "8", "--num-val", "4"]
    assert main([*args, "--epochs", "1", "--threads", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == {
        **asdict(demo_recipe("regular", "long")),
        "num_train": 8,
        "num_val": 4,
        "epochs": 1,
    }
    assert summary["class_names"] == list(LONG_CLASSES) and summary["chance"] == 0.25
    assert summary["space_only_top1"] is not None  # the control ran
    config = json.loads((out / "weights" / "config.json").read_text())["model"]
    assert (config["num_frames"], config["image_size"], config["dim"]) == (32, 64, 64)
    printed = capsys.readouterr().out
    assert "built-in long dataset" in printed and "32 frames of 64x64 px" in printed
    assert main(["demo", "--task", "long", "--data-only", "--output", str(tmp_path / "data-only"),
                 "--num-train", "4", "--num-val", "4"]) == 0  # fmt: skip
    assert "configs/demo_long.yaml" in capsys.readouterr().out


def test_demo_rejects_unknown_tasks(capsys):
    assert main(["demo", "--task", "longer"]) == 2
    assert "--task" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown demo task 'longer'; choose one of motion, long"):
        demo_recipe("regular", "longer")
