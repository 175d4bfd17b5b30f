"""Multi-label: label lists and the Charades CSV, multi-hot targets, sigmoid views, mAP, thresholds, end to end."""

from __future__ import annotations

import json

import pytest
import torch
from test_cli import read_csv

from fast_timesformer.cli import main
from fast_timesformer.data import AnnotationError, VideoDataset, collate_videos, read_annotations
from fast_timesformer.data.synthetic_multilabel import MULTILABEL_CLASSES, generate_multilabel_dataset
from fast_timesformer.inference.views import aggregate_views
from fast_timesformer.training.evaluation import multilabel_metrics, tune_thresholds

CHARADES_HEADER = "id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length\n"


def test_label_lists_in_every_spelling(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4 cat,dog\nb.mp4 dog\nc.mp4 bird;cat\nd.mp4\ne.mp4,dog,bird\n")
    annotations = read_annotations(tmp_path / "list.txt", multilabel=True)
    assert annotations.classes == ["bird", "cat", "dog"]
    assert [(r.video_id, r.labels, r.label) for r in annotations] == [
        ("a", (1, 2), 1), ("b", (2,), 2), ("c", (0, 1), 0), ("d", (), -1), ("e", (0, 2), 0),
    ]  # fmt: skip
    (tmp_path / "manifest.csv").write_text('path,label\n"my clip.mp4","cat,dog"\nb.mp4,dog\nc.mp4,\n')
    rows = read_annotations(tmp_path / "manifest.csv", multilabel=True)
    assert [(r.video_id, r.labels) for r in rows] == [("my clip", (0, 1)), ("b", (1,)), ("c", ())]


def test_multilabel_files_in_a_single_label_run_are_named(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4 cat\nb.mp4 cat,dog\n")
    with pytest.raises(
        AnnotationError, match=r"list.txt:2: the label 'cat,dog' is a list.*--model.task multilabel"
    ):
        read_annotations(tmp_path / "list.txt")
    (tmp_path / "csv.txt").write_text("my clip.mp4,cat\nb.mp4,dog\n")  # CSV with a space in a path: fine
    assert [r.label for r in read_annotations(tmp_path / "csv.txt")] == [0, 1]
    (tmp_path / "charades.csv").write_text(
        CHARADES_HEADER + '46GP8,HR43,Kitchen,6,7,Yes,a,b,c,"c092 1.0 2.0",24\n'
    )
    with pytest.raises(
        AnnotationError, match="Charades annotations are multi-label.*--model.task multilabel"
    ):
        read_annotations(tmp_path / "charades.csv")


def test_unknown_classes_in_a_label_list_are_named(tmp_path):
    (tmp_path / "list.txt").write_text("a.mp4 cat,zebra\n")
    with pytest.raises(AnnotationError, match=r"list.txt:1: unknown label 'zebra': not one of the 2 classes"):
        read_annotations(tmp_path / "list.txt", multilabel=True, classes=["cat", "dog"])


def test_charades_csv(tmp_path):
    rows = [
        '46GP8,HR43,Kitchen,6,7,Yes,"A person cooks",food,desc,"c092 11.90 21.20;c147 0.00 12.60",24.83',
        "N11GT,0KZ7,Stairs,6,7,Yes,x,y,z,,18.33",
    ]
    (tmp_path / "Charades_v1_train.csv").write_text(CHARADES_HEADER + "\n".join(rows) + "\n")
    (tmp_path / "Charades_v1_classes.txt").write_text(
        "c000 Holding some clothes\nc092 Holding food\nc147 Sitting\n"
    )
    annotations = read_annotations(
        tmp_path / "Charades_v1_train.csv", multilabel=True, root=tmp_path / "videos"
    )
    assert annotations.format == "charades_csv"
    assert annotations.classes == ["Holding some clothes", "Holding food", "Sitting"]
    assert [r.labels for r in annotations] == [(1, 2), ()]
    assert annotations[0].path == str(tmp_path / "videos" / "46GP8.mp4")
    (tmp_path / "bad.csv").write_text(CHARADES_HEADER + '46GP8,HR43,Kitchen,6,7,Yes,a,b,c,"c092 11.90",24\n')
    with pytest.raises(AnnotationError, match=r"bad.csv:2: action 'c092 11.90' is not 'class start end'"):
        read_annotations(tmp_path / "bad.csv", multilabel=True)


def test_multi_hot_items_and_sigmoid_views(tmp_path):
    root = generate_multilabel_dataset(tmp_path, num_videos={"val": 6}, splits=("val",), seed=3)
    annotations = read_annotations(root / "val" / "manifest.csv", multilabel=True)
    assert annotations.classes == list(MULTILABEL_CLASSES)
    dataset = VideoDataset(annotations, num_frames=8, sampling_rate=1, mode="test", crop_size=32,
                           num_temporal_clips=2, num_spatial_crops=1, multilabel=True)  # fmt: skip
    batch = collate_videos([dataset[i] for i in range(len(dataset))])
    assert batch["label"].shape == (12, 4) and batch["label"].dtype == torch.float32
    for row, index in zip(batch["label"], batch["index"].tolist(), strict=True):
        assert row.nonzero().flatten().tolist() == list(annotations[index].labels)
    logits = torch.randn(12, 4)
    predictions = aggregate_views(logits, batch["label"], batch["index"], batch["view"], method="sigmoid")
    expected = logits.sigmoid().view(6, 2, 4).mean(1)
    assert torch.allclose(predictions.scores, expected, atol=1e-6) and predictions.labels.shape == (6, 4)


def test_map_baseline_and_thresholds():
    targets = torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 0], [0, 0, 1]], dtype=torch.float32)
    perfect = multilabel_metrics(targets * 0.8 + 0.1, targets)
    assert perfect["mAP"] == pytest.approx(1.0) and perfect["f1"] == pytest.approx(1.0)
    constant = multilabel_metrics(torch.full((4, 3), 0.3), targets)
    assert constant["mAP"] == pytest.approx(constant["mAP_baseline"])  # AP of a constant = the frequency
    assert constant["mAP_baseline"] == pytest.approx((0.5 + 0.25 + 0.75) / 3)
    scores = torch.tensor([[0.9, 0.2, 0.35], [0.1, 0.3, 0.4], [0.8, 0.1, 0.2], [0.3, 0.05, 0.45]])
    thresholds = tune_thresholds(scores, targets)
    assert multilabel_metrics(scores, targets, thresholds)["f1"] == pytest.approx(1.0)
    assert 0.3 < thresholds[0] <= 0.8 and 0.2 < thresholds[2] <= 0.35


