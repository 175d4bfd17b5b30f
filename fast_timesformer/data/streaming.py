"""Slide a model's clip window over a whole video, decoding forward once: memory that does not grow with length.

`VideoReader` answers random access (seek to a keyframe, decode a clip) and stops at the first decoding
error. A timeline needs the opposite: every window of a long file, in order, and a broken packet in the
middle must not cost the rest of the file. This module provides both halves:

* `plan_windows` turns a video's length into `Window` s -- which frames of the nominal frame grid each
  window samples, and the seconds it covers -- with exactly the index arithmetic of
  `fast_timesformer.data.sampling` (what a window means for each sampling: `plan_windows`' docstring);
* `StreamingVideoReader` decodes the file front to back once (PyAV), converts to RGB only the frames
  some window needs, skips packets the decoder rejects (each recorded as a `DecodeProblem` with its time)
  and keeps going; `stream_windows` keeps only the frames the windows still to come need, and yields each
  window as soon as its last frame has been decoded.

**Index and time.** As in `fast_timesformer.data.decoding`: index ``i`` is the frame on screen at
``start + i / fps`` (``fps`` the stream's average rate), so variable-frame-rate files are sampled uniformly
in time. A skipped packet's frames are answered by the frame before the gap, as a player shows it. All times
reported here are seconds from the first frame.

**Memory.** The buffer holds at most the frames of the windows that overlap the current decode position
(about ``2 * num_frames`` frames at the default stride of half a window), each already resized by the
caller's ``transform``; nothing else is kept per frame, so peak memory is the same for one minute and for
one hour (BENCHMARKS.md, "Timeline"). Only the list of windows (a few integers each) grows with length.

The file is opened and validated by `fast_timesformer.data.backends.pyav.PyAVSource` first, so a missing
file, a non-video, an audio-only file, an undeclared frame rate or a file over the limits fail with the same
`VideoDecodeError` messages as everywhere else.
"""

from __future__ import annotations

import logging
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from fast_timesformer.errors import FastTimeSformerError

from .backends import DEFAULT_MAX_DURATION, DEFAULT_MAX_FRAMES, DEFAULT_MAX_PIXELS, check_path, upright
from .decoding import VideoMetadata
from .sampling import apply_out_of_range, clip_span, segment_indices

logger = logging.getLogger(__name__)

#: Something-Something v2 videos last 2-6 s, about 4 s on average: the default window of segment sampling,
#: whose "clip" is a whole short video rather than a fixed span.
DEFAULT_SEGMENT_WINDOW_S = 4.0
#: Broken packets closer together than this are reported as one problem (one line, with a count).
_MERGE_PROBLEMS_S = 1.0


class WindowError(FastTimeSformerError, ValueError):
    """A stride, window length or other timeline option that cannot work; the message names the fix."""


@dataclass(frozen=True)
class Window:
    """One window of a timeline.

    Attributes:
        index: position in the timeline, from 0.
        frames: the nominal-grid frame indices it samples, in clip order (``num_frames`` of them).
        start_s: where the window starts, seconds from the first frame.
        end_s: where it ends (the end of the video for a window longer than the video).
    """

    index: int
    frames: tuple[int, ...]
    start_s: float
    end_s: float

    @property
    def centre_s(self) -> float:
        """The middle of the window: where its prediction is drawn and which moment it stands for."""
        return (self.start_s + self.end_s) / 2


