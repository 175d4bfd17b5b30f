"""Why no recipe learns the whole long task: the second move's plateau, measured.

Every model we trained on the long task (``fast_timesformer.data.synthetic_long``: which way a red and a blue
stripe moved between the first and the last quarter of the clip; 4 classes) learns one of the two moves and
then stays at 50% (BENCHMARKS.md, "The long task"). This script measures what that plateau is, per seed:

1. **four classes from scratch** for ``--steps`` steps at a constant learning rate after a one-epoch warm-up
   (no cosine decay, so a late escape is not hidden by a vanishing learning rate): the step at which each
   move is first told apart on >= 90% of the validation clips ("learned"), or "never";
2. if exactly one move was learned, from that model, for ``--continue-steps`` steps each:
   a. **the missing move alone**: the same network, a fresh 2-class head, trained on that move's labels;
   b. **four classes again** (the control: same start, same steps, same learning rate);
3. **the missing move alone, from scratch** (the control for 2a: same labels and steps, no first move).

Reported per seed and run: the step at which each move is learned, and its final validation accuracy; a PNG
plots each move's accuracy against steps for every run (one panel per run kind, one line per seed).

The models, data and optimiser are the long recipe's (``fast_timesformer.training.demo.long_recipe``:
divided space-time, dim 64, 4 heads of 16, depth 2, rotary positions; AdamW 1e-3, batch 16, weight decay
0.05 on weight matrices except the patch embedding's, which the recipe decays too), in a plain training loop
over the decoded clips held in memory (the dataset is written as real .mp4 files and decoded with PyAV
first); a seed's runs draw the same batches. ``--frames 16 --size 32`` (the default) is the same generator at
an eighth of the tokens (16 frames of 32 px: 256 tokens, ~10x cheaper per step, the same plateau);
``--frames 32 --size 64`` is the long task itself.

    python benchmarks/long_plateau.py                        # seeds 0-5, 16 x 32 px, ~21 minutes on 2 cores
    python benchmarks/long_plateau.py --quick                # 1 seed, 200 steps: a smoke run, not a result
    python benchmarks/long_plateau.py --seeds 0 --continue-steps 0 --heads 8   # a variant, first run only
    python benchmarks/long_plateau.py --num-train 8192 --seeds 0 1 2 --out long_plateau_8192
    python benchmarks/long_plateau.py --continue-steps 0 --qk-init-std 0.2 --space-attention performer \\
        --out long_plateau_hybrid_qk0.2                    # the hybrid: exact over time, FAVOR+ over space

``--attention`` / ``--space-attention`` / ``--attention-type`` pick other mechanisms and layouts (default: the
recipe's divided exact attention); ``--qk-init-std`` sets the model's ``qk_init_std`` (0: the official 0.02).
Four probes of the plateau that are not model options, each off by default (`with_variants`):
``--temporal-fc-std S`` draws every ``temporal_fc`` with std S instead of the official zero (so the time path
is not switched off at step 0); ``--block-init-std S`` redraws every Linear of the blocks with std S (0.069 =
0.02 x sqrt(768 / 64): ViT-B's init relative to its width, at width 64); ``--time-direction split`` lets half
the temporal heads see only earlier frames and half only later ones (so a uniform average is no longer blind
to order); ``--qk-norm time|all`` RMS-normalises queries and keys (every logit within +-sqrt(dim_head)).

    python benchmarks/long_plateau.py --steps 1500 --continue-steps 0 --time-direction split \\
        --out long_plateau_split                           # ~12 min; likewise the other probes
"""

from __future__ import annotations

import copy
import json
import sys
import tempfile
import time
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

LEARNED = 0.9  #: a move counts as learned once >= 90% of the validation clips tell it apart (chance: 50%)
MOVES = ("red", "blue")  #: class index = 2 * (red moved right) + (blue moved right) (LONG_CLASSES, sorted)


def move_labels(labels: torch.Tensor, move: str) -> torch.Tensor:
    """0/1 = that stripe moved left/right, from the four-class labels."""
    return labels // 2 if move == "red" else labels % 2


