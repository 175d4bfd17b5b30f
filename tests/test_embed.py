"""Features for search: pooled and per-window features, the files they go to, nearest neighbours, the CLI."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from video_fixtures import write_audio_only, write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.cli import main
from fast_timesformer.data import collate_videos, read_annotations
from fast_timesformer.errors import OptionError
from fast_timesformer.inference import (
    Predictor,
    embed_videos,
    load_embeddings,
    nearest_neighbours,
    timeline,
)
from fast_timesformer.inference.embed import EmbedError

# 4 frames x 4 apart, 2 clips x 3 crops: 6 views per file.
PREP = Preprocessing(
    num_frames=4, sampling_rate=4, crop_size=32, short_side=32, num_temporal_clips=2, num_spatial_crops=3
)
CLASSES = ["a", "b", "c"]


def tiny_model() -> FastTimeSformer:
    torch.manual_seed(0)
    return FastTimeSformer(
        num_frames=4, num_classes=3, image_size=32, patch_size=8, dim=32, depth=2, heads=2, dim_head=16,
        pos_emb="rotary",
    ).eval()  # fmt: skip


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("embed")
    rng = np.random.default_rng(0)
    made = {}
    for name, frames in (("one", 20), ("two", 40), ("three", 24)):
        pixels = rng.integers(0, 256, size=(frames, 40, 48, 3), dtype=np.uint8)
        made[name] = write_video(root / f"{name}.mp4", num_frames=frames, width=48, height=40, frames=pixels)
    made["long"] = write_video(root / "long.mp4", num_frames=75, width=48, height=40)
    made["text"] = root / "notes.mp4"
    made["text"].write_text("not a video\n")
    made["audio"] = write_audio_only(root / "audio.m4a")
    weights = root / "weights"
    tiny_model().save_pretrained(weights, preprocessing=PREP, class_names=CLASSES)
    made["weights"] = weights
    return made


def by_hand(model: FastTimeSformer, path: Path) -> torch.Tensor:
    """The mean of forward_features over the Predictor's own views of one file."""
    dataset = Predictor(model, preprocessing=PREP).views(path)
    batch = collate_videos([dataset[i] for i in range(len(dataset))])
    with torch.no_grad():
        return model.forward_features(batch["video"]).mean(0)


def test_pooled_features_are_the_mean_over_the_stored_views(files):
    model = tiny_model()
    videos = [files["one"], files["two"], files["three"]]
    # batch_size 4 < 6 views per file: batches straddle files.
    result = embed_videos(videos, files["weights"], batch_size=4)
    assert result.paths == [str(v) for v in videos] and result.num_views == [6, 6, 6]
    assert result.features.shape == (3, 32) and result.errors == []
    expected = torch.stack([by_hand(model, v) for v in videos])
    torch.testing.assert_close(result.features, expected, atol=1e-5, rtol=1e-5)
    # They are the classifier's input: its head on them gives the model's logits of the mean view.
    alone = embed_videos([files["two"]], files["weights"], batch_size=64)
    torch.testing.assert_close(alone.features[0], result.features[1], atol=1e-5, rtol=1e-5)
    assert "2 clips x 3 crops" in result.protocol


def test_bad_files_are_reported_and_skipped(files):
    missing = files["one"].parent / "missing.mp4"
    videos = [files["text"], files["one"], missing, files["audio"], files["two"]]
    result = embed_videos(videos, files["weights"])
    assert result.paths == [str(files["one"]), str(files["two"])]
    assert [e["video"] for e in result.errors] == [str(files["text"]), str(missing), str(files["audio"])]
    assert "file not found" in result.errors[1]["error"]
    assert all(e["error"] for e in result.errors)
    with pytest.raises(EmbedError, match="no video could be embedded.*missing.mp4"):
        embed_videos([missing, files["text"]], files["weights"])
    with pytest.raises(OptionError, match="batch_size"):
        embed_videos([files["one"]], files["weights"], batch_size=0)
    # The reader's limits apply: a 48x40 frame is over max_pixels=100.
    with pytest.raises(EmbedError, match="pixels"):
        embed_videos([files["one"]], files["weights"], max_pixels=100)


