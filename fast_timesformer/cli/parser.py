"""The argument parser every plain command uses: argparse that suggests the closest option."""

from __future__ import annotations

import argparse
import difflib
import sys
from typing import Any


class ArgumentParser(argparse.ArgumentParser):
    """argparse that suggests the closest option when given an unknown one (and takes no abbreviations)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        if "unrecognized arguments" in message:
            options = [opt for action in self._actions for opt in action.option_strings]
            hints = []
            for word in message.split(":", 1)[1].split():
                close = difflib.get_close_matches(word.split("=")[0], options, n=1)
                if close:
                    hints.append(f"{word} (did you mean {close[0]}?)")
            if hints:
                message += "; " + ", ".join(hints)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive(kind: type) -> Any:
    """An argparse ``type`` accepting only positive values of ``kind`` (int or float)."""

    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value

    return parse


def add_reader_options(parser: argparse.ArgumentParser) -> None:
    """The video reader's limits and ``--allow-images``, for every command that decodes user files."""
    from fast_timesformer.data.backends.common import (
        DEFAULT_MAX_DURATION,
        DEFAULT_MAX_FRAMES,
        DEFAULT_MAX_PIXELS,
    )

    group = parser.add_argument_group("video limits (checked before decoding)")
    group.add_argument(
        "--max-pixels", type=positive(int), default=DEFAULT_MAX_PIXELS, metavar="N",
        help=f"refuse frames with more pixels (default {DEFAULT_MAX_PIXELS}: 4096x2160)",
    )  # fmt: skip
    group.add_argument(
        "--max-frames", type=positive(int), default=DEFAULT_MAX_FRAMES, metavar="N",
        help=f"refuse videos declaring more frames (default {DEFAULT_MAX_FRAMES})",
    )  # fmt: skip
    group.add_argument(
        "--max-duration", type=positive(float), default=DEFAULT_MAX_DURATION, metavar="SECONDS",
        help=f"refuse videos declaring a longer duration (default {DEFAULT_MAX_DURATION:.0f})",
    )  # fmt: skip
    group.add_argument(
        "--allow-images",
        action="store_true",
        help="accept still images as one-frame videos (default: refuse)",
    )


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of :class:`~fast_timesformer.inference.Predictor` / ``VideoReader`` from parsed options."""
    return {
        "max_pixels": args.max_pixels, "max_frames": args.max_frames, "max_duration": args.max_duration,
        "allow_images": args.allow_images,
    }  # fmt: skip


def error(command: str, message: str) -> int:
    """Print ``fast-timesformer COMMAND: error: MESSAGE`` to stderr as one line; returns the exit status 1."""
    line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    print(f"fast-timesformer {command}: error: {line}", file=sys.stderr)
    return 1


def naming(subject: object, problem: object) -> str:
    """``SUBJECT: PROBLEM``, naming the subject once: a CheckpointError or VideoDecodeError already starts with
    its file's path (``DIR/model.safetensors: ...`` for a weights folder ``DIR``)."""
    message = str(problem)
    return message if message.startswith(str(subject)) else f"{subject}: {message}"


__all__ = ["ArgumentParser", "add_reader_options", "error", "naming", "positive", "reader_options"]
