"""``fast-timesformer demo``: the whole library on a fresh machine, offline, in a few minutes on a CPU.

1. Generate the built-in motion dataset (:mod:`fast_timesformer.data.synthetic`): real .mp4 files whose
   class (direction of a moving bar x which colour flashes first) is defined by the *order* of the
   frames -- every class shows the same set of frames, so no single frame can solve it.
2. Train a small divided space-time model with the Lightning module and datamodule ``fit`` uses.
3. Evaluate it at the video level on the validation split, printing the protocol beside the number.
4. Export the weights (safetensors + config.json) and classify one validation video with them, exactly as
   ``fast-timesformer classify`` does.
5. Train the same model with ``attention_type="space_only"`` as a control: it sees every frame but cannot
   relate them in time, so it stays near chance.
6. Write ``summary.json``, ``training_curves.png`` and ``confusion_matrix.png``.

``--task long`` runs the same steps on the long-clip dataset (:mod:`fast_timesformer.data.synthetic_long`:
32 frames of 64 px whose class is which way two stripes moved between the first and the last quarter), and
``--attention`` trains another mechanism; each (mechanism, task) has its recipe (:func:`demo_recipe`).

The recipe (:class:`DemoRecipe`) was tuned on a 2-core CPU; ``BENCHMARKS.md`` ("The demo") has the
measurements. Two choices matter: rotary position embeddings (learned ones start at zero, which makes a
from-scratch model blind to frame order until they grow, too slowly for a demo) and a width of 128.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch


@dataclass(frozen=True)
class DemoRecipe:
    """Everything the demo trains with; the defaults meet the demo's target on 2 CPU cores."""

    task: str = "motion"  #: the built-in dataset: "motion" (data.synthetic) or "long" (data.synthetic_long)
    num_train: int = 512  #: training videos (balanced over the 4 classes)
    num_val: int = 128  #: validation videos (each error costs 0.8% of val top-1)
    num_frames: int = 8  #: frames per video, one rendered image each; the clip is the whole video
    size: int = 16  #: frame side in pixels (16 px, patch 8: 4 patches x 8 frames = 32 tokens)
    speed: int = 2  #: bar speed in pixels per frame
    preset: str = "timesformer_micro_8x32"
    attention: str = "regular"  #: the mechanism (``model_kwargs`` may set per-axis ones on top)
    model_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"dim": 128, "heads": 8, "dim_head": 16, "depth": 2, "pos_emb": "rotary"}
    )
    epochs: int = 24
    batch_size: int = 16
    # 1e-3 leaves the model stuck near 50% (direction learned, colour order not) for some seeds; 3e-4 got
    # past 95% by epoch 9-17 for seeds 0-6 (BENCHMARKS.md, "The demo").
    lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 3.0
    precision: str = (
        "32-true"  #: Lightning precision: "32-true" or "bf16-mixed" (BENCHMARKS.md: no gain here)
    )


DEMO_ATTENTIONS = ("regular", "performer", "fastformer")
DEMO_TASKS = ("motion", "long")


def demo_recipe(attention: str = "regular", task: str = "motion") -> DemoRecipe:
    """The demo's recipe for one attention mechanism and task: ``fast-timesformer demo --attention NAME
    --task TASK``.

    Each differs from the ``regular`` recipe of its task only where a change was measured over seeds to help
    that mechanism (BENCHMARKS.md, "Recipes per mechanism"). On the motion task (the :class:`DemoRecipe`
    defaults):

    * ``performer``: 48 epochs (twice the demo's) at learning rate 1e-3 instead of 3e-4 (FAVOR+ with
      rotary positions, the default 44 softmax-kernel features for dim_head 16, never redrawn).
    * ``fastformer``: 48 epochs, otherwise the regular recipe (rotary positions, learning rate 3e-4). Its
      pooling is blind to order, so it needs positions: rotary ones act through its pooling scores and
      query residual and trained far better than ``pos_emb="sincos"`` or learned ones.

    Both linear mechanisms sit on the same plateau as exact attention does early on (50%: direction learned,
    flash order not) but leave it later and less surely; at the demo's 24 epochs some seeds are still on it
    when the cosine schedule has brought the learning rate down.

    The long task (:mod:`fast_timesformer.data.synthetic_long`, 32 frames of 64 px) is `long_recipe`.
    """
    if attention not in DEMO_ATTENTIONS:
        raise ValueError(f"unknown demo attention {attention!r}; choose one of {', '.join(DEMO_ATTENTIONS)}")
    if task not in DEMO_TASKS:
        raise ValueError(f"unknown demo task {task!r}; choose one of {', '.join(DEMO_TASKS)}")
    if task == "long":
        return long_recipe(attention)
    base = DemoRecipe()
    if attention == "performer":
        return replace(base, attention="performer", lr=1e-3, epochs=48)
    if attention == "fastformer":
        return replace(base, attention="fastformer", epochs=48)
    return base


