"""Spatial transforms on (T, C, H, W) clips: shapes, crop offsets, antialiasing, normalisation."""

from __future__ import annotations

import pytest
import torch

from fast_timesformer.data import (
    EvalTransform,
    TrainTransform,
    center_crop,
    horizontal_flip,
    normalize,
    random_crop,
    random_short_side_scale,
    resize_short_side,
    three_crop,
)


def coordinate_clip(height: int, width: int, frames: int = 2) -> torch.Tensor:
    """uint8 (T, 3, H, W) whose channel 0 is the column and channel 1 the row of each pixel."""
    clip = torch.zeros(frames, 3, height, width, dtype=torch.uint8)
    clip[:, 0] = torch.arange(width, dtype=torch.uint8).view(1, 1, width)
    clip[:, 1] = torch.arange(height, dtype=torch.uint8).view(1, height, 1)
    return clip


def top_left(view: torch.Tensor) -> tuple[int, int]:
    return int(view[0, 1, 0, 0]), int(view[0, 0, 0, 0])


def test_resize_short_side_keeps_aspect_with_floor():
    landscape = torch.zeros(4, 3, 256, 340, dtype=torch.uint8)
    assert resize_short_side(landscape, 224).shape == (4, 3, 224, 297)  # floor(340 * 224 / 256) = 297.5
    portrait = torch.zeros(4, 3, 340, 256, dtype=torch.uint8)
    assert resize_short_side(portrait, 320).shape == (4, 3, 425, 320)
    assert resize_short_side(landscape, 256) is landscape  # already there: untouched
    assert resize_short_side(landscape.float(), 128).dtype == torch.float32


def test_resize_is_antialiased():
    # 1-pixel checkerboard shrunk ~3x: a low-pass resize gives flat grey; plain bilinear interpolation
    # samples between only two neighbours and aliases into a strong pattern.
    board = ((torch.arange(64).view(-1, 1) + torch.arange(64).view(1, -1)) % 2 * 255).to(torch.uint8)
    clip = board.expand(1, 3, 64, 64).contiguous()
    small = resize_short_side(clip, 21).float()
    assert small.shape == (1, 3, 21, 21)
    assert (small - 127.5).abs().max() <= 2
    aliased = resize_short_side(clip, 21, antialias=False).float()
    assert (aliased - 127.5).abs().max() > 100
    flat = torch.full((1, 3, 50, 70), 77, dtype=torch.uint8)
    assert torch.equal(resize_short_side(flat, 31), torch.full((1, 3, 31, 43), 77, dtype=torch.uint8))


def test_uint8_resize_matches_float_resize():
    clip = torch.randint(0, 256, (2, 3, 48, 64), dtype=torch.uint8)
    as_uint8 = resize_short_side(clip, 36).float()
    as_float = resize_short_side(clip.float(), 36).clamp(0, 255)
    assert (as_uint8 - as_float).abs().max() <= 1.0


def test_random_short_side_scale_range():
    clip = torch.zeros(1, 3, 40, 60, dtype=torch.uint8)
    generator = torch.Generator().manual_seed(0)
    sizes = {
        random_short_side_scale(clip, min_size=32, max_size=36, generator=generator).shape[-2]
        for _ in range(60)
    }
    assert sizes == {32, 33, 34, 35, 36}


def test_random_crop_is_inside_and_the_same_for_every_frame():
    clip = coordinate_clip(40, 60, frames=3)
    generator = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(50):
        view = random_crop(clip, 32, generator=generator)
        assert view.shape == (3, 3, 32, 32)
        assert torch.equal(view[0], view[2])
        row, col = top_left(view)
        assert 0 <= row <= 8 and 0 <= col <= 28
        offsets.add((row, col))
    assert len(offsets) > 20
    assert random_crop(clip, (20, 10), generator=generator).shape == (3, 3, 20, 10)


def test_center_crop_offsets_round_up():
    clip = coordinate_clip(41, 60)
    view = center_crop(clip, 32)
    assert top_left(view) == (5, 14)  # ceil(9 / 2), ceil(28 / 2)


def test_three_crop_landscape_and_portrait_offsets():
    views = three_crop(coordinate_clip(32, 57), 32)
    assert [top_left(v) for v in views] == [(0, 0), (0, 13), (0, 25)]  # 0, ceil(25 / 2), 57 - 32
    views = three_crop(coordinate_clip(57, 32), 32)
    assert [top_left(v) for v in views] == [(0, 0), (13, 0), (25, 0)]
    views = three_crop(coordinate_clip(40, 57), 32)  # short side larger than the crop: centred on it
    assert [top_left(v) for v in views] == [(4, 0), (4, 13), (4, 25)]
    assert all(v.shape == (2, 3, 32, 32) for v in views)


def test_crop_that_does_not_fit_explains_the_fix():
    with pytest.raises(ValueError, match="resize the short side"):
        center_crop(torch.zeros(1, 3, 20, 40, dtype=torch.uint8), 32)
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        center_crop(torch.zeros(2, 1, 3, 20, 40, dtype=torch.uint8), 16)


def test_horizontal_flip():
    clip = coordinate_clip(4, 6)
    assert horizontal_flip(clip)[0, 0, 0].tolist() == [5, 4, 3, 2, 1, 0]


def test_normalize_values_and_channel_check():
    clip = torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 1, 2).expand(2, 3, 1, 2)
    out = normalize(clip)
    assert out.dtype == torch.float32 and out.shape == (2, 3, 1, 2)
    assert out[0, 0, 0].tolist() == pytest.approx([-2.0, (1 - 0.45) / 0.225])
    custom = normalize(clip, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert custom[0, 1, 0].tolist() == pytest.approx([-1.0, 1.0])
    assert normalize(clip.float() / 255)[0, 0, 0].tolist() == pytest.approx(out[0, 0, 0].tolist())
    with pytest.raises(ValueError, match="one value per channel"):
        normalize(torch.zeros(2, 8, 4, 4, dtype=torch.uint8))


def test_train_transform():
    clip = torch.randint(0, 256, (8, 3, 48, 64), dtype=torch.uint8)
    transform = TrainTransform(crop_size=32, scale_range=(32, 40), flip=True)
    out = transform(clip, generator=torch.Generator().manual_seed(0))
    assert out.shape == (8, 3, 32, 32) and out.dtype == torch.float32
    again = transform(clip, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)
    with pytest.raises(ValueError, match="scale_range"):
        TrainTransform(crop_size=224, scale_range=(200, 320))


def test_eval_transform_views():
    clip = torch.randint(0, 256, (4, 3, 48, 64), dtype=torch.uint8)
    three = EvalTransform(crop_size=32, num_spatial_crops=3)
    views = three(clip)
    assert len(views) == 3 and all(v.shape == (4, 3, 32, 32) and v.dtype == torch.float32 for v in views)
    assert not torch.equal(views[0], views[2])
    assert all(torch.equal(three.view(clip, i), views[i]) for i in range(3))
    one = EvalTransform(crop_size=32, short_side=40, num_spatial_crops=1)
    (view,) = one(clip)
    assert view.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="1 or 3"):
        EvalTransform(crop_size=32, num_spatial_crops=2)
