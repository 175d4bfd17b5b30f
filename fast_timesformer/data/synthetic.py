"""A built-in video classification task that only a model of *time* can solve, written as real .mp4 files.

**The task.** Every clip shows, on a dark noisy canvas that wraps around at the edges,

* a *bar*: full height, half the canvas wide, white on its left half and green on its right half,
  sliding horizontally by ``speed`` pixels per image (2 px: 14 px over 8 images) — left or right;
* two *flashes*: for a quarter of the clip each, the whole canvas turns red, and at another time blue —
  the first flash falls in the first half of the clip, the second in the second half;
* a *distractor*: a small yellow square that blinks at random.

The class is (direction, which colour flashes first): `MOTION_CLASSES` = ``left_blue_first``,
``left_red_first``, ``right_blue_first``, ``right_red_first`` (sorted, so a folder-per-class reader and
the manifest agree on the label numbers). Direction is a local, coarse temporal cue: a patch at the
bar's front goes from background to green when it moves right (to white when it moves left), a patch at
its back from white (green) to background.

**Why no single frame — nor the set of frames — solves it.** A clip is rendered moving right and then
played backwards for "left"; the label only decides that reversal and which colour the first flash
has. So for one random draw, ``right_red_first`` and ``left_blue_first`` show exactly the same frames
in opposite orders (likewise ``right_blue_first`` and ``left_red_first``), and the two pairs differ only
in which of the two flashes — frames of pure colour — is red. Single frames, per-frame statistics and
order-free pools of frames (a frame-averaging ``space_only`` model) have the same distribution for
every class: chance is 25%. Flashes fill the canvas so that the set of frames holds no link between a
flash colour and the bar's position (it would give away direction XOR order). Horizontal flips swap
left and right: train with ``flip=False``.

**Sampling.** Each rendered image is held for ``hold=2`` video frames (16 frames = 8 images, i.e. 15 fps
content in a 30 fps file). This keeps the order-free property under the usual 8-frame samplers: dense
``num_frames=8, sampling_rate=2`` (indices 0, 2, 4, 6, 8, 10, 12, 15) and segment sampling at test time
(1, 3, 5, 7, 8, 10, 12, 14) both pick every image exactly once. (With 16 distinct images those index
patterns are not symmetric under reversal, and a ``space_only`` control reached ~40% on an earlier
version of this task.) Do not sample a short window: the first half alone shows which colour flashes
first without any ordering.

**Files.** ``generate_motion_dataset(root)`` writes ``root/<split>/<class>/<split>_<index>.mp4``,
``root/<split>/manifest.csv`` (``path,label,frames,sha256``; paths relative to the split folder, labels
as class names), ``root/<split>/classes.txt``, and ``root/manifest.csv`` (the same rows for every split,
with a ``split`` column and paths relative to ``root``). Videos are H.264, lossless RGB (``libx264rgb``,
qp 0) when the bundled FFmpeg has libx264 — so decoded frames equal the rendered ones bit for bit —
else MPEG-4 at the highest quality. ``sha256`` is over the decoded frames, as uint8 (T, H, W, 3) RGB
bytes (`frames_sha256`); the same seed gives the same hashes.
"""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # numpy is imported where it is used, so importing fast_timesformer.data does not need it
    import numpy as np

MOTION_CLASSES = ("left_blue_first", "left_red_first", "right_blue_first", "right_red_first")

BACKGROUND = 40.0
BAR_LEFT = (230.0, 230.0, 230.0)
BAR_RIGHT = (60.0, 220.0, 60.0)
RED = (230.0, 40.0, 40.0)
BLUE = (40.0, 80.0, 230.0)
DISTRACTOR = (220.0, 200.0, 50.0)
_SPLIT_SEEDS = {"train": 1, "val": 2, "test": 3}


