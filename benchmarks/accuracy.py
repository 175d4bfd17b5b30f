"""Accuracy against wall-clock, side by side: attention configurations on a built-in task, several seeds.

Every configuration trains on the same data (the demo's motion dataset for each seed) with the recipe of its
attention mechanism (``fast_timesformer.training.demo.demo_recipe``: the regular recipe, plus what was
measured to help that mechanism) for its recipe's epochs (24 for regular, 48 for the linear mechanisms;
``--epochs`` sets one number for all), optionally capped at ``--max-seconds-per-run`` seconds of training
each (Lightning's ``max_time``: the same wall-clock budget for every run). Configurations (``--configs``):

* ``divided regular`` -- the demo; ``joint regular`` -- one softmax over all 1 + 8 x 4 tokens;
* ``divided performer`` / ``divided fastformer`` -- the demo with that mechanism on both axes;
* ``joint performer`` / ``joint fastformer``;
* ``hybrid performer`` / ``hybrid fastformer`` -- divided, exact attention over time, linear over space;
* not run by default, one recipe change each against ``divided performer``: ``divided performer relu``
  (the generalised ReLU kernel), ``divided performer 16 features`` / ``128 features`` (default 44).

``--task long`` trains on the long-clip dataset instead (``demo_recipe(NAME, "long")``, 32 frames of 64 px,
joint layout 2,048 tokens), where ``--max-seconds-per-run`` gives every configuration the same wall-clock.

Reported per configuration, over the seeds: video-level validation top-1 (the demo's protocol) mean ± standard
deviation, training seconds (validation excluded), time to reach 90% of the best configuration's mean final
top-1 (median over the seeds that reach it, and how many do), optimizer steps per second, and the peak extra
memory of one training step (batch 16, forward + backward + AdamW, measured in a fresh process). A PNG plots
validation top-1 against training seconds, one line per configuration (the seed mean at each epoch), with the
seeds' range shaded.

It also measures the accuracy half of the bf16 target: the first ``divided regular`` model's top-1 agreement
between float32 logits and ``torch.autocast("cpu", dtype=torch.bfloat16)`` logits on the validation clips.

    python benchmarks/accuracy.py                     # 8 configurations x 3 seeds, ~30 minutes on 2 cores
    python benchmarks/accuracy.py --configs "divided regular" "divided performer" --seeds 0
    python benchmarks/accuracy.py --quick             # 1 seed, 2 epochs: a smoke run, not a result
    python benchmarks/accuracy.py --configs "divided performer" "divided performer relu" \
        "divided performer 16 features" "divided performer 128 features" --out accuracy_performer
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import training_runs  # noqa: E402

#: name -> (mechanism whose recipe is used, model arguments on top of it)
CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "divided regular": ("regular", {}),
    "joint regular": ("regular", {"attention_type": "joint_space_time"}),
    "divided performer": ("performer", {}),
    "joint performer": ("performer", {"attention_type": "joint_space_time"}),
    "hybrid performer": ("performer", {"time_attention": "regular"}),
    "divided fastformer": ("fastformer", {}),
    "joint fastformer": ("fastformer", {"attention_type": "joint_space_time"}),
    "hybrid fastformer": ("fastformer", {"time_attention": "regular"}),
    # Recipe variants of the performer (not run by default): one change each against "divided performer".
    "divided performer relu": ("performer", {"attention_kwargs": {"kernel": "relu"}}),
    "divided performer 16 features": ("performer", {"attention_kwargs": {"nb_features": 16}}),
    "divided performer 128 features": ("performer", {"attention_kwargs": {"nb_features": 128}}),
}
DEFAULT_CONFIGS = [name for name in CONFIGS if not name.startswith("divided performer ")]
REACH = 0.9  # "time to reach": this fraction of the best configuration's mean final top-1


def config_recipe(name: str, epochs: int | None, task: str = "motion") -> Any:
    from fast_timesformer.training.demo import demo_recipe

    mechanism, extra = CONFIGS[name]
    recipe = demo_recipe(mechanism, task)
    recipe = dataclasses.replace(recipe, model_kwargs={**recipe.model_kwargs, **extra})
    return dataclasses.replace(recipe, epochs=epochs) if epochs else recipe


def train_step_call(recipe: Any, batch: int):
    """Module-level (picklable) builder for the peak-memory child: one AdamW training step."""
    from fast_timesformer import create_model

    torch.manual_seed(0)
    kwargs = {"attention": recipe.attention, **recipe.model_kwargs}
    model = create_model(
        recipe.preset, num_classes=4, num_frames=recipe.num_frames, image_size=recipe.size, **kwargs
    ).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr)
    clip = torch.randn(batch, recipe.num_frames, 3, recipe.size, recipe.size)
    labels = torch.randint(0, 4, (batch,))

    def step() -> None:
        torch.nn.functional.cross_entropy(model(clip), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


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


def time_to_reach(curve: list[dict[str, Any]], level: float) -> float | None:
    return next((point["seconds"] for point in curve if point["top1"] >= level), None)


def summarise(runs: list[dict[str, Any]], names: list[str]) -> tuple[list[dict[str, Any]], float]:
    """One row per configuration (means and spreads over seeds) and the 'reach' level used."""
    finals = {name: [r["val_top1"] for r in runs if r["config"] == name] for name in names}
    best = max(statistics.mean(values) for values in finals.values())
    level = REACH * best
    rows = []
    for name in names:
        mine = [r for r in runs if r["config"] == name]
        top1 = finals[name]
        reached = [t for t in (time_to_reach(r["curve"], level) for r in mine) if t is not None]
        rows.append({
            "config": name, "seeds": len(mine), "top1_mean": statistics.mean(top1),
            "top1_std": statistics.stdev(top1) if len(top1) > 1 else None, "top1_min": min(top1),
            "top1_max": max(top1), "train_seconds": statistics.median(r["train_seconds"] for r in mine),
            "reach_seconds": statistics.median(reached) if reached else None,
            "reached": f"{len(reached)}/{len(mine)}",
            "steps_per_s": statistics.median(r["steps_per_s"] for r in mine),
            "lr": mine[0]["lr"], "pos_emb": mine[0]["model_kwargs"].get("pos_emb"),
        })  # fmt: skip
    return rows, level


def plot(runs: list[dict[str, Any]], names: list[str], level: float, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5))
    for name in names:
        curves = [r["curve"] for r in runs if r["config"] == name and r["curve"]]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        seconds = [statistics.mean(c[i]["seconds"] for c in curves) for i in range(length)]
        values = [[c[i]["top1"] for c in curves] for i in range(length)]
        (line,) = ax.plot(
            seconds, [statistics.mean(v) for v in values], label=f"{name} ({len(curves)} seeds)"
        )
        ax.fill_between(
            seconds, [min(v) for v in values], [max(v) for v in values], alpha=0.15, color=line.get_color()
        )
    ax.axhline(
        level, color="grey", linestyle=":", linewidth=1, label=f"{REACH:.0%} of the best mean final top-1"
    )
    ax.set_xlabel("training seconds (validation excluded)")
    ax.set_ylabel("validation top-1 (video level)")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(
        f"{task.capitalize()} task: validation top-1 against training time (line: seed mean; band: range)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("motion", "long"), default="motion", help="the built-in dataset")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=DEFAULT_CONFIGS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=None, help="default: each recipe's (the demo's 24)")
    parser.add_argument("--max-seconds-per-run", type=float, default=None, help="training time cap per run")
    args = parser.parse_args()
    common.start(args)
    from fast_timesformer.training.demo import demo_recipe, make_data, quiet_lightning

    seeds = args.seeds[:1] if args.quick else args.seeds
    epochs = 2 if args.quick else args.epochs
    names = list(args.configs)
    default_name = "accuracy" if args.task == "motion" else f"accuracy_{args.task}"
    name = common.results_name(args, f"{default_name}_quick" if args.quick else default_name)
    runs: list[dict[str, Any]] = []
    agreement = None
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        for seed in seeds:
            datamodule = make_data(Path(tmp) / f"data{seed}", demo_recipe("regular", args.task), seed)
            datamodule.setup("fit")
            for loader in (datamodule.train_dataloader(), datamodule.val_dataloader()):
                for _ in loader:  # decode once into the frame cache, so no run's clock includes decoding
                    pass
            for config in names:
                recipe = config_recipe(config, epochs, args.task)
                cap = {"max_time": {"seconds": args.max_seconds_per_run}} if args.max_seconds_per_run else {}
                classifier, row = training_runs.fit(recipe, datamodule, seed, trainer_kwargs=cap)
                runs.append({"config": config, "seed": seed, **row})
                print(
                    f"seed {seed} {config:18s} val top-1 {100 * row['val_top1']:5.1f}%  "
                    f"{row['train_seconds']:.0f} s  {row['steps_per_s']:.1f} steps/s",
                    flush=True,
                )
                if agreement is None and config == "divided regular":
                    clips = torch.cat([batch["video"] for batch in datamodule.val_dataloader()])
                    agreement = bf16_agreement(classifier.model, clips)
    rows, level = summarise(runs, names)
    memory = {} if args.no_memory else dict(zip(names, common.peak_memory_many(
        train_step_call, [(config_recipe(n, epochs, args.task), 16) for n in names], threads=args.threads
    )))  # fmt: skip
    for row in rows:
        row["peak_mib"] = common.mib(memory.get(row["config"], {}).get("peak_extra_bytes"))
    columns = [
        ("configuration", "config", ""), ("positions", "pos_emb", ""), ("lr", "lr", "g"), ("seeds", "seeds", "d"),
        ("val top-1 mean", "top1_mean", ".1%"), ("std", "top1_std", ".1%"), ("min", "top1_min", ".1%"),
        ("train s", "train_seconds", ".0f"), (f"s to {level:.0%}", "reach_seconds", ".0f"),
        ("seeds reaching", "reached", ""), ("steps/s", "steps_per_s", ".1f"), ("peak MiB (1 step)", "peak_mib", ".0f"),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    if agreement:
        print(f"\nbf16 autocast vs float32 (divided regular, seed {seeds[0]}): top-1 agreement "
              f"{agreement['top1_agreement']:.1%}")  # fmt: skip
    png = common.RESULTS / f"{name}.png"
    plot(runs, names, level, png, args.task)
    path = common.write_results(
        name,
        {
            "what": f"{args.task} task: attention configurations, each with its mechanism's recipe",
            "task": args.task,
            "max_seconds_per_run": args.max_seconds_per_run,
            "seeds": seeds,
            "epochs": epochs or "each recipe's",
            "reach_level": level,
            "rows": rows,
            "runs": runs,
            "bf16_agreement_regular": agreement,
            "bf16_target": {
                "threshold": 0.99,
                "met": None if agreement is None else agreement["top1_agreement"] >= 0.99,
            },
            "plot": png.name,
        },
    )
    print(f"wrote {path} and {png}")


if __name__ == "__main__":
    main()
