"""``fast-timesformer explain VIDEO --weights DIR --output DIR``: where the model looks (argument parsing only)."""

from __future__ import annotations

from fast_timesformer.cli.parser import (
    ArgumentParser,
    add_reader_options,
    error,
    naming,
    positive,
    reader_options,
)

# inference.explain.METHODS, spelled out so that --help needs no torch import (a test keeps them equal)
METHOD_NAMES = ("rollout", "cls", "temporal", "pooling", "gradcam")


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer explain",
        description="Attention maps of one video (its middle clip, centre crop, made with the preprocessing "
        "stored with the weights): writes attention.png (frames in a row, one overlay row per method), "
        "attention.mp4 (the clip beside its overlay) and attention.json (the maps).",
    )
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument(
        "--weights", required=True, metavar="DIR", help="weights folder (from export/convert)"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder to write into (created)")
    parser.add_argument(
        "--method",
        dest="methods",
        action="append",
        choices=METHOD_NAMES,
        help="rollout (regular/performer: attention rollout), cls (last-layer CLS attention), temporal "
        "(divided models: frames each patch attends to), pooling (fastformer's pooling weights), gradcam "
        "(any model). Repeat for several rows; the first is the video's. Default: rollout (pooling for "
        "fastformer) and gradcam",
    )
    parser.add_argument(
        "--target", default=None, help="class (name or index) gradcam explains (default: the predicted one)"
    )
    parser.add_argument(
        "--fps", type=positive(float), default=4.0, help="frame rate of attention.mp4 (default 4)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    add_reader_options(parser)
    args = parser.parse_args(argv)
    from fast_timesformer.inference import Predictor
    from fast_timesformer.inference.devices import resolve_device
    from fast_timesformer.inference.overlay import explain_video

    device = resolve_device(args.device)  # before the weights are read: a missing GPU is named as such
    try:
        predictor = Predictor.from_pretrained(args.weights, device=device, **reader_options(args))
    except (OSError, ValueError) as problem:  # CheckpointError is a ValueError
        return error("explain", "cannot load weights " + naming(args.weights, problem))
    # ExplainError (a method this model cannot give) and VideoDecodeError (missing file, not a video, over
    # the limits) are FastTimeSformerErrors: the command prints them as one line (cli/__init__.py).
    result = explain_video(
        args.video, output=args.output, predictor=predictor, methods=args.methods, target=args.target,
        fps=args.fps,
    )  # fmt: skip
    print(f"{result.video}  ({predictor.protocol}; middle clip, centre crop)")
    print(f"  predicted {result.label} ({100 * result.probability:.1f}%)")
    for method in result.methods:
        mass = "  ".join(f"{100 * share:.0f}" for share in result.frame_mass(method))
        print(f"  {method:<8} % of the map per frame: {mass}")
    print(f"  wrote {result.files['png']}, {result.files['mp4']}, {result.files['json']}")
    return 0
