"""Fault injection through the real command line: every bad input ends in one line that names it, and nothing is lost.

One table of bad files (videos and checkpoints) is run through every entry point that reads such a file,
via ``fast_timesformer.cli.main`` in this process: each case must exit 1 with exactly one line on stderr,
no traceback, the file's path and the expected reason. Then the run-folder faults, in subprocesses: a
``fit`` killed with SIGKILL between saves and in the middle of a checkpoint write, each resumed with
``--ckpt_path last``, and a full disk (a small tmpfs; skipped with the reason where it cannot be mounted).
A NaN loss and bad ``fit`` options go through the command line too. The README's "Reliability" table lists
these cases and their outcomes. ``config.json`` faults and the inference options are in
tests/test_bad_input.py, dataset-level skipping in tests/test_data_dataset.py.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pickle
import re
import shutil
import signal
import struct
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from test_cli import write_config
from video_fixtures import write_audio_only, write_huge_y4m, write_still_png, write_truncated, write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing, save_pretrained
from fast_timesformer.cli import main
from fast_timesformer.data.synthetic import generate_motion_dataset

TINY = dict(num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=3)
REPO = Path(__file__).resolve().parent.parent
# Lightning's own progress lines (seed, devices, tips), which its logger prints at INFO level before the error
LIGHTNING_INFO = re.compile(r"^(INFO: )?Seed set to \d+$|^INFO: ")


@dataclass(frozen=True)
class Fault:
    """A bad file: ``make(folder)`` writes it and returns its path; ``expected`` is in the one-line error."""

    name: str
    make: object
    expected: str
    elsewhere: tuple[tuple[str, str], ...] = ()  # (entry point, what it says instead)

    def expected_at(self, command: str) -> str:
        return dict(self.elsewhere).get(command, self.expected)


def _bit_flipped(folder: Path) -> Path:
    data = bytearray(write_video(folder / "flip_src.mp4", num_frames=12, width=48, height=32).read_bytes())
    for i in range(len(data) // 3, 2 * len(data) // 3, 7):  # the moov index of a default (non-faststart) MP4
        data[i] ^= 0xFF
    path = folder / "flipped.mp4"
    path.write_bytes(bytes(data))
    return path


def _fifo(folder: Path) -> Path:
    path = folder / "pipe.mp4"
    os.mkfifo(path)
    return path


def _dangling(folder: Path) -> Path:
    path = folder / "dangling.mp4"
    os.symlink(folder / "nowhere.mp4", path)
    return path


def _directory(folder: Path) -> Path:
    path = folder / "folder.mp4"
    path.mkdir()
    return path


def _write(name: str, data: bytes):
    def make(folder: Path) -> Path:
        (folder / name).write_bytes(data)
        return folder / name

    return make


VIDEO_FAULTS = [
    Fault("empty file", _write("empty.mp4", b""), "empty file (0 bytes)"),
    Fault(
        "text renamed .mp4", _write("page.mp4", b"<html>not a video</html>\n"), "not a video FFmpeg can open"
    ),
    Fault(
        "truncated download", lambda f: write_truncated(f / "cut.mp4", keep=0.5), "no decodable video frame"
    ),
    Fault("bit flips in the index", _bit_flipped, "no video stream"),
    Fault("audio only", lambda f: write_audio_only(f / "sound.m4a"), "no video stream (streams: audio)"),
    # embed reads a folder as a dataset (root/<class>/<video>), so it says what such a folder lacks
    Fault("a folder", _directory, "is a directory, not a video file", (("embed", "no class folders"),)),
    Fault("a named pipe", _fifo, "not a regular file (a named pipe)"),
    Fault("dangling symlink", _dangling, "dangling symlink"),
    Fault("missing file", lambda f: f / "missing.mp4", "file not found"),
    Fault("still image", lambda f: write_still_png(f / "photo.png"), "a still image (png), not a video"),
    Fault("12000x12000 header", lambda f: write_huge_y4m(f / "huge.y4m"), "exceeds max_pixels"),
]


class _Evil:
    def __reduce__(self):
        return (os.system, (f"echo pwned > {PWNED}",))


PWNED = Path(os.environ.get("TMPDIR", "/tmp")) / f"fast_timesformer_pwned_{os.getpid()}"


def _evil_torch_zip(folder: Path) -> Path:
    path = folder / "evil.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _Evil()}, path)
    return path


def _truncated_zip(folder: Path) -> Path:
    buffer = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, buffer)
    return _write("cut.ckpt", buffer.getvalue()[:500])(folder)


def _safetensors_from(weights: Path, folder: Path, *, lie: bool) -> Path:
    data = (weights / "model.safetensors").read_bytes()
    if not lie:
        return _write("cut.safetensors", data[: len(data) // 2])(folder)
    size = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + size])
    name = next(key for key in header if key != "__metadata__")
    header[name]["data_offsets"] = [0, 10**12]  # a terabyte tensor in a small file
    text = json.dumps(header).encode()
    return _write("lying.safetensors", struct.pack("<Q", len(text)) + text + data[8 + size :])(folder)


def checkpoint_faults(weights: Path) -> list[Fault]:
    return [
        Fault(
            "pickle that runs code (plain)", _write("evil.pth", pickle.dumps(_Evil())), "refused to unpickle"
        ),
        Fault("pickle that runs code (torch.save)", _evil_torch_zip, "refused to unpickle"),
        Fault("empty checkpoint", _write("empty.ckpt", b""), "empty"),
        Fault("text renamed .ckpt", _write("notes.ckpt", b"hello\n" * 20), "unknown file format"),
        Fault("truncated zip checkpoint", _truncated_zip, "truncated or corrupt zip archive"),
        Fault("truncated safetensors", lambda f: _safetensors_from(weights, f, lie=False), "safetensors"),
        Fault(
            "safetensors header that lies", lambda f: _safetensors_from(weights, f, lie=True), "safetensors"
        ),
    ]


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    """A tiny weights folder, a good video, a motion dataset and a fit config, shared by the cases."""
    root = tmp_path_factory.mktemp("faults")
    torch.manual_seed(0)
    weights = root / "weights"
    prep = Preprocessing(num_frames=4, sampling_rate=2, crop_size=32, short_side=32, num_spatial_crops=1)
    save_pretrained(FastTimeSformer(**TINY), weights, preprocessing=prep, class_names=["a", "b", "c"])
    video = write_video(root / "good.mp4", num_frames=12, width=48, height=32)
    motion = root / "motion"
    generate_motion_dataset(motion, num_videos={"train": 8, "val": 4}, num_frames=8, size=16, seed=0)
    config = write_config(root / "fit.yaml", motion, root / "run")
    return {"root": root, "weights": weights, "video": video, "motion": motion, "config": config}


def one_line_failure(capsys, argv: list[str], monkeypatch: pytest.MonkeyPatch | None = None) -> str:
    """Run ``argv``; assert exit 1 and one error line on stderr (besides Lightning's INFO lines)."""
    capsys.readouterr()
    for name in (
        "lightning",
        "lightning.pytorch",
        "lightning.fabric",
    ):  # handlers keep the import-time stderr
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and monkeypatch is not None:
                monkeypatch.setattr(handler, "stream", sys.stderr)
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not LIGHTNING_INFO.match(line)]
    assert code == 1, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


