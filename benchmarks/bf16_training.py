"""bfloat16 training on the CPU through Lightning's own loop: float32 vs ``--trainer.precision bf16-mixed`` (issue 12, 2).

What is timed is what ``fast-timesformer fit`` runs: a :class:`~fast_timesformer.training.VideoClassifier`
(``training_step``: forward, cross-entropy, logging, the finite-loss check) inside ``lightning.Trainer.fit``
with AdamW and the cosine schedule; Lightning's backward and optimizer step. One optimizer step is the time
from ``on_train_batch_start`` to ``on_train_batch_end`` (a callback), so data loading (random tensors here,
prepared before the clock) and Trainer start-up are not counted.

Configuration (the issue's): dim 384, depth 4, 6 heads, 8 frames x 224 px, patch 16, 400 classes, batch 2,
divided attention; ``--attention`` picks the mechanism (FAVOR+ keeps its features in float32 under
autocast). Method: per round, one short ``fit`` per precision (order rotated each round), each fit's first
``--warmup`` steps untimed; the median over all timed steps is reported, with the ratio, measured side by
side in one process. Also reported: whether this CPU has bf16 units (``/proc/cpuinfo`` flags) and the
largest logit difference between the two precisions on one batch (same weights), as a sanity check.

    python benchmarks/bf16_training.py                      # 3 rounds x 6 timed steps per precision, ~2 min
    python benchmarks/bf16_training.py --attention performer
    python benchmarks/bf16_training.py --quick              # tiny model, seconds (the test runs this)
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import logging  # noqa: E402

from common import base_parser, format_table, results_name, start, summary, write_results  # noqa: E402

PRECISIONS = ("32-true", "bf16-mixed")


def config(quick: bool, attention: str) -> dict[str, Any]:
    if quick:
        return dict(num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=10,
                    attention=attention, batch=2)  # fmt: skip
    return dict(num_frames=8, image_size=224, patch_size=16, dim=384, depth=4, heads=6, num_classes=400,
                attention=attention, batch=2)  # fmt: skip


class StepTimer:
    """A Lightning callback: seconds from on_train_batch_start to on_train_batch_end, per step."""

    def __init__(self) -> None:
        from lightning.pytorch import Callback

        outer = self

        class _Callback(Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                outer._t0 = time.perf_counter()

            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                outer.seconds.append(time.perf_counter() - outer._t0)

        self.seconds: list[float] = []
        self._t0 = 0.0
        self.callback = _Callback()


def make_module(cfg: dict[str, Any]):
    from fast_timesformer.training import VideoClassifier

    kwargs = {k: cfg[k] for k in ("patch_size", "dim", "depth", "heads", "attention")}
    torch.manual_seed(0)
    return VideoClassifier(
        model_kwargs=kwargs, num_classes=cfg["num_classes"], num_frames=cfg["num_frames"],
        image_size=cfg["image_size"], lr=1e-4, seed=0,
    )  # fmt: skip


def make_loader(cfg: dict[str, Any], steps: int):
    g = torch.Generator().manual_seed(0)
    shape = (cfg["batch"], cfg["num_frames"], 3, cfg["image_size"], cfg["image_size"])
    batches = [
        {
            "video": torch.randn(shape, generator=g),
            "label": torch.randint(0, cfg["num_classes"], (cfg["batch"],), generator=g),
        }
        for _ in range(min(steps, 4))
    ]
    items = [batches[i % len(batches)] for i in range(steps)]
    return torch.utils.data.DataLoader(items, batch_size=None)  # already batched; no workers, no copies


def fit_steps(cfg: dict[str, Any], precision: str, steps: int) -> list[float]:
    from lightning.pytorch import Trainer

    timer = StepTimer()
    trainer = Trainer(
        accelerator="cpu", devices=1, precision=precision, max_steps=steps, max_epochs=1,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[timer.callback], num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    module = make_module(cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no val dataloader", "num_workers" advice: not ours to fix here
        trainer.fit(module, train_dataloaders=make_loader(cfg, steps))
    return timer.seconds


def logit_difference(cfg: dict[str, Any]) -> float:
    module = make_module(cfg).eval()
    video = next(iter(make_loader(cfg, 1)))["video"]
    with torch.no_grad():
        full = module(video).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = module(video).float()
    return float((full - half).abs().max() / full.abs().max().clamp_min(1e-12))


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--attention", default="regular", choices=("regular", "performer", "fastformer"))
    parser.add_argument("--rounds", type=int, default=None, help="fits per precision (default 3; quick 2)")
    args = parser.parse_args()
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # GPU/TPU availability, tips, per fit
        logging.getLogger(name).setLevel(logging.ERROR)
    start(args)
    from fast_timesformer.training.precision import cpu_bf16_units

    cfg = config(args.quick, args.attention)
    rounds = args.rounds or (2 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else 2
    repeats = args.repeats or (3 if args.quick else 6)
    times: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    for r in range(rounds):
        order = PRECISIONS[r % 2 :] + PRECISIONS[: r % 2]
        for precision in order:
            seconds = fit_steps(cfg, precision, warmup + repeats)
            times[precision].extend(seconds[warmup:])
            print(
                f"round {r + 1}/{rounds} {precision}: median {statistics.median(seconds[warmup:]) * 1e3:.0f} ms/step"
            )
    base = statistics.median(times["32-true"])
    rows = []
    for precision in PRECISIONS:
        stats = summary(times[precision])
        rows.append({
            "precision": precision, "median_ms": stats["median_s"] * 1e3, "min_ms": stats["min_s"] * 1e3,
            "clips_per_s": cfg["batch"] / stats["median_s"], "speedup": base / stats["median_s"],
            "steps": len(times[precision]),
        })  # fmt: skip
    bf16_units = cpu_bf16_units()
    difference = logit_difference(cfg)
    print(
        f"\nLightning fit, one optimizer step, {cfg['attention']} divided, dim {cfg['dim']} depth {cfg['depth']}, "
        f"{cfg['num_frames']}x{cfg['image_size']}, batch {cfg['batch']}, AdamW; {args.threads} threads; "
        f"CPU bf16 units: {bf16_units}; {rounds} rounds x {repeats} steps (+{warmup} warm-up) per precision\n"
    )
    print(format_table(rows, [
        ("precision", "precision", ""), ("median ms/step", "median_ms", ".0f"), ("min ms", "min_ms", ".0f"),
        ("clips/s", "clips_per_s", ".2f"), ("vs float32", "speedup", ".2f"), ("steps timed", "steps", "d"),
    ]))  # fmt: skip
    print(
        f"\nbf16 autocast vs float32 logits (same weights, one batch): max |diff| / max |logit| = {difference:.2e}"
    )
    path = write_results(
        results_name(args, "bf16_training" + ("_quick" if args.quick else "") + f"_{args.attention}"),
        {
            "config": cfg, "threads": args.threads, "rounds": rounds, "warmup_steps": warmup,
            "timed_steps_per_round": repeats, "cpu_bf16_units": bf16_units, "rows": rows,
            "times_s": times, "relative_logit_difference": difference,
        },
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
