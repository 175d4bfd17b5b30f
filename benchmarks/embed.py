"""Do the features mean something? Same-class nearest neighbours on the demo data (issue 10, section 3).

Train the demo recipe (``fast_timesformer.training.demo.run_demo``, no control run) or reuse a finished demo
folder (``--demo DIR``: its ``weights/`` and ``data/``), then embed its validation and training videos with
:func:`fast_timesformer.inference.embed_videos` -- what ``fast-timesformer embed`` writes -- and search them
with :func:`~fast_timesformer.inference.nearest_neighbours` (cosine). Three feature sets, same videos:

* **trained**: the demo model's pooled features (the final-normed CLS token the head reads);
* **untrained**: the same architecture freshly initialised (``FastTimeSformer(**config)``, seed 0);
* **pixels**: the normalised clip itself, flattened (the views the model is given).

Measured per set: within the validation split (leave one out), the share of the first neighbour / of the
first five neighbours that have the query's class; validation queries against the training split, the
1-NN and 5-NN-majority class accuracy. Chance is what random neighbours give with these class counts.

    python benchmarks/embed.py                       # trains the demo first (~1 min on 2 idle cores)
    python benchmarks/embed.py --demo DIR            # reuse `fast-timesformer demo --output DIR`
    python benchmarks/embed.py --epochs 8            # a shorter training when the machine is busy
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from fast_timesformer import FastTimeSformer  # noqa: E402
from fast_timesformer.data import collate_videos, read_annotations  # noqa: E402
from fast_timesformer.inference import Predictor, embed_videos, nearest_neighbours  # noqa: E402
from fast_timesformer.training.demo import DemoRecipe, run_demo  # noqa: E402


def pixel_features(predictor: Predictor, paths: list[str]) -> torch.Tensor:
    """(N, T*C*H*W) the mean normalised view of each file, flattened: the model's input as a feature."""
    rows = []
    for path in paths:
        dataset = predictor.views(path)
        batch = collate_videos([dataset[i] for i in range(len(dataset))])
        rows.append(batch["video"].float().mean(0).flatten())  # (T, C, H, W) -> (T*C*H*W,)
    return torch.stack(rows)


def scores(
    val: torch.Tensor, val_labels: torch.Tensor, train: torch.Tensor, train_labels: torch.Tensor
) -> dict:
    """Same-class neighbour rates within val (leave one out) and val -> train accuracies."""
    within, _ = nearest_neighbours(val, 5)  # (N, 5)
    same = val_labels[within] == val_labels[:, None]  # (N, 5)
    across, _ = nearest_neighbours(train, 5, queries=val)  # (N, 5) rows of train
    votes = train_labels[across]  # (N, 5)
    majority = torch.tensor([Counter(row.tolist()).most_common(1)[0][0] for row in votes])
    return {
        "val_top1_same_class": float(same[:, 0].float().mean()),
        "val_top5_same_class": float(same.float().mean()),
        "val_to_train_1nn_accuracy": float((votes[:, 0] == val_labels).float().mean()),
        "val_to_train_5nn_accuracy": float((majority == val_labels).float().mean()),
    }


def chance(val_labels: torch.Tensor, train_labels: torch.Tensor) -> dict:
    """What neighbours drawn at random give with these class counts."""
    n = len(val_labels)
    counts = torch.bincount(val_labels).double()
    within = float((counts * (counts - 1)).sum() / (n * (n - 1)))
    train_share = torch.bincount(train_labels, minlength=len(counts)).double() / len(train_labels)
    across = float((counts / n * train_share[: len(counts)]).sum())
    return {
        "val_top1_same_class": within, "val_top5_same_class": within,
        "val_to_train_1nn_accuracy": across, "val_to_train_5nn_accuracy": across,
    }  # fmt: skip