def test_fit_test_export_classify_end_to_end(tmp_path, capsys):
    import yaml

    root = generate_multilabel_dataset(tmp_path / "data", num_videos={"train": 24, "val": 12}, seed=0)
    config = {
        "seed_everything": 0,
        "trainer": {"default_root_dir": str(tmp_path / "run"), "accelerator": "cpu", "devices": 1,
                    "max_epochs": 2, "log_every_n_steps": 1, "enable_progress_bar": False,
                    "enable_model_summary": False},
        "model": {"preset": "timesformer_micro_8x32", "task": "multilabel", "pos_weight": "auto", "lr": 3e-3,
                  "model_kwargs": {"dim": 32, "depth": 1, "heads": 2}},
        "data": {"train": str(root / "train" / "manifest.csv"), "val": str(root / "val" / "manifest.csv"),
                 "num_frames": 8, "sampling_rate": 1, "crop_size": 32, "scale_range": [32, 32], "flip": False,
                 "batch_size": 8, "num_workers": 0, "test_num_temporal_clips": 1, "test_num_spatial_crops": 1},
    }  # fmt: skip
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", "--config", str(tmp_path / "fit.yaml")]) == 0
    metrics = [row for row in read_csv(tmp_path / "run" / "metrics.csv") if row.get("val/mAP")]
    assert len(metrics) == 2 and all(0 < float(row["val/mAP"]) <= 1 for row in metrics)
    best = tmp_path / "run" / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(best, weights_only=True)
    thresholds = checkpoint["fast_timesformer"]["thresholds"]
    assert len(thresholds) == 4 and checkpoint["fast_timesformer"]["task"] == "multilabel"
    assert checkpoint["state_dict"]["loss_fn.pos_weight"].shape == (4,)  # from the training labels
    assert main(["test", "--config", str(tmp_path / "fit.yaml"), "--ckpt_path", str(best)]) == 0
    predictions = read_csv(tmp_path / "run" / "test" / "predictions.csv")
    assert len(predictions) == 12 and set(predictions[0]) >= {"labels", "predicted", *MULTILABEL_CLASSES}
    per_class = read_csv(tmp_path / "run" / "test" / "per_class_ap.csv")
    assert [row["class"] for row in per_class] == list(MULTILABEL_CLASSES)
    assert all(
        row["average_precision"] == "" or 0 < float(row["average_precision"]) <= 1 for row in per_class
    )
    assert main(["export", str(best), str(tmp_path / "weights"), "--format", "weights"]) == 0
    saved = json.loads((tmp_path / "weights" / "config.json").read_text())
    assert saved["task"] == {"type": "multilabel", "thresholds": thresholds}
    from fast_timesformer.inference.deploy import export_metadata
    from fast_timesformer.weights import from_pretrained

    assert export_metadata(from_pretrained(tmp_path / "weights"))["task"] == saved["task"]  # ONNX carries it
    capsys.readouterr()
    video = root / "val" / "val_00000.mp4"
    assert main(["classify", str(video), "--weights", str(tmp_path / "weights"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    assert all(p["probability"] >= p["threshold"] for p in result["predictions"])
    # a single-label run on the multi-label manifest: named, with the option
    single = {**config, "model": {**config["model"], "task": "single", "pos_weight": None}}
    single["trainer"] = {**config["trainer"], "default_root_dir": str(tmp_path / "run2")}
    (tmp_path / "single.yaml").write_text(yaml.safe_dump(single))
    assert main(["fit", "--config", str(tmp_path / "single.yaml")]) == 1
    err = capsys.readouterr().err
    assert (
        "manifest.csv:2: the label" in err
        and "is a list of labels" in err
        and "--model.task multilabel" in err
    )


def test_bad_multilabel_options_and_config():
    from fast_timesformer.errors import OptionError
    from fast_timesformer.training import VideoClassifier

    with pytest.raises(OptionError, match="--model.pos_weight is for --model.task multilabel"):
        VideoClassifier(num_classes=3, num_frames=8, image_size=32, pos_weight=2.0)
    with pytest.raises(OptionError, match="--model.pos_weight must be 'auto'.*3 positive numbers"):
        VideoClassifier(num_classes=3, num_frames=8, image_size=32, task="multilabel", pos_weight=[1.0, -1.0])
    with pytest.raises(OptionError, match="--model.task must be 'single' or 'multilabel'"):
        VideoClassifier(num_classes=3, num_frames=8, image_size=32, task="regression")
