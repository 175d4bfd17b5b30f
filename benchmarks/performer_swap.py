"""How close FAVOR+ gets to the softmax model it replaces, when softmax weights run with performer attention.

``from_pretrained(path, attention="performer")`` keeps every weight and swaps exact attention for FAVOR+'s
random-feature estimate. This measures the price as the number of random features grows, for:

- ``random-init``: the small preset (dim 384, depth 4, 6 heads of 64) at 8 x 64 px as initialised
  (trunc-normal 0.02), saved and reloaded. Its attention is nearly uniform.
- ``imported-0.05`` and ``imported-0.10``: a random Hugging Face ``TimesformerForVideoClassification``
  (dim 192, depth 4, 3 heads of 64, 8 x 64 px) whose weight matrices are drawn from N(0, 0.05) or N(0, 0.1),
  saved with ``save_pretrained`` and imported: increasingly peaked attention, as in trained models.

For each: top-1 agreement with the softmax model, the relative logit error ||performer - softmax|| / ||softmax||,
and the relative error of each attention layer alone (fed the softmax model's own inputs to that layer, mean
over layers), so that FAVOR+'s error is told apart from the network's amplification of it; all averaged over
independent feature draws. The mean normalised entropy of the softmax model's attention rows (1 = uniform)
says how peaked the attention being estimated is.

    python benchmarks/performer_swap.py            # about 1 minute on 2 quiet cores
    python benchmarks/performer_swap.py --quick    # smoke run
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import format_table, setup, write_results  # noqa: E402

from fast_timesformer import FastTimeSformer, create_model  # noqa: E402
from fast_timesformer.attention import RegularAttention  # noqa: E402
from fast_timesformer.weights import from_pretrained, save_pretrained  # noqa: E402


# -- the three models ----------------------------------------------------------------------------------------
def random_init_model(seed: int) -> FastTimeSformer:
    torch.manual_seed(seed)
    return create_model("timesformer_small_8x224", image_size=64, num_classes=400).eval()


def imported_model(seed: int, std: float, folder: Path) -> FastTimeSformer:
    """A random Hugging Face Timesformer, imported through its save_pretrained folder."""
    import transformers

    config = transformers.TimesformerConfig(
        image_size=64, patch_size=16, num_frames=8, hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
        intermediate_size=768, num_labels=400,
    )  # fmt: skip
    torch.manual_seed(seed)
    hf = transformers.TimesformerForVideoClassification(config)
    with torch.no_grad():
        for parameter in hf.parameters():
            if parameter.ndim >= 2:
                parameter.normal_(0, std)
    hf.save_pretrained(folder)
    return from_pretrained(folder)


# -- measurements --------------------------------------------------------------------------------------------
def attention_entropy(model: FastTimeSformer, clips: torch.Tensor) -> float:
    """Mean entropy of the softmax attention rows over log(keys): 1 = uniform, 0 = one key only."""
    values = []

    def recording(module: RegularAttention):
        original = module.attend

        def attend(q, k, v, mask):
            weights = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
            entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1) / math.log(k.shape[-2])
            values.append(float(entropy.mean()))
            return original(q, k, v, mask)

        return attend

    modules = [m for m in model.modules() if isinstance(m, RegularAttention)]
    for module in modules:
        module.attend = recording(module)
    try:
        with torch.no_grad():
            model(clips)
    finally:
        for module in modules:
            del module.attend
    return statistics.fmean(values)


def attention_calls(model: FastTimeSformer, clips: torch.Tensor) -> dict[str, tuple]:
    """Each attention layer's input, keyword arguments and output in the softmax model's forward pass."""
    calls, hooks = {}, []

    def recorder(name: str):
        def hook(module, args, kwargs, output):
            calls[name] = (args[0], kwargs, output)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, RegularAttention):
            hooks.append(module.register_forward_hook(recorder(name), with_kwargs=True))
    try:
        with torch.no_grad():
            model(clips)
    finally:
        for hook in hooks:
            hook.remove()
    return calls


def compare(folder: Path, reference: torch.Tensor, calls: dict, clips: torch.Tensor, *, nb_features: int,
            draws: int, seed: int) -> dict[str, float]:  # fmt: skip
    """Performer versions of the saved model (``draws`` feature draws) against the softmax model."""
    errors, agreements, layer_errors = [], [], []
    for draw in range(draws):
        torch.manual_seed(seed * 1000 + draw)  # the fresh features come from the global generator
        performer = from_pretrained(
            folder, attention="performer", attention_kwargs={"nb_features": nb_features}
        )
        with torch.no_grad():
            logits = performer(clips)
            for name, (x, kwargs, out) in calls.items():
                estimate = performer.get_submodule(name)(x, **kwargs)
                layer_errors.append(float((estimate - out).norm() / out.norm()))
        errors.append(float((logits - reference).norm() / reference.norm()))
        agreements.append(float((logits.argmax(-1) == reference.argmax(-1)).float().mean()))
    return {
        "rel_logit_error": statistics.fmean(errors),
        "top1_agreement": statistics.fmean(agreements),
        "rel_attention_error": statistics.fmean(layer_errors),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer feature counts, draws and clips")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="performer_swap", help="results name (benchmarks/results/NAME.json)")
    args = parser.parse_args()
    setup(args.threads, args.seed)
    start = time.perf_counter()
    features = [16, 64, 256] if args.quick else [16, 32, 64, 128, 256, 512]
    draws, batch = (1, 4) if args.quick else (2, 8)

    rows, models = [], {}
    clips = torch.randn(batch, 8, 3, 64, 64, generator=torch.Generator().manual_seed(args.seed))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        save_pretrained(random_init_model(args.seed), tmp / "random-init")
        sources = {"random-init": from_pretrained(tmp / "random-init")}
        for std in (0.05, 0.1):
            sources[f"imported-{std:.2f}"] = imported_model(args.seed, std, tmp / f"imported-{std:.2f}")
        for name, model in sources.items():
            with torch.no_grad():
                reference = model(clips)
            calls = attention_calls(model, clips)
            models[name] = {"config": model.config, "attention_entropy": attention_entropy(model, clips)}
            for nb in features:
                row = {"model": name, "nb_features": nb}
                row.update(
                    compare(tmp / name, reference, calls, clips, nb_features=nb, draws=draws, seed=args.seed)
                )
                rows.append(row)
                print(f"{name:14s} nb_features={nb:4d}  logit error {row['rel_logit_error']:.4f}  top-1 agreement "
                      f"{row['top1_agreement']:.3f}  attention-layer error {row['rel_attention_error']:.4f}", flush=True)  # fmt: skip

    seconds = time.perf_counter() - start
    columns = [
        ("model", "model", ""), ("nb_features", "nb_features", "d"), ("top-1 agreement", "top1_agreement", ".3f"),
        ("relative logit error", "rel_logit_error", ".3f"), ("attention-layer error", "rel_attention_error", ".3f"),
    ]  # fmt: skip
    print()
    for name, info in models.items():
        print(f"{name}: attention entropy {info['attention_entropy']:.3f} (1 = uniform)")
    print(format_table(rows, columns))
    path = write_results(args.out, {
        "benchmark": "performer_swap", "dtype": "float32", "threads": args.threads, "seed": args.seed,
        "quick": args.quick, "feature_draws": draws, "clips": list(clips.shape), "seconds": seconds,
        "models": models, "rows": rows,
    })  # fmt: skip
    print(f"\n{seconds:.0f} s; wrote {path}")


if __name__ == "__main__":
    main()
