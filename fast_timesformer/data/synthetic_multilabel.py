"""A built-in *multi-label* task: several events per clip, any subset of four, written as real .mp4 files.

**The task.** On the motion dataset's dark noisy canvas (``synthetic.BACKGROUND``), each of four *events*
happens in a clip independently with probability ``p`` (default 0.4, so 13% of the clips show none and a few
show all four), at a random place and time, for a third of the clip:

* ``red_square`` — a red square standing still;
* ``blue_square`` — a blue square standing still;
* ``moving_green`` — a green square sliding sideways (2 px per frame);
* ``blinking_yellow`` — a yellow square on every other frame.

The labels of a clip are the events it shows (`MULTILABEL_CLASSES`, sorted). Distractors: a grey square
wanders through every clip and, half the time, a green square stands still — so ``moving_green`` needs
motion (a frame or two), ``blinking_yellow`` needs more than one frame, and colour alone answers the rest.
This task checks that multi-label training, evaluation and thresholds work end to end; it is not a
test of long-range reasoning (the motion and long tasks are).

**Files.** ``generate_multilabel_dataset(root)`` writes ``root/<split>/<split>_<index>.mp4`` and
``root/<split>/manifest.csv`` (``path,label,frames,sha256``; ``label`` is the ``;``-joined class list,
empty for a clip without events) and ``classes.txt``, read with
``read_annotations(manifest, multilabel=True)``; the same encoding (lossless H.264) and checksums as
``synthetic.py``; the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .synthetic import BACKGROUND, _decoded_sha256, write_clip

MULTILABEL_CLASSES = ("blinking_yellow", "blue_square", "moving_green", "red_square")
_COLOURS = {
    "red_square": (230.0, 40.0, 40.0),
    "blue_square": (40.0, 80.0, 230.0),
    "moving_green": (60.0, 220.0, 60.0),
    "blinking_yellow": (220.0, 200.0, 50.0),
}
_GREY = (150.0, 150.0, 150.0)
_SPLIT_SEEDS = {"train": 11, "val": 12, "test": 13}

if TYPE_CHECKING:  # numpy comes with the [video] extra; imported where a clip is rendered
    import numpy as np


def clip_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator clip ``index`` of ``split`` is drawn with."""
    import numpy as np

    return np.random.default_rng([seed, _SPLIT_SEEDS.get(split, sum(map(ord, split))), index])


def _square(canvas: np.ndarray, y: int, x: int, side: int, colour: tuple[float, float, float]) -> None:
    import numpy as np

    size = canvas.shape[0]
    ys = (np.arange(y, y + side) % size)[:, None]
    xs = (np.arange(x, x + side) % size)[None, :]
    canvas[ys, xs] = colour


def render_multilabel_clip(
    rng: np.random.Generator, *, num_frames: int = 8, size: int = 32, p: float = 0.4, noise: float = 4.0
) -> tuple[np.ndarray, tuple[int, ...]]:
    """One clip: uint8 (T, H, W, 3) frames and its sorted class indices (into `MULTILABEL_CLASSES`)."""
    import numpy as np

    if num_frames < 6 or size < 16:
        raise ValueError(f"the multi-label task needs at least 6 frames of 16 px, got {num_frames} x {size}")
    side = max(3, size // 6)
    span = max(3, num_frames // 3)
    present = tuple(i for i in range(len(MULTILABEL_CLASSES)) if rng.random() < p)
    events = []
    for i in present:
        name = MULTILABEL_CLASSES[i]
        start = int(rng.integers(0, num_frames - span + 1))
        y, x = (int(v) for v in rng.integers(0, size, 2))
        phase = int(rng.integers(0, 2))
        events.append((name, start, y, x, phase))
    grey = [int(v) for v in rng.integers(0, size, 2)]
    still_green = rng.random() < 0.5
    green_at = [int(v) for v in rng.integers(0, size, 2)]
    frames = np.empty((num_frames, size, size, 3), np.float32)
    for t in range(num_frames):
        canvas = np.full((size, size, 3), BACKGROUND, np.float32)
        if still_green:
            _square(canvas, green_at[0], green_at[1], side, _COLOURS["moving_green"])
        _square(canvas, grey[0] + t, grey[1] + (t % 2), side, _GREY)
        for name, start, y, x, phase in events:
            if not start <= t < start + span:
                continue
            if name == "moving_green":
                _square(canvas, y, x + 2 * (t - start), side, _COLOURS[name])
            elif name == "blinking_yellow":
                if (t - start + phase) % 2 == 0:
                    _square(canvas, y, x, side, _COLOURS[name])
            else:
                _square(canvas, y, x, side, _COLOURS[name])
        frames[t] = canvas
    frames += rng.normal(0.0, noise, frames.shape).astype(np.float32)
    return np.clip(frames, 0, 255).astype(np.uint8), present


def generate_multilabel_dataset(
    root: str | os.PathLike,
    *,
    num_videos: int | Mapping[str, int] = 256,
    num_frames: int = 8,
    size: int = 32,
    p: float = 0.4,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    fps: int = 30,
) -> Path:
    """Write the multi-label dataset under ``root``; returns ``root`` (each split has its manifest)."""
    root = Path(root)
    counts = {split: int(num_videos) for split in splits} if isinstance(num_videos, int) else dict(num_videos)
    for split in splits:
        folder = root / split
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "classes.txt").write_text("\n".join(MULTILABEL_CLASSES) + "\n", encoding="utf-8")
        rows = []
        for index in range(counts[split]):
            frames, present = render_multilabel_clip(
                clip_rng(seed, split, index), num_frames=num_frames, size=size, p=p
            )
            relative = f"{split}_{index:05d}.mp4"
            write_clip(folder / relative, frames, fps=fps)
            count, digest = _decoded_sha256(str(folder / relative))
            rows.append((relative, ";".join(MULTILABEL_CLASSES[i] for i in present), count, digest))
        with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "label", "frames", "sha256"])
            writer.writerows(rows)
    return root


__all__ = ["MULTILABEL_CLASSES", "generate_multilabel_dataset", "render_multilabel_clip"]