def render_clip(
    label: int,
    *,
    rng: np.random.Generator,
    num_frames: int = 16,
    size: int = 32,
    hold: int = 2,
    speed: int = 2,
    noise: float = 4.0,
    distractor: bool = True,
) -> np.ndarray:
    """Render one clip of class ``label`` as uint8 (T, H, W, 3) RGB (see the module docstring).

    Every random choice is drawn before the label is used, so one ``rng`` state gives the same scene for
    every class: the same frames reversed (left) or not, with the flash colours assigned by the label.

    Args:
        label: index into `MOTION_CLASSES`.
        rng: source of every random choice (a seeded `numpy.random.Generator`).
        num_frames: T, video frames; ``num_frames / hold`` images must be a multiple of 4.
        size: canvas side in pixels; a multiple of 8.
        hold: video frames each rendered image is shown for (see "Sampling" in the module docstring).
        speed: bar speed in pixels per image (2: a quarter of an 8-px patch; 14 px over 8 images).
        noise: standard deviation of the per-pixel Gaussian noise (0-255 scale), drawn per image.
        distractor: draw the blinking yellow distractor.
    """
    import numpy as np

    if not 0 <= label < len(MOTION_CLASSES):
        raise ValueError(f"label must be in [0, {len(MOTION_CLASSES)}), got {label}")
    if hold < 1 or num_frames % hold or (num_frames // hold) % 4:
        raise ValueError(
            f"num_frames / hold must be a whole multiple of 4, got num_frames={num_frames}, hold={hold}"
        )
    if size % 8 or size < 16:
        raise ValueError(f"size must be a multiple of 8 and at least 16, got {size}")
    images = num_frames // hold
    if not 0 < speed * (images - 1) < size:
        raise ValueError(
            f"speed={speed} px per image must move the bar less than one canvas ({size} px) per clip"
        )
    half, flash = images // 2, images // 4
    bar, small = size // 2, size // 8
    bar_x = int(rng.integers(0, size))
    spot_y, spot_x = (int(v) for v in rng.integers(0, size - small + 1, 2))
    blinks = rng.random(images) < 0.5
    first_start = int(rng.integers(0, half - flash + 1))
    second_start = half + int(rng.integers(0, half - flash + 1))
    noise_images = rng.normal(0.0, noise, (images, size, size, 3)).astype(np.float32)
    direction, order = MOTION_CLASSES[label].split("_", 1)
    first, second = (RED, BLUE) if order == "red_first" else (BLUE, RED)
    if direction == "left":  # rendered moving right, then played backwards: the flashes swap places
        first, second = second, first
    frames = np.full((images, size, size, 3), BACKGROUND, dtype=np.float32)
    for t in range(images):
        frame = frames[t]
        # Two-toned bar, white behind and green ahead when it moves right: a patch at its front turns
        # from background to green, one at its back from white to background -- reversed for left.
        columns = (bar_x + speed * t + np.arange(bar)) % size
        frame[:, columns[: bar // 2]] = BAR_LEFT
        frame[:, columns[bar // 2 :]] = BAR_RIGHT
        if distractor and blinks[t]:
            frame[spot_y : spot_y + small, spot_x : spot_x + small] = DISTRACTOR
        # A flash fills the whole canvas: a flash frame shows nothing but its colour, so the set of frames
        # carries no relation between flash colour and bar position (that relation would reveal the label).
        if first_start <= t < first_start + flash:
            frame[:] = first
        elif second_start <= t < second_start + flash:
            frame[:] = second
    frames += noise_images
    images_uint8 = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    if direction == "left":
        images_uint8 = images_uint8[::-1]
    return np.repeat(images_uint8, hold, axis=0)  # (T, H, W, 3): each image held for `hold` frames


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator `generate_motion_dataset` renders clip ``index`` of ``split`` with (pass it to
    `render_clip` or `motion_masks`)."""
    import numpy as np

    return np.random.default_rng([seed, _SPLIT_SEEDS.get(split, sum(map(ord, split))), index])


def motion_masks(
    label: int,
    *,
    rng: np.random.Generator,
    num_frames: int = 16,
    size: int = 32,
    hold: int = 2,
    speed: int = 2,
) -> dict[str, np.ndarray]:
    """Where things are in the clip ``render_clip(label, rng=rng, ...)`` draws: bool (T, H, W) pixel masks.

    ``"bar"`` (the moving bar where it is visible, i.e. outside flash frames and the distractor), ``"flash"``
    (every pixel of the frames that are one flash colour) and ``"distractor"`` (the blinking square). The
    clip is drawn again without noise from the same random draws (pass a generator in the same state as the
    one the clip was rendered with, e.g. a fresh `clip_rng`), so the masks are exact.
    """
    import numpy as np

    clean = render_clip(label, rng=rng, num_frames=num_frames, size=size, hold=hold, speed=speed, noise=0.0)

    def where(*colours: tuple[float, float, float]) -> np.ndarray:
        return np.logical_or.reduce([(clean == np.array(c, dtype=np.uint8)).all(-1) for c in colours])

    return {"bar": where(BAR_LEFT, BAR_RIGHT), "flash": where(RED, BLUE), "distractor": where(DISTRACTOR)}


def frames_sha256(frames: torch.Tensor | np.ndarray) -> str:
    """sha256 of a clip's bytes in uint8 (T, H, W, 3) RGB order; accepts (T, 3, H, W) tensors too."""
    import numpy as np

    if isinstance(frames, torch.Tensor):
        if frames.ndim == 4 and frames.shape[1] == 3 and frames.shape[-1] != 3:
            frames = frames.permute(0, 2, 3, 1)  # (T, C, H, W) -> (T, H, W, C)
        frames = frames.contiguous().numpy()
    return hashlib.sha256(np.ascontiguousarray(frames, dtype=np.uint8).tobytes()).hexdigest()


def _codec() -> tuple[str, str, dict[str, str]]:
    import av

    try:
        av.codec.Codec("libx264rgb", "w")
        # qp 0 = lossless: decoded frames equal the rendered ones whatever the x264 version; one thread
        # keeps even the bitstream reproducible.
        return "libx264rgb", "rgb24", {"qp": "0", "preset": "ultrafast", "threads": "1"}
    except Exception:
        return "mpeg4", "yuv420p", {"qscale": "1", "threads": "1"}


def write_clip(path: str | os.PathLike, frames: np.ndarray, *, fps: int = 30) -> str:
    """Encode uint8 (T, H, W, 3) RGB ``frames`` to ``path`` (.mp4); returns the codec used."""
    import av

    codec, pix_fmt, options = _codec()
    num_frames, height, width, _ = frames.shape
    with av.open(os.fspath(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return codec


def _decoded_sha256(path: str) -> tuple[int, str]:
    from .decoding import VideoReader

    with VideoReader(path, backend="pyav") as reader:
        count = reader.metadata.num_frames
        return count, frames_sha256(reader.get_frames(range(count)))


def _worker_init() -> None:
    torch.set_num_threads(1)


def _make_one(job: tuple) -> tuple[str, int, int, str]:
    root, split, index, label, seed, num_frames, size, hold, speed, noise, fps = job
    rng = clip_rng(seed, split, index)
    frames = render_clip(
        label, rng=rng, num_frames=num_frames, size=size, hold=hold, speed=speed, noise=noise
    )
    relative = f"{MOTION_CLASSES[label]}/{split}_{index:05d}.mp4"
    path = os.path.join(root, split, relative)
    write_clip(path, frames, fps=fps)
    count, digest = _decoded_sha256(path)
    return relative, label, count, digest


def run_jobs(
    make_one: Callable[[tuple], tuple[str, int, int, str]],
    jobs: list[tuple],
    splits: Sequence[str],
    num_workers: int,
) -> dict[str, list[tuple[str, int, int, str]]]:
    """``make_one(job)`` for every job (job[1] is its split), in ``num_workers`` processes (0: here); returns
    {split: [(relative path, label, frames, sha256), ...]} in job order, every split present. Shared by the
    built-in generators."""
    if num_workers > 0:
        # Fork where available (spawn re-imports torch: seconds per worker). A forked child must run torch
        # single-threaded, as DataLoader workers do, or OpenMP can deadlock on the parent's thread pool.
        methods = multiprocessing.get_all_start_methods()
        context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        chunk = max(1, min(16, len(jobs) // (4 * num_workers)))
        with ProcessPoolExecutor(
            max_workers=num_workers, mp_context=context, initializer=_worker_init
        ) as pool:
            rows = list(pool.map(make_one, jobs, chunksize=chunk))
    else:
        rows = [make_one(job) for job in jobs]
    by_split: dict[str, list[tuple[str, int, int, str]]] = {split: [] for split in splits}
    for job, row in zip(jobs, rows):
        by_split[job[1]].append(row)
    return by_split


def write_manifests(
    root: Path, by_split: Mapping[str, list[tuple[str, int, int, str]]], classes: Sequence[str]
) -> Path:
    """``classes.txt`` and ``manifest.csv`` (``path,label,frames,sha256``) per split and, with a ``split``
    column, for the whole ``root``; returns ``root/manifest.csv``."""
    text = "\n".join(classes) + "\n"
    (root / "classes.txt").write_text(text, encoding="utf-8")
    with open(root / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
        everything = csv.writer(handle)
        everything.writerow(["split", "path", "label", "frames", "sha256"])
        for split, rows in by_split.items():
            (root / split / "classes.txt").write_text(text, encoding="utf-8")
            with open(root / split / "manifest.csv", "w", newline="", encoding="utf-8") as split_handle:
                writer = csv.writer(split_handle)
                writer.writerow(["path", "label", "frames", "sha256"])
                for relative, label, count, digest in rows:
                    writer.writerow([relative, classes[label], count, digest])
                    everything.writerow([split, f"{split}/{relative}", classes[label], count, digest])
    return root / "manifest.csv"


def generate_motion_dataset(
    root: str | os.PathLike,
    *,
    num_videos: int | Mapping[str, int] = 256,
    num_frames: int = 16,
    size: int = 32,
    hold: int = 2,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    speed: int = 2,
    noise: float = 4.0,
    fps: int = 30,
    num_workers: int = 0,
) -> Path:
    """Write the motion dataset under ``root`` and return the path of ``root/manifest.csv``.

    The per-split manifests ``root/<split>/manifest.csv`` are what `read_annotations` and `VideoDataset`
    take directly (``read_annotations(root / "train" / "manifest.csv")``); the returned root manifest lists
    every split with a ``split`` column (``read_annotations(path, split="val")`` selects one).

    Args:
        root: output folder (created; existing clips with the same names are overwritten).
        num_videos: clips per split (an int for every split, or {split: count}); labels are balanced.
        num_frames: frames per clip; ``num_frames / hold`` must be a multiple of 4.
        size: frame side in pixels (multiple of 8).
        hold: video frames each rendered image is shown for (2: 8-frame samplers see every image once).
        seed: everything is a function of (seed, split, index): same seed, same decoded bytes.
        splits: split folder names.
        speed: bar speed in pixels per image (see `render_clip`).
        noise: per-pixel Gaussian noise standard deviation (0-255 scale).
        fps: frame rate written into the files.
        num_workers: processes for rendering and encoding (0: in this process).
    """
    import numpy as np

    root = Path(root)
    counts = {split: int(num_videos) for split in splits} if isinstance(num_videos, int) else dict(num_videos)
    missing = [split for split in splits if split not in counts]
    if missing:
        raise ValueError(f"num_videos has no count for splits {missing}")
    # Check the geometry once, before creating folders or starting workers.
    render_clip(0, rng=np.random.default_rng(0), num_frames=num_frames, size=size, hold=hold, speed=speed)
    jobs = []
    for split in splits:
        for name in MOTION_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(counts[split]):
            label = index % len(MOTION_CLASSES)
            jobs.append((str(root), split, index, label, seed, num_frames, size, hold, speed, noise, fps))
    return write_manifests(root, run_jobs(_make_one, jobs, splits, num_workers), MOTION_CLASSES)


def verify_motion_dataset(manifest: str | os.PathLike) -> list[str]:
    """Decode every clip of a manifest and return the paths whose frame count or sha256 differ."""
    manifest = Path(manifest)
    mismatched = []
    with open(manifest, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            path = str(manifest.parent / row["path"])
            count, digest = _decoded_sha256(path)
            if count != int(row["frames"]) or digest != row["sha256"]:
                mismatched.append(path)
    return mismatched
