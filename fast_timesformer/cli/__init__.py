"""The ``fast-timesformer`` command (also ``python -m fast_timesformer``): one small file per command.

Each file parses its arguments and calls the library; none holds library logic. The training subcommands
are LightningCLI (``train.py``)::

    fast-timesformer fit --config configs/demo.yaml --trainer.max_epochs 5 --model.lr 3e-3
    fast-timesformer fit --config configs/demo.yaml --ckpt_path last          # resume exactly
    fast-timesformer test --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/best.ckpt
    fast-timesformer fit --config configs/demo.yaml --print_config            # the resolved config

A run writes into ``--trainer.default_root_dir``: ``config.yaml`` (the resolved configuration),
``metrics.csv`` and ``checkpoints/{last,best}.ckpt`` (written atomically); ``validate``, ``test`` and
``predict`` write their own ``config.yaml``, ``metrics.csv`` and per-video ``predictions.csv`` into a
subfolder of that name. The other subcommands are plain commands::

    fast-timesformer classify VIDEO... --weights DIR|MODEL.onnx [--top-k 5] [--json] [--compile]
    fast-timesformer explain VIDEO --weights DIR --output DIR [--method rollout] ...
    fast-timesformer timeline VIDEO --weights DIR --output DIR [--stride SECONDS] [--window-views 1|3]
    fast-timesformer embed VIDEO...|LIST --weights DIR --output FILE.safetensors|.npy [--windows]
    fast-timesformer demo [--output DIR]
    fast-timesformer export SOURCE OUT [--format weights|onnx|torch-export]
    fast-timesformer convert SOURCE DIR [--num-classes N] [--to transformers] ...
    fast-timesformer push WEIGHTS USER/NAME [--run DIR] [--license ID] [--dry-run DIR]
    fast-timesformer check-data ANNOTATIONS [--root DIR]

A :class:`~fast_timesformer.errors.FastTimeSformerError` from any command (bad data, a bad checkpoint, a
diverged run) is printed as one line with exit status 1; anything else is a bug and keeps its traceback.
To add a command: a file here with ``run(argv) -> int``, a line in ``PLAIN_MODULES`` and one in ``USAGE``.
"""

from __future__ import annotations

import difflib
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from fast_timesformer.cli.train import COMMANDS as TRAINER_COMMANDS
from fast_timesformer.errors import FastTimeSformerError

USAGE = """\
usage: fast-timesformer COMMAND [options]

Train, evaluate and use FastTimeSformer video classifiers.

training (LightningCLI; `fast-timesformer fit --help` lists every option):
  fit          train a model (--config FILE.yaml, dotted overrides, --ckpt_path last to resume)
  validate     evaluate on the validation split
  test         multi-view, video-level evaluation on the test split
  predict      write per-video predictions for a list of videos

using a model:
  classify     top-k labels for video files:   classify VIDEO... --weights DIR
  explain      attention maps of a video:   explain VIDEO --weights DIR --output DIR
  timeline     windows and segments of a long video:   timeline VIDEO --weights DIR --output DIR
  embed        features for search and reuse:   embed VIDEO...|LIST --weights DIR --output FILE
  export       checkpoint -> weights folder, or -> ONNX / torch.export:   export SOURCE OUT [--format onnx]
  convert      official / Hugging Face / ViT checkpoint -> weights folder:   convert SOURCE DIR
  check-data   scan an annotation file for unreadable or too-short videos
  push         upload a weights folder + model card to the Hub:   push WEIGHTS USER/NAME --run DIR
  app          local web page: top-k, timeline, attention:   app --weights DIR [--weights DIR2]

  demo         train and evaluate on the built-in motion dataset (offline, a few minutes on a CPU)

Run `fast-timesformer COMMAND --help` for a command's options.
"""


#: Plain command -> its module in ``fast_timesformer.cli``; imported only when that command runs (each pulls
#: in its own extras: ``classify`` needs no training dependency, ``demo`` does).
PLAIN_MODULES = {
    "classify": "classify",
    "explain": "explain",
    "timeline": "timeline",
    "embed": "embed",
    "demo": "demo",
    "export": "export",
    "convert": "convert",
    "check-data": "check_data",
    "push": "push",
    "app": "app",
}
PLAIN_COMMANDS = tuple(PLAIN_MODULES)


def _plain(command: str) -> Callable[[list[str]], int]:
    """The ``run`` function of a plain command."""
    return importlib.import_module(f"fast_timesformer.cli.{PLAIN_MODULES[command]}").run


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fast-timesformer``; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0 if args else 2
    if args[0] in ("-V", "--version"):
        from fast_timesformer import __version__

        print(f"fast-timesformer {__version__}")
        return 0
    command = args[0]
    from fast_timesformer.inference.runtime import tune_allocator

    tune_allocator()  # keep freed activation memory in the process: fewer page faults on CPU
    if command not in PLAIN_COMMANDS and command not in TRAINER_COMMANDS and not command.startswith("-"):
        close = difflib.get_close_matches(command, [*TRAINER_COMMANDS, *PLAIN_COMMANDS], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(
            f"fast-timesformer: error: unknown command {command!r}{hint}\n\n{USAGE}", file=sys.stderr, end=""
        )
        return 2
    try:
        if command in PLAIN_COMMANDS:
            logging.basicConfig(level=logging.WARNING, format="%(message)s")
            return _plain(command)(args[1:])
        from fast_timesformer.cli import train

        # From a console script, LightningCLI reads sys.argv itself (and warns when given both).
        return train.run(None if argv is None else args)
    except SystemExit as exit_:  # argparse / jsonargparse: --help (0) or a usage error (2)
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("fast-timesformer: interrupted", file=sys.stderr)
        return 130
    except FastTimeSformerError as error:  # an expected outcome (bad data, NaN loss ...): one line
        print(f"fast-timesformer {command}: error: {error}", file=sys.stderr)
        return 1


__all__ = ["USAGE", "main"]
