"""Multi-label training end to end on the built-in multi-label data: mAP against the frequency baseline (issue 14).

For each seed: generate ``fast_timesformer.data.synthetic_multilabel`` (train / val, the seed's own clips),
run ``fast-timesformer fit --model.task multilabel --model.pos_weight auto`` (the real command, in this
process), then ``fast-timesformer test`` on the validation split with the best checkpoint; report the
validation mAP (macro over classes), micro AP, the label-frequency baseline (the mAP of a constant
predictor), and micro F1 at the per-class thresholds tuned on validation. Mean ± standard deviation over
the seeds; writes ``benchmarks/results/multilabel.json``.

    python benchmarks/multilabel.py                 # seeds 0 1 2 (~2 minutes each on 2 cores)
    python benchmarks/multilabel.py --seeds 0 --epochs 2 --num-train 64 --num-val 32   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402

from fast_timesformer.cli import main as cli  # noqa: E402
from fast_timesformer.data.synthetic_multilabel import generate_multilabel_dataset  # noqa: E402

RECIPE = {
    "model": {
        "preset": "timesformer_micro_8x32", "task": "multilabel", "pos_weight": "auto", "lr": 1e-3,
        "weight_decay": 0.05, "warmup_epochs": 1.0,
        "model_kwargs": {"dim": 64, "heads": 4, "dim_head": 16, "depth": 2, "patch_size": 8},
    },
    "data": {
        "num_frames": 8, "sampling_rate": 1, "crop_size": 32, "scale_range": [32, 32], "flip": False,
        "batch_size": 16, "eval_batch_size": 32, "num_workers": 0, "cache_frames": True,
        "val_num_temporal_clips": 1, "val_num_spatial_crops": 1,
        "test_num_temporal_clips": 1, "test_num_spatial_crops": 1,
    },
}  # fmt: skip


def run_seed(seed: int, folder: Path, args: argparse.Namespace) -> dict:
    data = generate_multilabel_dataset(
        folder / "data", num_videos={"train": args.num_train, "val": args.num_val}, seed=seed
    )
    config = {
        "seed_everything": seed,
        "trainer": {
            "default_root_dir": str(folder / "run"), "accelerator": "cpu", "devices": 1,
            "max_epochs": args.epochs, "log_every_n_steps": 8, "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": dict(RECIPE["model"]),
        "data": {**RECIPE["data"], "train": str(data / "train" / "manifest.csv"),
                 "val": str(data / "val" / "manifest.csv")},
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.perf_counter()
    if cli(["fit", "--config", str(path)]) != 0:
        raise SystemExit(f"seed {seed}: fit failed")
    seconds = time.perf_counter() - start
    best = folder / "run" / "checkpoints" / "best.ckpt"
    if cli(["test", "--config", str(path), "--ckpt_path", str(best)]) != 0:
        raise SystemExit(f"seed {seed}: test failed")
    with open(folder / "run" / "test" / "metrics.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("test/mAP")]
    final = rows[-1]
    return {
        "seed": seed,
        "mAP": float(final["test/mAP"]),
        "mAP_micro": float(final["test/mAP_micro"]),
        "mAP_baseline": float(final["test/mAP_baseline"]),
        "f1": float(final["test/f1"]),
        "fit_seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--num-train", type=int, default=256)
    parser.add_argument("--num-val", type=int, default=128)
    parser.add_argument("--out", default="multilabel")
    args = parser.parse_args()
    common.setup()
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory(prefix=f"multilabel-{seed}-") as folder:
            row = run_seed(seed, Path(folder), args)
        rows.append(row)
        print(
            f"seed {seed}: mAP {100 * row['mAP']:.1f}% (baseline {100 * row['mAP_baseline']:.1f}%), "
            f"micro AP {100 * row['mAP_micro']:.1f}%, F1 {100 * row['f1']:.1f}%, fit {row['fit_seconds']:.0f} s",
            flush=True,
        )
    columns = [
        ("seed", "seed", "d"), ("val mAP", "mAP", ".1%"), ("micro AP", "mAP_micro", ".1%"),
        ("frequency baseline", "mAP_baseline", ".1%"), ("F1 (tuned thresholds)", "f1", ".1%"),
        ("fit s", "fit_seconds", ".0f"),
    ]  # fmt: skip
    print()
    print(common.format_table(rows, columns))
    summary = {}
    for key in ("mAP", "mAP_micro", "mAP_baseline", "f1"):
        values = [row[key] for row in rows]
        summary[key] = {
            "mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        }  # fmt: skip
    print(
        "\nmean ± std over seeds: "
        + ", ".join(f"{key} {100 * v['mean']:.1f} ± {100 * v['std']:.1f}%" for key, v in summary.items())
    )
    path = common.write_results(
        args.out, {"recipe": RECIPE, "epochs": args.epochs, "num_train": args.num_train,
                   "num_val": args.num_val, "rows": rows, "summary": summary},
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
