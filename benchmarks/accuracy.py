"""Accuracy beside speed: the demo task's validation accuracy for each attention mechanism (issue 6, item 4).

The demo's data and recipe (``fast_timesformer.training.demo.DemoRecipe``: videos, frames, size, model width and depth,
epochs, batch size, learning rate, warm-up, weight decay, seed) trained once per mechanism, changing only
``attention``: ``regular`` (exact softmax), ``performer`` (FAVOR+, default feature count) and ``fastformer``.
One forced difference: the recipe uses rotary positions, which rotate queries against keys; Fastformer has no
query-key products (the model rejects the combination), so the fastformer run uses learned positions -- and a
fourth run, ``regular`` with learned positions, separates the cost of the positions from that of the mechanism.
Reported per run: video-level validation top-1 (the demo's protocol), training wall time, and inference
time per validation clip.

It also measures the accuracy half of the bf16 target: the ``regular`` model's top-1 agreement between float32
logits and ``torch.autocast("cpu", dtype=torch.bfloat16)`` logits on the same validation clips.

    python benchmarks/accuracy.py            # the demo's budget per run (4 trainings, ~5 minutes on 2 cores)
    python benchmarks/accuracy.py --quick    # 2 epochs: a smoke run, not a result
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MECHANISMS = ("regular", "performer", "fastformer")
#: Runs: (mechanism, position embedding). The last one is fastformer's control: the demo task needs frame
#: order, and fastformer can only use learned positions, so regular attention with learned positions shows how
#: much of fastformer's result is the positions rather than the mechanism.
RUNS = (("regular", "rotary"), ("performer", "rotary"), ("fastformer", "learned"), ("regular", "learned"))


def make_data(root: Path, recipe: Any, seed: int):
    """The demo's motion dataset and datamodule, set up for fitting."""
    from fast_timesformer.training.demo import make_data as demo_data

    datamodule = demo_data(root, recipe, seed)
    datamodule.setup("fit")
    return datamodule


def model_kwargs(recipe: Any, mechanism: str, pos_emb: str) -> dict[str, Any]:
    return {**recipe.model_kwargs, "attention": mechanism, "pos_emb": pos_emb}


def train_one(
    mechanism: str, pos_emb: str, recipe: Any, datamodule: Any, seed: int, output: Path
) -> tuple[Any, dict[str, Any]]:
    """Fit the demo model with ``attention=mechanism``; returns (classifier, results)."""
    from lightning.pytorch import Trainer, seed_everything

    from fast_timesformer.training import VideoClassifier

    seed_everything(seed, verbose=False)
    kwargs = model_kwargs(recipe, mechanism, pos_emb)
    classifier = VideoClassifier(
        preset=recipe.preset, model_kwargs=kwargs, num_classes=datamodule.num_classes,
        num_frames=recipe.num_frames, image_size=recipe.size, lr=recipe.lr, weight_decay=recipe.weight_decay,
        warmup_epochs=recipe.warmup_epochs, seed=seed,
    )  # fmt: skip
    trainer = Trainer(
        max_epochs=recipe.epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, enable_progress_bar=False,
        default_root_dir=str(output),
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(classifier, datamodule=datamodule)
    train_seconds = time.perf_counter() - start
    trainer.test(classifier, datamodule=datamodule, verbose=False)
    results = dict(classifier.test_results)
    return classifier, {
        "val_top1": float(results["top1"]),
        "protocol": results.get("protocol"),
        "num_videos": results.get("num_videos"),
        "train_seconds": train_seconds,
        "parameters": sum(p.numel() for p in classifier.model.parameters()),
        "model_kwargs": kwargs,
    }


def validation_clips(datamodule: Any) -> torch.Tensor:
    """Every validation clip as one (N, T, C, H, W) tensor (one view per video)."""
    return torch.cat([batch["video"] for batch in datamodule.val_dataloader()])


def inference_ms_per_clip(model: torch.nn.Module, clips: torch.Tensor, repeats: int = 5) -> float:
    model.eval()
    batch = clips[:16]

    def call() -> None:
        with torch.inference_mode():
            model(batch)

    times, _ = common.interleaved_clean({"m": call}, warmup=2, repeats=repeats, max_seconds=30)
    return statistics.median(times["m"]) * 1e3 / len(batch)


def bf16_agreement(model: torch.nn.Module, clips: torch.Tensor) -> dict[str, Any]:
    """Top-1 agreement (and logit error) of bf16 autocast against float32, same model, same clips."""
    model.eval()
    with torch.inference_mode():
        fp32 = torch.cat([model(chunk) for chunk in clips.split(16)])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = torch.cat([model(chunk).float() for chunk in clips.split(16)])
    return {
        "clips": len(clips),
        "top1_agreement": float((fp32.argmax(-1) == bf16.argmax(-1)).float().mean()),
        "max_abs_logit_diff": float((fp32 - bf16).abs().max()),
        "relative_logit_error": float((fp32 - bf16).norm() / fp32.norm()),
    }


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    common.start(args)
    from fast_timesformer.training.demo import DemoRecipe
    from fast_timesformer.training.demo import quiet_lightning as quiet

    recipe = DemoRecipe()
    recipe = dataclasses.replace(recipe, epochs=args.epochs or (2 if args.quick else recipe.epochs))
    name = common.results_name(args, "accuracy_quick" if args.quick else "accuracy")
    rows, agreement = [], None
    with tempfile.TemporaryDirectory() as tmp:
        datamodule = make_data(Path(tmp) / "data", recipe, args.seed)
        clips = validation_clips(datamodule)
        print(
            f"motion dataset: {recipe.num_train} train / {recipe.num_val} val videos; {recipe.epochs} epochs each"
        )
        for mechanism, pos_emb in RUNS:
            with quiet():
                classifier, result = train_one(mechanism, pos_emb, recipe, datamodule, args.seed, Path(tmp))
            result["inference_ms_per_clip"] = inference_ms_per_clip(classifier.model, clips)
            rows.append({"mechanism": mechanism, "pos_emb": pos_emb, **result})
            print(
                f"  {mechanism:10s} {pos_emb:7s} val top-1 {100 * result['val_top1']:5.1f}%  "
                f"train {result['train_seconds']:.0f} s",
                flush=True,
            )
            if (mechanism, pos_emb) == RUNS[0]:
                agreement = bf16_agreement(classifier.model, clips)
                print(f"  bf16 autocast vs float32 top-1 agreement: {100 * agreement['top1_agreement']:.1f}%")

    columns = [
        ("mechanism", "mechanism", ""), ("positions", "pos_emb", ""), ("val top-1", "val_top1", ".1%"), ("train s", "train_seconds", ".0f"),
        ("ms / clip (inference, batch 16)", "inference_ms_per_clip", ".2f"), ("parameters", "parameters", ","),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    path = common.write_results(
        name,
        {
            "what": "demo task (synthetic motion videos), demo recipe, only `attention` changes",
            "recipe": {**dataclasses.asdict(recipe), "seed": args.seed},
            "rows": rows,
            "bf16_agreement_regular": agreement,
            "bf16_target": {
                "threshold": 0.99,
                "met": None if agreement is None else agreement["top1_agreement"] >= 0.99,
            },
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