def long_recipe(attention: str = "regular") -> DemoRecipe:
    """The long task's recipe (``fast-timesformer demo --task long``): 32 frames of 64 px, 8-px patches
    (2,048 joint tokens), 1,024 training and 256 validation clips.

    Width 64 (4 heads of 16): at width 32 the model could not even memorise 8 of these clips in 300 full-batch
    steps, as most of each clip is empty canvas and its clip features barely vary at initialisation. Learning
    rate 1e-3 with a one-epoch warm-up; the model sits at chance for ~400-800 steps before it finds the stripes
    (BENCHMARKS.md, "The long task").
    """
    return DemoRecipe(
        task="long", num_train=1024, num_val=256, num_frames=32, size=64, attention=attention,
        model_kwargs={"dim": 64, "heads": 4, "dim_head": 16, "depth": 2, "pos_emb": "rotary"},
        epochs=40, lr=1e-3, warmup_epochs=1.0,
    )  # fmt: skip


def choose_threads(threads: int | None = None) -> int:
    """Set and return torch's thread count: ``threads``, or every core (even this tiny model gains from a
    second one: 125 s against 144 s for the whole demo on the project's 2-core VM)."""
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    return threads


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep the demo's output to its own progress bars and lines; restores the logging levels afterwards."""
    import lightning.pytorch  # noqa: F401 -- sets its loggers to INFO on import: import first, then quieten

    names = ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_utilities", "fast_timesformer")
    levels = {name: logging.getLogger(name).level for name in names}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="lightning")
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\).*")
        for name in names:
            logging.getLogger(name).setLevel(logging.ERROR)
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


def make_data(root: str | os.PathLike, recipe: DemoRecipe, seed: int) -> Any:
    """Write the recipe's built-in dataset under ``root`` and return the demo's ``VideoDataModule`` over it.

    The validation split doubles as the test split (one view per video: the clip is the whole video).
    """
    from fast_timesformer.data.synthetic import generate_motion_dataset
    from fast_timesformer.data.synthetic_long import generate_long_dataset
    from fast_timesformer.training.datamodule import VideoDataModule

    root = Path(root)
    common = dict(
        num_videos={"train": recipe.num_train, "val": recipe.num_val}, num_frames=recipe.num_frames,
        size=recipe.size, seed=seed, num_workers=min(4, os.cpu_count() or 1),
    )  # fmt: skip
    if recipe.task == "long":
        generate_long_dataset(root, **common)
    else:
        generate_motion_dataset(root, hold=1, speed=recipe.speed, **common)
    return VideoDataModule(
        train=str(root / "train" / "manifest.csv"), val=str(root / "val" / "manifest.csv"),
        num_frames=recipe.num_frames, sampling_rate=1, crop_size=recipe.size, scale_range=(recipe.size, recipe.size),
        flip=False,  # a flip turns "left" into "right"
        val_num_temporal_clips=1, val_num_spatial_crops=1, test_num_temporal_clips=1, test_num_spatial_crops=1,
        batch_size=recipe.batch_size, eval_batch_size=64, num_workers=0, cache_frames=True, seed=seed,
        verify_checksums=True,  # the manifest's sha256, compared at the one full decode the cache does
    )  # fmt: skip


def _progress_callback(name: str) -> Any:
    """One tqdm bar per training run (steps), with the last loss and validation top-1 beside it."""
    from lightning.pytorch.callbacks import Callback
    from tqdm import tqdm

    class RunProgress(Callback):
        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self.bar = tqdm(
                total=int(trainer.estimated_stepping_batches), desc=f"[{name}] training", unit="step"
            )
            self.postfix: dict[str, str] = {}

        def on_train_batch_end(
            self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, index: int
        ) -> None:
            loss = trainer.callback_metrics.get("train/loss_step")
            if loss is not None:
                self.postfix["loss"] = f"{float(loss):.3f}"
            self.postfix["epoch"] = f"{trainer.current_epoch + 1}/{trainer.max_epochs}"
            self.bar.set_postfix(self.postfix, refresh=False)
            self.bar.update(1)

        def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
            top1 = trainer.callback_metrics.get("val/top1")
            if top1 is not None and hasattr(self, "bar"):
                self.postfix["val top-1"] = f"{100 * float(top1):.1f}%"
                self.bar.set_postfix(self.postfix)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.bar.close()

    return RunProgress()


