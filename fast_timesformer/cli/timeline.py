"""``fast-timesformer timeline VIDEO --weights DIR --output DIR``: a long video, window by window (parsing only)."""

from __future__ import annotations

from fast_timesformer.cli.parser import (
    ArgumentParser,
    add_reader_options,
    error,
    naming,
    positive,
    reader_options,
)


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer timeline",
        description="Slide the model's clip window over a whole video (decoded forward once, in constant "
        "memory), score every window with the preprocessing stored with the weights, merge the windows into "
        "labelled segments, and write timeline.csv, timeline.json, segments.csv and timeline.png.",
    )
    parser.add_argument("video", metavar="VIDEO", help="the video file")
    parser.add_argument(
        "--weights", required=True, metavar="DIR", help="weights folder (from export/convert)"
    )
    parser.add_argument("--output", required=True, metavar="DIR", help="folder for the four files (created)")
    parser.add_argument(
        "--stride",
        type=positive(float),
        default=None,
        metavar="SECONDS",
        help="seconds between windows (default: half a window)",
    )
    parser.add_argument(
        "--window-seconds", type=positive(float), default=None, metavar="SECONDS",
        help="window length for segment-sampled models (default 4; dense models use their clip span)",
    )  # fmt: skip
    parser.add_argument(
        "--window-views", type=int, choices=(1, 3), default=None,
        help="spatial crops per window: 1 (centre, 3x faster) or 3 (default: as stored with the weights)",
    )  # fmt: skip
    parser.add_argument(
        "--smoothing", type=positive(int), default=3, help="windows in the moving average (odd; 1 = off)"
    )
    parser.add_argument(
        "--top-k", type=positive(int), default=5, help="labels per window in the files (default 5)"
    )
    parser.add_argument(
        "--batch-size", type=positive(int), default=8, help="views per forward pass (default 8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument("--no-plot", action="store_true", help="skip timeline.png (no matplotlib needed)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_reader_options(parser)
    args = parser.parse_args(argv)
    if args.smoothing % 2 == 0:
        parser.error(f"--smoothing must be an odd number of windows (1 = off), got {args.smoothing}")
    from fast_timesformer.inference import Predictor, timeline
    from fast_timesformer.inference.devices import resolve_device

    device = resolve_device(args.device)  # before the weights are read: a missing GPU is named as such
    try:
        predictor = Predictor.from_pretrained(
            args.weights, device=device, batch_size=args.batch_size, **reader_options(args)
        )
    except (OSError, ValueError) as problem:  # CheckpointError is a ValueError
        return error("timeline", "cannot load weights " + naming(args.weights, problem))
    # Unreadable files, the reader's limits and bad window options are FastTimeSformerErrors: printed as one
    # line by cli/__init__.py.
    result = timeline(
        predictor, args.video, stride=args.stride, window_seconds=args.window_seconds,
        window_views=args.window_views, smoothing=args.smoothing, batch_size=args.batch_size,
        progress=None if not args.quiet else False,
    )  # fmt: skip
    files = result.write(args.output, top_k=args.top_k, plot=not args.no_plot)
    print(
        f"{result.video}: {result.duration_s:.1f} s, {len(result.windows)} windows ({result.protocol}), "
        f"{result.windows_per_second:.1f} windows/s"
    )
    for number, segment in enumerate(result.segments):
        print(
            f"  {number:3d}  {segment.start_s:8.2f} - {segment.end_s:8.2f} s  {100 * segment.probability:5.1f}%  "
            f"{segment.label}"
        )
    for problem in result.problems:
        print(f"  skipped: {problem.describe()}")
    if result.skipped_windows:
        print(f"  {result.skipped_windows} window(s) after the end of the stream were not scored")
    print("wrote " + ", ".join(str(path) for path in files.values()))
    return 0
