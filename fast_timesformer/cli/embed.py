"""``fast-timesformer embed VIDEOS|LIST --weights DIR --output FILE``: features per video (argument parsing only).

A single argument that is an annotation file (``.txt``, ``.csv``, ``.json``, ``.lst``) or a folder is read
with :func:`~fast_timesformer.data.read_annotations` (labels go into the index); anything else is a list of
video files. Unreadable files are reported and skipped; the exit status is 1 only when none could be
embedded (or an option is wrong), so a large batch with a few broken files still writes its features.
"""

from __future__ import annotations

import os

from fast_timesformer.cli.parser import (
    ArgumentParser,
    add_reader_options,
    error,
    naming,
    positive,
    reader_options,
)

#: Extensions of a single argument read as an annotation file rather than as a video.
ANNOTATION_EXTENSIONS = (".txt", ".csv", ".json", ".lst")


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer embed",
        description="Pooled features (the classifier's input: the final-normed CLS token, averaged over the "
        "stored preprocessing's views) for video files, written as .safetensors or .npy plus an index CSV.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="VIDEO|LIST",
        help="video files, or one annotation file / class-per-folder directory (as check-data reads)",
    )  # fmt: skip
    parser.add_argument(
        "--weights", required=True, metavar="DIR", help="weights folder (from export/convert)"
    )
    parser.add_argument(
        "--output", required=True, metavar="FILE",
        help="features file: FILE.safetensors or FILE.npy; the index goes to FILE.csv",
    )  # fmt: skip
    parser.add_argument("--index", metavar="CSV", help="index file (default: the output with .csv)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument(
        "--windows", action="store_true",
        help="also one feature per timeline window of each file (FILE.windows.csv says which)",
    )  # fmt: skip
    parser.add_argument(
        "--stride", type=positive(float), metavar="SECONDS", help="with --windows: seconds between windows "
        "(default: half a window)",
    )  # fmt: skip
    parser.add_argument(
        "--window-views", type=int, choices=(1, 3), help="with --windows: crops per window (default: stored)"
    )
    parser.add_argument("--root", metavar="DIR", help="for a LIST: folder its relative paths start from")
    parser.add_argument("--format", default="auto", help="for a LIST: annotation format (default auto)")
    parser.add_argument(
        "--batch-size", type=positive(int), default=8, help="views per forward pass (default 8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_reader_options(parser)
    args = parser.parse_args(argv)
    if (args.stride is not None or args.window_views is not None) and not args.windows:
        parser.error("--stride and --window-views apply to --windows; add --windows")

    from fast_timesformer.inference.devices import resolve_device
    from fast_timesformer.inference.embed import embed_videos, output_files

    device = resolve_device(args.device)  # before anything is read: a missing GPU is named as such
    output_files(args.output, index=args.index, windows=args.windows, overwrite=args.overwrite)
    videos = args.inputs
    if len(args.inputs) == 1 and _is_annotation(args.inputs[0]):
        from fast_timesformer.data import read_annotations

        videos = read_annotations(args.inputs[0], format=args.format, root=args.root)
    elif args.root is not None or args.format != "auto":
        parser.error("--root and --format apply to one annotation file (LIST), not to video files")
    from fast_timesformer.inference.predictor import Predictor

    try:
        predictor = Predictor.from_pretrained(
            args.weights, device=device, batch_size=args.batch_size, **reader_options(args)
        )
    except (OSError, ValueError) as problem:  # CheckpointError is a ValueError
        return error("embed", "cannot load weights " + naming(args.weights, problem))
    result = embed_videos(
        videos, predictor, windows=args.windows, stride=args.stride, window_views=args.window_views,
        progress=None if not args.quiet else False, output=args.output, index=args.index,
        overwrite=args.overwrite,
    )  # fmt: skip
    for problem in result.errors:
        error("embed", f"skipped {problem['video']}: {problem['error']}")
    total = len(result) + len(result.errors)
    print(
        f"embedded {len(result)} of {total} file{'s' if total != 1 else ''} ({result.protocol}): features "
        f"({len(result)}, {result.dim}) -> {args.output}"
        + (f"; {sum(result.num_windows())} windows" if args.windows else "")
        + (f"; {len(result.errors)} skipped (listed above)" if result.errors else "")
    )
    return 0


def _is_annotation(path: str) -> bool:
    """Whether a lone argument is an annotation file or folder rather than a video."""
    return os.path.isdir(path) or os.path.splitext(path)[1].lower() in ANNOTATION_EXTENSIONS
