"""Combine the views of each video into one prediction, and say which views were scored.

Multi-view testing (reference notes section 1.9) cuts every test video into ``clips x crops`` views -- e.g.
1 temporal clip x 3 spatial crops for TimeSformer -- and each view is a separate dataset item. A video's
prediction combines the predictions of its views:

* ``"softmax"`` (default): the mean of the views' softmax probabilities -- what the paper describes;
* ``"sum"``: the sum of the raw logits -- what the official ``TestMeter`` actually does.

Under DDP, ``DistributedSampler`` pads the last batch by repeating items from the start, so some views are
scored twice: :func:`aggregate_views` keeps one result per (video, view). Torch only: ``classify`` needs no
training extra; the DDP-gathering metric and the accuracy metrics are in
:mod:`fast_timesformer.training.evaluation`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

ENSEMBLE_METHODS = ("softmax", "sum", "sigmoid")  # sigmoid: multi-label (mean of per-class probabilities)


@dataclass
class VideoPredictions:
    """Per-video results after combining views, sorted by video index.

    Attributes:
        video: (V,) int64 video indices (the dataset's record index).
        scores: (V, C) float32: mean softmax probabilities ("softmax"), summed logits ("sum") or mean
            sigmoid probabilities ("sigmoid", multi-label).
        labels: (V,) int64 labels (-1 where unknown, e.g. prediction), or (V, C) float32 multi-hot targets.
        num_views: (V,) int64 distinct views that contributed to each video.
    """

    video: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    num_views: torch.Tensor

    def probabilities(self, method: str) -> torch.Tensor:
        """(V, C) class probabilities: the scores themselves for "softmax" and "sigmoid", their softmax for
        "sum"."""
        return self.scores.softmax(dim=-1) if method == "sum" else self.scores


def check_ensemble_method(method: str) -> str:
    """Return ``method`` if it is a known way of combining views, else raise a helpful error."""
    if method not in ENSEMBLE_METHODS:
        raise ValueError(
            f"unknown ensemble method {method!r}; expected one of {list(ENSEMBLE_METHODS)} "
            "('softmax': mean of view probabilities, 'sum': sum of view logits as in the official code, "
            "'sigmoid': mean of per-class sigmoid probabilities, for multi-label models)"
        )
    return method


def aggregate_views(
    logits: torch.Tensor,
    labels: torch.Tensor,
    video: torch.Tensor,
    view: torch.Tensor,
    *,
    method: str = "softmax",
) -> VideoPredictions:
    """Combine per-view logits (N, C) into per-video scores, keeping the first result of repeated views.

    Args:
        logits: (N, C) logits, one row per scored view.
        labels: (N,) labels of the views (all views of a video must agree).
        video: (N,) video index of each row.
        view: (N,) view index of each row within its video; a repeated (video, view) pair is a padding
            duplicate from ``DistributedSampler`` and is counted once.
        method: "softmax" (mean of probabilities) or "sum" (sum of logits).
    """
    check_ensemble_method(method)
    if logits.ndim != 2:
        raise ValueError(f"expected logits of shape (N, C), got {tuple(logits.shape)}")
    n = logits.shape[0]
    multi_hot = labels.ndim == 2
    if multi_hot and labels.shape != logits.shape:
        raise ValueError(
            f"multi-hot labels must be (N, C) = {tuple(logits.shape)}, got {tuple(labels.shape)}"
        )
    if not (labels.shape[:1] if multi_hot else labels.shape) == video.shape == view.shape == (n,):
        raise ValueError(
            f"labels, video and view must be (N,) = ({n},), got {tuple(labels.shape)}, "
            f"{tuple(video.shape)}, {tuple(view.shape)}"
        )
    if n == 0:
        empty = torch.zeros(0, dtype=torch.long)
        return VideoPredictions(empty, logits.new_zeros(0, logits.shape[1]).float(), empty, empty)

    # De-duplicate (video, view) pairs, keeping the first occurrence of each.
    pairs = torch.stack([video.long(), view.long()], dim=1)  # (N, 2)
    unique_pairs, inverse = torch.unique(pairs, dim=0, return_inverse=True)
    rows = torch.arange(n, device=logits.device)
    first = torch.full((len(unique_pairs),), n, dtype=torch.long, device=logits.device)
    first = first.scatter_reduce(0, inverse, rows, reduce="amin")  # (P,) row of each pair's first copy

    logits, video = logits[first].float(), video[first].long()
    labels = labels[first].float() if multi_hot else labels[first].long()
    videos, owner = torch.unique(video, return_inverse=True)  # sorted (V,), (P,) position of each view
    per_view = {"softmax": logits.softmax(dim=-1), "sigmoid": logits.sigmoid(), "sum": logits}[method]
    scores = torch.zeros(len(videos), logits.shape[1], device=logits.device).index_add_(0, owner, per_view)
    counts = torch.bincount(owner, minlength=len(videos))
    if method != "sum":
        scores = scores / counts.unsqueeze(1)
    if multi_hot:
        video_targets = torch.zeros(len(videos), logits.shape[1], device=logits.device)
        video_targets[owner] = labels
        if not torch.equal(video_targets[owner], labels):
            bad = int(video[(video_targets[owner] != labels).any(dim=1)][0])
            raise ValueError(
                f"the views of video {bad} carry different labels; views of one video must agree"
            )
        return VideoPredictions(videos, scores, video_targets, counts)

    video_labels = torch.full((len(videos),), -2, dtype=torch.long, device=logits.device)
    video_labels = video_labels.scatter(0, owner, labels)
    if not torch.equal(video_labels[owner], labels):
        bad = int(video[video_labels[owner] != labels][0])
        raise ValueError(f"the views of video {bad} carry different labels; views of one video must agree")
    return VideoPredictions(videos, scores, video_labels, counts)


def describe_protocol(
    *,
    num_frames: int,
    sampling_rate: int | None,
    num_temporal_clips: int,
    num_spatial_crops: int,
    crop_size: int,
    sampling: str = "dense",
    method: str | None = None,
) -> str:
    """The evaluation protocol in the paper's words, e.g. ``"8x32, 1 clip x 3 crops, 224px"``."""
    frames = f"{num_frames}x{sampling_rate}" if sampling == "dense" else f"{num_frames} frames (segments)"
    clips = f"{num_temporal_clips} clip{'s' if num_temporal_clips != 1 else ''}"
    crops = f"{num_spatial_crops} crop{'s' if num_spatial_crops != 1 else ''}"
    text = f"{frames}, {clips} x {crops}, {crop_size}px"
    if method is not None and num_temporal_clips * num_spatial_crops > 1:
        text += ", mean of softmax" if method == "softmax" else ", sum of logits"
    return text


def format_metrics(metrics: dict[str, float], protocol: str, *, num_videos: int | None = None) -> str:
    """One line such as ``top-1 78.0%  top-5 93.7%  mean class 77.2%  (8x32, 1 clip x 3 crops, 224px; 500 videos)``."""
    names = {
        "top1": "top-1", "top5": "top-5", "mean_class_accuracy": "mean class",
        "mAP": "mAP", "mAP_micro": "micro AP", "mAP_baseline": "frequency baseline", "f1": "F1",
    }  # fmt: skip
    parts = [f"{names[key]} {100 * metrics[key]:.1f}%" for key in names if key in metrics]
    suffix = protocol if num_videos is None else f"{protocol}; {num_videos} videos"
    return "  ".join(parts) + f"  ({suffix})"


__all__ = [
    "ENSEMBLE_METHODS",
    "VideoPredictions",
    "aggregate_views",
    "check_ensemble_method",
    "describe_protocol",
    "format_metrics",
]