@dataclass
class DecodeProblem:
    """Something the decoder could not read; decoding skipped it and went on.

    Attributes:
        kind: ``"broken packet"`` (the decoder rejected it; its frames are missing) or ``"stream ended
            early"`` (the file stops before its declared length; later windows are not scored).
        start_s: seconds from the first frame where it starts. With frame threading FFmpeg reports a bad
            packet when a later one is sent, so a broken packet is placed between the oldest packet then
            in flight (``start_s``) and the one being sent (``end_s``); with ``threads=1`` the two agree.
        end_s: where it (or the last merged occurrence: broken packets less than a second apart are
            merged) ends.
        count: packets merged into this entry.
        detail: the decoder's message.
    """

    kind: str
    start_s: float
    end_s: float
    count: int
    detail: str

    def describe(self) -> str:
        """One line, e.g. ``broken packet between 12.40 and 12.47 s: Invalid data ...``."""
        if self.end_s - self.start_s < 0.005:
            where = f"at {self.start_s:.2f} s"
        else:
            where = f"between {self.start_s:.2f} and {self.end_s:.2f} s"
        if self.count > 1:
            where += f" ({self.count} packets)"
        return f"{self.kind} {where}: {self.detail}"


def plan_windows(
    num_video_frames: int,
    fps: float,
    *,
    num_frames: int,
    sampling: str,
    sampling_rate: int,
    stride_s: float | None = None,
    window_s: float | None = None,
    out_of_range: str = "loop",
    target_fps: float = 30,
) -> list[Window]:
    """The windows of a timeline over a video of ``num_video_frames`` frames at ``fps``.

    What a window is follows the model's sampling, so that each window is the clip the model was tested on:

    * ``"dense"``: a span of ``num_frames * sampling_rate`` frames at ``target_fps`` (8 x 32 at 30 fps:
      8.53 s, rescaled to the video's frame rate as `dense_indices` does), sampled exactly like a test clip
      of `dense_indices` starting there -- ``floor(linspace(start, start + span - 1, num_frames))``. A
      window's length is fixed by the model: ``window_s`` is refused.
    * ``"segment"``: the model's clip is a whole short video cut into ``num_frames`` segments, so a window
      is a stretch of ``window_s`` seconds (default `DEFAULT_SEGMENT_WINDOW_S`) treated as that video:
      `segment_indices` over its frames, plus its first frame.

    Windows start every ``stride_s`` seconds (default: half a window) while they fit in the video; when the
    last one ends more than a frame before the video does, one more window is aligned to the video's end so
    the tail is scored too. A video shorter than one window gets one window over all of it, sampled as
    `dense_indices` / `segment_indices` sample a short video (dense: ``out_of_range`` loops or repeats).

    Raises `WindowError` for a non-positive stride or window, or ``window_s`` with dense sampling.
    """
    if num_video_frames <= 0 or fps <= 0:
        raise WindowError(f"cannot place windows in a video of {num_video_frames} frames at {fps} fps")
    if sampling == "dense":
        if window_s is not None:
            raise WindowError(
                f"window_s={window_s} cannot be used with dense sampling: the window is the model's clip "
                f"({num_frames} x {sampling_rate} frames at {target_fps:g} fps); leave it unset"
            )
        span = clip_span(num_frames=num_frames, sampling_rate=sampling_rate, fps=fps, target_fps=target_fps)
    elif sampling == "segment":
        window_s = DEFAULT_SEGMENT_WINDOW_S if window_s is None else window_s
        if not window_s > 0:
            raise WindowError(f"window_s must be positive seconds, got {window_s}")
        span = float(max(num_frames, round(window_s * fps)))
    else:
        raise WindowError(f"unknown sampling {sampling!r}; expected 'dense' or 'segment'")
    stride = span / 2 if stride_s is None else stride_s * fps
    if not stride > 0 or not math.isfinite(stride):
        raise WindowError(f"stride must be positive seconds, got {stride_s}")
    if sampling == "segment":
        stride = max(1.0, float(round(stride)))  # segment windows start on whole frames
    starts = [0.0]
    if num_video_frames > span:
        count = int(math.floor((num_video_frames - span) / stride + 1e-9)) + 1
        starts = [k * stride for k in range(count)]
        if num_video_frames - (starts[-1] + span) >= 1.0:
            starts.append(num_video_frames - span)  # the tail: aligned to the end of the video
    windows = []
    for index, start in enumerate(starts):
        if sampling == "dense":
            # float32 linspace truncated toward zero, as dense_indices (and upstream) do for a test clip.
            positions = torch.linspace(start, start + span - 1, num_frames).clamp(min=0).long()
            frames = apply_out_of_range(positions, num_video_frames, out_of_range)
        else:
            first = int(start)
            length = min(int(span), num_video_frames - first)
            frames = first + segment_indices(length, num_frames=num_frames, train=False)
        end = min(start + span, num_video_frames)
        windows.append(Window(index, tuple(int(i) for i in frames), start / fps, end / fps))
    return windows