VIDEO_ENTRY_POINTS = {
    "classify": lambda s, video: ["classify", str(video), "--weights", str(s["weights"])],
    "timeline": lambda s, video: ["timeline", str(video), "--weights", str(s["weights"]),
                                  "--output", str(s["root"] / "timeline")],
    "explain": lambda s, video: ["explain", str(video), "--weights", str(s["weights"]),
                                 "--output", str(s["root"] / "explain")],
    "embed": lambda s, video: ["embed", str(video), "--weights", str(s["weights"]),
                               "--output", str(s["root"] / "features.safetensors")],
}  # fmt: skip


@pytest.mark.parametrize("fault", VIDEO_FAULTS, ids=lambda fault: fault.name)
def test_a_bad_video_is_one_line_at_every_entry_point(setting, tmp_path, capsys, fault):
    bad = fault.make(tmp_path)
    for command, argv in VIDEO_ENTRY_POINTS.items():
        line = one_line_failure(capsys, argv(setting, bad))
        assert line.startswith(f"fast-timesformer {command}: error: "), line
        assert str(bad) in line and fault.expected_at(command) in line, (command, line)
    assert not (setting["root"] / "features.safetensors").exists()  # nothing half-written


def test_check_data_names_every_bad_video_and_its_kind(tmp_path, capsys):
    lines = []
    for fault in VIDEO_FAULTS:
        if fault.name != "12000x12000 header":  # the header-only y4m needs --max-pixels to be read at all
            lines.append(f"{fault.make(tmp_path).relative_to(tmp_path)} 0")
    lines.append(f"{write_video(tmp_path / 'good.mp4', num_frames=12).name} 1")
    (tmp_path / "list.txt").write_text("\n".join(lines) + "\n")
    capsys.readouterr()
    assert main(["check-data", str(tmp_path / "list.txt"), "--num-frames", "4"]) == 1
    out = capsys.readouterr().out
    problems = [
        line for line in out.splitlines() if line.startswith(("missing\t", "empty\t", "unreadable\t"))
    ]
    assert len(problems) == len(lines) - 1 and "good.mp4" not in "".join(problems), out


