"""Clip sampling indices against values computed by hand from the official formulas (facts §1.9)."""

from __future__ import annotations

import pytest
import torch

from fast_timesformer.data import dense_indices, segment_indices
from fast_timesformer.data.sampling import apply_out_of_range, clip_span

# -- dense ("8x32"): span = 8 * 32 = 256 frames at 30 fps, indices = linspace(start, start + 255, 8).long()


def test_dense_single_test_clip_starts_at_zero_like_upstream():
    # 300 frames, delta = 44; clip 0 of 1 starts at 0: linspace(0, 255, 8) = 0, 36.43, 72.86, 109.29, ...
    assert dense_indices(300, num_frames=8, sampling_rate=32, train=False).tolist() == [
        0, 36, 72, 109, 145, 182, 218, 255,
    ]  # fmt: skip


def test_dense_three_test_clips_are_evenly_spaced():
    # start = 44 * k / 3 = 0, 14.67, 29.33; step 255 / 7 = 36.43
    clips = [
        dense_indices(300, num_frames=8, sampling_rate=32, train=False, clip_idx=k, num_clips=3)
        for k in range(3)
    ]
    assert clips[0].tolist() == [0, 36, 72, 109, 145, 182, 218, 255]
    assert clips[1].tolist() == [14, 51, 87, 123, 160, 196, 233, 269]
    assert clips[2].tolist() == [29, 65, 102, 138, 175, 211, 247, 284]


def test_dense_rescales_the_span_to_the_video_fps():
    # 60 fps: the 8.5 s span is 512 frames; linspace(0, 511, 8) = 0, 73, 146, 219, 292, 365, 438, 511
    assert clip_span(num_frames=8, sampling_rate=32, fps=60, target_fps=30) == 512
    got = dense_indices(600, num_frames=8, sampling_rate=32, train=False, fps=60, target_fps=30)
    assert got.tolist() == [0, 73, 146, 219, 292, 365, 438, 511]
    # 15 fps: half the frames; linspace(0, 127, 8) = 0, 18.14, 36.29, 54.43, 72.57, 90.71, 108.86, 127
    got = dense_indices(300, num_frames=8, sampling_rate=32, train=False, fps=15, target_fps=30)
    assert got.tolist() == [0, 18, 36, 54, 72, 90, 108, 127]


def test_dense_stride_one_is_consecutive_frames():
    assert dense_indices(16, num_frames=8, sampling_rate=1, train=False).tolist() == list(range(8))
    # the built-in dataset: 16 frames, T = 8, stride 2 -> linspace(0, 15, 8)
    assert dense_indices(16, num_frames=8, sampling_rate=2, train=False).tolist() == [
        0,
        2,
        4,
        6,
        8,
        10,
        12,
        15,
    ]


def test_dense_train_start_is_uniform_in_the_slack_and_seeded():
    generator = torch.Generator().manual_seed(0)
    starts = set()
    for _ in range(200):
        clip = dense_indices(300, num_frames=8, sampling_rate=32, train=True, generator=generator)
        first = int(clip[0])
        assert 0 <= first <= 44 and int(clip[-1]) - first in (254, 255) and int(clip[-1]) <= 299
        starts.add(first)
    assert len(starts) > 30  # covers the 45 possible starts
    a = dense_indices(
        300, num_frames=8, sampling_rate=32, train=True, generator=torch.Generator().manual_seed(3)
    )
    b = dense_indices(
        300, num_frames=8, sampling_rate=32, train=True, generator=torch.Generator().manual_seed(3)
    )
    assert torch.equal(a, b)


@pytest.mark.parametrize("train", [False, True])
def test_short_videos_one_and_three_frames(train):
    kwargs = dict(num_frames=8, sampling_rate=32, train=train, generator=torch.Generator().manual_seed(0))
    # span 256 > video: positions linspace(0, 255, 8) = 0, 36, 72, 109, 145, 182, 218, 255
    assert dense_indices(3, out_of_range="repeat_last", **kwargs).tolist() == [0, 2, 2, 2, 2, 2, 2, 2]
    assert dense_indices(3, out_of_range="loop", **kwargs).tolist() == [0, 0, 0, 1, 1, 2, 2, 0]
    for policy in ("loop", "repeat_last"):
        assert dense_indices(1, out_of_range=policy, **kwargs).tolist() == [0] * 8


def test_out_of_range_policies():
    indices = torch.tensor([0, 4, 8, 12])
    assert apply_out_of_range(indices, 5, "loop").tolist() == [0, 4, 3, 2]
    assert apply_out_of_range(indices, 5, "repeat_last").tolist() == [0, 4, 4, 4]
    with pytest.raises(ValueError, match="out_of_range"):
        apply_out_of_range(indices, 5, "mirror")


def test_dense_argument_errors():
    with pytest.raises(ValueError, match="0 frames"):
        dense_indices(0, num_frames=8, sampling_rate=32, train=False)
    with pytest.raises(ValueError, match="clip_idx"):
        dense_indices(100, num_frames=8, sampling_rate=4, train=False, clip_idx=3, num_clips=3)
    with pytest.raises(ValueError, match="sampling_rate"):
        dense_indices(100, num_frames=8, sampling_rate=0, train=False)


# -- segments (TSN / SSv2): seg = (L - 1) / T, segment i = [round(seg * i), round(seg * (i + 1))]


def test_segment_test_takes_the_middle_of_each_segment():
    # L = 100: seg = 12.375; segments [0,12] [12,25] [25,37] [37,50] [50,62] [62,74] [74,87] [87,99]
    # (round(49.5) = 50, half to even like np.round upstream); middles (lo + hi) // 2:
    assert segment_indices(100, num_frames=8, train=False).tolist() == [6, 18, 31, 43, 56, 68, 80, 93]
    # L = 16: seg = 1.875; [0,2] [2,4] [4,6] [6,8] [8,9] [9,11] [11,13] [13,15]
    assert segment_indices(16, num_frames=8, train=False).tolist() == [1, 3, 5, 7, 8, 10, 12, 14]


def test_segment_train_draws_inside_each_segment():
    bounds = [(0, 12), (12, 25), (25, 37), (37, 50), (50, 62), (62, 74), (74, 87), (87, 99)]
    generator = torch.Generator().manual_seed(0)
    seen = [set() for _ in bounds]
    for _ in range(300):
        for i, index in enumerate(
            segment_indices(100, num_frames=8, train=True, generator=generator).tolist()
        ):
            lo, hi = bounds[i]
            assert lo <= index <= hi
            seen[i].add(index)
    assert all(len(values) == hi - lo + 1 for values, (lo, hi) in zip(seen, bounds))  # both ends reachable


def test_segment_multiple_test_clips_differ():
    clips = [
        segment_indices(100, num_frames=8, train=False, clip_idx=k, num_clips=2).tolist() for k in range(2)
    ]
    assert clips[0] == [3, 15, 28, 40, 53, 65, 77, 90]  # lo + int((hi - lo) * 0.25)
    assert clips[1] == [9, 21, 34, 46, 59, 71, 83, 96]  # lo + int((hi - lo) * 0.75)


def test_segment_short_videos():
    assert segment_indices(1, num_frames=8, train=False).tolist() == [0] * 8
    assert segment_indices(3, num_frames=8, train=False).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]
    clip = segment_indices(3, num_frames=8, train=True, generator=torch.Generator().manual_seed(0))
    assert clip.min() >= 0 and clip.max() <= 2 and clip.shape == (8,)
    with pytest.raises(ValueError):
        segment_indices(0, num_frames=8, train=False)
