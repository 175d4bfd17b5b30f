"""Spatial transforms for clips, in plain torch (no torchvision).

Every function takes a clip ``video`` of shape (T, C, H, W) — the layout `VideoReader.get_frames`
returns — and keeps that layout; only `normalize` changes the dtype (uint8 -> float32). Geometry stays
in uint8 because torch's antialiased bilinear resize has a fast uint8 path (about 4x faster than float32
on CPU) and uint8 clips are 4x smaller to move between DataLoader workers.

The official pipeline (facts §1.9) normalises *before* resizing; bilinear resizing commutes with the
per-channel affine, so resizing first differs only by uint8 rounding (at most 0.5/255/std ~ 0.009 after
normalisation with std 0.225).

Composed pipelines: `TrainTransform` (short-side scale jitter -> random crop -> optional flip ->
normalise) and `EvalTransform` (short-side resize -> 1 centre crop or 3 crops -> normalise, returning a
list of views). Randomness comes only from an explicit `torch.Generator`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# TimeSformer's normalisation (DATA.MEAN / DATA.STD in every official config).
DEFAULT_MEAN = (0.45, 0.45, 0.45)
DEFAULT_STD = (0.225, 0.225, 0.225)


def _check_video(video: torch.Tensor, name: str) -> None:
    if video.ndim != 4:
        raise ValueError(
            f"{name} expects a clip (T, C, H, W), got shape {tuple(video.shape)}; "
            "for a batch (B, T, C, H, W) apply it per clip"
        )


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def resize_short_side(video: torch.Tensor, size: int, *, antialias: bool = True) -> torch.Tensor:
    """Resize so the shorter side is ``size``, keeping the aspect ratio (bilinear, align_corners=False).

    The long side becomes ``floor(long * size / short)`` as in the official code. ``antialias`` low-pass
    filters when shrinking (what PIL and torchvision do), avoiding aliasing on downscaled video.
    Returns the input unchanged when the short side already is ``size``.
    """
    _check_video(video, "resize_short_side")
    if size <= 0:
        raise ValueError(f"size must be positive, got {size}")
    height, width = video.shape[-2:]
    if min(height, width) == size:
        return video
    if height <= width:
        new_height, new_width = size, int(math.floor(width * size / height))
    else:
        new_height, new_width = int(math.floor(height * size / width)), size
    # F.interpolate treats dim 0 as batch and dim 1 as channels: (T, C, H, W) is already that layout.
    if video.dtype == torch.uint8:
        return F.interpolate(
            video, size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=antialias
        )
    out = F.interpolate(
        video.float(), size=(new_height, new_width), mode="bilinear", align_corners=False, antialias=antialias
    )
    return out.to(video.dtype)


def random_short_side_scale(
    video: torch.Tensor, *, min_size: int, max_size: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Scale jitter: resize the short side to an integer drawn uniformly from ``[min_size, max_size]``."""
    if not 0 < min_size <= max_size:
        raise ValueError(f"need 0 < min_size <= max_size, got {min_size}, {max_size}")
    size = int(torch.randint(min_size, max_size + 1, (), generator=generator))
    return resize_short_side(video, size)


def crop(video: torch.Tensor, *, top: int, left: int, height: int, width: int) -> torch.Tensor:
    """The region ``[top, top + height) x [left, left + width)`` of every frame (a view, no copy)."""
    _check_video(video, "crop")
    full_height, full_width = video.shape[-2:]
    if top < 0 or left < 0 or top + height > full_height or left + width > full_width:
        raise ValueError(
            f"crop {height}x{width} at ({top}, {left}) does not fit frames of {full_height}x{full_width}; "
            "resize the short side to at least the crop size first"
        )
    return video[..., top : top + height, left : left + width]


def _check_fits(video: torch.Tensor, height: int, width: int, name: str) -> None:
    full_height, full_width = video.shape[-2:]
    if height > full_height or width > full_width:
        raise ValueError(
            f"{name} of {height}x{width} does not fit frames of {full_height}x{full_width}; "
            f"resize the short side to at least {max(height, width)} first (resize_short_side)"
        )


