"""Do the attention maps mean something? Their mass over what matters, on demo-trained models (issue 10).

For each mechanism: train its demo recipe (``demo_recipe(NAME)`` through
``fast_timesformer.training.demo.run_demo``, no control run), load the exported weights with
:class:`~fast_timesformer.inference.Predictor`, and explain every validation video as ``fast-timesformer
explain`` does (its clip, made with the stored preprocessing). The generator knows where everything is:
``synthetic.motion_masks`` draws each clip again from its seed without noise (the same random draws) and
gives pixel masks of

* **moving parts**: the moving bar in ordinary frames, the whole canvas in flash frames (the issue's
  "moving bar and flashing" region: everything that carries the label);
* **flash frames**: the frames that are one flash colour (they decide the colour order);
* **bar, ordinary frames**: the bar's pixels, within the frames that are not flashes (direction);
* **distractor**: the blinking yellow square (carries nothing: a good map does not favour it).

With ``--task long`` the model is the long task's (``demo_recipe(NAME, "long")``: 32 frames of 64 px, 8 x 8
patches per frame) and the regions come from ``synthetic_long.long_masks``:

* **events**: the red and blue stripes (colour and shade) in the frames that show them;
* **red changed**: red's pixels whose tone differs between its early and its late stripe -- the only places
  where one position seen early and late tells which way red moved (half the label);
* **blue changed**: the same for blue (the label's other half; on average as large);
* **distractors**: the one-frame squares of other colours.

For each map and region: mass = the map's share of weight on the region, share = the region's share of
the clip (patch coverage), ratio = mass / share (1: the map ignores the region). Means over the videos.

    python benchmarks/explain.py                          # regular, performer, fastformer (~4 min, 2 cores)
    python benchmarks/explain.py --attention regular      # one mechanism
    python benchmarks/explain.py --task long --attention regular --demo-output DIR
                              # explain the model of `fast-timesformer demo --task long --output DIR` (no retraining)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from fast_timesformer.data import synthetic, synthetic_long  # noqa: E402
from fast_timesformer.inference import Predictor  # noqa: E402
from fast_timesformer.inference.explain import (  # noqa: E402
    default_method,
    explain_clips,
    patch_coverage,
    region_mass,
)
from fast_timesformer.training.demo import DemoRecipe, demo_recipe, run_demo  # noqa: E402

REGIONS = {
    "motion": ("moving parts", "flash frames", "bar, ordinary frames", "distractor"),
    "long": ("events", "red changed", "blue changed", "distractors"),
}
METHODS = {
    "regular": ("rollout", "cls", "temporal", "gradcam"),
    "performer": ("rollout", "cls", "temporal", "gradcam"),
    "fastformer": ("pooling", "temporal", "gradcam"),
}


def truth(recipe: DemoRecipe, seed: int, index: int, label: int) -> dict[str, torch.Tensor]:
    """The rendered frames (T, H, W, 3) and pixel masks (T, H, W) of demo validation clip ``index``."""
    if recipe.task == "long":
        size = dict(num_frames=recipe.num_frames, size=recipe.size)
        rendered = synthetic_long.render_long_clip(label, rng=synthetic.clip_rng(seed, "val", index), **size)
        masks = synthetic_long.long_masks(label, rng=synthetic.clip_rng(seed, "val", index), **size)
        return {
            "rendered": torch.from_numpy(rendered.astype(np.float32)),
            **{name: torch.from_numpy(mask) for name, mask in masks.items()},
        }
    size = dict(num_frames=recipe.num_frames, size=recipe.size, hold=1, speed=recipe.speed)
    rendered = synthetic.render_clip(label, rng=synthetic.clip_rng(seed, "val", index), **size)
    masks = {
        name: torch.from_numpy(mask)
        for name, mask in synthetic.motion_masks(
            label, rng=synthetic.clip_rng(seed, "val", index), **size
        ).items()
    }
    flash_frames = masks["flash"].flatten(1).all(1)  # (T,)
    flash = flash_frames[:, None, None].expand_as(masks["flash"])
    return {
        "rendered": torch.from_numpy(rendered.astype(np.float32)),
        "flash_frames": flash_frames,
        "moving parts": masks["bar"] | flash,
        "flash frames": flash,
        "bar, ordinary frames": masks["bar"],
        "distractor": masks["distractor"],
    }


def measure(weights: Path, recipe: DemoRecipe, seed: int, methods: tuple[str, ...]) -> tuple[dict, dict]:
    """Mean (mass, share) per (method, region) over the validation videos, and checks of the setup."""
    predictor = Predictor.from_pretrained(weights)
    model = predictor.model
    root = weights.parent / "data" / "val"
    records = sorted(root.glob("*/*.mp4"))
    sums: dict[tuple[str, str], list[tuple[float, float]]] = {}
    worst_pixel, correct, seconds = 0.0, 0, []
    parts = [0, 0]  # long task: clips whose red move / blue move the prediction gets right
    for path in records:
        classes = synthetic_long.LONG_CLASSES if recipe.task == "long" else synthetic.MOTION_CLASSES
        label = classes.index(path.parent.name)
        index = int(path.stem.split("_")[1])
        masks = truth(recipe, seed, index, label)
        item = predictor.views(path)[0]  # 1 clip x 1 crop: the whole video, as the demo tests it
        decoded = (item["video"] * torch.tensor(predictor.preprocessing.std).view(1, 3, 1, 1)) + torch.tensor(
            predictor.preprocessing.mean
        ).view(1, 3, 1, 1)
        worst_pixel = max(
            worst_pixel, float((decoded.permute(0, 2, 3, 1) * 255 - masks["rendered"]).abs().max())
        )
        start = time.perf_counter()
        result = explain_clips(model, item["video"][None], methods=methods)
        seconds.append(time.perf_counter() - start)
        predicted = int(result.logits[0].argmax())
        correct += predicted == label
        if recipe.task == "long":  # names are red_<move>_blue_<move>
            for i, part in enumerate((1, 3)):
                parts[i] += classes[predicted].split("_")[part] == classes[label].split("_")[part]
        ordinary = ~masks["flash_frames"] if recipe.task == "motion" else None
        for method in methods:
            patch_map = result.maps[method][0]  # (T, Hp, Wp)
            for region in REGIONS[recipe.task]:
                coverage = patch_coverage(masks[region], model.patch_size)
                if region == "bar, ordinary frames":  # within the frames that are not flashes
                    mass_share = region_mass(patch_map[ordinary], coverage[ordinary])
                else:
                    mass_share = region_mass(patch_map, coverage)
                sums.setdefault((method, region), []).append(mass_share)
    table = {
        key: {
            "mass": statistics.mean(m for m, _ in values),
            "share": statistics.mean(s for _, s in values),
        }
        for key, values in sums.items()
    }
    for row in table.values():
        row["ratio"] = row["mass"] / row["share"] if row["share"] else None
    checks = {
        "videos": len(records),
        "val_top1_of_explained_clips": correct / len(records),
        **(
            {"red_move_accuracy": parts[0] / len(records), "blue_move_accuracy": parts[1] / len(records)}
            if recipe.task == "long"
            else {}
        ),
        "max_abs_pixel_difference_decoded_vs_rendered": worst_pixel,  # ~0: lossless files, the masks fit
        "explain_seconds_per_clip_median": statistics.median(seconds),
        "default_method": default_method(model),
    }
    return table, checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=common.THREADS)
    parser.add_argument("--task", choices=tuple(REGIONS), default="motion", help="the built-in dataset")
    parser.add_argument(
        "--demo-output",
        type=Path,
        default=None,
        help="the folder of a finished `fast-timesformer demo --task TASK --attention NAME --seed SEED` run "
        "(weights/, data/, summary.json): explain its model instead of training one (one --attention)",
    )
    parser.add_argument("--out", default=None, help="results name (default explain, or explain_long)")
    args = parser.parse_args()
    if args.demo_output and len(args.attention) != 1:
        parser.error("--demo-output explains one model: give one --attention")
    args.out = args.out or ("explain" if args.task == "motion" else f"explain_{args.task}")
    common.setup(args.threads)
    busy = common.busy_fraction()
    rows, runs = [], {}
    for attention in args.attention:
        recipe = demo_recipe(attention, args.task)
        with tempfile.TemporaryDirectory(prefix=f"explain-{attention}-") as folder:
            start = time.perf_counter()
            if args.demo_output:
                summary = json.loads((args.demo_output / "summary.json").read_text())
                recipe = DemoRecipe(**summary["recipe"])
                if (recipe.task, recipe.attention, summary["seed"]) != (args.task, attention, args.seed):
                    raise SystemExit(
                        f"{args.demo_output} holds a {recipe.task} / {recipe.attention} / seed "
                        f"{summary['seed']} run; pass --task, --attention and --seed to match"
                    )
                folder, train_seconds = args.demo_output, summary["seconds"]
            else:
                summary = run_demo(
                    output=folder, seed=args.seed, recipe=recipe, control=False, threads=args.threads
                )
                train_seconds = time.perf_counter() - start
            table, checks = measure(Path(folder) / "weights", recipe, args.seed, METHODS[attention])
        runs[attention] = {
            "val_top1": summary["val_top1"], "train_seconds": train_seconds, "checks": checks,
            "recipe": dataclasses.asdict(recipe),
            "table": {f"{m} / {r}": v for (m, r), v in table.items()},
        }  # fmt: skip
        for (method, region), value in table.items():
            rows.append({"attention": attention, "method": method, "region": region, **value})
        print(
            f"[{attention}] val top-1 {100 * summary['val_top1']:.1f}%, trained in {train_seconds:.0f} s; "
            f"{checks['videos']} videos explained, {1e3 * checks['explain_seconds_per_clip_median']:.0f} ms per "
            f"clip (all methods); decoded vs rendered pixels differ by at most "
            f"{checks['max_abs_pixel_difference_decoded_vs_rendered']:.2f}/255",
            flush=True,
        )
        if "red_move_accuracy" in checks:
            print(
                f"[{attention}] which way red moved: {100 * checks['red_move_accuracy']:.1f}% right; "
                f"blue: {100 * checks['blue_move_accuracy']:.1f}%"
            )
    columns = [
        ("attention", "attention", ""), ("method", "method", ""), ("region", "region", ""),
        ("mass on region", "mass", ".1%"), ("region's share", "share", ".1%"), ("mass / share", "ratio", ".2f"),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    path = common.write_results(
        args.out,
        {
            "what": "attention-map mass over the generator's regions, demo-trained models, validation split",
            "task": args.task,
            "threads": args.threads,
            "dtype": "float32 model, maps in float64",
            "seed": args.seed,
            "cpu_busy_fraction_before_start": busy,
            "note": "the machine was shared with other jobs; ratios are deterministic, times indicative",
            "warm_up": "none (one pass per clip; the maps do not depend on timing)",
            "repeats": 1,
            "runs": runs,
            "rows": rows,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