class StreamingVideoReader:
    """Decode one video front to back once, handing out the frames at requested grid indices.

    Nothing stays open between calls: `frames` opens the file for its pass and closes it when the pass
    ends (or the generator is closed). ``problems`` lists what was skipped,
    ``frames_decoded`` counts the decoder's output (every frame is decoded; only requested ones are
    converted to RGB).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        threads: int = 0,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_frames: int = DEFAULT_MAX_FRAMES,
        max_duration: float = DEFAULT_MAX_DURATION,
    ):
        """
        Args:
            path: the video file.
            threads: FFmpeg decoding threads (0: FFmpeg picks, with frame and slice threading).
            max_pixels: refuse files whose declared frame has more pixels than this (before decoding).
            max_frames: refuse files declaring more frames than this.
            max_duration: refuse files declaring more seconds than this.
        """
        from .backends.pyav import PyAVSource

        self.path = os.fspath(path)
        self.threads = threads
        check_path(self.path)
        limits = {"max_pixels": max_pixels, "max_frames": max_frames, "max_duration": max_duration}
        probe = PyAVSource(self.path, threads=1, limits=limits)  # the shared checks and messages
        try:
            self.metadata = VideoMetadata(
                path=self.path, num_frames=probe.num_frames, num_frames_exact=probe.exact, fps=probe.fps,
                duration=probe.duration, width=probe.width, height=probe.height, rotation=probe.rotation,
                backend="pyav", codec=probe.codec,
            )  # fmt: skip
            self.start, self.tolerance = probe.start, probe.tolerance
        finally:
            probe.close()
        self.problems: list[DecodeProblem] = []
        self.frames_decoded = 0
        self.end_s: float | None = None  # where the stream really ended, once it has

    def _problem(self, kind: str, start_s: float, detail: str, end_s: float | None = None) -> None:
        end_s = start_s if end_s is None else end_s
        last = self.problems[-1] if self.problems else None
        if last is not None and last.kind == kind and start_s - last.end_s <= _MERGE_PROBLEMS_S:
            last.end_s, last.count = max(last.end_s, end_s), last.count + 1
            return
        self.problems.append(DecodeProblem(kind, start_s, end_s, 1, detail))
        logger.warning("%s: %s", self.path, self.problems[-1].describe())

    def frames(self, wanted: Iterable[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield ``(index, frame)`` for each of the ascending, distinct grid indices ``wanted``: uint8
        (3, H, W) RGB, upright, in order, as the single decoding pass reaches them.

        Stops early (recording a "stream ended early" problem) when the file ends more than two frames
        before a wanted index; indices just past the end get the last frame, as `VideoReader` does.
        """
        from .backends.pyav import import_av, to_rgb

        av = import_av()
        fps, start, tolerance = self.metadata.fps, self.start, self.tolerance
        rotation = self.metadata.rotation
        targets = iter(wanted)
        target = next(targets, None)
        previous, previous_time, previous_rgb = None, start, None

        def rgb(frame) -> torch.Tensor:
            video = torch.from_numpy(to_rgb(frame, self.path)).permute(2, 0, 1)  # (H, W, C) -> (C, H, W)
            return upright(video[None], rotation)[0]

        container = av.open(self.path, metadata_errors="ignore")
        try:
            stream = container.streams.video[0]
            stream.thread_type, stream.thread_count = "AUTO", self.threads
            tick = float(stream.time_base) if stream.time_base else 0.0
            packets = container.demux(stream)
            in_flight: deque[float] = deque(maxlen=1)  # times of the packets the decoder may still hold
            while target is not None:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.error.FFmpegError, EOFError) as error:  # the container itself is unreadable
                    self._problem("stream ended early", previous_time - start, f"demuxing failed: {error}")
                    break
                when = packet.pts * tick if packet.pts is not None and tick else previous_time
                in_flight.append(when)
                try:
                    decoded = packet.decode()
                except (av.error.FFmpegError, EOFError) as error:
                    self._problem(
                        "broken packet", max(0.0, min(in_flight) - start), f"{type(error).__name__}: {error}",
                        end_s=max(0.0, when - start),
                    )  # fmt: skip
                    continue
                if in_flight.maxlen != stream.codec_context.thread_count:  # known once the decoder is open
                    in_flight = deque(in_flight, maxlen=max(1, stream.codec_context.thread_count))
                for frame in decoded:
                    self.frames_decoded += 1
                    time = frame.pts * tick if frame.pts is not None and tick else previous_time + 1 / fps
                    # The previous frame answers every target shown before this one (frame times are
                    # rounded to the time base: ``tolerance`` absorbs that, as in VideoReader).
                    while target is not None and time > start + target / fps + tolerance:
                        if previous_rgb is None:
                            previous_rgb = rgb(previous if previous is not None else frame)
                        yield target, previous_rgb
                        target = next(targets, None)
                    previous, previous_time, previous_rgb = frame, time, None
            self.end_s = previous_time - start
            # End of stream: the last frame stays on screen for targets just past it.
            while target is not None and previous is not None:
                if start + target / fps > previous_time + tolerance + 2.0 / fps:
                    declared = (self.metadata.num_frames - 1) / fps
                    self._problem(
                        "stream ended early", self.end_s,
                        f"the last frame is at {self.end_s:.2f} s but the file declares {declared:.2f} s "
                        "(truncated?); windows after it are not scored",
                    )  # fmt: skip
                    break
                if previous_rgb is None:
                    previous_rgb = rgb(previous)
                yield target, previous_rgb
                target = next(targets, None)
        finally:
            container.close()