def recipe_classifier(
    recipe: DemoRecipe, num_classes: int, seed: int, *, pretrained: str | None = None, **model_kwargs: Any
) -> Any:
    """The ``VideoClassifier`` that ``recipe`` trains: its model (attention, ``recipe.model_kwargs``, then
    ``model_kwargs``), geometry and optimiser settings; ``pretrained``: start from these weights, the model
    arguments given here overriding the stored ones (e.g. another attention)."""
    from fast_timesformer.training.module import VideoClassifier

    return VideoClassifier(
        preset=recipe.preset, model_kwargs={"attention": recipe.attention, **recipe.model_kwargs, **model_kwargs},
        pretrained=pretrained, num_classes=num_classes, num_frames=recipe.num_frames, image_size=recipe.size,
        lr=recipe.lr, weight_decay=recipe.weight_decay, warmup_epochs=recipe.warmup_epochs, seed=seed,
    )  # fmt: skip


def _train(name: str, attention_type: str, *, recipe: DemoRecipe, datamodule: Any, output: Path, seed: int):
    """Fit one model, then test it on the validation split; returns (classifier, test results)."""
    from lightning.pytorch import Trainer, seed_everything
    from lightning.pytorch.loggers import CSVLogger

    from fast_timesformer.training.callbacks import AtomicCheckpointIO

    seed_everything(seed, verbose=False)
    classifier = recipe_classifier(recipe, datamodule.num_classes, seed, attention_type=attention_type)
    trainer = Trainer(
        max_epochs=recipe.epochs, accelerator="cpu", devices=1, precision=recipe.precision, logger=CSVLogger(output, name="runs", version=name),
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0, log_every_n_steps=4,
        plugins=[AtomicCheckpointIO()], callbacks=[_progress_callback(name)], enable_progress_bar=False,
    )  # fmt: skip
    trainer.fit(classifier, datamodule=datamodule)
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    return classifier, dict(classifier.test_results)


