"""``fast-timesformer classify VIDEO... --weights DIR``: top-k labels per file (argument parsing only)."""

from __future__ import annotations

import json

from fast_timesformer.cli.parser import ArgumentParser, add_reader_options, error, naming, reader_options


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer classify",
        description="Top-k labels with probabilities for video files, using the preprocessing and multi-view "
        "protocol stored with the weights.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument(
        "--weights", required=True, metavar="DIR",
        help="weights folder (from export/convert), or a .onnx file from `export --format onnx` (onnxruntime)",
    )  # fmt: skip
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per video (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--batch-size", type=int, default=8, help="views per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (pays off on many files / a GPU)",
    )
    add_reader_options(parser)
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    from fast_timesformer.inference import Predictor
    from fast_timesformer.inference.devices import resolve_device

    device = resolve_device(args.device)  # before the weights are read: a missing GPU is named as such
    options = dict(device=device, batch_size=args.batch_size, **reader_options(args))
    try:
        if str(args.weights).endswith(".onnx"):
            if args.compile:
                parser.error("--compile applies to PyTorch weights, not to an .onnx file")
            from fast_timesformer.inference.onnx_predictor import OnnxPredictor

            predictor = OnnxPredictor.from_pretrained(args.weights, **options)
        else:
            predictor = Predictor.from_pretrained(args.weights, compile=args.compile, **options)
    except (OSError, ValueError) as problem:  # CheckpointError is a ValueError
        return error("classify", "cannot load weights " + naming(args.weights, problem))
    results, errors = predictor.classify(args.videos, top_k=args.top_k)
    protocol = predictor.protocol
    if args.json:
        # allow_nan=False: bare NaN is not JSON (the predictor refuses non-finite scores before this)
        print(
            json.dumps(
                {"protocol": protocol, "results": results, "errors": errors}, indent=2, allow_nan=False
            )
        )
    else:
        for result in results:
            print(f"{result['video']}  ({protocol})")
            for prediction in result["predictions"]:
                above = (
                    f"  (threshold {100 * prediction['threshold']:.0f}%)" if "threshold" in prediction else ""
                )
                print(f"  {100 * prediction['probability']:5.1f}%  {prediction['label']}{above}")
            if not result["predictions"] and predictor.multilabel:
                print("  no class at or above its threshold")
    for problem in errors:
        error("classify", f"{problem['video']}: {problem['error']}")
    return 1 if errors else 0
