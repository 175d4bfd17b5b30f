"""Multi-view aggregation and video-level metrics (fast_timesformer.inference.views, fast_timesformer.training.evaluation)."""

from __future__ import annotations

import pytest
import torch

from fast_timesformer.inference.views import aggregate_views, describe_protocol, format_metrics
from fast_timesformer.training.evaluation import MultiViewAccumulator, video_metrics


def _views():
    # Two videos x 3 views; video 1's views disagree so that the two ensembles differ.
    logits = torch.tensor(
        [
            [2.0, 0.0, 0.0],
            [1.0, 0.5, 0.0],
            [3.0, 0.0, 0.0],
            [20.0, 0.0, 0.0],  # one very confident view for class 0 ...
            [0.0, 3.0, 0.0],  # ... two fairly confident views for class 1
            [0.0, 3.0, 0.0],
        ]
    )
    labels = torch.tensor([0, 0, 0, 1, 1, 1])
    video = torch.tensor([0, 0, 0, 1, 1, 1])
    view = torch.tensor([0, 1, 2, 0, 1, 2])
    return logits, labels, video, view


class TestAggregateViews:
    def test_softmax_mean_is_mean_of_probabilities(self):
        logits, labels, video, view = _views()
        out = aggregate_views(logits, labels, video, view, method="softmax")
        assert out.video.tolist() == [0, 1]
        assert out.num_views.tolist() == [3, 3]
        torch.testing.assert_close(out.scores[1], logits[3:].softmax(-1).mean(0))
        torch.testing.assert_close(out.scores.sum(-1), torch.ones(2))

    def test_sum_is_sum_of_logits(self):
        logits, labels, video, view = _views()
        out = aggregate_views(logits, labels, video, view, method="sum")
        torch.testing.assert_close(out.scores[0], logits[:3].sum(0))

    def test_the_two_ensembles_can_disagree(self):
        logits, labels, video, view = _views()
        by_sum = aggregate_views(logits, labels, video, view, method="sum").scores.argmax(-1)
        by_softmax = aggregate_views(logits, labels, video, view, method="softmax").scores.argmax(-1)
        assert by_sum.tolist() == [0, 0]  # the logit 20 dominates the sum
        assert by_softmax.tolist() == [0, 1]  # probabilities are bounded: two views for class 1 win

    def test_padding_duplicates_are_counted_once(self):
        logits, labels, video, view = _views()
        # DistributedSampler pads by repeating items from the start: rows 0 and 1 appear twice.
        padded = [torch.cat([t, t[:2]]) for t in (logits, labels, video, view)]
        out = aggregate_views(*padded, method="softmax")
        ref = aggregate_views(logits, labels, video, view, method="softmax")
        torch.testing.assert_close(out.scores, ref.scores)
        assert out.num_views.tolist() == [3, 3]

    def test_order_does_not_matter(self):
        logits, labels, video, view = _views()
        perm = torch.randperm(6, generator=torch.Generator().manual_seed(0))
        out = aggregate_views(logits[perm], labels[perm], video[perm], view[perm], method="sum")
        ref = aggregate_views(logits, labels, video, view, method="sum")
        torch.testing.assert_close(out.scores, ref.scores)

    def test_views_with_different_labels_are_an_error(self):
        logits, labels, video, view = _views()
        labels = labels.clone()
        labels[1] = 2
        with pytest.raises(ValueError, match="video 0 carry different labels"):
            aggregate_views(logits, labels, video, view)

    def test_unknown_method(self):
        logits, labels, video, view = _views()
        with pytest.raises(ValueError, match="unknown ensemble method 'max'.*softmax.*sum"):
            aggregate_views(logits, labels, video, view, method="max")


class TestVideoMetrics:
    def test_top1_top5_mean_class(self):
        scores = torch.eye(8)[[0, 1, 2, 2]]  # predictions 0, 1, 2, 2
        labels = torch.tensor([0, 1, 2, 3])
        metrics = video_metrics(scores + 0.01 * (7 - torch.arange(8)), labels)  # ties broken: 3 in top 5
        assert metrics["top1"] == pytest.approx(0.75)
        assert metrics["top5"] == pytest.approx(1.0)
        assert metrics["mean_class_accuracy"] == pytest.approx(0.75)

    def test_mean_class_accuracy_weights_classes_equally(self):
        # class 0: 3 videos, all right; class 1: 1 video, wrong. Top-1 3/4, mean class (1 + 0) / 2.
        scores = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0]])
        metrics = video_metrics(scores, torch.tensor([0, 0, 0, 1]))
        assert metrics["top1"] == pytest.approx(0.75)
        assert metrics["mean_class_accuracy"] == pytest.approx(0.5)
        assert "top5" not in metrics  # meaningless with <= 5 classes

    def test_classes_absent_from_the_labels_do_not_count(self):
        # A class that is only ever predicted (never a label) must not drag the mean down.
        scores = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        metrics = video_metrics(scores, torch.tensor([0, 1]))
        assert metrics["mean_class_accuracy"] == pytest.approx(0.5)

    def test_empty_is_an_error(self):
        with pytest.raises(ValueError, match="no videos were evaluated"):
            video_metrics(torch.zeros(0, 3), torch.zeros(0, dtype=torch.long))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_accumulator_over_batches_matches_one_shot():
    logits, labels, video, view = _views()
    acc = MultiViewAccumulator(method="softmax")
    for rows in (slice(0, 4), slice(4, 6), slice(0, 1)):  # the last batch repeats a view (padding)
        acc.update(logits[rows], labels[rows], video[rows], view[rows])
    out = acc.compute()
    ref = aggregate_views(logits, labels, video, view)
    torch.testing.assert_close(out.scores, ref.scores)
    acc.reset()
    assert len(acc.compute().video) == 0


def test_protocol_text():
    text = describe_protocol(
        num_frames=8, sampling_rate=32, num_temporal_clips=1, num_spatial_crops=3, crop_size=224
    )
    assert text == "8x32, 1 clip x 3 crops, 224px"
    segments = describe_protocol(
        num_frames=8, sampling_rate=None, sampling="segment", num_temporal_clips=2, num_spatial_crops=1,
        crop_size=224, method="sum",
    )  # fmt: skip
    assert segments == "8 frames (segments), 2 clips x 1 crop, 224px, sum of logits"
    line = format_metrics({"top1": 0.78, "top5": 0.937, "mean_class_accuracy": 0.77}, text, num_videos=10)
    assert line == "top-1 78.0%  top-5 93.7%  mean class 77.0%  (8x32, 1 clip x 3 crops, 224px; 10 videos)"
