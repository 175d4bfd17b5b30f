"""``fast-timesformer demo``: the whole library offline on the built-in motion dataset (parsing only; the
demo itself is :func:`fast_timesformer.training.demo.run_demo`)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from fast_timesformer.cli.parser import ArgumentParser
from fast_timesformer.training.demo import (
    DEMO_ATTENTIONS,
    DEMO_TASKS,
    DemoRecipe,
    demo_recipe,
    make_data,
    run_demo,
)


def _add_arguments(parser: argparse.ArgumentParser, default: DemoRecipe) -> None:
    """The demo's command-line options (``fast-timesformer demo --help``)."""
    parser.add_argument(
        "--output",
        default="fast-timesformer-demo",
        metavar="DIR",
        help="where to write (default %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the dataset and of both training runs (default 0)"
    )
    parser.add_argument(
        "--task",
        choices=DEMO_TASKS,
        default="motion",
        help="built-in dataset: motion (8 frames of 16 px: bar direction x flash order) or long (32 frames of "
        "64 px, 2,048 joint tokens: which way two stripes moved between the first and last quarter); "
        "default %(default)s",
    )
    parser.add_argument(
        "--attention",
        choices=DEMO_ATTENTIONS,
        default="regular",
        help="attention mechanism, trained with its own measured recipe (fast_timesformer.training.demo."
        "demo_recipe; BENCHMARKS.md, 'Recipes per mechanism'); default %(default)s",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="training epochs per model (default: the recipe's; motion task: "
        f"{default.epochs} for regular, 48 for the linear mechanisms)",
    )
    parser.add_argument(
        "--num-train",
        type=int,
        default=None,
        help=f"training videos to generate (default: the recipe's; {default.num_train} on the motion task)",
    )
    parser.add_argument(
        "--num-val",
        type=int,
        default=None,
        help=f"validation videos (default: the recipe's; {default.num_val} on the motion task)",
    )
    parser.add_argument("--no-control", action="store_true", help="skip the space-only control run")
    parser.add_argument(
        "--data-only",
        action="store_true",
        help="only write the dataset (DIR/data), e.g. for `fast-timesformer fit --config configs/demo.yaml`",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument(
        "--precision",
        choices=("32-true", "bf16-mixed"),
        default=default.precision,
        help="training precision (default %(default)s; bf16-mixed needs a CPU with bf16 units to be fast)",
    )


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer demo",
        description="Offline demo on a built-in dataset (--task motion or long): generate it, train a small "
        "divided space-time model, evaluate it (video level), classify one file, train a space-only control, "
        "and write a report.",
    )
    _add_arguments(parser, DemoRecipe())
    args = parser.parse_args(argv)

    base = demo_recipe(args.attention, args.task)
    recipe = replace(
        base,
        epochs=base.epochs if args.epochs is None else args.epochs,
        num_train=base.num_train if args.num_train is None else args.num_train,
        num_val=base.num_val if args.num_val is None else args.num_val,
        precision=args.precision,
    )
    if args.data_only:
        root = Path(args.output) / "data"
        make_data(root, recipe, args.seed)
        config = "configs/demo.yaml" if recipe.task == "motion" else "configs/demo_long.yaml"
        print(
            f"wrote the {recipe.task} dataset to {root}/ ({recipe.num_train} train / {recipe.num_val} val "
            f"videos)\ntrain on it with: fast-timesformer fit --config {config} "
            f"--data.train {root}/train/manifest.csv --data.val {root}/val/manifest.csv"
        )
        return 0
    run_demo(
        output=args.output, seed=args.seed, recipe=recipe, control=not args.no_control, threads=args.threads
    )
    return 0