CHECKPOINT_ENTRY_POINTS = {
    "classify": lambda s, bad: ["classify", str(s["video"]), "--weights", str(bad)],
    "timeline": lambda s, bad: ["timeline", str(s["video"]), "--weights", str(bad),
                                "--output", str(s["root"] / "timeline")],
    "convert": lambda s, bad: ["convert", str(bad), str(s["root"] / "converted")],
    "export": lambda s, bad: ["export", str(bad), str(s["root"] / "model.onnx"), "--format", "onnx"],
    "fit --ckpt_path": lambda s, bad: ["fit", "--config", str(s["config"]), "--ckpt_path", str(bad)],
    "test --ckpt_path": lambda s, bad: ["test", "--config", str(s["config"]), "--ckpt_path", str(bad)],
}  # fmt: skip


@pytest.mark.parametrize("index", range(7), ids=lambda i: checkpoint_faults(Path("."))[i].name)
def test_a_bad_checkpoint_is_one_line_at_every_entry_point(setting, tmp_path, capsys, index):
    fault = checkpoint_faults(setting["weights"])[index]
    bad = fault.make(tmp_path)
    for command, argv in CHECKPOINT_ENTRY_POINTS.items():
        line = one_line_failure(capsys, argv(setting, bad))
        assert line.startswith(f"fast-timesformer {command.split()[0]}: error: "), line
        assert str(bad) in line and fault.expected in line, (command, line)
        assert not PWNED.exists(), f"{command} ran the pickle's code"
    assert not (setting["root"] / "converted").exists() and not (setting["root"] / "model.onnx").exists()
    assert not (setting["root"] / "run").exists()  # fit / test failed before creating the run folder


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        (["--model.lr", "-1"], "--model.lr must be a positive number, got -1.0"),
        (["--model.betas", "[0.9, 1.5]"], "--model.betas must be two numbers in [0, 1)"),
        (["--model.label_smoothing", "1"], "--model.label_smoothing must be in [0, 1)"),
        (["--data.num_frames", "0"], "--data.num_frames must be a positive integer, got 0"),
        (["--data.batch_size", "0"], "--data.batch_size must be a positive integer, got 0"),
        (["--ckpt_path", "/nonexistent.ckpt"], "--ckpt_path /nonexistent.ckpt: no such file"),
        (["--trainer.accelerator", "cuda"], "--trainer options: `CUDAAccelerator` can not run"),
    ],
    ids=lambda value: value[0] if isinstance(value, list) else "",
)
def test_a_bad_fit_option_is_one_line_before_work(setting, capsys, monkeypatch, option, expected):
    if option[-1] == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    line = one_line_failure(capsys, ["fit", "--config", str(setting["config"]), *option], monkeypatch)
    assert expected in line, line
    assert not (setting["root"] / "run").exists()  # refused before the run folder was created


def test_a_nan_loss_stops_fit_in_one_line_and_writes_no_checkpoint(setting, tmp_path, capsys, monkeypatch):
    real, calls = torch.nn.CrossEntropyLoss.forward, []

    def diverging(self, logits, labels):  # the loss of a run whose learning rate is far too high
        calls.append(1)
        loss = real(self, logits, labels)
        return loss * float("nan") if len(calls) >= 2 else loss

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", diverging)
    run = tmp_path / "run"
    config = write_config(tmp_path / "fit.yaml", setting["motion"], run)
    line = one_line_failure(capsys, ["fit", "--config", str(config)], monkeypatch)
    assert "training loss is nan at epoch 0, batch 1" in line and "--model.lr" in line, line
    assert not list(run.rglob("*.ckpt"))  # no NaN checkpoint, not even last.ckpt


# -- run folders: kill -9 and a full disk -------------------------------------------------------------
# A fit in a subprocess whose checkpoint writer can kill its own process (SIGKILL, nothing runs after it)
# in the middle of the N-th save of one file (KILL_AT_SAVE=last.ckpt:2), after writing part of the
# temporary file, as a job killed there would leave it.
KILLING_FIT = textwrap.dedent(
    """
    import os, signal, sys
    import fast_timesformer.training.callbacks as callbacks
    from fast_timesformer.cli import main

    name, _, count = os.environ.get("KILL_AT_SAVE", ":0").partition(":")
    real_save, saves = callbacks._torch_save, []

    def save(checkpoint, path):  # path: the temporary file, .NAME.XXXX.tmp
        saves.append(path)
        print("saving", path, file=sys.stderr, flush=True)
        if sum(f".{name}." in os.path.basename(p) for p in saves) == int(count) > 0:
            with open(path, "wb") as handle:  # half a checkpoint on disk, then the end
                handle.write(b"PK" + bytes(64 * 1024))
                handle.flush()
                os.fsync(handle.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        real_save(checkpoint, path)

    callbacks._torch_save = save
    sys.exit(main(sys.argv[1:]))
    """
)