def load_clips(root: Path, frames: int, size: int, seed: int, num_train: int, num_val: int) -> dict[str, Any]:
    """Write the long dataset as .mp4 files, decode every clip with the project's reader (PyAV), normalise as
    the datamodule does (the clip is the whole video, as in the demo)."""
    from fast_timesformer.data.annotations import read_annotations
    from fast_timesformer.data.decoding import read_video_frames
    from fast_timesformer.data.synthetic_long import generate_long_dataset

    generate_long_dataset(
        root, num_videos={"train": num_train, "val": num_val}, num_frames=frames, size=size, seed=seed,
        num_workers=2,
    )  # fmt: skip
    data = {}
    for split in ("train", "val"):
        records = read_annotations(root / split / "manifest.csv", classes=root / "classes.txt").records
        clips = [read_video_frames(record.path, range(frames)).float() / 255 for record in records]
        labels = torch.tensor([record.label for record in records])
        data[split] = ((torch.stack(clips) - 0.45) / 0.225, labels)  # the datamodule's mean / std
    return data


def build_model(args: Any, frames: int, size: int, num_classes: int, seed: int) -> torch.nn.Module:
    from fast_timesformer import FastTimeSformer

    torch.manual_seed(seed)
    model = FastTimeSformer(
        num_frames=frames, image_size=size, patch_size=8, num_classes=num_classes, attention=args.attention,
        space_attention=args.space_attention, attention_type=args.attention_type, pos_emb="rotary",
        dim=args.dim, heads=args.heads, dim_head=args.dim // args.heads, depth=args.depth,
        qk_init_std=args.qk_init_std or 0.02,
    )  # fmt: skip
    return with_variants(model, args, seed)


def with_variants(model: torch.nn.Module, args: Any, seed: int) -> torch.nn.Module:
    """The probes of the plateau that are not model options (each off by default): initial draws redone after
    the model's own (seed + 1000), the temporal heads split by direction, normalised queries and keys."""
    torch.manual_seed(seed + 1000)
    # every Linear of the blocks, temporal_fc included (official: 0.02, and temporal_fc 0)
    if args.block_init_std:
        std = args.block_init_std
        for module in model.blocks.modules():
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
    if args.temporal_fc_std:  # official: zero, so the time path starts switched off
        for block in model.blocks:
            torch.nn.init.trunc_normal_(block.temporal_fc.weight, std=args.temporal_fc_std)
    per_time = args.time_direction != "both" or args.qk_norm == "time"
    if per_time and not all(hasattr(block, "temporal_attn") for block in model.blocks):
        raise SystemExit(
            "--time-direction split and --qk-norm time need the divided layout (a temporal attention)"
        )
    normed = {"time": ["temporal_attn"], "all": ["temporal_attn", "attn"]}.get(args.qk_norm, [])
    for block in model.blocks:
        if args.time_direction == "split":
            block.temporal_attn.attend = types.MethodType(directional_attend, block.temporal_attn)
        for attn in (getattr(block, name) for name in normed if hasattr(block, name)):
            attn.split_heads = types.MethodType(qk_normed_split_heads, attn)
    return model


def directional_attend(
    self: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: Any
) -> torch.Tensor:
    """Exact attention over time where the first half of the heads sees only this and earlier frames and the
    other half only this and later ones (``--time-direction split``; no padding masks in this script)."""
    from fast_timesformer.attention.base import merge_heads

    heads, frames = q.shape[1], q.shape[2]
    past = torch.ones(frames, frames, dtype=torch.bool, device=q.device).tril()
    allowed = torch.stack([past] * (heads // 2) + [past.T] * (heads - heads // 2))  # (H, T, T)
    return merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=allowed))


def qk_normed_split_heads(self: Any, x: torch.Tensor, rope: Any) -> tuple[torch.Tensor, ...]:
    """``Attention.split_heads`` with q and k RMS-normalised per head (no gain) before the rotation, so that
    every attention logit stays within +-sqrt(dim_head) (``--qk-norm``)."""
    from fast_timesformer.layers.rotary import apply_rotary

    q, k, v = type(self).split_heads(self, x, None)  # the model's own projection, not yet rotated
    q, k = F.rms_norm(q, (self.dim_head,)), F.rms_norm(k, (self.dim_head,))
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    return q, k, v


