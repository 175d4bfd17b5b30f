"""Video-level evaluation during training: gather every rank's views, combine them, score the videos.

How the views of a video are combined ("softmax" mean or "sum" of logits) is
:func:`fast_timesformer.inference.views.aggregate_views`, shared with ``classify``. Under DDP,
``DistributedSampler`` pads the last batch by repeating items from the start, so some views are scored twice. :class:`MultiViewAccumulator` gathers every rank's per-view results (a torchmetrics ``Metric``
with "cat" states) and keeps one result per (video, view) before combining, so the numbers do not depend
on the number of processes.

Metrics are computed per video with torchmetrics: top-1, top-5 (only when there are more than 5 classes,
where it means something) and mean class accuracy (the mean over classes *present in the labels* of the
per-class recall; torchmetrics' own ``average="macro"`` also counts classes that are only predicted).

Multi-label runs (:func:`multilabel_metrics`): views are combined as the mean of per-class sigmoid
probabilities; metrics are average precision per class (torchmetrics), its mean over the classes with at least
one positive video (``mAP``, macro; the Charades convention), the micro AP over all (video, class) pairs, the
label-frequency baseline (the mAP of a constant predictor: each class's AP is then its frequency), and
micro F1 at per-class thresholds tuned on the same videos (:func:`tune_thresholds`; validation tunes, the
weights keep them, ``classify`` uses them).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy, multilabel_average_precision

from fast_timesformer.inference.views import VideoPredictions, aggregate_views, check_ensemble_method


def video_metrics(scores: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Top-1, top-5 (when C > 5) and mean class accuracy of per-video scores (V, C) against labels (V,)."""
    num_classes = scores.shape[1]
    if len(labels) == 0:
        raise ValueError("no videos were evaluated: the evaluation set is empty or every video was skipped")
    if bool((labels < 0).any()):
        raise ValueError("some videos have no label (-1): metrics need labelled videos")
    metrics = {"top1": float(multiclass_accuracy(scores, labels, num_classes=num_classes, average="micro"))}
    if num_classes > 5:
        top5 = multiclass_accuracy(scores, labels, num_classes=num_classes, average="micro", top_k=5)
        metrics["top5"] = float(top5)
    per_class = multiclass_accuracy(scores, labels, num_classes=num_classes, average="none")
    present = torch.bincount(labels, minlength=num_classes) > 0
    metrics["mean_class_accuracy"] = float(per_class[present].mean())
    return metrics


THRESHOLD_GRID = torch.linspace(0.05, 0.95, 19)


def tune_thresholds(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-class probability thresholds (C,) maximising each class's F1 on (V, C) scores and multi-hot
    targets, from a grid of 0.05 to 0.95; 0.5 for a class without positives."""
    grid = THRESHOLD_GRID.to(scores.device)
    predicted = scores.unsqueeze(0) >= grid[:, None, None]  # (G, V, C)
    positive = targets.bool().unsqueeze(0)
    tp = (predicted & positive).sum(1).float()
    fp = (predicted & ~positive).sum(1).float()
    fn = (~predicted & positive).sum(1).float()
    f1 = 2 * tp / (2 * tp + fp + fn).clamp_min(1)  # (G, C)
    best = grid[f1.argmax(0)]
    return torch.where(targets.sum(0) > 0, best, torch.full_like(best, 0.5))


def multilabel_metrics(
    scores: torch.Tensor, targets: torch.Tensor, thresholds: torch.Tensor | None = None
) -> dict[str, float]:
    """mAP (macro over classes with positives), micro AP, the frequency baseline and F1 at ``thresholds``
    (default 0.5) of per-video probabilities (V, C) against multi-hot targets (V, C)."""
    if len(targets) == 0:
        raise ValueError("no videos were evaluated: the evaluation set is empty or every video was skipped")
    num_classes = scores.shape[1]
    target = targets.round().int()
    present = target.sum(0) > 0
    if not bool(present.any()):
        raise ValueError("no video of the evaluation set carries any class: average precision is undefined")
    per_class = multilabel_average_precision(scores, target, num_labels=num_classes, average="none")
    frequency = target.float().mean(0)
    thresholds = torch.full((num_classes,), 0.5) if thresholds is None else thresholds.to(scores.device)
    predicted = scores >= thresholds
    tp = (predicted & target.bool()).sum().float()
    f1 = 2 * tp / (predicted.sum() + target.sum()).clamp_min(1).float()
    return {
        "mAP": float(per_class[present].mean()),
        "mAP_micro": float(
            multilabel_average_precision(scores, target, num_labels=num_classes, average="micro")
        ),
        "mAP_baseline": float(frequency[present].mean()),
        "f1": float(f1),
    }


def per_class_average_precision(scores: torch.Tensor, targets: torch.Tensor) -> list[float | None]:
    """Average precision of each class (None where no video carries it)."""
    target = targets.round().int()
    values = multilabel_average_precision(scores, target, num_labels=scores.shape[1], average="none")
    return [float(v) if bool(p) else None for v, p in zip(values, target.sum(0) > 0, strict=True)]


class MultiViewAccumulator(Metric):
    """Collects per-view logits over an epoch (on every rank) and returns per-video predictions.

    ``update`` is called once per batch; ``compute`` gathers all ranks' rows (torchmetrics "cat" states),
    removes the padding duplicates and combines the views with :func:`aggregate_views`.

    Args:
        method: "softmax" (mean of view probabilities, default) or "sum" (official: sum of view logits).
    """

    full_state_update = False

    def __init__(self, *, method: str = "softmax") -> None:
        super().__init__()
        self.method = check_ensemble_method(method)
        for name in ("logits", "labels", "video", "view"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(
        self, logits: torch.Tensor, labels: torch.Tensor, video: torch.Tensor, view: torch.Tensor
    ) -> None:
        """Record one batch: logits (B, C), labels (B,), video indices (B,), view indices (B,)."""
        self.logits.append(logits.detach().float())
        self.labels.append(labels.detach().float() if labels.ndim == 2 else labels.detach().long())
        self.video.append(video.detach().long())
        self.view.append(view.detach().long())

    def compute(self) -> VideoPredictions:
        """Per-video predictions from everything recorded on every rank."""

        def cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
            # After a distributed sync a list state is already one tensor.
            return torch.cat(state) if isinstance(state, list) else state

        if isinstance(self.logits, list) and not self.logits:
            empty = torch.zeros(0, dtype=torch.long, device=self.device)
            return VideoPredictions(empty, torch.zeros(0, 0, device=self.device), empty, empty)
        return aggregate_views(
            cat(self.logits), cat(self.labels), cat(self.video), cat(self.view), method=self.method
        )


__all__ = [
    "MultiViewAccumulator",
    "multilabel_metrics",
    "per_class_average_precision",
    "tune_thresholds",
    "video_metrics",
]
