"""``fast-timesformer app --weights DIR [--weights DIR2]``: the local web page (argument parsing only)."""

from __future__ import annotations

import signal

from fast_timesformer.cli.parser import ArgumentParser, add_reader_options, error, positive, reader_options


def port_number(text: str) -> int:
    """An argparse ``type`` for a TCP port (1-65535)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a TCP port is 1-65535, got {value}")
    return value


def run(argv: list[str]) -> int:
    from fast_timesformer.app.page import (
        DEFAULT_CONCURRENCY,
        DEFAULT_MAX_UPLOAD_MB,
        DEFAULT_MAX_UPLOAD_SECONDS,
        DEFAULT_QUEUE_SIZE,
    )

    parser = ArgumentParser(
        prog="fast-timesformer app",
        description="A local web page (Gradio, extra [app]): upload or pick a video, see each model's top-k "
        "labels, timeline and attention overlay, with the protocol and the time of each step.",
    )
    parser.add_argument(
        "--weights", required=True, action="append", metavar="DIR",
        help="weights folder (from export/convert/demo); repeat to compare models side by side",
    )  # fmt: skip
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    parser.add_argument("--port", type=port_number, default=7860, help="TCP port, 1-65535 (default 7860)")
    parser.add_argument("--top-k", type=positive(int), default=5, help="labels shown per model (default 5)")
    parser.add_argument(
        "--batch-size", type=positive(int), default=8, help="views per forward pass (default 8)"
    )
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    parser.add_argument(
        "--max-upload-mb", type=positive(float), default=DEFAULT_MAX_UPLOAD_MB, metavar="MB",
        help=f"refuse larger uploads (default {DEFAULT_MAX_UPLOAD_MB:g})",
    )  # fmt: skip
    parser.add_argument(
        "--max-upload-seconds", type=positive(float), default=DEFAULT_MAX_UPLOAD_SECONDS, metavar="SECONDS",
        help=f"refuse videos declaring a longer duration, before decoding (default {DEFAULT_MAX_UPLOAD_SECONDS:g})",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=positive(int), default=DEFAULT_CONCURRENCY, metavar="N",
        help=f"requests analysed at once; others wait in the queue (default {DEFAULT_CONCURRENCY})",
    )  # fmt: skip
    parser.add_argument(
        "--queue-size", type=positive(int), default=DEFAULT_QUEUE_SIZE, metavar="N",
        help=f"requests waiting at most (default {DEFAULT_QUEUE_SIZE})",
    )  # fmt: skip
    parser.add_argument("--no-timeline", action="store_true", help="skip the timeline view")
    parser.add_argument("--no-attention", action="store_true", help="skip the attention overlay view")
    add_reader_options(parser)
    args = parser.parse_args(argv)
    from fast_timesformer.app.page import serve
    from fast_timesformer.inference.devices import resolve_device

    device = resolve_device(args.device)  # before the weights are read: a missing GPU is named as such

    def stop(signum, frame):  # SIGTERM: stop like Ctrl+C, so the temporary folder is removed
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        serve(
            args.weights, host=args.host, port=args.port, concurrency=args.concurrency,
            queue_size=args.queue_size, device=str(device), batch_size=args.batch_size, top_k=args.top_k,
            max_upload_mb=args.max_upload_mb, max_upload_seconds=args.max_upload_seconds,
            timeline=not args.no_timeline, explain=not args.no_attention, **reader_options(args),
        )  # fmt: skip
    except OSError as problem:  # a weights folder that cannot be read, a port in use
        if "Cannot find empty port" in str(problem):  # Gradio's words name its own settings, not ours
            return error("app", f"port {args.port} on {args.host} is in use; pick another with --port")
        return error("app", str(problem).splitlines()[0] if str(problem) else repr(problem))
    except ValueError as problem:  # CheckpointError is a ValueError; OptionError passes to the CLI handler
        from fast_timesformer.errors import OptionError

        if isinstance(problem, OptionError):
            raise
        return error("app", f"cannot load weights: {problem}")
    except OverflowError as problem:  # a host or port the socket layer refuses
        return error("app", f"cannot listen on {args.host}:{args.port} ({problem})")
    return 0