def fit_process(config: Path, *args: str, kill_at_save: str = ":0") -> subprocess.Popen:
    env = {**os.environ, "KILL_AT_SAVE": str(kill_at_save), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", KILLING_FIT, "fit", "--config", str(config), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def steps_of(metrics: Path) -> list[int]:
    with open(metrics, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [int(row["step"]) for row in rows if row.get("train/loss_step")]


def assert_resumed_cleanly(run: Path, *, epochs: int) -> None:
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == epochs - 1
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    steps = steps_of(run / "metrics.csv")
    assert steps == sorted(steps) and len(steps) == len(set(steps)), steps  # no step logged twice
    assert steps[-1] == checkpoint["global_step"] - 1


def test_kill_9_during_a_checkpoint_write_keeps_the_last_checkpoint_and_resumes(setting, tmp_path, caplog):
    run = tmp_path / "run"
    config = write_config(tmp_path / "fit.yaml", setting["motion"], run, trainer={"max_epochs": 3})
    killed = fit_process(config, kill_at_save="last.ckpt:2")  # epoch 1's last.ckpt
    _, err = killed.communicate(timeout=300)
    assert killed.returncode == -signal.SIGKILL, err
    before = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert before["epoch"] == 0  # the previous last.ckpt is whole and loadable
    assert [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]  # the torn write
    assert main(["fit", "--config", str(config), "--ckpt_path", "last"]) == 0  # resumed here, in-process
    assert "removed 1 temporary file(s) of interrupted checkpoint saves" in caplog.text
    assert_resumed_cleanly(run, epochs=3)


def test_kill_9_between_saves_loses_only_the_unsaved_steps(setting, tmp_path):
    run = tmp_path / "run"
    config = write_config(tmp_path / "fit.yaml", setting["motion"], run, trainer={"max_epochs": 200})
    job = fit_process(config)
    last = run / "checkpoints" / "last.ckpt"
    try:
        deadline = 240.0
        while not last.exists() and deadline > 0 and job.poll() is None:
            deadline -= 0.2
            subprocess.run(["sleep", "0.2"], check=True)
        assert last.exists(), "no checkpoint was written"
        subprocess.run(["sleep", "1.5"], check=True)  # well into the next epochs
        job.send_signal(signal.SIGKILL)
    finally:
        job.communicate(timeout=60)
    assert job.returncode == -signal.SIGKILL
    saved = torch.load(last, weights_only=True)
    assert steps_of(run / "metrics.csv")[-1] >= saved["global_step"] - 1  # rows past the checkpoint exist
    epochs = saved["epoch"] + 2
    assert (
        main(["fit", "--config", str(config), "--ckpt_path", "last", "--trainer.max_epochs", str(epochs)])
        == 0
    )
    assert_resumed_cleanly(run, epochs=epochs)


def _mount_tmpfs(folder: Path, size: str) -> str | None:
    """Mount a tmpfs of ``size`` at ``folder``; returns why not where that is impossible."""
    if shutil.which("mount") is None:
        return "no mount command"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    return (
        None
        if done.returncode == 0
        else f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}"
    )


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_run(setting, tmp_path):
    disk = tmp_path / "disk"
    why = _mount_tmpfs(disk, "8m")
    if why:
        pytest.skip(why)
    try:
        run = disk / "run"
        config = write_config(tmp_path / "fit.yaml", setting["motion"], run, trainer={"max_epochs": 1})
        assert main(["fit", "--config", str(config)]) == 0
        before = (run / "checkpoints" / "last.ckpt").read_bytes()
        with open(disk / "filler", "wb") as filler:  # fill the disk, then free a little for the CSV log
            try:
                while True:
                    filler.write(bytes(64 * 1024))
                    filler.flush()
            except OSError:
                pass
        os.truncate(disk / "filler", max(0, (disk / "filler").stat().st_size - 32 * 1024))
        resumed = fit_process(config, "--ckpt_path", "last", "--trainer.max_epochs", "2")
        _, err = resumed.communicate(timeout=300)
        lines = [line for line in err.splitlines() if "error:" in line or "Traceback" in line]
        assert resumed.returncode == 1 and "Traceback" not in err, err
        assert len(lines) == 1 and ("last.ckpt" in lines[0] or "best.ckpt" in lines[0]), err
        assert "previous checkpoint" in lines[0], lines[0]
        assert (run / "checkpoints" / "last.ckpt").read_bytes() == before  # the run is intact
        assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
