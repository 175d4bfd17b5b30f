"""Hostile and damaged checkpoints: each is refused with a message naming the file and the problem."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest
import torch

import fast_timesformer
from fast_timesformer import FastTimeSformer
from fast_timesformer.weights import CheckpointError, from_pretrained, load_weights, save_pretrained

TINY = dict(image_size=32, patch_size=8, num_frames=4, dim=32, depth=2, heads=2, num_classes=5)


class CreatesSentinel:
    """Unpickling this calls ``open(path, "w")``: the file appears iff the pickle's code ran."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def saved(tmp_path) -> Path:
    torch.manual_seed(0)
    save_pretrained(FastTimeSformer(**TINY), tmp_path / "model")
    return tmp_path / "model"


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, writer):
    sentinel = tmp_path / "sentinel"
    payload = {"model_state": {"cls_token": torch.zeros(1, 1, 32)}, "trap": CreatesSentinel(sentinel)}
    file = tmp_path / "evil.pyth"
    if writer == "torch.save":
        torch.save(payload, file)
    else:
        with open(file, "wb") as handle:
            pickle.dump(payload, handle, protocol=2)
    with pytest.raises(CheckpointError, match=r"evil\.pyth: refused to unpickle"):
        from_pretrained(file)
    assert not sentinel.exists()


def test_empty_file(tmp_path):
    (tmp_path / "empty.pth").touch()
    with pytest.raises(CheckpointError, match=r"empty\.pth: the file is empty \(0 bytes\)"):
        from_pretrained(tmp_path / "empty.pth")


def test_truncated_zip(tmp_path):
    torch.manual_seed(0)
    torch.save(FastTimeSformer(**TINY).state_dict(), tmp_path / "cut.pth")
    data = (tmp_path / "cut.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth: truncated or corrupt zip archive"):
        from_pretrained(tmp_path / "cut.pth")


def test_truncated_safetensors(saved):
    file = saved / "model.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[:-100])
    with pytest.raises(
        CheckpointError, match=r"model\.safetensors: truncated safetensors file: the header describes"
    ):
        from_pretrained(saved)
    file.write_bytes(data[:5])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: truncated safetensors file \(5 bytes"):
        from_pretrained(saved)


def _rewrite_header(file: Path, edit) -> None:
    data = file.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    file.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length :])


def test_safetensors_header_that_lies_about_offsets(saved):
    file = saved / "model.safetensors"
    original = file.read_bytes()

    def overlap(header):  # point a tensor at another tensor's bytes (both 32 floats)
        header["blocks.0.norm1.bias"]["data_offsets"] = list(header["blocks.0.norm1.weight"]["data_offsets"])

    def wrong_size(header):  # claim a bigger tensor than the bytes it points at
        header["cls_token"]["shape"] = [1, 1, 64]

    def gap(header):  # move the last tensor far past the others
        last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][1])
        begin, end = header[last]["data_offsets"]
        header[last]["data_offsets"] = [begin + 10**9, end + 10**9]

    def negative(header):
        header["norm.bias"]["data_offsets"] = [-128, 0]

    for edit, message in [
        (
            overlap,
            r"inconsistent safetensors header: the data of tensors 'blocks\.0\.norm1\.\w+' and 'blocks\.0\.norm1\.\w+' overlaps",
        ),
        (
            wrong_size,
            r"inconsistent safetensors header: tensor 'cls_token' \(F32, shape \[1, 1, 64\]\) needs 256 bytes",
        ),
        (gap, r"inconsistent safetensors header: the data of tensor '.*' leaves a gap"),
        (negative, r"corrupt safetensors header entry for tensor 'norm\.bias'"),
    ]:
        file.write_bytes(original)
        _rewrite_header(file, edit)
        with pytest.raises(CheckpointError, match=r"model\.safetensors: " + message):
            from_pretrained(saved)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights(saved, tmp_path, value):
    from safetensors.torch import load_file, save_file

    state = load_file(saved / "model.safetensors")
    state["blocks.1.mlp.fc1.weight"][3, 4] = value
    save_file(state, saved / "model.safetensors")
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors: non-finite weights \(NaN or inf\) in 1 tensor\(s\): blocks\.1\.mlp\.fc1\.weight",
    ):
        from_pretrained(saved)
    torch.save({"model_state": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "nan.pyth")
    with pytest.raises(
        CheckpointError, match=r"nan\.pyth: non-finite weights .*: blocks\.1\.mlp\.fc1\.weight"
    ):
        from_pretrained(tmp_path / "nan.pyth", heads=2)


@pytest.mark.parametrize(
    "override,problem",
    [
        ({"depth": 3}, "it has depth=2, the model depth=3"),
        (
            {"attention_type": "joint_space_time"},
            "it has attention_type='divided_space_time', the model attention_type='joint_space_time'",
        ),
        ({"patch_size": 16}, "it has patch_size=8, the model patch_size=16"),
    ],
)
def test_checkpoint_of_another_architecture(saved, override, problem):
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors: checkpoint of another architecture: " + re.escape(problem),
    ):
        from_pretrained(saved, **override)


def test_official_checkpoint_into_a_model_of_another_architecture(tmp_path):
    torch.manual_seed(0)
    state = FastTimeSformer(**TINY).state_dict()
    torch.save({"model_state": {f"model.{k}": v for k, v in state.items()}}, tmp_path / "deep.pyth")
    model = FastTimeSformer(**{**TINY, "depth": 3})
    with pytest.raises(
        CheckpointError,
        match=r"deep\.pyth: checkpoint of another architecture: it has depth=2.*build the model with depth=2",
    ):
        load_weights(model, tmp_path / "deep.pyth")
    joint = FastTimeSformer(**{**TINY, "attention_type": "joint_space_time"})
    with pytest.raises(
        CheckpointError,
        match=r"deep\.pyth: checkpoint of another architecture: it has attention_type='divided_space_time'",
    ):
        load_weights(joint, tmp_path / "deep.pyth")


def test_config_from_a_newer_format_version(saved):
    meta = json.loads((saved / "config.json").read_text())
    meta["format_version"] = 2
    (saved / "config.json").write_text(json.dumps(meta))
    with pytest.raises(
        CheckpointError,
        match=r"config\.json: written by a newer fast-timesformer \(format_version 2.*pip install -U",
    ):
        from_pretrained(saved)


def test_not_a_checkpoint_and_no_such_path(tmp_path):
    (tmp_path / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    with pytest.raises(CheckpointError, match=r"clip\.mp4: not a checkpoint: unknown file format"):
        from_pretrained(tmp_path / "clip.mp4")
    with pytest.raises(CheckpointError, match=r"nowhere/at_all\.pth: no such file or folder"):
        from_pretrained(tmp_path / "nowhere" / "at_all.pth")


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every ``name(...)`` call in ``text`` (nested parentheses included)."""
    calls = []
    for match in re.finditer(re.escape(name) + r"\(", text):
        depth, end = 1, match.end()
        while depth and end < len(text):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        calls.append(text[match.end() : end - 1])
    return calls


def test_the_package_never_unpickles_with_weights_only_false():
    root = Path(fast_timesformer.__file__).parent
    for file in root.rglob("*.py"):
        text = file.read_text()
        assert "weights_only=False" not in text, file
        for arguments in _calls(text, "torch.load"):
            assert "weights_only=True" in arguments, (file, arguments)
