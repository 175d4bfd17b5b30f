"""Video-level evaluation during training: gather every rank's views, combine them, score the videos.

How the views of a video are combined ("softmax" mean or "sum" of logits) is
:func:`fast_timesformer.inference.views.aggregate_views`, shared with ``classify``. Under DDP,
``DistributedSampler`` pads the last batch by repeating items from the start, so some views are scored twice. :class:`MultiViewAccumulator` gathers every rank's per-view results (a torchmetrics ``Metric``
with "cat" states) and keeps one result per (video, view) before combining, so the numbers do not depend
on the number of processes.

Metrics are computed per video with torchmetrics: top-1, top-5 (only when there are more than 5 classes,
where it means something) and mean class accuracy (the mean over classes *present in the labels* of the
per-class recall; torchmetrics' own ``average="macro"`` also counts classes that are only predicted).
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.classification import multiclass_accuracy

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
        self.labels.append(labels.detach().long())
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


__all__ = ["MultiViewAccumulator", "video_metrics"]
