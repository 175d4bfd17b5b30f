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


def error(command: str, message: str) -> int:
    """Print ``fast-timesformer COMMAND: error: MESSAGE`` to stderr; returns the exit status 1."""
    print(f"fast-timesformer {command}: error: {message}", file=sys.stderr)
    return 1


__all__ = ["ArgumentParser", "error"]
