"""How clips are made for a model: the preprocessing a weights folder remembers, as one typed record.

``classify``, the demo and every later inference tool turn a video file into the model's input with these
fields, exactly as the test split of the training run did: frames x sampling rate, how frames are picked
(dense or one per segment), how a too-short video is filled, the short side frames are resized to, the crop,
the normalisation, and how many views (temporal clips x spatial crops) are scored per video.

``config.json`` stores it as a JSON object (:meth:`Preprocessing.to_dict`); reading it back
(:meth:`Preprocessing.from_dict`) checks every field's type and range, so a hand-edited file fails with a
message naming the field instead of deep inside decoding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Official defaults (reference notes section 1.9): Kinetics normalisation and 1 clip x 3 crops testing.
DEFAULT_MEAN, DEFAULT_STD = (0.45, 0.45, 0.45), (0.225, 0.225, 0.225)
# SAMPLING_RATE of the official Kinetics recipes by frame count (8x32, 16x16 HR, 96x4 L).
OFFICIAL_SAMPLING_RATE = {8: 32, 16: 16, 96: 4}
SAMPLINGS = ("dense", "segment")
OUT_OF_RANGE = ("loop", "repeat_last")
#: Upper bounds far above any protocol in use (the official ones: 96 frames, 10 clips, 448 px), there only to
#: refuse a hand-edited value that would hang or exhaust memory (``num_temporal_clips: 1000000``).
MAXIMA = {
    "num_frames": 10_000, "sampling_rate": 10_000, "crop_size": 32_768, "short_side": 32_768,
    "num_temporal_clips": 1000,
}  # fmt: skip


@dataclass(frozen=True)
class Preprocessing:
    """The input protocol of a model (defaults: the official Kinetics test protocol for 8 x 224).

    Attributes:
        mean: per-channel normalisation mean, on [0, 1] pixel values.
        std: per-channel normalisation std (positive).
        num_frames: frames per clip.
        sampling: "dense" (``num_frames`` frames ``sampling_rate`` apart) or "segment" (one per segment).
        sampling_rate: frame stride of dense sampling (32 in "8x32").
        crop_size: side of the square crop the model sees.
        short_side: frames are resized to this short side before cropping (None: ``crop_size``).
        num_temporal_clips: evenly spaced clips scored per video.
        num_spatial_crops: crops per clip: 1 (centre) or 3 (left / centre / right).
        out_of_range: how a clip longer than the video is filled: "loop" or "repeat_last".
    """

    mean: tuple[float, ...] = DEFAULT_MEAN
    std: tuple[float, ...] = DEFAULT_STD
    num_frames: int = 8
    sampling: str = "dense"
    sampling_rate: int = 32
    crop_size: int = 224
    short_side: int | None = 224
    num_temporal_clips: int = 1
    num_spatial_crops: int = 3
    out_of_range: str = "loop"

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"preprocessing {name} must be a list of per-channel numbers, got {value!r}")
            if not all(_is_number(v) and math.isfinite(v) for v in value):
                raise ValueError(f"preprocessing {name} must hold finite numbers, got {list(value)}")
            object.__setattr__(self, name, tuple(float(v) for v in value))
        if not all(v > 0 for v in self.std):
            raise ValueError(
                f"preprocessing std must be positive (it divides the pixels), got {list(self.std)}"
            )
        if len(self.mean) != len(self.std):
            raise ValueError(
                f"preprocessing mean and std differ in length: {list(self.mean)}, {list(self.std)}"
            )
        for name in ("num_frames", "sampling_rate", "crop_size", "num_temporal_clips", "num_spatial_crops"):
            _check_positive_int(name, getattr(self, name))
        if self.short_side is not None:
            _check_positive_int("short_side", self.short_side)
        for name, largest in MAXIMA.items():
            value = getattr(self, name)
            if value is not None and value > largest:
                raise ValueError(
                    f"preprocessing {name}={value} is over the largest supported value {largest}"
                )
        _check_choice("sampling", self.sampling, SAMPLINGS)
        _check_choice("out_of_range", self.out_of_range, OUT_OF_RANGE)
        if self.num_spatial_crops not in (1, 3):
            raise ValueError(f"preprocessing num_spatial_crops must be 1 or 3, got {self.num_spatial_crops}")

    @property
    def num_views(self) -> int:
        """Views scored per video: temporal clips x spatial crops."""
        return self.num_temporal_clips * self.num_spatial_crops

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for mean and std), as stored in ``config.json``."""
        out = dataclasses.asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        return out

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any], *, base: Preprocessing | None = None) -> Preprocessing:
        """Build from ``fields`` (missing ones from ``base``, else the defaults); unknown names are an error."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(fields) - known)
        if unknown:
            raise ValueError(f"unknown preprocessing field(s) {unknown}; expected some of {sorted(known)}")
        return dataclasses.replace(base or cls(), **dict(fields))

    def replace(self, **changes: Any) -> Preprocessing:
        """A copy with ``changes`` applied (checked like the constructor)."""
        return Preprocessing.from_dict(changes, base=self)


def default_preprocessing(model: Any) -> Preprocessing:
    """The official Kinetics test protocol for a model's geometry: 0.45/0.225, dense, 1 clip x 3 crops.

    ``sampling_rate`` is the official one for 8, 16 and 96 frames (32, 16, 4) and 8 otherwise; the crop and
    short side are the model's ``image_size``.
    """
    crop = model.config["image_size"]
    crop = crop if isinstance(crop, int) else int(crop[0])
    frames = int(model.num_frames)
    return Preprocessing(
        num_frames=frames,
        sampling_rate=OFFICIAL_SAMPLING_RATE.get(frames, 8),
        crop_size=crop,
        short_side=crop,
    )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"preprocessing {name} must be a positive integer, got {value!r}")


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"preprocessing {name} must be one of {list(choices)}, got {value!r}")


__all__ = ["DEFAULT_MEAN", "DEFAULT_STD", "OFFICIAL_SAMPLING_RATE", "Preprocessing", "default_preprocessing"]
