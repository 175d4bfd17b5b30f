"""A built-in long-clip task, as real .mp4 files: the label relates events half a clip apart.

**The task.** Every clip (default 32 frames of 64 x 64 px: 2,048 joint tokens with 8-px patches) shows, on a
dark canvas that wraps around at the edges, four *events* -- a shape that stays put for ``event_frames``
frames (default ``T / 8``, 4 frames: the most two events of a quarter can have):

* a red one and a blue one in the first quarter of the clip (the *early* events),
* a red one and a blue one in the last quarter (the *late* events),

no two of them in the same frame, plus *distractors*: in every frame up to three squares of other colours
(yellow, green, magenta, white; ``size / 8`` px), each lasting one frame, at random places. For each colour,
the late shape sits ``D`` pixels to the right or to the left of the early one, around the wrap-around canvas.
The class is (red moved right or left, blue moved right or left): `LONG_CLASSES` = ``red_left_blue_left``,
``red_left_blue_right``, ``red_right_blue_left``, ``red_right_blue_right`` (sorted, so the folder-per-class
reader and the manifest agree on label numbers).

Two placements (`event_geometry`):

* ``"near"`` (the default): the shapes are full-height stripes half the canvas wide, the colour on their left
  half and a darker shade of it on their right half, and ``size / 8 <= D <= 3 size / 8``. The early and the
  late stripe overlap, and where they do, one place shows the colour early and the shade late (moved right) or
  the other way round (moved left): the relation is far apart in time (at least half the clip), at one
  place. What our small CPU-trained models learn of it is measured in BENCHMARKS.md ("The long task").
* ``"far"``: squares ``size / 8`` px, ``size / 8 <= D <= 3 size / 8``, the late square at an independent
  random height: the two squares of a colour never touch, so the relation is far apart in time *and* space
  and has to be assembled across places. Small models trained on a CPU for minutes stay at chance on it
  (measured: BENCHMARKS.md); it is kept as the harder variant.

**Why a model that ignores frame order is at chance** (a ``space_only`` model averages per-frame features
with no time embedding). Each colour's pair of shapes is drawn first, as positions ``A = (P, y1)`` and
``B = (P + D mod size, y2)``, with everything else in the clip, and rendered with ``A`` early and ``B`` late;
the label then only decides, per colour, whether the early event's frames trade places with the late
event's (whole frames, distractors included: "left") or not ("right"). So for one random draw the four
classes are permutations of the same frames (tested exactly). The same holds in distribution for the frames
any index pattern fixed in advance (a sampler) picks: if it catches both shapes of a colour it sees the
unordered pair, whose law is the same for both directions (substitute ``P' = P + D``); if it catches one,
that one's position is uniform either way. Frames hold at most one event, and distractors and noise are
drawn independently per frame, so nothing outside frame order links an early red shape to the early blue
one (a persistent distractor or a shared frame would: it would reveal which red and which blue shape share
a quarter, and so the XOR of the two bits).

**Why a model that sees only nearby frames is at chance.** The early events end before frame ``T / 4`` and
the late ones start at ``3 T / 4`` or later, so any window of at most ``T / 2 + 1`` consecutive frames -- in
fact any window that does not reach into both the first and the last quarter -- sees at most one shape of
each colour. The early shapes alone have uniform positions ``P`` or ``P + D`` whatever the label; so do the
late ones; event times never depend on it, and distractors and noise are independent of everything else
in their frame. So the content of such a window, even with its absolute position in the clip, has the same
distribution for every class. (A model that pools the features of *several* windows, each tagged with its
time, can of course solve the task: it is not local.)

**Why wrap-around, and why two pairs.** The canvas wraps because no "right of" relation on a line can have
the same marginals for both answers: if the late shape is right of the early one, the mean late position
exceeds the mean early one, and a window on the last quarter would see it. A simpler design -- one red and
one blue event, class = (which colour comes first, is the second left or right of the first) -- leaks twice:
a window on the first quarter sees which colour comes first, and the set of frames shows whether blue is
right of red, which is (order XOR side), so an order-free model reaches 50%. Two pairs whose bits are each
flipped by swapping that pair's times (and not by reversing the whole clip, which would flip both and leak
their XOR) keep both controls at 25%.

**Sampling and augmentation.** Frames are not held (each is rendered once, unlike the motion task's
``hold=2``): dense sampling with ``num_frames=T, sampling_rate=1`` shows each frame once. Horizontal
flips turn right into left and crops break the wrap-around: train with ``flip=False``,
``crop_size=size`` and ``scale_range=(size, size)``.

**Files.** `generate_long_dataset` writes the same layout, manifests and checksums as the motion dataset
(`fast_timesformer.data.synthetic`, whose encoder, hashing and seeding it reuses):
``root/<split>/<class>/<split>_<index>.mp4``, ``root/<split>/manifest.csv`` (``path,label,frames,sha256``),
``classes.txt`` and ``root/manifest.csv`` with a ``split`` column; `verify_motion_dataset` checks either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from .synthetic import BACKGROUND, BLUE, RED, _decoded_sha256, clip_rng, run_jobs, write_clip, write_manifests

if TYPE_CHECKING:  # numpy is imported where it is used, so importing fast_timesformer.data does not need it
    import numpy as np

LONG_CLASSES = ("red_left_blue_left", "red_left_blue_right", "red_right_blue_left", "red_right_blue_right")

EVENT_COLOURS = {"red": RED, "blue": BLUE}
#: The right half of a "near" stripe: a darker shade of its colour, so that one place seen early and late
#: tells which way the stripe moved (module docstring).
EVENT_SHADES = {"red": (120.0, 20.0, 20.0), "blue": (20.0, 40.0, 120.0)}
DISTRACTOR_COLOURS = ((220.0, 200.0, 50.0), (60.0, 200.0, 60.0), (200.0, 60.0, 200.0), (230.0, 230.0, 230.0))
DEFAULT_NUM_VIDEOS = MappingProxyType({"train": 512, "val": 128})  # 640 clips: under a minute on 2 cores
MAX_DISTRACTORS = 3  # per frame; each one lasts a single frame (see "order" in the module docstring)
PLACEMENTS = ("near", "far")


def event_geometry(size: int, placement: str) -> tuple[int, int, int, int]:
    """(width, height, least shift, largest shift) in pixels of the event shapes of ``placement``.

    ``"near"``: full-height stripes ``size / 2`` wide, the late one ``size / 8 .. 3 size / 8`` px beside
    the early one (they overlap). ``"far"``: squares ``size / 8`` px, the late one ``size / 8 .. 3 size / 8``
    px beside the early one, at an independent height (they never touch).
    """
    if placement == "near":
        return size // 2, size, size // 8, 3 * size // 8
    if placement == "far":
        return size // 8, size // 8, size // 8, 3 * size // 8
    raise ValueError(f"unknown placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")


def _event_frames(num_frames: int, event_frames: int | None) -> int:
    """``event_frames``, or by default an eighth of the clip (two events then fill a quarter)."""
    return max(1, num_frames // 8) if event_frames is None else event_frames


def _check_geometry(num_frames: int, size: int, event_frames: int) -> None:
    if event_frames < 1 or num_frames % 4 or num_frames // 4 < 2 * event_frames:
        raise ValueError(
            "num_frames must be a multiple of 4 whose quarter holds two events of "
            f"event_frames={event_frames} "
            f"frames (num_frames >= {8 * max(event_frames, 1)}), got num_frames={num_frames}"
        )
    if size % 8 or size < 16:
        raise ValueError(f"size must be a multiple of 8 and at least 16, got {size}")


def _event_starts(rng: np.random.Generator, first: int, quarter: int, event_frames: int) -> tuple[int, int]:
    """Start frames (red, blue) of two non-overlapping events inside frames [first, first + quarter)."""
    last = quarter - event_frames  # latest start inside the quarter
    pairs = [(r, b) for r in range(last + 1) for b in range(last + 1) if abs(r - b) >= event_frames]
    red, blue = pairs[int(rng.integers(len(pairs)))]
    return first + red, first + blue


def long_events(
    label: int,
    *,
    rng: np.random.Generator,
    num_frames: int = 32,
    size: int = 64,
    event_frames: int | None = None,
    placement: str = "near",
) -> list[dict[str, int | str]]:
    """The four events of the clip ``render_long_clip(label, rng=rng, ...)`` draws (same rng state).

    Returns dicts ``{"colour", "when", "start", "x", "y"}`` (``when`` is "early" or "late"; ``x, y`` the
    shape's top-left corner -- a "near" stripe's ``y`` is unused; it covers ``start .. start + event_frames -
    1``), red early, red late, blue early, blue late. Every random choice is made before the label is read
    (see the module docstring).
    """
    if not 0 <= label < len(LONG_CLASSES):
        raise ValueError(f"label must be in [0, {len(LONG_CLASSES)}), got {label}")
    event_frames = _event_frames(num_frames, event_frames)
    _check_geometry(num_frames, size, event_frames)
    _, height, least, most = event_geometry(size, placement)
    quarter = num_frames // 4
    early = _event_starts(rng, 0, quarter, event_frames)
    late = _event_starts(rng, num_frames - quarter, quarter, event_frames)
    moves = {"red": LONG_CLASSES[label].split("_")[1], "blue": LONG_CLASSES[label].split("_")[3]}
    events = []
    for i, colour in enumerate(EVENT_COLOURS):
        x, y1, y2 = (int(v) for v in rng.integers(0, size, 3))
        y2 = y1 if height == size else y2  # a full-height stripe has no height of its own
        shift = int(rng.integers(least, most + 1))
        a, b = (x, y1), ((x + shift) % size, y2)  # b is `shift` px right of a, around the canvas
        first, second = (a, b) if moves[colour] == "right" else (b, a)
        events.append({"colour": colour, "when": "early", "start": early[i], "x": first[0], "y": first[1]})
        events.append({"colour": colour, "when": "late", "start": late[i], "x": second[0], "y": second[1]})
    return events


def _square(
    frame: np.ndarray,
    x: int,
    y: int,
    side: int,
    colour: tuple[float, float, float],
    height: int | None = None,
) -> None:
    import numpy as np

    size = frame.shape[0]
    rows = (y + np.arange(side if height is None else height)) % size  # the canvas wraps around
    cols = (x + np.arange(side)) % size
    frame[np.ix_(rows, cols)] = colour


def render_long_clip(
    label: int,
    *,
    rng: np.random.Generator,
    num_frames: int = 32,
    size: int = 64,
    event_frames: int | None = None,
    noise: float = 0.0,
    distractors: bool = True,
    placement: str = "near",
) -> np.ndarray:
    """Render one clip of class ``label`` as uint8 (T, H, W, 3) RGB (see the module docstring).

    Args:
        label: index into `LONG_CLASSES`.
        rng: source of every random choice (a seeded `numpy.random.Generator`, e.g. `clip_rng`).
        num_frames: T, frames per clip (multiple of 4, at least ``8 * event_frames``).
        size: canvas side in pixels (multiple of 8); distractors are ``size / 8`` px squares.
        event_frames: frames each event's shape stays for (default ``num_frames // 8``).
        noise: standard deviation of per-pixel Gaussian noise (0-255 scale), drawn per frame. Off by default:
            lossless H.264 spends its bits on noise (190 KB instead of 13 KB per default clip at noise=2).
        distractors: draw the one-frame squares of other colours.
        placement: ``"near"`` (overlapping two-toned stripes) or ``"far"`` (squares apart); see the module
            docstring and `event_geometry`.
    """
    import numpy as np

    if not 0 <= label < len(LONG_CLASSES):
        raise ValueError(f"label must be in [0, {len(LONG_CLASSES)}), got {label}")
    event_frames = _event_frames(num_frames, event_frames)
    # Render the clip of "red_right_blue_right" from this draw, then swap the early and late frames of each
    # colour that moves left: the classes are permutations of one set of frames (see the module docstring).
    # long_events reads the label only after its random draws, so it consumes the same numbers either way.
    events = long_events(
        len(LONG_CLASSES) - 1,
        rng=rng,
        num_frames=num_frames,
        size=size,
        event_frames=event_frames,
        placement=placement,
    )
    (width, height), small = event_geometry(size, placement)[:2], size // 8
    # Drawn after the events and never from the label: per frame, a count, colours and places.
    counts = rng.integers(0, MAX_DISTRACTORS + 1, num_frames)
    places = rng.integers(0, size, (num_frames, MAX_DISTRACTORS, 2))
    colours = rng.integers(0, len(DISTRACTOR_COLOURS), (num_frames, MAX_DISTRACTORS))
    frames = np.full((num_frames, size, size, 3), BACKGROUND, dtype=np.float32)
    for t in range(num_frames if distractors else 0):
        for k in range(int(counts[t])):
            _square(
                frames[t],
                int(places[t, k, 0]),
                int(places[t, k, 1]),
                small,
                DISTRACTOR_COLOURS[colours[t, k]],
            )
    for event in events:  # on top of the distractors, so an event shape is always whole
        for t in range(int(event["start"]), int(event["start"]) + event_frames):
            colour = str(event["colour"])
            if placement == "near":  # two-toned stripe: the colour, then its shade
                half = width // 2
                _square(frames[t], int(event["x"]), 0, half, EVENT_COLOURS[colour], height)
                _square(frames[t], int(event["x"]) + half, 0, half, EVENT_SHADES[colour], height)
            else:
                _square(frames[t], int(event["x"]), int(event["y"]), width, EVENT_COLOURS[colour], height)
    if noise > 0:  # drawn last, so noise=0 renders the same scene without it
        frames += rng.normal(0.0, noise, frames.shape).astype(np.float32)
    order = np.arange(num_frames)
    moves = LONG_CLASSES[label].split("_")[1::2]  # (red, blue): "left" or "right"
    for (early, late), move in zip(zip(events[0::2], events[1::2]), moves):
        if move == "left":  # the early shape's frames trade places with the late shape's
            a = np.arange(int(early["start"]), int(early["start"]) + event_frames)
            b = np.arange(int(late["start"]), int(late["start"]) + event_frames)
            order[a], order[b] = b, a
    frames = frames[order]
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)  # (T, H, W, 3)


def long_masks(
    label: int,
    *,
    rng: np.random.Generator,
    num_frames: int = 32,
    size: int = 64,
    event_frames: int | None = None,
    placement: str = "near",
) -> dict[str, np.ndarray]:
    """Where things are in the clip ``render_long_clip(label, rng=rng, ...)`` draws: bool (T, H, W) masks.

    ``"events"``: the pixels of the red and blue event shapes (colour and shade); ``"red changed"``: red's
    pixels whose tone differs between its early and late shape (with ``"near"`` stripes, the only places
    where one position seen early and late tells which way red moved: the evidence for half the label);
    ``"blue changed"``: the same for blue (the label's other half);
    ``"distractors"``: the one-frame squares of other colours. Pass a generator in the same state as the one
    the clip was rendered with (e.g. a fresh `clip_rng`): the clip is drawn again without noise from the
    same random draws, so the masks are exact.
    """
    import numpy as np

    clean = render_long_clip(
        label, rng=rng, num_frames=num_frames, size=size, event_frames=event_frames, placement=placement
    )

    def where(colours) -> np.ndarray:
        return np.logical_or.reduce([(clean == np.array(c, dtype=np.uint8)).all(-1) for c in colours])

    early, late = slice(0, num_frames // 4), slice(num_frames - num_frames // 4, None)

    def changed(colour: str) -> np.ndarray:
        tones = [where([EVENT_COLOURS[colour]]), where([EVENT_SHADES[colour]])]  # (T, H, W) each
        seen = [  # (H, W): the tone index + 1 the place shows in that quarter, 0 where neither
            sum((i + 1) * tone[quarter].any(0) for i, tone in enumerate(tones)) for quarter in (early, late)
        ]
        differs = (seen[0] > 0) & (seen[1] > 0) & (seen[0] != seen[1])  # (H, W)
        return (tones[0] | tones[1]) & differs[None]

    return {
        "events": where([*EVENT_COLOURS.values(), *EVENT_SHADES.values()]),
        **{f"{colour} changed": changed(colour) for colour in EVENT_COLOURS},
        "distractors": where(DISTRACTOR_COLOURS),
    }


def _make_one(job: tuple) -> tuple[str, int, int, str]:
    root, split, index, label, seed, num_frames, size, event_frames, noise, placement, fps = job
    rng = clip_rng(seed, split, index)
    frames = render_long_clip(
        label,
        rng=rng,
        num_frames=num_frames,
        size=size,
        event_frames=event_frames,
        noise=noise,
        placement=placement,
    )
    relative = f"{LONG_CLASSES[label]}/{split}_{index:05d}.mp4"
    path = os.path.join(root, split, relative)
    write_clip(path, frames, fps=fps)
    count, digest = _decoded_sha256(path)
    return relative, label, count, digest


def generate_long_dataset(
    root: str | os.PathLike,
    *,
    num_videos: int | Mapping[str, int] = DEFAULT_NUM_VIDEOS,
    num_frames: int = 32,
    size: int = 64,
    event_frames: int | None = None,
    seed: int = 0,
    splits: Sequence[str] = ("train", "val"),
    noise: float = 0.0,
    placement: str = "near",
    fps: int = 30,
    num_workers: int = 0,
) -> Path:
    """Write the long-clip dataset under ``root`` and return the path of ``root/manifest.csv``.

    Same files as `generate_motion_dataset`: ``read_annotations(root / "train" / "manifest.csv")`` feeds
    `VideoDataset`; the returned root manifest lists every split with a ``split`` column.

    Args:
        root: output folder (created; existing clips with the same names are overwritten).
        num_videos: clips per split (an int for every split, or {split: count}); labels are balanced.
        num_frames: frames per clip (32 at 64 px: 2,048 joint tokens with 8-px patches; 64: 4,096).
        size: frame side in pixels (multiple of 8).
        event_frames: frames each event lasts (default ``num_frames // 8``; see `render_long_clip`).
        seed: everything is a function of (seed, split, index): same seed, same decoded bytes.
        splits: split folder names.
        noise: per-pixel Gaussian noise standard deviation (0-255 scale).
        fps: frame rate written into the files.
        num_workers: processes for rendering and encoding (0: in this process).
    """
    root = Path(root)
    counts = {split: int(num_videos) for split in splits} if isinstance(num_videos, int) else dict(num_videos)
    missing = [split for split in splits if split not in counts]
    if missing:
        raise ValueError(f"num_videos has no count for splits {missing}")
    event_frames = _event_frames(num_frames, event_frames)
    _check_geometry(num_frames, size, event_frames)  # once, before creating folders or starting workers
    event_geometry(size, placement)  # raises on an unknown placement, also before any work
    jobs = []
    for split in splits:
        for name in LONG_CLASSES:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index in range(counts[split]):
            label = index % len(LONG_CLASSES)
            jobs.append(
                (str(root), split, index, label, seed, num_frames, size, event_frames, noise, placement, fps)
            )
    return write_manifests(root, run_jobs(_make_one, jobs, splits, num_workers), LONG_CLASSES)
