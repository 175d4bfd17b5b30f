"""Figures for reports: training curves and a confusion matrix (matplotlib, headless Agg backend).

Both functions write a PNG and return its path; they never open a window, so they work on servers and in CI.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)  # headless: no display needed
    import matplotlib.pyplot as plt

    return plt


def read_metrics_csv(path: str | os.PathLike) -> dict[str, list[tuple[float, float]]]:
    """Read Lightning's ``CSVLogger`` ``metrics.csv`` into {metric: [(step, value), ...]} (empty cells skipped)."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            step = float(row.get("step") or 0)
            for name, value in row.items():
                if name in ("step", "epoch") or value in ("", None):
                    continue
                series.setdefault(name, []).append((step, float(value)))
    return series


def plot_training_curves(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | os.PathLike,
    *,
    title: str = "Training",
) -> Path:
    """Plot losses (left) and accuracies (right) against the optimizer step.

    Args:
        series: {metric name: [(step, value), ...]}, e.g. from :func:`read_metrics_csv`; names containing
            "loss" go to the left panel, the others with values in [0, 1] to the right one.
        path: PNG file to write.
        title: figure title.
    """
    plt = _pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, points in sorted(series.items()):
        if not points:
            continue
        steps, values = zip(*points)
        if "loss" in name:
            left.plot(steps, values, label=name, marker="." if len(points) < 30 else None)
        elif all(0.0 <= v <= 1.0 for v in values) and name != "lr":
            right.plot(steps, values, label=name, marker="o" if len(points) < 30 else None)
    left.set(xlabel="step", ylabel="loss", title="loss")
    right.set(xlabel="step", ylabel="accuracy", title="accuracy", ylim=(-0.02, 1.02))
    for axis in (left, right):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(C, C) counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def plot_confusion_matrix(
    matrix: torch.Tensor,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str = "Confusion matrix",
) -> Path:
    """Draw a confusion matrix (rows: true class, columns: predicted), each row normalised to sum 1."""
    plt = _pyplot()
    counts = matrix.detach().cpu().double()
    rows = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    size = max(4.0, 0.5 * len(class_names) + 2.5)
    figure, axis = plt.subplots(figsize=(size, size))
    image = axis.imshow(rows.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    ticks = range(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    if len(class_names) <= 20:
        for i in ticks:
            for j in ticks:
                if counts[i, j] > 0:
                    colour = "white" if rows[i, j] > 0.5 else "black"
                    axis.text(
                        j, i, f"{int(counts[i, j])}", ha="center", va="center", color=colour, fontsize=8
                    )
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


__all__ = ["confusion_matrix", "plot_confusion_matrix", "plot_training_curves", "read_metrics_csv"]