def run_demo(
    *,
    output: str | os.PathLike = "fast-timesformer-demo",
    seed: int = 0,
    recipe: DemoRecipe | None = None,
    control: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the demo (see the module docstring) and return the summary written to ``summary.json``."""
    start = time.perf_counter()
    recipe = recipe or DemoRecipe()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    threads = choose_threads(threads)
    with quiet_lightning():
        return _run(out, seed, recipe, control, threads, start)


def _run(
    out: Path, seed: int, recipe: DemoRecipe, control: bool, threads: int, start: float
) -> dict[str, Any]:
    from tqdm import tqdm

    from fast_timesformer.inference import classify_videos
    from fast_timesformer.training.plots import (
        confusion_matrix,
        plot_confusion_matrix,
        plot_training_curves,
        read_metrics_csv,
    )

    # 1. the dataset: real .mp4 files, decoded once and then kept in memory (cache_frames)
    print(f"FastTimeSformer demo: writing to {out}/ ({threads} torch thread{'s' if threads > 1 else ''})")
    t0 = time.perf_counter()
    with tqdm(total=1, desc=f"generating the {recipe.task} dataset", bar_format="{desc}: {elapsed}") as bar:
        datamodule = make_data(out / "data", recipe, seed)
        bar.update()
    data_seconds = time.perf_counter() - t0
    classes = list(datamodule.classes)
    print(
        f"dataset: {recipe.num_train} train / {recipe.num_val} val videos, {len(classes)} classes "
        f"({', '.join(classes)}), {recipe.num_frames} frames of {recipe.size}x{recipe.size} px ({data_seconds:.1f} s)"
    )

    # 2-3. the divided space-time model, evaluated at the video level
    classifier, results = _train(
        "divided_space_time",
        "divided_space_time",
        recipe=recipe,
        datamodule=datamodule,
        output=out,
        seed=seed,
    )
    print(
        f"[divided_space_time] val top-1 {100 * results['top1']:.1f}%  ({results['protocol']}; {results['num_videos']} videos)"
    )

    # 4. export, then classify one file the way `fast-timesformer classify` does
    weights = out / "weights"
    classifier.model.save_pretrained(
        str(weights), preprocessing=datamodule.preprocessing(), class_names=classes
    )
    example = datamodule.datasets["test"].records[1]
    classified, errors, _ = classify_videos([example.path], str(weights), top_k=3)
    if errors:
        raise RuntimeError(f"classifying {example.path} failed: {errors[0]['error']}")
    top = classified[0]["predictions"][0]
    print(f"classify {example.path}: {top['label']} ({100 * top['probability']:.1f}%)")

    # 5. the control: the same model without attention across frames
    control_results = None
    if control:
        _, control_results = _train(
            "space_only", "space_only", recipe=recipe, datamodule=datamodule, output=out, seed=seed
        )
        print(
            f"[space_only] val top-1 {100 * control_results['top1']:.1f}%  (chance {100 / len(classes):.1f}%)"
        )

    # 6. the report
    series = read_metrics_csv(out / "runs" / "divided_space_time" / "metrics.csv")
    if control:
        control_series = read_metrics_csv(out / "runs" / "space_only" / "metrics.csv")
        series.update(
            {f"space_only {name}": control_series[name] for name in ("val/top1",) if name in control_series}
        )
    wanted = ("train/loss_step", "val/loss", "train/acc", "val/top1", "space_only val/top1")
    curves = plot_training_curves(
        {name: points for name, points in series.items() if name in wanted},
        out / "training_curves.png",
        title=f"FastTimeSformer ({recipe.attention} attention) on the built-in {recipe.task} dataset",
    )  # fmt: skip
    matrix = confusion_matrix(results["scores"].argmax(-1), results["labels"], len(classes))
    matrix_png = plot_confusion_matrix(
        matrix,
        classes,
        out / "confusion_matrix.png",
        title=f"validation, video level\n({results['protocol']})",
    )
    summary = {
        "attention": recipe.attention,
        "val_top1": round(results["top1"], 4),
        "val_mean_class_accuracy": round(results["mean_class_accuracy"], 4),
        "space_only_top1": None if control_results is None else round(control_results["top1"], 4),
        "chance": 1 / len(classes),
        "num_classes": len(classes),
        "class_names": classes,
        "num_train_videos": recipe.num_train,
        "num_val_videos": recipe.num_val,
        "protocol": results["protocol"],
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "recipe": asdict(recipe),
        "seed": seed,
        "threads": threads,
        "classified": {"video": example.path, "true_label": classes[example.label], **top},
        "seconds": round(time.perf_counter() - start, 1),
        "files": {
            "weights": str(weights),
            "training_curves": str(curves),
            "confusion_matrix": str(matrix_png),
        },
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    _print_summary(summary, out)
    return summary


def _print_summary(summary: dict[str, Any], out: Path) -> None:
    recipe, control = summary["recipe"], summary["space_only_top1"]
    lines = [
        "",
        f"FastTimeSformer demo finished in {summary['seconds']:.0f} s",
        f"  data      built-in {recipe['task']} dataset: {summary['num_classes']} classes, "
        f"{summary['num_train_videos']} train / {summary['num_val_videos']} val videos",
        f"  model     divided space-time, {recipe['attention']} attention, "
        f"{summary['parameters'] / 1e3:.0f}K parameters, {recipe['epochs']} epochs",
        f"  val top-1 {100 * summary['val_top1']:.1f}%   ({summary['protocol']})",
    ]
    if control is not None:
        lines.append(
            f"  control   space-only attention {100 * control:.1f}% (chance {100 * summary['chance']:.0f}%): "
            "single frames cannot tell the classes apart"
        )
    c = summary["classified"]
    lines += [
        f"  classify  {c['video']}: {c['label']} ({100 * c['probability']:.1f}%), true label {c['true_label']}",
        f"  files     {out}/summary.json, training_curves.png, confusion_matrix.png, weights/",
        f"  next      fast-timesformer classify VIDEO --weights {out}/weights",
    ]
    print("\n".join(lines))


__all__ = [
    "DEMO_ATTENTIONS",
    "DEMO_TASKS",
    "DemoRecipe",
    "choose_threads",
    "demo_recipe",
    "long_recipe",
    "make_data",
    "quiet_lightning",
    "recipe_classifier",
    "run_demo",
]
