"""``fast-timesformer check-data ANNOTATIONS``: report the videos training would skip (parsing only)."""

from __future__ import annotations

from pathlib import Path

from fast_timesformer.cli.parser import ArgumentParser, add_reader_options, error, positive, reader_options


def run(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer check-data",
        description="Scan an annotation file (or a folder-per-class tree) and report every video training "
        "would skip (missing, unreadable, empty, over the limits, a checksum mismatch) with the reason; short "
        "videos, which training fills and uses, are a note. Exit status 1 when any video is bad.",
    )
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file or folder-per-class root")
    parser.add_argument("--root", help="folder that relative paths in the annotation file are relative to")
    parser.add_argument("--format", default="auto", help="annotation format (default: auto-detect)")
    parser.add_argument("--num-frames", type=positive(int), default=8, help="frames a clip needs (default 8)")
    parser.add_argument(
        "--sampling-rate", type=positive(int), default=1, help="frame stride of a clip (default 1)"
    )
    parser.add_argument(
        "--out-of-range", default="loop", choices=("loop", "repeat_last"),
        help="how training fills a clip longer than the video (default loop), for the note on short videos",
    )  # fmt: skip
    parser.add_argument(
        "--allow-outside-root", action="store_true", help="accept relative paths that leave --root (../..)"
    )
    parser.add_argument(
        "--no-checksums", action="store_true", help="skip the sha256 comparison of manifests that carry one"
    )
    parser.add_argument("--report", metavar="FILE", help="also write the report to FILE")
    add_reader_options(parser)
    args = parser.parse_args(argv)
    from tqdm import tqdm

    from fast_timesformer.data import check_data

    with tqdm(desc="checking videos", unit="video", disable=None) as bar:

        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        try:
            report = check_data(
                args.annotations, root=args.root, format=args.format, num_frames=args.num_frames,
                sampling_rate=args.sampling_rate, out_of_range=args.out_of_range,
                allow_outside_root=args.allow_outside_root, verify_checksums=not args.no_checksums,
                progress=progress, **reader_options(args),
            )  # fmt: skip
        except (OSError, ValueError) as problem:
            bar.close()
            return error("check-data", str(problem))
    text = report.format()
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    return 0 if report.ok else 1
