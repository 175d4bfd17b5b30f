"""``fast-timesformer export CHECKPOINT DIR``: a training checkpoint -> weights folder (parsing only)."""

from __future__ import annotations

from fast_timesformer.cli.parser import ArgumentParser, error


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer export",
        description="Write the model of a training checkpoint as a weights folder (model.safetensors + "
        "config.json with class names and preprocessing), for `classify` and `from_pretrained`.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .ckpt written by `fast-timesformer fit`")
    parser.add_argument("directory", metavar="DIR", help="output folder")
    args = parser.parse_args(argv)
    from fast_timesformer.weights import export_checkpoint

    try:
        export_checkpoint(args.checkpoint, args.directory)
    except (OSError, ValueError, RuntimeError) as problem:
        return error("export", f"{args.checkpoint}: {problem}")
    print(f"wrote {args.directory}/model.safetensors and config.json")
    return 0
