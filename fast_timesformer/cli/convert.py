"""``fast-timesformer convert SOURCE DIR``: official / Hugging Face / ViT -> weights folder (parsing only)."""

from __future__ import annotations

from fast_timesformer.cli.parser import ArgumentParser, error


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer convert",
        description="Convert an official .pyth, a Hugging Face TimeSformer/ViT folder or hub id, or an ImageNet "
        "ViT checkpoint into a weights folder (model.safetensors + config.json).",
    )
    parser.add_argument("source", metavar="SOURCE", help="checkpoint file, folder or hub id")
    parser.add_argument("directory", metavar="DIR", help="output folder")
    parser.add_argument("--num-classes", type=int, help="replace the head with this many classes")
    parser.add_argument("--num-frames", type=int, help="frames per clip (interpolates time_embed)")
    parser.add_argument("--image-size", type=int, help="crop side (interpolates pos_embed)")
    parser.add_argument("--attention", choices=("regular", "performer", "fastformer"), help="swap attention")
    parser.add_argument("--source-format", choices=("official", "vit"), help="how to read a bare file")
    parser.add_argument(
        "--to", choices=("fast-timesformer", "transformers"), default="fast-timesformer",
        help="output: our weights folder, or a transformers TimesformerForVideoClassification folder",
    )  # fmt: skip
    parser.add_argument(
        "--verify", action="store_true", help="with --to transformers: compare transformers' logits with ours"
    )
    args = parser.parse_args(argv)
    if args.verify and args.to != "transformers":
        parser.error("--verify checks a transformers export: add --to transformers")
    from fast_timesformer.weights import convert

    options = {
        key: value
        for key, value in dict(
            num_classes=args.num_classes, num_frames=args.num_frames, image_size=args.image_size,
            attention=args.attention, source_format=args.source_format,
        ).items()
        if value is not None
    }  # fmt: skip
    if args.to == "transformers":
        return _to_transformers(args, options)
    try:
        convert(args.source, args.directory, **options)
    except (OSError, ValueError, RuntimeError) as problem:
        return error("convert", str(problem))
    print(f"wrote {args.directory}/model.safetensors and config.json")
    return 0


def _to_transformers(args, options: dict) -> int:
    from fast_timesformer.checkpoints.files import CheckpointError
    from fast_timesformer.checkpoints.to_transformers import check_transformers_logits, to_transformers
    from fast_timesformer.weights import from_pretrained

    model = None
    try:
        model = from_pretrained(args.source, **options)
        folder = to_transformers(model, args.directory)
        gap = check_transformers_logits(model, folder) if args.verify else None
    except CheckpointError as problem:
        if model is not None and problem.file == type(model).__name__:  # name the source, not the class
            problem = CheckpointError(args.source, problem.problem, problem.fix)
        return error("convert", str(problem))
    except (OSError, ValueError, RuntimeError, ImportError) as problem:
        return error("convert", str(problem))
    print(f"wrote {folder}/ (a transformers TimesformerForVideoClassification folder)")
    if gap is not None:
        print(f"verified: transformers' logits equal ours (max |difference| {gap:.1e} on a random clip)")
    return 0