def stream_windows(
    reader: StreamingVideoReader,
    windows: Sequence[Window],
    *,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> Iterator[tuple[Window, torch.Tensor]]:
    """Yield ``(window, frames)`` for each window whose frames could be decoded, in order: frames uint8
    (num_frames, 3, H, W), each passed through ``transform`` ((3, H, W) -> (3, H', W')) once.

    Only frames that a window still to come needs are kept. Windows the stream ends before are not
    yielded (``reader.problems`` says why).
    """
    # Windows complete in the order of their last frame; a frame can go once no later window needs it.
    order = sorted(windows, key=lambda window: (max(window.frames), window.index))
    wanted = sorted({i for window in windows for i in window.frames})
    # keep_from[p]: the smallest frame any of order[p:] needs (the windows left after p have been yielded).
    keep_from = [0] * (len(order) + 1)
    keep_from[-1] = math.inf
    for p in range(len(order) - 1, -1, -1):
        keep_from[p] = min(keep_from[p + 1], min(order[p].frames))
    buffer: dict[int, torch.Tensor] = {}
    position = 0
    for index, frame in reader.frames(wanted):
        buffer[index] = transform(frame) if transform is not None else frame
        while position < len(order) and max(order[position].frames) <= index:
            window = order[position]
            yield window, torch.stack([buffer[i] for i in window.frames])  # (T, C, H, W)
            position += 1
            for stale in [i for i in buffer if i < keep_from[position]]:
                del buffer[stale]


__all__ = [
    "DEFAULT_SEGMENT_WINDOW_S",
    "DecodeProblem",
    "StreamingVideoReader",
    "Window",
    "WindowError",
    "plan_windows",
    "stream_windows",
]
