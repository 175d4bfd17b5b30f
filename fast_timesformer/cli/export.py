"""``fast-timesformer export SOURCE OUT [--format weights|onnx|torch-export]`` (argument parsing only)."""

from __future__ import annotations

from fast_timesformer.cli.parser import ArgumentParser, error, naming, positive


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer export",
        description="Write a model for use elsewhere: a training checkpoint as a weights folder "
        "(model.safetensors + config.json with class names and preprocessing, the default), or a weights "
        "folder / checkpoint as an ONNX file (onnxruntime) or a torch.export program (.pt2). ONNX and .pt2 "
        "take normalised float32 video with a dynamic batch; frames and frame size are fixed at export. Every "
        "export is checked against eager PyTorch before it is written.",
    )
    parser.add_argument(
        "source", metavar="SOURCE", help="a .ckpt written by `fast-timesformer fit`, or (onnx / torch-export) "
        "a weights folder",
    )  # fmt: skip
    parser.add_argument("output", metavar="OUT", help="output folder (weights) or file (.onnx / .pt2)")
    parser.add_argument(
        "--format", choices=("weights", "onnx", "torch-export"), default="weights",
        help="weights folder (default), ONNX file, or torch.export .pt2",
    )  # fmt: skip
    parser.add_argument(
        "--exporter", choices=("dynamo", "torchscript"), default="dynamo",
        help="ONNX exporter: dynamo (torch.export based, default) or torchscript (older, faster to run)",
    )  # fmt: skip
    parser.add_argument(
        "--tolerance", type=positive(float), default=1e-4,
        help="largest accepted |logit difference| to eager PyTorch (default 1e-4)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    from fast_timesformer.inference.deploy import export_model

    try:
        result = export_model(
            args.source, args.output, format=args.format, exporter=args.exporter, tolerance=args.tolerance
        )
    except (
        OSError,
        ValueError,
        RuntimeError,
    ) as problem:  # CheckpointError: ValueError; ExportError: RuntimeError
        return error("export", naming(args.source, problem))
    print(result.summary())
    return 0