def random_crop(
    video: torch.Tensor, size: int | Sequence[int], *, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A ``size`` crop at a uniformly random position, the same for every frame."""
    _check_video(video, "random_crop")
    height, width = _pair(size)
    _check_fits(video, height, width, "random_crop")
    full_height, full_width = video.shape[-2:]
    top = int(torch.randint(full_height - height + 1, (), generator=generator))
    left = int(torch.randint(full_width - width + 1, (), generator=generator))
    return crop(video, top=top, left=left, height=height, width=width)


def center_crop(video: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """The central ``size`` crop; offsets ``ceil((H - h) / 2)``, ``ceil((W - w) / 2)`` as upstream."""
    _check_video(video, "center_crop")
    height, width = _pair(size)
    _check_fits(video, height, width, "center_crop")
    full_height, full_width = video.shape[-2:]
    top = math.ceil((full_height - height) / 2)
    left = math.ceil((full_width - width) / 2)
    return crop(video, top=top, left=left, height=height, width=width)


def three_crop(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Three ``size`` x ``size`` crops along the long side: left/centre/right (top/centre/bottom when
    portrait), at offsets ``0``, ``ceil((L - size) / 2)``, ``L - size``; centred on the short side.

    This is the official 3-crop test protocol; resize the short side to ``size`` first so the three
    crops together cover the whole frame.
    """
    _check_video(video, "three_crop")
    _check_fits(video, size, size, "three_crop")
    full_height, full_width = video.shape[-2:]
    views = []
    for position in range(3):
        if full_width >= full_height:  # landscape: slide along the width
            top = math.ceil((full_height - size) / 2)
            left = (0, math.ceil((full_width - size) / 2), full_width - size)[position]
        else:  # portrait: slide along the height
            left = math.ceil((full_width - size) / 2)
            top = (0, math.ceil((full_height - size) / 2), full_height - size)[position]
        views.append(crop(video, top=top, left=left, height=size, width=size))
    return views


def horizontal_flip(video: torch.Tensor) -> torch.Tensor:
    """Mirror every frame left-right. Off by default in training: it swaps left/right motion classes."""
    _check_video(video, "horizontal_flip")
    return video.flip(-1)


def normalize(
    video: torch.Tensor, mean: Sequence[float] = DEFAULT_MEAN, std: Sequence[float] = DEFAULT_STD
) -> torch.Tensor:
    """uint8 (T, C, H, W) -> float32 ``(video / 255 - mean) / std`` per channel.

    Float input is taken to be in [0, 1] already (not divided by 255).
    """
    _check_video(video, "normalize")
    channels = video.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(
            f"mean and std need one value per channel (C={channels}), got {len(mean)} and {len(std)}; "
            "is the clip (T, C, H, W)?"
        )
    scale = 255.0 if video.dtype == torch.uint8 else 1.0
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (video.float() / scale - mean_t) / std_t


class TrainTransform:
    """Training augmentation: scale jitter -> random crop -> optional flip -> normalise.

    ``TrainTransform(crop_size=224)(clip_uint8, generator=g)`` returns float32 (T, C, crop, crop).
    """

    def __init__(
        self,
        *,
        crop_size: int,
        scale_range: tuple[int, int] = (256, 320),
        flip: bool = False,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
    ):
        """
        Args:
            crop_size: side of the square crop fed to the model (224 for the official models).
            scale_range: the short side is resized to a random integer in this closed range before cropping.
            flip: random horizontal flip with p=0.5; keep False when left/right carries the label (SSv2,
                the built-in motion dataset).
            mean: per-channel mean subtracted after scaling to [0, 1].
            std: per-channel standard deviation divided by.
        """
        if scale_range[0] < crop_size:
            raise ValueError(
                f"scale_range {scale_range} starts below crop_size={crop_size}: the crop would not fit; "
                f"use scale_range=({crop_size}, ...) or a smaller crop"
            )
        self.crop_size = crop_size
        self.scale_range = (int(scale_range[0]), int(scale_range[1]))
        self.flip = flip
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, video: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        video = random_short_side_scale(
            video, min_size=self.scale_range[0], max_size=self.scale_range[1], generator=generator
        )
        video = random_crop(video, self.crop_size, generator=generator)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            video = horizontal_flip(video)
        return normalize(video, self.mean, self.std)

    def __repr__(self) -> str:
        return f"TrainTransform(crop_size={self.crop_size}, scale_range={self.scale_range}, flip={self.flip})"


class EvalTransform:
    """Deterministic evaluation views: short-side resize, then 1 centre crop or 3 crops, normalised.

    ``EvalTransform(crop_size=224, num_spatial_crops=3)(clip)`` returns a list of 3 float32
    (T, C, 224, 224) views (left, centre, right).
    """

    def __init__(
        self,
        *,
        crop_size: int,
        short_side: int | None = None,
        num_spatial_crops: int = 1,
        mean: Sequence[float] = DEFAULT_MEAN,
        std: Sequence[float] = DEFAULT_STD,
    ):
        """
        Args:
            crop_size: side of each square view.
            short_side: the short side is resized to this first; None means ``crop_size``. The official
                protocol uses ``crop_size`` for 3 crops and the low end of the training scale range (256 for
                224 crops) for 1 crop — `VideoDataset` passes those.
            num_spatial_crops: 1 (centre crop) or 3 (left/centre/right along the long side).
            mean: per-channel mean subtracted after scaling to [0, 1].
            std: per-channel standard deviation divided by.
        """
        if num_spatial_crops not in (1, 3):
            raise ValueError(f"num_spatial_crops must be 1 or 3, got {num_spatial_crops}")
        short_side = crop_size if short_side is None else short_side
        if short_side < crop_size:
            raise ValueError(
                f"short_side={short_side} is smaller than crop_size={crop_size}; the crop would not fit"
            )
        self.crop_size = crop_size
        self.short_side = short_side
        self.num_spatial_crops = num_spatial_crops
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, video: torch.Tensor) -> list[torch.Tensor]:
        video = resize_short_side(video, self.short_side)
        if self.num_spatial_crops == 3:
            views = three_crop(video, self.crop_size)
        else:
            views = [center_crop(video, self.crop_size)]
        return [normalize(view, self.mean, self.std) for view in views]

    def view(self, video: torch.Tensor, spatial_idx: int) -> torch.Tensor:
        """Only the ``spatial_idx``-th view (what a test-mode dataset item needs)."""
        if not 0 <= spatial_idx < self.num_spatial_crops:
            raise ValueError(f"spatial_idx must be in [0, {self.num_spatial_crops}), got {spatial_idx}")
        video = resize_short_side(video, self.short_side)
        if self.num_spatial_crops == 3:
            return normalize(three_crop(video, self.crop_size)[spatial_idx], self.mean, self.std)
        return normalize(center_crop(video, self.crop_size), self.mean, self.std)

    def __repr__(self) -> str:
        return (
            f"EvalTransform(crop_size={self.crop_size}, short_side={self.short_side}, "
            f"num_spatial_crops={self.num_spatial_crops})"
        )
