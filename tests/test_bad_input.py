"""Fault injection at the inference entry points: every bad input is named in one line, before allocating.

Each case runs the real command (``fast_timesformer.cli.main``) or the real API on a real weights folder and
real encoded files. The README's reliability table lists these cases and their outcomes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from video_fixtures import write_still_png, write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import CheckpointError, Preprocessing, save_pretrained
from fast_timesformer.cli import main
from fast_timesformer.errors import OptionError
from fast_timesformer.weights import from_pretrained

TINY = dict(num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=3)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    prep = Preprocessing(num_frames=4, sampling_rate=2, crop_size=32, short_side=32, num_spatial_crops=1)
    save_pretrained(FastTimeSformer(**TINY), folder, preprocessing=prep, class_names=["a", "b", "c"])
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=12, width=48, height=32)


def edited(weights: Path, tmp_path: Path, change) -> Path:
    """A copy of the weights folder whose config.json was changed by ``change(config)``."""
    folder = tmp_path / "edited"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes((weights / "model.safetensors").read_bytes())
    config = json.loads((weights / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def set_model(key, value):
    return lambda config: config["model"].__setitem__(key, value)


def set_prep(key, value):
    return lambda config: config["preprocessing"].__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (set_model("dim", 1_000_000_000), "dim=1000000000 is outside 1..65536"),
        (set_model("dim", 128), "dim is 128 in config.json but 32 in the tensors"),
        (set_model("depth", 1_000_000), "depth=1000000 is outside 1..1000"),
        (set_model("depth", 3), "depth is 3 in config.json but 2 in the tensors"),
        (set_model("dim", "128"), "dim must be an integer, got '128' (a string)"),
        (set_model("depth", 2.5), "depth must be an integer, got 2.5"),
        (set_model("qk_init_std", -1.0), "qk_init_std=-1.0 is outside (0, 10)"),
        (set_model("dim_head", 64), "heads x dim_head is 128 in config.json but 32 in the tensors"),
        (set_model("num_classes", 5), "num_classes is 5 in config.json but 3 in the tensors"),
        (set_model("image_size", 64), "makes 64 patches per frame, but the tensors have 16"),
        (set_model("attention", "performer"), "attention (space) is 'performer' in config.json"),
        (set_prep("num_temporal_clips", 1_000_000), "num_temporal_clips=1000000 is over"),
        (set_prep("std", [0, 0, 0]), "std must be positive"),
        (set_prep("crop_size", "32"), "crop_size must be a positive integer"),
        (lambda c: c.__setitem__("class_names", ["a", "b"]), "class_names has 2 entries but the head has 3"),
        (lambda c: c.__setitem__("class_names", "abc"), "class_names must be a list of strings"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_bad_config_json_is_named_before_the_model_is_built(
    weights, video, tmp_path, capsys, change, expected
):
    folder = edited(weights, tmp_path, change)
    with pytest.raises(CheckpointError, match="config.json") as caught:
        from_pretrained(folder)
    assert expected in str(caught.value)
    code, out, err = run(capsys, "classify", str(video), "--weights", str(folder))
    assert code == 1 and out == "" and expected in one_line_error(err)


def test_control_characters_in_class_names_never_reach_the_terminal(weights, video, tmp_path, capsys):
    folder = edited(weights, tmp_path, lambda c: c.__setitem__("class_names", ["\x1b[31mred", "b\nc", "d"]))
    code, out, _ = run(capsys, "classify", str(video), "--weights", str(folder), "--top-k", "3")
    assert code == 0 and "\x1b" not in out and "\\x1b[31mred" in out and "b\\nc" in out


def test_the_json_output_is_valid_json(weights, video, capsys):
    code, out, _ = run(capsys, "classify", str(video), "--weights", str(weights), "--json")
    assert code == 0
    json.loads(out, parse_constant=lambda name: pytest.fail(f"bare {name} in the JSON output"))


def test_non_finite_weights_never_print_as_probabilities(weights, video, tmp_path):
    from fast_timesformer.inference import Predictor
    from fast_timesformer.inference.predictor import NonFiniteOutputError

    model = from_pretrained(weights)
    with torch.no_grad():
        model.head.bias.fill_(float("inf"))
    with pytest.raises(NonFiniteOutputError, match="non-finite scores"):
        Predictor(model).scores(video)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        ("cuda", "--device 'cuda': "),
        ("cuda:3", "--device 'cuda:3': "),
        ("bogus", "--device 'bogus' is not a device"),
        ("mps", "--device 'mps' is not available"),
    ],
)
def test_a_device_this_machine_lacks_is_named_with_the_ones_it_has(weights, video, capsys, device, expected):
    if torch.cuda.is_available() and device.startswith("cuda"):
        pytest.skip("this machine has CUDA")
    code, out, err = run(capsys, "classify", str(video), "--weights", str(weights), "--device", device)
    line = one_line_error(err)
    assert code == 1 and expected in line and "this machine has: cpu" in line


def test_options_are_checked_before_work(weights, video, capsys):
    from fast_timesformer.inference import Predictor

    for option in (["--batch-size", "0"], ["--top-k", "0"], ["--max-pixels", "0"], ["--max-duration", "x"]):
        code, _, err = run(capsys, "classify", str(video), "--weights", str(weights), *option)
        assert code == 2 and option[0] in err
    with pytest.raises(OptionError, match="batch_size must be a positive integer"):
        Predictor(from_pretrained(weights), batch_size=0)


def test_the_reader_limits_apply_to_classify(weights, video, capsys):
    code, _, err = run(capsys, "classify", str(video), "--weights", str(weights), "--max-pixels", "1000")
    line = one_line_error(err)
    assert code == 1 and "48x32 (1536 pixels) exceeds max_pixels=1000" in line and "--max-pixels" in line
    code, _, err = run(capsys, "classify", str(video), "--weights", str(weights), "--max-duration", "0.1")
    assert code == 1 and "max_duration" in one_line_error(err)
    code, out, _ = run(capsys, "classify", str(video), "--weights", str(weights))
    assert code == 0 and "%" in out


def test_frames_over_the_default_pixel_limit_are_refused_before_decoding(weights, tmp_path, capsys):
    big = write_video(
        tmp_path / "big.mp4", num_frames=2, width=4096, height=4096, options={"preset": "ultrafast"}
    )
    code, _, err = run(capsys, "classify", str(big), "--weights", str(weights))
    assert code == 1 and "4096x4096" in one_line_error(err) and "--max-pixels" in err


def test_a_still_image_is_refused_unless_allowed(weights, tmp_path, capsys):
    picture = tmp_path / "photo.png"
    write_still_png(picture)
    code, out, err = run(capsys, "classify", str(picture), "--weights", str(weights))
    assert code == 1 and out == "" and "a still image (png), not a video" in err and "--allow-images" in err
    code, out, _ = run(capsys, "classify", str(picture), "--weights", str(weights), "--allow-images")
    assert code == 0 and "%" in out
