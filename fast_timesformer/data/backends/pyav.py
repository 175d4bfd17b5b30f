"""The PyAV backend of `fast_timesformer.data.decoding.VideoReader`: `PyAVSource`.

Always available with the ``[video]`` extra (``pip install 'fast-timesformer[video]'``, which brings PyAV
and numpy). `fast_timesformer.data.backends` imports this module only when a video is opened, so importing
the data package needs neither; PyAV itself is imported by `import_av`, with an install hint when missing.

**Seeking.** The source remembers how far it has decoded. A request that starts behind that point, or
more than `SEEK_THRESHOLD_S` ahead of it, seeks to the keyframe before the first requested frame and
decodes forward from there; a request just ahead continues decoding. An 8-frame clip of a 10-minute
video therefore decodes about one GOP plus the clip span, not the whole file.

**Skipping frames nobody needs.** Only the frame on screen at each requested time reaches the caller, and a
*non-reference* picture (H.264: every slice has ``nal_ref_idc == 0``; HEVC: a sub-layer non-reference NAL
type in a single-temporal-layer stream) is used by no other picture. So a packet of such a picture is not
sent to the decoder when another frame already seen in the stream (this packet's successor in display
order, or one even closer to the target) shows that it is on screen at none of the requested times. The
output is bit-identical to decoding everything; only ``frames_decoded`` is smaller (``packets_skipped``
counts the rest). Frames after the last requested time are kept, so a request just ahead can continue. x264's default B-frames
make about 45% of the packets droppable for an 8x32 clip. Other codecs, keyframes, packets without a
timestamp, and leading pictures before a seek's keyframe are always decoded. `SKIP_NON_REFERENCE` (or
``PyAVSource(..., skip_non_reference=False)``) turns it off.

**Rotation.** FFmpeg exposes a phone's display matrix on decoded frames (`av.VideoFrame.rotation`,
counter-clockwise degrees); the source rotates by the same angle. Tested with files written by PyAV's
`VideoStream.set_display_rotation` (PyAV >= 15); older FFmpeg builds expose the same angle through the
``rotate`` stream tag, read as a fallback.

**Pixel formats.** Every source format (yuv*, gray, rgba, pal8, ...) is converted by FFmpeg's swscale to
rgb24 (`to_rgb`); alpha is dropped (not composited), palettes are expanded. `to_rgb` converts in one thread
(`CONVERT_THREADS`): PyAV's default starts a thread pool per frame, slower for clip-sized frames; same bytes.

**Layout.** FFmpeg gives (H, W, C) per frame; `PyAVSource.frames_at` returns (N, C, H, W), the layout
`VideoReader.get_frames` hands on.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right, insort
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from .common import VideoDecodeError, check_limits, normalise_rotation, upright

try:
    import numpy as np  # PyAV's to_ndarray needs it too; the [video] extra installs both
except ImportError as error:  # pragma: no cover - numpy is installed in CI
    raise ImportError(
        "numpy is required to decode videos: pip install 'fast-timesformer[video]' (or pip install numpy)"
    ) from error

# Decoding forward this many seconds costs about the same as one seek (keyframe + GOP decode) for
# typical H.264 (GOP 1-10 s), so requests closer than this continue instead of seeking.
SEEK_THRESHOLD_S = 1.0

# Drop packets of non-reference pictures that no requested time needs (see the module docstring).
SKIP_NON_REFERENCE = True

# Packets demuxed ahead of the one being decided: without B-pyramid a non-reference B-frame's successor
# in display order comes after it in decode order (I0 P3 b1 b2: b2 proves b1 is not on screen at t=2).
# x264 uses at most 16 B-frames; 8 covers its default of 3 with room to spare.
_LOOKAHEAD_PACKETS = 8
_SEEN_PACKETS = 128  # packet times kept as evidence: far more than any reorder distance

# swscale threads for the RGB conversion. PyAV's default (0: one per CPU) starts a thread pool for every
# frame it converts -- at 340x256 that costs 3-8x the conversion itself, and a DataLoader worker should not
# fan out anyway. One thread gives the same bytes; None restores PyAV's default (for benchmarks).
CONVERT_THREADS: int | None = 1

_PYAV_MISSING = "PyAV is required to decode videos: pip install 'fast-timesformer[video]' (or pip install av)"


def import_av():
    """The ``av`` module, or an ImportError that says how to install it."""
    try:
        import av
    except ImportError as error:  # pragma: no cover - av is installed in CI
        raise ImportError(_PYAV_MISSING) from error
    return av


def to_rgb(frame: Any, path: str) -> np.ndarray:
    """One decoded frame as uint8 (H, W, 3) RGB, from any pixel format."""
    try:
        if frame.format.name in ("rgb24", "gbrp"):
            # PyAV reorders planar GBR itself; swscale's gbrp -> rgb24 path is ~10x slower on small frames.
            return frame.to_ndarray()
        # yuv*, gray, rgba, pal8, ... via swscale
        return frame.to_ndarray(format="rgb24", threads=CONVERT_THREADS)
    except (ValueError, import_av().error.FFmpegError) as error:
        raise VideoDecodeError(
            path, f"cannot convert {frame.format.name} frames to RGB ({error})", "re-encode the video"
        ) from error


def _length_prefixed(data: bytes, size: int) -> Iterator[int]:
    """The first byte after each NAL length field of MP4-style (avcC / hvcC) packet ``data``."""
    position = 0
    while position + size < len(data):
        length = int.from_bytes(data[position : position + size], "big")
        if length <= 0:
            return
        yield position + size
        position += size + length


def _annex_b(data: bytes) -> Iterator[int]:
    """The first byte after each ``00 00 01`` start code of Annex-B packet ``data`` (.ts, raw .h264)."""
    position = data.find(b"\x00\x00\x01")
    while 0 <= position < len(data) - 3:
        yield position + 3
        position = data.find(b"\x00\x00\x01", position + 3)


def non_reference_test(codec: str, extradata: bytes | None) -> Any:
    """A function ``bytes -> bool`` that says a packet holds a non-reference picture, or None for codecs
    (and extradata) it does not understand -- then every packet is decoded."""
    extradata = extradata or b""
    if codec == "h264":
        if extradata[:1] == b"\x01" and len(extradata) >= 7:  # avcC: 1-, 2- or 4-byte NAL lengths
            size = (extradata[4] & 3) + 1
            starts = lambda data: _length_prefixed(data, size)  # noqa: E731
        elif not extradata or extradata[:3] == b"\x00\x00\x01" or extradata[:4] == b"\x00\x00\x00\x01":
            starts = _annex_b
        else:
            return None

        def h264(data: bytes) -> bool:
            slices = 0
            for start in starts(data):
                header = data[start]
                if header & 0x1F in (1, 2, 3, 4, 5):  # coded slice (or partition) NAL
                    if header & 0x60:  # nal_ref_idc != 0: other pictures may refer to this one
                        return False
                    slices += 1
            return slices > 0

        return h264
    if codec == "hevc":
        # A sub-layer non-reference picture may still be referenced by a higher temporal sub-layer: only
        # trust it when the stream declares one temporal layer (hvcC numTemporalLayers == 1).
        if extradata[:1] != b"\x01" or len(extradata) < 23 or (extradata[21] >> 3) & 7 != 1:
            return None
        size = (extradata[21] & 3) + 1

        def hevc(data: bytes) -> bool:
            slices = 0
            for start in _length_prefixed(data, size):
                if start + 1 >= len(data):
                    return False
                kind = (data[start] >> 1) & 0x3F
                if kind < 32:  # VCL NAL
                    if kind >= 16 or kind % 2 or data[start + 1] & 7 != 1:  # IRAP, reference, TemporalId>0
                        return False
                    slices += 1
            return slices > 0

        return hevc
    return None


class PyAVSource:
    """The PyAV side of `VideoReader`: container, stream, and a forward-only decode position.

    Implements `fast_timesformer.data.backends.common.VideoSource`; ``frames_decoded`` counts the decoder's
    output (the probe frame included) and ``packets_skipped`` the packets never sent to it, for tests and
    benchmarks of seeking and skipping.
    """

    def __init__(
        self, path: str, *, threads: int, limits: dict[str, float], skip_non_reference: bool | None = None
    ):
        """
        Args:
            path: the video file.
            threads: FFmpeg decoding threads (0: FFmpeg picks).
            limits: ``max_pixels``, ``max_frames``, ``max_duration`` checked before decoding.
            skip_non_reference: drop unneeded non-reference packets; None follows `SKIP_NON_REFERENCE`.
        """
        av = import_av()
        self.path = path
        self.skip_non_reference = SKIP_NON_REFERENCE if skip_non_reference is None else skip_non_reference
        self.packets_skipped = 0  # packets not sent to the decoder, for tests and benchmarks
        self._targets: list[float] | None = None  # sorted requested times + tolerance; None: keep all
        self._dropped_until = -math.inf  # latest time of a packet the current generator dropped
        try:
            self.container = av.open(path, metadata_errors="ignore")
        except av.error.FFmpegError as error:
            raise VideoDecodeError(
                path,
                f"not a video FFmpeg can open ({error.__class__.__name__}: {error.strerror})",
                "check that it is a complete video file (not text, HTML or a partial download)",
            ) from error
        try:
            self._open_stream(threads=threads, limits=limits)
        except BaseException:
            self.container.close()
            raise

    def _open_stream(self, *, threads: int, limits: dict[str, float]) -> None:
        path, container = self.path, self.container
        if not container.streams.video:
            kinds = sorted({s.type for s in container.streams})
            if not kinds:  # FFmpeg opened the container but found no stream at all: a damaged index
                raise VideoDecodeError(
                    path, "no video stream (no streams at all: the container's index is damaged)",
                    "the file is corrupt or truncated; re-download or re-encode it",
                )  # fmt: skip
            raise VideoDecodeError(path, f"no video stream (streams: {', '.join(kinds)})", "audio-only file?")
        stream = container.streams.video[0]
        stream.thread_count = threads
        self.stream = stream
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else 0.0
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        elif container.duration is not None:
            duration = container.duration / 1_000_000  # AV_TIME_BASE
        else:
            duration = 0.0
        if self.fps <= 0 and stream.frames and duration > 0:
            self.fps = stream.frames / duration
        if self.fps <= 0:
            raise VideoDecodeError(path, "no frame rate declared", "re-mux the file, e.g. to MP4")
        self.exact = bool(stream.frames)
        if stream.frames:
            self.num_frames = int(stream.frames)
        elif duration > 0:
            self.num_frames = int(round(duration * self.fps))
        else:  # neither a count nor a duration (e.g. a live-recorded Matroska): count packets, no decoding
            self.num_frames = self._count_packets(limit=int(limits["max_frames"]))
        self.duration = duration if duration > 0 else self.num_frames / self.fps
        width, height = stream.codec_context.width, stream.codec_context.height
        check_limits(
            path,
            width=width,
            height=height,
            num_frames=self.num_frames,
            duration=self.duration,
            limits=limits,
        )
        self.start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
        # Timestamps are rounded to the time base (1 ms ticks in Matroska: frame 2 at 30 fps is stored as
        # 0.067 s, not 0.0667 s); allow that much, but never a quarter frame, which would pick the next
        # frame of a dense variable-frame-rate stretch.
        self._tick = tick = float(stream.time_base) if stream.time_base else 0.0
        self.tolerance = min(0.25 / self.fps, 1.5 * tick) if tick else 0.25 / self.fps
        self.frames_decoded = 0  # decoder output count, for tests and benchmarks of seeking
        codec = stream.codec_context
        self._is_non_reference = (
            non_reference_test(codec.name, codec.extradata) if self.skip_non_reference else None
        )
        self._frames = None  # decode generator; None means "seek before decoding"
        self._prev = None  # last frame taken from the generator
        # Probe the first frame: it proves that something decodes and carries the display matrix.
        try:
            first = self._frames_from(self.start, seek=False)
        except VideoDecodeError as error:
            raise VideoDecodeError(path, f"no decodable video frame ({error.reason})", error.fix) from error
        if first is None:
            raise VideoDecodeError(path, "no decodable video frame", "the stream is empty or corrupt")
        self._prev = first
        self.start = self._time(first, fallback=self.start)
        rotation = getattr(first, "rotation", 0) or 0
        if not rotation and "rotate" in stream.metadata:  # FFmpeg < 6 exported the matrix as a tag
            rotation = -float(stream.metadata["rotate"])
        self.rotation = normalise_rotation(rotation)
        self.codec = stream.codec_context.name
        if self.num_frames == 0:
            self.num_frames = 1  # a single decodable frame with no duration (e.g. one-frame WebM)
        self.width, self.height = (
            (first.height, first.width) if self.rotation in (90, 270) else (first.width, first.height)
        )

    def _count_packets(self, *, limit: int) -> int:
        count = 0
        for packet in self.container.demux(self.stream):
            count += packet.size > 0
            if count > limit:
                break  # check_limits reports it
        self.container.seek(0, stream=self.stream, backward=True)
        return count

    def _time(self, frame: Any, fallback: float) -> float:
        # float(time_base) once: Fraction arithmetic per frame costs more than decoding a small frame.
        return frame.pts * self._tick if frame.pts is not None and self._tick else fallback

    def _frames_from(self, time: float, *, seek: bool) -> Any:
        """(Re)start decoding so that the next frame is at or before ``time``; return the first frame."""
        av = import_av()
        if seek:
            # Seek to the keyframe at or before one frame ahead of the target, in stream time base.
            target = max(time - 1.0 / self.fps, self.start) if time > self.start else self.start
            offset = int(math.floor(target / self.stream.time_base)) if self.stream.time_base else 0
            try:
                self.container.seek(offset, stream=self.stream, backward=True, any_frame=False)
            except av.error.FFmpegError as error:
                raise VideoDecodeError(self.path, f"seek failed: {error}", "re-mux the file") from error
        self._dropped_until = -math.inf
        self._frames = (
            self.container.decode(self.stream) if self._is_non_reference is None else self._decode()
        )
        return self._next()

    def _decode(self) -> Iterator[Any]:
        """`container.decode` minus the packets `_droppable` says no requested time needs."""
        pending: deque[Any] = deque()
        seen: list[float] = []  # sorted times of the packets demuxed since the seek
        keyframe_time = None  # pictures shown before the first keyframe (leading pictures) are never dropped
        for packet in self.container.demux(self.stream):
            if packet.pts is not None:
                insort(seen, packet.pts * self._tick)
                if len(seen) > 4 * _SEEN_PACKETS:  # a long forward run: forget the earliest times, which
                    del seen[:_SEEN_PACKETS]  # only ever proves a drop (so forgetting never drops more)
            pending.append(packet)
            while pending and (len(pending) > _LOOKAHEAD_PACKETS or not packet.size):
                head = pending.popleft()
                if keyframe_time is None and head.is_keyframe and head.pts is not None:
                    keyframe_time = head.pts * self._tick
                if keyframe_time is not None and self._droppable(head, seen, keyframe_time):
                    self.packets_skipped += 1
                    self._dropped_until = max(self._dropped_until, head.pts * self._tick)
                    continue
                yield from head.decode()

    def _droppable(self, packet: Any, seen: list[float], keyframe_time: float) -> bool:
        targets = self._targets
        if (
            targets is None
            or packet.pts is None
            or not packet.size
            or packet.is_keyframe
            or packet.is_corrupt
        ):
            return False
        time = packet.pts * self._tick
        if time <= keyframe_time:
            return False
        # The first requested time this frame could be on screen at (frames after the last one are kept:
        # the next request may continue from there). A frame shown after this one and not after that time
        # takes its place there and at every later requested time.
        index = bisect_left(targets, time)
        if index == len(targets):
            return False
        later = bisect_right(seen, time)
        if later == len(seen) or seen[later] > targets[index]:
            return False
        return self._is_non_reference(bytes(packet))

    def _next(self) -> Any:
        av = import_av()
        try:
            frame = next(self._frames)
            self.frames_decoded += 1
            return frame
        except StopIteration:
            return None
        except (av.error.FFmpegError, EOFError) as error:
            raise VideoDecodeError(
                self.path,
                f"decoding failed mid-stream ({error.__class__.__name__}: {error})",
                "the file is truncated or corrupt; re-download it",
            ) from error

    def frames_at(self, times: Sequence[float], *, tolerance: float, allow_past_end: bool) -> torch.Tensor:
        """The frames on screen at each of the sorted ``times`` (seconds): uint8 (N, 3, H, W) RGB, upright."""
        selected = self._select(times, tolerance=tolerance, allow_past_end=allow_past_end)
        converted: dict[int, np.ndarray] = {}  # the same frame may serve several times
        for frame in selected:
            if id(frame) not in converted:
                converted[id(frame)] = to_rgb(frame, self.path)  # (H, W, 3)
        video = torch.from_numpy(np.stack([converted[id(frame)] for frame in selected]))  # (N, H, W, C)
        video = video.permute(0, 3, 1, 2)  # (N, C, H, W): the pipeline's one layout change
        return upright(video, self.rotation)

    def _select(self, times: Sequence[float], *, tolerance: float, allow_past_end: bool) -> list[Any]:
        """The decoded `av.VideoFrame` on screen at each of the sorted ``times``."""
        prev = self._prev if self._frames is not None else None
        prev_time = self._time(prev, self.start) if prev is not None else None
        self._targets = [time + tolerance for time in times]
        # Continue decoding forward when the first target is at or a little after the current position;
        # otherwise (behind us, or far ahead) seek to the keyframe before it. Also seek if the last request
        # dropped a packet shown after the current position -- a guard: `_droppable` keeps every frame after
        # the last requested time, so only decoders that output timestamps out of order could get there.
        if (
            prev_time is None
            or prev_time > times[0] + tolerance
            or times[0] - prev_time > SEEK_THRESHOLD_S
            or self._dropped_until > prev_time
        ):
            first = self._frames_from(times[0], seek=True)
            if first is None or self._time(first, self.start) > times[0] + tolerance:
                # The seek landed after the target (sparse or wrong index): decode from the start instead.
                first = self._frames_from(self.start, seek=True)
            self._prev = first
        selected: list[Any] = []
        frame = self._prev
        while len(selected) < len(times):
            nxt = self._next()
            if nxt is None:
                break
            # `frame` is the answer for every target before the next frame's time.
            while len(selected) < len(times) and self._time(nxt, math.inf) > times[len(selected)] + tolerance:
                selected.append(frame)
            frame = nxt
            self._prev = frame
        if len(selected) < len(times):
            if frame is None:
                raise VideoDecodeError(
                    self.path, "no frame decoded at the requested times", "the file is corrupt"
                )
            last_time = self._time(frame, self.start)
            missing = times[len(selected)]
            declared_end = self.start + (self.num_frames - 1) / self.fps
            if not allow_past_end and last_time < min(missing, declared_end) - 2.0 / self.fps:
                raise VideoDecodeError(
                    self.path,
                    f"stream ends at {last_time:.2f} s but declares {self.num_frames} frames "
                    f"({declared_end:.2f} s)",
                    "the file is truncated; re-download it",
                )
            selected.extend([frame] * (len(times) - len(selected)))
            self._frames = None  # generator exhausted: the next request must seek
        return selected

    def close(self) -> None:
        self.container.close()


__all__ = ["SEEK_THRESHOLD_S", "PyAVSource", "import_av", "to_rgb"]