def plot(sets: dict[str, torch.Tensor], labels: torch.Tensor, classes: list[str], path: Path) -> Path:
    """Validation features projected on their first two principal components, one panel per set."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(sets), figsize=(4 * len(sets), 3.8))
    for axis, (name, features) in zip(axes, sets.items()):
        centred = features.double() - features.double().mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        points = (centred @ v[:2].T).numpy()  # (N, 2)
        for index, label in enumerate(classes):
            chosen = (labels == index).numpy()
            axis.scatter(points[chosen, 0], points[chosen, 1], s=10, label=label)
        axis.set_title(name, fontsize="medium")
        axis.set_xticks([])
        axis.set_yticks([])
    axes[0].legend(fontsize="x-small", loc="best")
    figure.suptitle("demo validation videos, first two principal components of each feature set")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, help="a finished demo folder (weights/, data/) to reuse")
    parser.add_argument("--keep", type=Path, help="train the demo into this folder and keep it")
    parser.add_argument("--epochs", type=int, default=DemoRecipe().epochs, help="demo training epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=common.THREADS)
    parser.add_argument("--batch-size", type=int, default=64, help="views per forward pass")
    parser.add_argument("--out", default="embed", help="results name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    common.setup(args.threads, seed=args.seed)
    busy = common.busy_fraction()
    recipe = dataclasses.replace(DemoRecipe(), epochs=args.epochs)
    temporary = None
    train_seconds, val_top1 = None, None
    if args.demo is None:
        folder = args.keep or Path(temporary := tempfile.mkdtemp(prefix="embed-demo-"))
        start = time.perf_counter()
        summary = run_demo(output=folder, seed=args.seed, recipe=recipe, control=False, threads=args.threads)
        train_seconds, val_top1 = time.perf_counter() - start, summary["val_top1"]
    else:
        folder = args.demo
    data = {split: read_annotations(folder / "data" / split / "manifest.csv") for split in ("train", "val")}
    classes = data["val"].classes
    labels = {split: torch.tensor([r.label for r in data[split].records]) for split in data}
    trained = Predictor.from_pretrained(folder / "weights", batch_size=args.batch_size)
    torch.manual_seed(args.seed)
    untrained = Predictor(
        FastTimeSformer(**trained.model.config), preprocessing=trained.preprocessing,
        class_names=trained.class_names, batch_size=args.batch_size,
    )  # fmt: skip
    sets: dict[str, dict[str, torch.Tensor]] = {}
    seconds = {}
    for name, predictor in (("trained", trained), ("untrained", untrained)):
        start = time.perf_counter()
        sets[name] = {split: embed_videos(data[split], predictor).features for split in data}
        seconds[name] = time.perf_counter() - start
    sets["pixels"] = {
        split: pixel_features(trained, [r.path for r in data[split].records]) for split in data
    }  # fmt: skip
    random = chance(labels["val"], labels["train"])
    rows = [{"features": "chance", "dim": "-", **random}]
    for name, split_features in sets.items():
        rows.append(
            {
                "features": name,
                "dim": split_features["val"].shape[1],
                **scores(split_features["val"], labels["val"], split_features["train"], labels["train"]),
            }
        )
    columns = [
        ("features", "features", ""), ("dim", "dim", ""),
        ("val: 1st neighbour same class", "val_top1_same_class", ".1%"),
        ("val: top-5 same class", "val_top5_same_class", ".1%"),
        ("val -> train 1-NN accuracy", "val_to_train_1nn_accuracy", ".1%"),
        ("val -> train 5-NN accuracy", "val_to_train_5nn_accuracy", ".1%"),
    ]  # fmt: skip
    print()
    print(
        f"demo data: {len(labels['train'])} train / {len(labels['val'])} val videos, {len(classes)} classes; "
        f"model: {recipe.epochs} epochs"
        + (f", val top-1 {100 * val_top1:.1f}%" if val_top1 is not None else "")
    )
    print(common.format_table(rows, columns))
    n_videos = sum(len(v) for v in labels.values())
    print(
        f"embedding {n_videos} videos took {seconds['trained']:.1f} s (trained model, {args.threads} threads)"
    )
    png = plot(
        {name: s["val"] for name, s in sets.items()}, labels["val"], classes, common.RESULTS / "embed.png"
    )
    path = common.write_results(
        args.out,
        {
            "what": "same-class nearest neighbours (cosine) of pooled features, demo data",
            "note": "the machine was shared with other jobs; the rates do not depend on timing",
            "threads": args.threads,
            "dtype": "float32 model and features, cosine in float64",
            "seed": args.seed,
            "recipe": dataclasses.asdict(recipe),
            "demo_folder": None if temporary else str(folder),
            "demo_val_top1": val_top1,
            "train_seconds": train_seconds,
            "embed_seconds": seconds,
            "videos": {split: len(v) for split, v in labels.items()},
            "cpu_busy_fraction_before_start": busy,
            "rows": rows,
            "plot": str(png),
        },
    )
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
