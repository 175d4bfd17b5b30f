"""From softmax weights to linear attention: swap, then fine-tune briefly (issue 11, section 4).

Per seed, on the demo's data: train the ``regular`` demo model (``demo_recipe("regular")``), save it with
``save_pretrained``, then for each linear mechanism load it with ``VideoClassifier(pretrained=...,
model_kwargs={"attention": NAME})`` -- what ``fast-timesformer fit --model.pretrained DIR
--model.model_kwargs.attention NAME`` does -- and report:

* ``swap``: top-1 right after the swap, no training;
* ``finetune F``: top-1 after fine-tuning for the fraction F (5%, 10%, 25%) of the regular run's optimizer
  steps, learning rate ``--lr`` (cosine over those steps, a quarter-epoch warm-up);
* ``scratch F``: the mechanism's own demo recipe (its learning rate) trained from scratch for the same steps.

The source has the positions of the target's recipe (if a recipe ever changes them, a second ``regular``
source is trained with those), so the swap changes the attention only; today both recipes use the demo's
rotary positions and share one source. ``recovered`` = fine-tuned top-1 / source top-1; the target is
>= 95% within 25% of the steps.

    python benchmarks/swap_finetune.py                 # seeds 0-2, ~6 minutes on 2 cores
    python benchmarks/swap_finetune.py --targets fastformer --lr 1e-3 --out swap_finetune_fastformer_lr1e-3
    python benchmarks/swap_finetune.py --quick         # 1 seed, 2 epochs: a smoke run, not a result
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import training_runs  # noqa: E402

TARGETS = ("performer", "fastformer")
FRACTIONS = (0.05, 0.10, 0.25)
RECOVERY_TARGET = 0.95


def source_recipe(target: str) -> Any:
    """The regular recipe with the positions of ``target``'s recipe (the swap then changes only attention)."""
    from fast_timesformer.training.demo import demo_recipe

    regular, linear = demo_recipe("regular"), demo_recipe(target)
    return dataclasses.replace(
        regular, model_kwargs={**regular.model_kwargs, "pos_emb": linear.model_kwargs["pos_emb"]}
    )


def run_seed(seed: int, args: Any, tmp: Path) -> list[dict[str, Any]]:
    from fast_timesformer.training import VideoClassifier
    from fast_timesformer.training.demo import demo_recipe, make_data

    base = demo_recipe("regular")
    if args.quick:
        base = dataclasses.replace(base, epochs=2)
    datamodule = make_data(tmp / f"data{seed}", base, seed)
    rows: list[dict[str, Any]] = []
    sources: dict[str, tuple[str, dict[str, Any]]] = {}
    for target in args.targets:
        recipe = dataclasses.replace(source_recipe(target), epochs=base.epochs)
        key = recipe.model_kwargs["pos_emb"]
        if key not in sources:
            classifier, row = training_runs.fit(recipe, datamodule, seed, validate=False)
            folder = tmp / f"source{seed}_{key}"
            classifier.model.save_pretrained(str(folder), class_names=list(datamodule.classes))
            sources[key] = (str(folder), row)
            rows.append({"seed": seed, "target": "regular", "pos_emb": key, "run": "source", **row})
            print(f"seed {seed}: regular ({key}) source {100 * row['val_top1']:.1f}% in {row['steps']} steps")
        folder, source = sources[key]
        steps_total = source["steps"]
        swapped = VideoClassifier(pretrained=folder, model_kwargs={"attention": target}, seed=seed)
        top1 = training_runs.evaluate(swapped, datamodule)
        rows.append({"seed": seed, "target": target, "run": "swap", "steps": 0, "val_top1": top1})
        print(f"  {target}: right after the swap {100 * top1:.1f}%")
        linear = demo_recipe(target)
        for fraction in FRACTIONS:
            steps = max(1, round(fraction * steps_total))
            tuned_recipe = dataclasses.replace(linear, lr=args.lr, warmup_epochs=0.25, model_kwargs={})
            _, tuned = training_runs.fit(
                tuned_recipe, datamodule, seed, pretrained=folder, max_steps=steps, validate=False
            )
            _, scratch = training_runs.fit(linear, datamodule, seed, max_steps=steps, validate=False)
            for run, row in (("finetune", tuned), ("scratch", scratch)):
                rows.append({
                    "seed": seed, "target": target, "run": run, "fraction": fraction,
                    "recovered": row["val_top1"] / source["val_top1"], **row,
                })  # fmt: skip
            print(
                f"  {target}: {fraction:.0%} of the steps ({steps}): fine-tuned {100 * tuned['val_top1']:.1f}%, "
                f"from scratch {100 * scratch['val_top1']:.1f}%",
                flush=True,
            )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and standard deviation over seeds per (target, run, fraction)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        key = (row["target"], row.get("pos_emb", ""), row["run"], row.get("fraction"))
        groups.setdefault(key, []).append(row)
    table = []
    for (target, pos_emb, run, fraction), group in groups.items():
        top1 = [r["val_top1"] for r in group]
        recovered = [r["recovered"] for r in group if "recovered" in r]
        table.append({
            "target": target + (f" ({pos_emb})" if pos_emb else ""), "run": run,
            "fraction": "-" if fraction is None else f"{fraction:.0%}", "steps": group[0]["steps"],
            "seeds": len(group), "top1_mean": statistics.mean(top1),
            "top1_std": statistics.stdev(top1) if len(top1) > 1 else None,
            "recovered_mean": statistics.mean(recovered) if recovered else None,
        })  # fmt: skip
    return table


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--lr", type=float, default=3e-4, help="fine-tuning learning rate (default 3e-4)")
    args = parser.parse_args()
    common.start(args)
    from fast_timesformer.training.demo import quiet_lightning

    seeds = args.seeds[:1] if args.quick else args.seeds
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, quiet_lightning():
        for seed in seeds:
            rows += run_seed(seed, args, Path(tmp))
    table = summarise(rows)
    columns = [
        ("model", "target", ""), ("run", "run", ""), ("share of steps", "fraction", ""), ("steps", "steps", "d"),
        ("seeds", "seeds", "d"), ("val top-1 mean", "top1_mean", ".1%"), ("std", "top1_std", ".1%"),
        ("of the source's top-1", "recovered_mean", ".1%"),
    ]  # fmt: skip
    print()
    print(common.format_table(table, columns))
    met = {
        target: any(
            r["recovered_mean"] >= RECOVERY_TARGET
            for r in table
            if r["target"] == target and r["run"] == "finetune" and r["recovered_mean"] is not None
        )
        for target in args.targets
    }
    print(f"\n>= {RECOVERY_TARGET:.0%} of the source's top-1 within 25% of its steps: {met}")
    name = common.results_name(args, "swap_finetune_quick" if args.quick else "swap_finetune")
    path = common.write_results(
        name,
        {
            "what": "demo task: regular model -> swap attention -> fine-tune 5/10/25% of its steps, vs scratch",
            "fine_tune_lr": args.lr,
            "seeds": seeds,
            "target_recovery": RECOVERY_TARGET,
            "met": met,
            "table": table,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
