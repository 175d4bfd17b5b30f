"""Sharing: the folder and model card written from a real (tiny) run, and the upload's failures.

huggingface_hub has no offline stand-in for the Hub, so the upload is tested where it must fail: offline
mode, no token, and an endpoint on a closed local port (refused at once). No test here reaches the network,
and each upload attempt runs under an alarm, so a hang fails the test instead of stalling the suite.
"""

from __future__ import annotations

import contextlib
import csv
import shutil
import signal
import socket
from pathlib import Path

import pytest
import torch
import yaml

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import HubError, prepare_hub_folder, push_to_hub
from fast_timesformer.checkpoints.to_transformers import check_transformers_logits
from fast_timesformer.cli import main
from fast_timesformer.training.demo import DemoRecipe, run_demo
from fast_timesformer.weights import from_pretrained, save_pretrained

huggingface_hub = pytest.importorskip("huggingface_hub")

# learned positions (the demo default is rotary in tests/test_demo.py) so the run also exports to transformers
RECIPE = DemoRecipe(
    num_train=8, num_val=4, epochs=1, batch_size=4, warmup_epochs=0.0,
    model_kwargs={"dim": 32, "heads": 2, "depth": 1},
)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A real demo run: summary.json, runs/*/metrics.csv + hparams.yaml, weights/."""
    folder = tmp_path_factory.mktemp("demo")
    summary = run_demo(output=folder, recipe=RECIPE, threads=1)
    return folder, summary


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (instead of waiting) if the block takes longer than ``seconds``: an upload must never hang."""

    def expired(*_):
        raise TimeoutError(f"took over {seconds} s: the upload reached for the network")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    """No token anywhere huggingface_hub looks (environment, token file, OIDC), and no proxies."""
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE", "HTTP_PROXY", "HTTPS_PROXY",
                 "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    assert huggingface_hub.get_token() is None


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- the folder and the card ---------------------------------------------------------------------------------
def test_card_holds_config_protocol_metrics_classes_licence_usage(run, tmp_path):
    folder, summary = run
    out = prepare_hub_folder(
        folder / "weights", tmp_path / "hub", run=folder, repo_id="me/tiny-motion", license="apache-2.0",
        transformers=True,
    )  # fmt: skip
    for name in ("model.safetensors", "config.json"):  # the weights travel unchanged
        assert (out / name).read_bytes() == (folder / "weights" / name).read_bytes()
    card = (out / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "apache-2.0" and front["pipeline_tag"] == "video-classification"
    assert front["library_name"] == "fast-timesformer" and "Licence: `apache-2.0`" in card

    for i, name in enumerate(summary["class_names"]):  # the class list, in output order
        assert f"{i}. {name}" in card
    assert "## Evaluation protocol" in card and "8 frames, 1 apart" in card and "16 px crop" in card
    assert "1 clip(s) x 1 crop(s)" in card and "[0.45, 0.45, 0.45]" in card
    assert f"| val_top1 | {summary['val_top1']:.4g} |" in card  # measured, from summary.json
    with open(folder / "runs" / "divided_space_time" / "metrics.csv", newline="") as file:
        logged = [float(row["val/top1"]) for row in csv.DictReader(file) if row["val/top1"]]
    assert f"| val/top1 | {logged[-1]:.4g} | {max(logged):.4g} |" in card  # from metrics.csv
    assert '"epochs": 1' in card and '"num_train": 8' in card  # the recipe
    assert "## Training config (`runs/divided_space_time/hparams.yaml`)" in card and "lr: 0.0003" in card
    assert 'FastTimeSformer.from_pretrained("me/tiny-motion")' in card
    assert 'pipeline("video-classification"' in card and "frame_sampling_rate=1" in card

    # the transformers/ subfolder gives the weights' logits
    assert check_transformers_logits(from_pretrained(folder / "weights"), out / "transformers") <= 1e-4


def test_the_card_never_shows_this_machines_paths(run, tmp_path):
    folder = Path(shutil.copytree(run[0], tmp_path / "run"))  # the shared run folder stays as it is
    (folder / "config.yaml").write_text(  # what `fit` saves: absolute paths of this machine
        f"trainer:\n  default_root_dir: {folder}/runs\ndata:\n  train: {folder}/data/train/manifest.csv\n"
        "  mean: [0.45, 0.45, 0.45]\n  note: https://example.com/recipe\n"
    )
    card = (prepare_hub_folder(folder / "weights", tmp_path / "hub", run=folder) / "README.md").read_text()
    config = card.split("## Training config (`config.yaml`)")[1]
    assert str(folder) not in card and str(tmp_path) not in card and str(run[0]) not in card
    assert "train: <local>/manifest.csv" in config and "default_root_dir: <local>/runs" in config
    assert "https://example.com/recipe" in config and "[0.45, 0.45, 0.45]" in config


def test_card_without_run_or_licence_says_so(run, tmp_path):
    folder, _ = run
    card = (prepare_hub_folder(folder / "weights", tmp_path / "hub") / "README.md").read_text()
    assert "license: other" in card and "not stated by the uploader" in card
    assert "## Results" not in card and "USER/MODEL" in card and "transformers/" not in card


def test_dry_run_writes_the_folder_and_reuses_it(run, tmp_path, capsys):
    folder, _ = run
    args = ["push", str(folder / "weights"), "me/tiny", "--run", str(folder), "--license", "mit"]
    target = tmp_path / "upload"
    assert main([*args, "--transformers", "--dry-run", str(target)]) == 0
    out = capsys.readouterr().out
    assert "README.md" in out and "transformers/model.safetensors" in out and "not uploaded" in out
    assert (target / "transformers" / "config.json").is_file()
    # a second dry run into the same folder replaces it; the transformers/ left over is not uploaded
    assert main([*args, "--dry-run", str(target)]) == 0
    assert sorted(p.name for p in target.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    capsys.readouterr()
    (target / "notes.txt").write_text("private")
    assert main([*args, "--dry-run", str(target)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "notes.txt" in err and "new or empty folder" in err


def test_what_cannot_be_shared_fails_in_one_line_and_writes_nothing(run, tmp_path, capsys):
    folder, _ = run
    torch.manual_seed(0)
    rotary = FastTimeSformer(image_size=32, patch_size=8, num_frames=4, dim=32, depth=2, heads=2,
                             num_classes=3, pos_emb="rotary")  # fmt: skip
    save_pretrained(rotary, tmp_path / "rotary")
    dry = ["--dry-run", str(tmp_path / "upload")]
    assert main(["push", str(tmp_path / "rotary"), "me/x", "--transformers", *dry]) == 1
    assert "pos_emb='rotary'" in capsys.readouterr().err
    assert main(["push", str(folder / "data"), "me/x", *dry]) == 1  # not a weights folder
    assert "no config.json" in capsys.readouterr().err
    assert main(["push", str(folder / "weights"), "me/x", "--run", str(tmp_path / "nowhere"), *dry]) == 1
    assert "no such run folder" in capsys.readouterr().err
    assert not (tmp_path / "upload").exists()


# -- the upload: fails at once, in one line, without the network ---------------------------------------------
def test_push_without_a_token_fails_before_any_request(run, no_token, tmp_path, capsys):
    folder, _ = run
    with deadline(10), pytest.raises(HubError, match=r"no Hub token.*hf auth login") as caught:
        push_to_hub("me/tiny", folder / "weights", folder=tmp_path / "staged")
    assert "\n" not in str(caught.value) and not (tmp_path / "staged").exists()
    with deadline(10):
        assert main(["push", str(folder / "weights"), "me/tiny"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fast-timesformer push: error:") and "token" in err


def test_push_offline_fails_at_once(run, no_token, monkeypatch):
    folder, _ = run
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with deadline(10), pytest.raises(HubError, match="offline mode is on.*--dry-run"):
        push_to_hub("me/tiny", folder / "weights", token="hf_not_a_real_token")


def test_push_to_an_unreachable_hub_is_one_line_naming_the_cause(run, no_token, tmp_path):
    folder, _ = run
    endpoint = f"http://127.0.0.1:{closed_port()}"  # nothing listens: the real HfApi call is refused at once
    with deadline(20), pytest.raises(HubError) as caught:
        push_to_hub("me/tiny", folder / "weights", run=folder, token="hf_not_a_real_token",
                    endpoint=endpoint, folder=tmp_path / "staged")  # fmt: skip
    message = str(caught.value)
    assert "\n" not in message and "uploading" in message and "me/tiny" in message
    assert "ConnectError" in message and "Fix: check the network" in message
    assert (tmp_path / "staged" / "README.md").is_file()  # the staged folder is kept where asked
