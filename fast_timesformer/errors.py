"""The one base class of user-facing errors.

An error derived from :class:`FastTimeSformerError` is an expected outcome whose message is the whole story:
it names the thing that is wrong (a file, an option, a tensor) and what to do about it. The
``fast-timesformer`` command prints such an error as one line and exits with status 1; any other exception
is a bug and keeps its traceback.

Each subclass also derives from the built-in exception it has always been (``ValueError`` for bad files and
annotations, ``RuntimeError`` for decoding and training failures), so ``except ValueError`` keeps working.
This module imports nothing: every layer of the package may use it.
"""

from __future__ import annotations


class FastTimeSformerError(Exception):
    """Base of every error whose message names what is wrong and how to fix it."""


class OptionError(FastTimeSformerError, ValueError):
    """An option or argument whose value cannot work (a device this machine lacks, a batch size of 0 ...).

    Raised before any work starts; the message names the option, the value and what to pass instead.
    """


__all__ = ["FastTimeSformerError", "OptionError"]