def evaluate(
    model: torch.nn.Module, clips: torch.Tensor, labels: torch.Tensor, task: str
) -> dict[str, float]:
    """Accuracy on each move (and top-1 for four classes); a one-move head is scored on its move only."""
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(clips[i : i + 64]) for i in range(0, len(clips), 64)])
    model.train()
    predicted = logits.argmax(-1)
    if task in MOVES:
        return {task: (predicted == move_labels(labels, task)).float().mean().item()}
    scores = {
        move: (move_labels(predicted, move) == move_labels(labels, move)).float().mean().item()
        for move in MOVES
    }
    return {"top1": (predicted == labels).float().mean().item(), **scores}


def train(
    model: torch.nn.Module, data: dict[str, Any], task: str, steps: int, args: Any, seed: int, label: str
) -> dict[str, Any]:
    """``steps`` AdamW steps on ``task`` ("four" or one move), evaluated every ``args.eval_every`` steps."""
    (train_clips, train_labels), (val_clips, val_labels) = data["train"], data["val"]
    targets = train_labels if task == "four" else move_labels(train_labels, task)
    groups = {args.weight_decay: [], 0.0: []}  # decay: weight matrices, except embeddings and CLS
    for name, param in model.named_parameters():
        decayed = param.ndim > 1 and "embed" not in name and "cls" not in name
        groups[args.weight_decay if decayed else 0.0].append(param)
    optimizer = torch.optim.AdamW(
        [{"params": params, "weight_decay": decay} for decay, params in groups.items()], lr=args.lr
    )
    warmup = max(1, len(train_clips) // args.batch_size)  # one epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: min(1.0, (step + 1) / warmup))
    generator = torch.Generator().manual_seed(seed)
    curve, start, recent = [], time.perf_counter(), []
    for step in range(1, steps + 1):
        index = torch.randint(0, len(train_clips), (args.batch_size,), generator=generator)
        loss = F.cross_entropy(model(train_clips[index]), targets[index])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        recent.append(loss.item())
        if step % args.eval_every == 0 or step == steps:
            point = {"step": step, "train_loss": sum(recent) / len(recent)}
            point.update(evaluate(model, val_clips, val_labels, task))
            point["seconds"] = round(time.perf_counter() - start, 1)
            curve.append(point)
            recent = []
            print(
                f"  seed {seed} {label:<28} " + json.dumps({k: round(v, 3) for k, v in point.items()}),
                flush=True,
            )
    learned = {
        move: next((p["step"] for p in curve if p[move] >= LEARNED), None)
        for move in MOVES
        if move in curve[-1]
    }
    final = {move: curve[-1][move] for move in MOVES if move in curve[-1]}
    return {"run": label, "task": task, "steps": steps, "learned_at": learned, "final": final, "curve": curve}


def with_move_head(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with a fresh 2-class head (same initialisation rule as the model's own)."""
    copied = copy.deepcopy(model)
    torch.manual_seed(seed)
    head = torch.nn.Linear(copied.head.in_features, 2)
    torch.nn.init.trunc_normal_(head.weight, std=0.02)
    torch.nn.init.zeros_(head.bias)
    copied.head = head
    return copied


def study_seed(data: dict[str, Any], args: Any, seed: int) -> list[dict[str, Any]]:
    frames, size = data["train"][0].shape[1], data["train"][0].shape[-1]
    model = build_model(args, frames, size, 4, seed)
    first = train(model, data, "four", args.steps, args, seed, "four classes, scratch")
    runs = [first]
    learned = [
        move for move in MOVES if first["learned_at"][move] is not None and first["final"][move] >= LEARNED
    ]
    if len(learned) != 1 or not args.continue_steps:
        if args.continue_steps:
            print(
                f"  seed {seed}: {len(learned)} moves learned at the end: no plateau to continue from",
                flush=True,
            )
        return runs
    missing = next(move for move in MOVES if move not in learned)
    runs.append(train(with_move_head(model, seed), data, missing, args.continue_steps, args, seed,
                      f"then {missing} alone"))  # fmt: skip
    runs.append(
        train(copy.deepcopy(model), data, "four", args.continue_steps, args, seed, "then four classes")
    )
    scratch = build_model(args, frames, size, 2, seed)
    runs.append(train(scratch, data, missing, args.continue_steps, args, seed, f"{missing} alone, scratch"))
    return runs


def kind(run: dict[str, Any]) -> str:
    return run["run"].replace("red", "MOVE").replace("blue", "MOVE")


def plot(results: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(kind(run) for seed in results for run in seed["runs"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.2 * len(kinds), 3.4), squeeze=False)
    for ax, name in zip(axes[0], kinds):
        for seed in results:
            for run in (r for r in seed["runs"] if kind(r) == name):
                steps = [p["step"] for p in run["curve"]]
                for move, style in (("red", "-"), ("blue", "--")):
                    if move in run["curve"][0]:
                        colour = "tab:red" if move == "red" else "tab:blue"
                        ax.plot(steps, [p[move] for p in run["curve"]], style, color=colour, alpha=0.8,
                                label=f"seed {seed['seed']} {move}")  # fmt: skip
        ax.set_title(name.replace("MOVE", "missing move"), fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylim(0.4, 1.02)
        ax.axhline(0.5, color="grey", lw=0.5)
    axes[0][0].set_ylabel("val accuracy on the move")
    axes[0][0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = common.base_parser(__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=1024)
    parser.add_argument("--num-val", type=int, default=256)
    parser.add_argument("--steps", type=int, default=3000, help="four-class steps from scratch")
    parser.add_argument(
        "--continue-steps", type=int, default=1000, help="steps of each run from the plateau (0: none)"
    )
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--qk-init-std", type=float, default=0.0, help="0: the official 0.02 init")
    parser.add_argument("--attention", default="regular", choices=("regular", "performer", "fastformer"))
    parser.add_argument(
        "--space-attention", default=None, choices=("regular", "performer", "fastformer"),
        help="spatial (or joint) mechanism, e.g. performer for the hybrid (default: --attention)",
    )  # fmt: skip
    parser.add_argument(
        "--attention-type", default="divided_space_time", choices=("divided_space_time", "joint_space_time")
    )
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument(
        "--block-init-std",
        type=float,
        default=0.0,
        help="redraw every Linear of the blocks with this std (0: the official init)",
    )
    parser.add_argument(
        "--temporal-fc-std",
        type=float,
        default=0.0,
        help="draw temporal_fc with this std instead of zero (0: the official zero)",
    )
    parser.add_argument(
        "--time-direction",
        default="both",
        choices=("both", "split"),
        help="split: half the temporal heads see only earlier frames, half only later ones",
    )
    parser.add_argument("--qk-norm", default="none", choices=("none", "time", "all"),
                        help="RMS-normalise q and k in the temporal (or every) attention")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.steps, args.continue_steps, args.eval_every = args.seeds[:1], 200, 100, 50
    common.start(args)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data = load_clips(Path(tmp), args.frames, args.size, args.data_seed, args.num_train, args.num_val)
        print(f"data: {args.num_train} + {args.num_val} clips of {args.frames} x {args.size} px written and "
              f"decoded in {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    results = [{"seed": seed, "runs": study_seed(data, args, seed)} for seed in args.seeds]

    def at(step: int | None) -> str:
        return "never" if step is None else str(step)

    print(f"\n{'seed':>4} | {'run':<28} | {'steps':>5} | red learned at | blue learned at | final red / blue")
    for seed in results:
        for run in seed["runs"]:
            finals = " / ".join(f"{run['final'][m]:.1%}" if m in run["final"] else "-" for m in MOVES)
            print(f"{seed['seed']:>4} | {run['run']:<28} | {run['steps']:>5} | "
                  f"{at(run['learned_at'].get('red')) if 'red' in run['final'] else '-':>14} | "
                  f"{at(run['learned_at'].get('blue')) if 'blue' in run['final'] else '-':>15} | {finals}")  # fmt: skip
    name = common.results_name(args, "long_plateau_quick" if args.quick else "long_plateau")
    path = common.write_results(
        name,
        {
            "settings": {
                k: v for k, v in vars(args).items() if k not in ("warmup", "repeats", "max_seconds")
            },
            "learned_threshold": LEARNED,
            "dtype": "float32",
            "results": results,
        },
    )
    plot(results, path.with_suffix(".png"))
    print(f"wrote {path} and {path.with_suffix('.png').name}")


if __name__ == "__main__":
    main()
