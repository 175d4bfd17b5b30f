"""Which frames of a video make a clip: pure functions from a frame count to frame indices.

Two samplers, both returning a 1-D LongTensor of ``num_frames`` indices in ``[0, num_video_frames)``:

* `dense_indices` — the official TimeSformer / PySlowFast Kinetics sampler ("8x32": 8 frames spread
  over a span of 8 * 32 = 256 frames at 30 fps). Training picks a random span start; testing places
  ``num_clips`` spans evenly: clip ``k`` starts at ``delta * k / num_clips`` where ``delta`` is the slack
  ``num_video_frames - span``. As in the official code, a single test clip therefore starts at frame 0
  (the first span), not at the centre.
* `segment_indices` — the TSN / Something-Something sampler: the video is cut into ``num_frames``
  equal segments; training picks a random frame in each, testing the middle one.

Short videos: when the span is longer than the video, `dense_indices` produces indices past the end,
and ``out_of_range`` decides what they become: ``"loop"`` (index modulo the length: the clip wraps to
the start, keeping motion) or ``"repeat_last"`` (clamped to the last frame: the official behaviour, the
clip freezes). Nothing is raised for short videos; an empty video (0 frames) is a ValueError.

Randomness comes only from the ``generator`` argument (a `torch.Generator`), so a seeded generator gives
the same clip on every run and in every DataLoader worker.
"""

from __future__ import annotations

import torch

OUT_OF_RANGE = ("loop", "repeat_last")


def _check_common(num_video_frames: int, num_frames: int) -> None:
    if num_video_frames <= 0:
        raise ValueError(
            f"cannot sample a clip from a video with {num_video_frames} frames; "
            "remove empty videos (fast_timesformer.data.check_data lists them)"
        )
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")


def _uniform(generator: torch.Generator | None) -> float:
    return float(torch.rand((), generator=generator, dtype=torch.float64))


def apply_out_of_range(indices: torch.Tensor, num_video_frames: int, out_of_range: str) -> torch.Tensor:
    """Map indices past the end of a ``num_video_frames``-long video back into it.

    ``"loop"`` wraps (``i % num_video_frames``), ``"repeat_last"`` clamps to the last frame.
    """
    if out_of_range == "loop":
        return indices.remainder(num_video_frames)
    if out_of_range == "repeat_last":
        return indices.clamp(0, num_video_frames - 1)
    raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE}, got {out_of_range!r}")


def clip_span(
    *, num_frames: int, sampling_rate: int, fps: float | None = None, target_fps: float = 30
) -> float:
    """Length of a dense clip in source frames: ``num_frames * sampling_rate``, rescaled by ``fps/target_fps``.

    The rescaling keeps the clip's duration in seconds fixed (8 x 32 at 30 fps = 8.5 s) whatever the
    video's frame rate; with ``fps=None`` no rescaling happens.
    """
    span = float(num_frames * sampling_rate)
    if fps is not None:
        if fps <= 0 or target_fps <= 0:
            raise ValueError(f"fps and target_fps must be positive, got fps={fps}, target_fps={target_fps}")
        span = span * fps / target_fps
    return span


def dense_indices(
    num_video_frames: int,
    *,
    num_frames: int,
    sampling_rate: int,
    train: bool,
    clip_idx: int = 0,
    num_clips: int = 1,
    generator: torch.Generator | None = None,
    out_of_range: str = "loop",
    fps: float | None = None,
    target_fps: float = 30,
) -> torch.Tensor:
    """Indices of one dense clip: ``num_frames`` frames spread evenly over a span of
    ``num_frames * sampling_rate`` source frames (official PySlowFast semantics).

    Args:
        num_video_frames: frames in the video (exact or estimated).
        num_frames: T, the frames in the clip.
        sampling_rate: stride between clip frames at ``target_fps`` (32 for "8x32").
        train: random span start when True; the ``clip_idx``-th of ``num_clips`` evenly placed spans when False.
        clip_idx: which test clip, in ``[0, num_clips)``; ignored in training.
        num_clips: number of evenly placed test clips; ignored in training.
        generator: source of randomness for training (a seeded `torch.Generator` for reproducibility).
        out_of_range: "loop" or "repeat_last" for spans longer than the video (see module docstring).
        fps: the video's frame rate; when given the span is rescaled to keep its duration at ``target_fps``.
        target_fps: the frame rate ``sampling_rate`` refers to (30, as in the official configs).

    Returns:
        LongTensor (num_frames,) of indices in ``[0, num_video_frames)``, non-decreasing unless looped.
    """
    _check_common(num_video_frames, num_frames)
    if sampling_rate <= 0:
        raise ValueError(f"sampling_rate must be positive, got {sampling_rate}")
    if not train and not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx must be in [0, num_clips={num_clips}), got {clip_idx}")
    span = clip_span(num_frames=num_frames, sampling_rate=sampling_rate, fps=fps, target_fps=target_fps)
    delta = max(num_video_frames - span, 0.0)
    start = _uniform(generator) * delta if train else delta * clip_idx / num_clips
    end = start + span - 1
    # float32 linspace truncated toward zero, as upstream (torch.linspace(start, end, T) ... .long()).
    positions = torch.linspace(start, end, num_frames)
    indices = positions.clamp(min=0).long()
    return apply_out_of_range(indices, num_video_frames, out_of_range)


def segment_indices(
    num_video_frames: int,
    *,
    num_frames: int,
    train: bool,
    generator: torch.Generator | None = None,
    clip_idx: int = 0,
    num_clips: int = 1,
) -> torch.Tensor:
    """Indices of a segment-based clip (TSN; the official Something-Something v2 sampler).

    Segment ``i`` spans frames ``[round(s * i), round(s * (i + 1))]`` with ``s = (num_video_frames - 1) /
    num_frames`` (Python's round-half-to-even, as NumPy's ``np.round`` upstream). Training draws a frame
    uniformly from each segment (both ends included); testing takes the middle ``(lo + hi) // 2``.

    With ``num_clips > 1`` at test time, clip ``k`` takes the frame at fraction ``(k + 0.5) / num_clips`` of
    each segment instead of the middle, so the test views differ (upstream they are identical, issue #103);
    ``num_clips=1`` is exactly the official middle frame.

    Args:
        num_video_frames: frames in the video.
        num_frames: T, the number of segments and of clip frames.
        train: random frame per segment when True, deterministic when False.
        generator: source of randomness for training.
        clip_idx: which test clip, in ``[0, num_clips)``; ignored in training.
        num_clips: number of test clips; ignored in training.

    Returns:
        LongTensor (num_frames,) of non-decreasing indices in ``[0, num_video_frames)``.
    """
    _check_common(num_video_frames, num_frames)
    if not train and not 0 <= clip_idx < num_clips:
        raise ValueError(f"clip_idx must be in [0, num_clips={num_clips}), got {clip_idx}")
    segment = (num_video_frames - 1) / num_frames
    indices = []
    for i in range(num_frames):
        lo, hi = round(segment * i), round(segment * (i + 1))
        if train:
            indices.append(lo + int(torch.randint(hi - lo + 1, (), generator=generator)))
        elif num_clips == 1:
            indices.append((lo + hi) // 2)
        else:
            indices.append(lo + int((hi - lo) * (clip_idx + 0.5) / num_clips))
    return torch.tensor(indices, dtype=torch.long)