def test_window_features_are_the_timelines_windows(files):
    predictor = Predictor.from_pretrained(files["weights"])
    model = predictor.model
    result = embed_videos([files["one"], files["long"]], predictor, windows=True, window_views=1, stride=0.25)
    # With one crop per window the timeline's probabilities are softmax(head(window feature)).
    line = timeline(predictor, files["long"], stride=0.25, window_views=1)
    rows = result.window_video == 1
    assert result.num_windows()[1] == len(line.windows) > 3
    torch.testing.assert_close(
        result.window_start_s[rows], torch.tensor([w.start_s for w in line.windows]), atol=1e-6, rtol=0
    )
    with torch.no_grad():
        probabilities = model.forward_head(result.window_features[rows]).softmax(-1)
    torch.testing.assert_close(probabilities, line.probabilities, atol=1e-5, rtol=1e-5)
    assert result.num_windows()[0] >= 1  # a file shorter than the stride still has its window


def test_save_and_load_both_formats(files, tmp_path):
    annotation = tmp_path / "list.txt"
    annotation.write_text(f"{files['one']} b\n{files['text']} a\n{files['two']} c\n")
    videos = read_annotations(annotation, classes=CLASSES)
    result = embed_videos(videos, files["weights"], windows=True)
    for suffix in (".safetensors", ".npy"):
        out = tmp_path / suffix[1:] / f"features{suffix}"  # one folder each: the index names would collide
        written = result.save(out)
        assert set(written) >= {"features", "index", "windows"} and written["index"] == out.with_suffix(
            ".csv"
        )
        with open(written["index"], newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [(r["path"], r["label"], r["label_index"]) for r in rows] == [
            (str(files["one"]), "b", "1"),
            (str(files["two"]), "c", "2"),
        ]
        back = load_embeddings(out)
        torch.testing.assert_close(back.features, result.features, atol=0, rtol=0)
        torch.testing.assert_close(back.window_features, result.window_features, atol=0, rtol=0)
        assert back.labels == [1, 2] and back.paths == result.paths
        assert back.window_video.tolist() == result.window_video.tolist()
        with pytest.raises(OptionError, match="already exist.*--overwrite"):
            result.save(out)
        result.save(out, overwrite=True)
    with pytest.raises(OptionError, match=r"\.safetensors or \.npy"):
        result.save(tmp_path / "features.pt")


def test_nearest_neighbours_is_cosine_similarity():
    torch.manual_seed(1)
    features = torch.randn(9, 5)
    features[4] = 3 * features[2]  # the same direction, another length: cosine 1
    indices, similarities = nearest_neighbours(features, 3)
    assert indices.shape == similarities.shape == (9, 3)
    assert indices[2, 0] == 4 and indices[4, 0] == 2 and similarities[2, 0] == pytest.approx(1.0)
    unit = features / features.norm(dim=1, keepdim=True)
    brute = (unit @ unit.T).numpy()
    np.fill_diagonal(brute, -np.inf)
    expected = -np.sort(-brute, axis=1)[:, :3]  # the 3 highest similarities of each row
    np.testing.assert_allclose(similarities.numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(brute, indices.numpy(), 1), expected, atol=1e-6)
    assert (indices != torch.arange(9)[:, None]).all()  # never its own neighbour
    query_indices, query_similarities = nearest_neighbours(features, 1, queries=features[:2])
    assert query_indices[:, 0].tolist() == [0, 1] and torch.allclose(query_similarities, torch.ones(2, 1))
    with pytest.raises(OptionError, match="k must be"):
        nearest_neighbours(features, 9)


def test_cli_embeds_a_list_and_skips_bad_files(files, tmp_path, capsys):
    annotation = tmp_path / "list.csv"
    annotation.write_text(f"path,label\n{files['one']},a\n{files['text']},b\n{files['two']},c\n")
    out = tmp_path / "out" / "features.npy"
    argv = ["embed", str(annotation), "--weights", str(files["weights"]), "--output", str(out), "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "embedded 2 of 3 files" in captured.out and "1 skipped" in captured.out
    assert f"skipped {files['text']}" in captured.err
    assert np.load(out).shape == (2, 32)
    assert main(argv) == 1 and "--overwrite" in capsys.readouterr().err  # nothing replaced unasked
    bad = ["embed", str(files["text"]), "--weights", str(files["weights"]), "--quiet"]
    assert main([*bad, "--output", str(tmp_path / "x.safetensors")]) == 1
    assert "no video could be embedded" in capsys.readouterr().err
    assert not (tmp_path / "x.safetensors").exists()
    assert main([*bad, "--output", str(tmp_path / "x.pt")]) == 1
    assert ".safetensors or .npy" in capsys.readouterr().err
    assert main([*bad, "--output", str(tmp_path / "y.npy"), "--device", "bogus"]) == 1
    assert "--device" in capsys.readouterr().err
