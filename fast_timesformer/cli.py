"""The ``fast-timesformer`` command (also ``python -m fast_timesformer``).

Training subcommands are LightningCLI, built from the typed constructors of
:class:`~fast_timesformer.training.VideoClassifier` (``--model.*``),
:class:`~fast_timesformer.training.VideoDataModule` (``--data.*``), the Trainer (``--trainer.*``) and the
checkpoint callback (``--checkpoint.*``)::

    fast-timesformer fit --config configs/demo.yaml --trainer.max_epochs 5 --model.lr 3e-3
    fast-timesformer fit --config configs/demo.yaml --ckpt_path last          # resume exactly
    fast-timesformer test --config configs/demo.yaml --ckpt_path runs/demo/checkpoints/best.ckpt
    fast-timesformer fit --config configs/demo.yaml --print_config            # the resolved config

A run writes into ``--trainer.default_root_dir``: ``config.yaml`` (the resolved configuration),
``metrics.csv`` and ``checkpoints/{last,best}.ckpt`` (written atomically); ``validate``, ``test`` and
``predict`` write their own ``config.yaml``, ``metrics.csv`` and per-video ``predictions.csv`` into a
subfolder of that name. The other subcommands are plain commands::

    fast-timesformer classify VIDEO... --weights DIR [--top-k 5] [--json]
    fast-timesformer demo [--output DIR]
    fast-timesformer export CHECKPOINT DIR
    fast-timesformer convert SOURCE DIR [--num-classes N] ...
    fast-timesformer check-data ANNOTATIONS [--root DIR]
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
PLAIN_COMMANDS = ("classify", "demo", "export", "convert", "check-data")

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
  export       Lightning checkpoint -> weights folder:   export CHECKPOINT DIR
  convert      official / Hugging Face / ViT checkpoint -> weights folder:   convert SOURCE DIR
  check-data   scan an annotation file for unreadable or too-short videos

  demo         train and evaluate on the built-in motion dataset (offline, a few minutes on a CPU)

Run `fast-timesformer COMMAND --help` for a command's options.
"""


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


# -- LightningCLI ----------------------------------------------------------------------------------------


def _lightning_cli(args: list[str] | None) -> int:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
    from lightning.pytorch.plugins.io import CheckpointIO

    from fast_timesformer.callbacks import AtomicCheckpointIO, RunCheckpoint, RunCSVLogger
    from fast_timesformer.training import VideoClassifier, VideoDataModule

    class RunConfig(SaveConfigCallback):
        """Saves the resolved config.yaml into the run folder (fit) or its <stage>/ subfolder."""

        def setup(self, trainer, pl_module, stage) -> None:
            # A fresh fit must not overwrite another run's config; a resumed fit and evaluations may.
            resuming = bool(self.config.get("ckpt_path"))
            self.overwrite = getattr(stage, "value", stage) != "fit" or resuming
            super().setup(trainer, pl_module, stage)

    class VideoCLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
            parser.link_arguments("data.num_frames", "model.num_frames")
            parser.link_arguments("data.crop_size", "model.image_size")
            parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/top1",
                    "checkpoint.mode": "max",
                    "checkpoint.filename": "best",  # one best.ckpt, replaced when a better epoch comes
                    "checkpoint.save_last": True,
                    "checkpoint.save_top_k": 1,
                    "checkpoint.auto_insert_metric_name": False,
                    "checkpoint.enable_version_counter": False,  # always last.ckpt / best.ckpt, even in a moved run
                }
            )

        def instantiate_trainer(self, **kwargs: Any):
            # One folder per run, no version_N, so that `--ckpt_path last` finds it again:
            #   ROOT/config.yaml, metrics.csv, checkpoints/{last,best}.ckpt        (fit)
            #   ROOT/<validate|test|predict>/config.yaml, metrics.csv, predictions.csv
            config = self._get(self.config_init, "trainer", default={})
            root = config.get("default_root_dir") or os.getcwd()
            if config.get("logger") in (None, True):
                version = "" if self.subcommand == "fit" else self.subcommand
                kwargs["logger"] = RunCSVLogger(save_dir=root, name="", version=version)
            for callback in (
                self._get(self.config_init, "checkpoint", default=None),
                *(config.get("callbacks") or []),
            ):
                if isinstance(callback, ModelCheckpoint) and callback.dirpath is None:
                    callback.dirpath = os.path.join(root, "checkpoints")
            plugins = config.get("plugins") or []
            plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
            if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
                kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
            return super().instantiate_trainer(**kwargs)

    VideoCLI(
        VideoClassifier,
        VideoDataModule,
        args=args,
        save_config_callback=RunConfig,
        trainer_defaults={"default_root_dir": "runs"},
        auto_configure_optimizers=False,  # VideoClassifier builds its own (parameter groups, schedules)
        parser_kwargs={"prog": "fast-timesformer"},
    )
    return 0


# -- classify ----------------------------------------------------------------------------------------------


def classify_videos(
    videos: Sequence[str],
    weights: str,
    *,
    top_k: int = 5,
    batch_size: int = 8,
    device: str = "cpu",
) -> tuple[list[dict[str, Any]], list[dict[str, str]], str]:
    """Classify video files with a weights folder; returns (results, errors, protocol).

    Each result is ``{"video": path, "predictions": [{"label", "index", "probability"}, ...]}`` with the
    probabilities averaged over the views the weights were trained to be evaluated with; each error is
    ``{"video": path, "error": reason}``.
    """
    import torch

    from fast_timesformer.data import VideoDataset, VideoRecord, collate_videos
    from fast_timesformer.evaluation import aggregate_views, describe_protocol
    from fast_timesformer.weights import from_pretrained

    model = from_pretrained(weights).to(device).eval()
    prep = dict(model.preprocessing)
    names = model.class_names or [str(i) for i in range(model.num_classes)]
    clips, crops = int(prep.get("num_temporal_clips", 1)), int(prep.get("num_spatial_crops", 1))
    sampling = prep.get("sampling", "dense")
    protocol = describe_protocol(
        num_frames=int(prep["num_frames"]), sampling_rate=prep.get("sampling_rate"), sampling=sampling,
        num_temporal_clips=clips, num_spatial_crops=crops, crop_size=int(prep["crop_size"]),
    )  # fmt: skip
    results, errors = [], []
    for path in videos:
        if not os.path.isfile(path):
            errors.append(
                {"video": path, "error": "no such file" if not os.path.exists(path) else "not a file"}
            )
            continue
        dataset = VideoDataset(
            [VideoRecord(path=path, label=0, video_id=path)], [str(i) for i in range(model.num_classes)],
            num_frames=int(prep["num_frames"]), sampling=sampling, sampling_rate=int(prep.get("sampling_rate") or 1),
            mode="test", crop_size=int(prep["crop_size"]), short_side=prep.get("short_side"),
            num_temporal_clips=clips, num_spatial_crops=crops, mean=tuple(prep["mean"]), std=tuple(prep["std"]),
            out_of_range=prep.get("out_of_range", "loop"), max_bad_fraction=1.0,
        )  # fmt: skip
        logits, problem = [], None
        for start in range(0, len(dataset), batch_size):
            batch = collate_videos([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
            if batch["skipped"]:
                problem = batch["skipped"][0][1]
                break
            with torch.inference_mode():
                logits.append(model(batch["video"].to(device)).float().cpu())
        if problem is not None or not logits:
            errors.append({"video": path, "error": str(problem or "no frames could be decoded")})
            continue
        logits = torch.cat(logits)
        views = torch.arange(len(logits))
        scores = aggregate_views(logits, torch.zeros_like(views), torch.zeros_like(views), views).scores[0]
        values, indices = scores.topk(min(top_k, len(names)))
        predictions = [
            {"label": names[i], "index": int(i), "probability": round(float(v), 6)}
            for v, i in zip(values, indices)
        ]
        results.append({"video": path, "predictions": predictions})
    return results, errors, protocol


def _classify(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer classify",
        description="Top-k labels with probabilities for video files, using the preprocessing and multi-view "
        "protocol stored with the weights.",
    )
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument(
        "--weights", required=True, metavar="DIR", help="weights folder (from export/convert)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels to show per video (default 5)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    parser.add_argument("--batch-size", type=int, default=8, help="views per forward pass (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda (default cpu)")
    args = parser.parse_args(argv)
    if args.top_k < 1:
        parser.error(f"--top-k must be at least 1, got {args.top_k}")
    try:
        results, errors, protocol = classify_videos(
            args.videos, args.weights, top_k=args.top_k, batch_size=args.batch_size, device=args.device
        )
    except (OSError, ValueError) as error:
        print(
            f"fast-timesformer classify: error: cannot load weights {args.weights}: {error}", file=sys.stderr
        )
        return 1
    if args.json:
        print(json.dumps({"protocol": protocol, "results": results, "errors": errors}, indent=2))
    else:
        for result in results:
            print(f"{result['video']}  ({protocol})")
            for prediction in result["predictions"]:
                print(f"  {100 * prediction['probability']:5.1f}%  {prediction['label']}")
    for error in errors:
        print(f"fast-timesformer classify: error: {error['video']}: {error['error']}", file=sys.stderr)
    return 1 if errors else 0


# -- export / convert / check-data -------------------------------------------------------------------------


def export_checkpoint(checkpoint: str, directory: str) -> Path:
    """Write the model of a Lightning checkpoint (from ``fit``) as a weights folder (safetensors + config.json)."""
    import torch

    from fast_timesformer.model import FastTimeSformer
    from fast_timesformer.weights import save_pretrained

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    extra = state.get("fast_timesformer") if isinstance(state, dict) else None
    if not extra or "model_config" not in extra:
        raise ValueError(
            f"{checkpoint} is not a checkpoint written by `fast-timesformer fit` (no model configuration inside); "
            "for other checkpoints use `fast-timesformer convert`"
        )
    model = FastTimeSformer(**extra["model_config"])
    weights = {k.removeprefix("model."): v for k, v in state["state_dict"].items() if k.startswith("model.")}
    model.load_state_dict(weights, strict=True)
    save_pretrained(
        model, directory, preprocessing=extra.get("preprocessing"), class_names=extra.get("class_names")
    )
    return Path(directory)


def _export(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer export",
        description="Write the model of a training checkpoint as a weights folder (model.safetensors + "
        "config.json with class names and preprocessing), for `classify` and `from_pretrained`.",
    )
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="a .ckpt written by `fast-timesformer fit`")
    parser.add_argument("directory", metavar="DIR", help="output folder")
    args = parser.parse_args(argv)
    try:
        export_checkpoint(args.checkpoint, args.directory)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"fast-timesformer export: error: {args.checkpoint}: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.directory}/model.safetensors and config.json")
    return 0


def _convert(argv: list[str]) -> int:
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
    args = parser.parse_args(argv)
    from fast_timesformer.weights import convert

    options = {
        key: value
        for key, value in dict(
            num_classes=args.num_classes, num_frames=args.num_frames, image_size=args.image_size,
            attention=args.attention, source_format=args.source_format,
        ).items()
        if value is not None
    }  # fmt: skip
    try:
        convert(args.source, args.directory, **options)
    except (OSError, ValueError, RuntimeError) as error:
        print(f"fast-timesformer convert: error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {args.directory}/model.safetensors and config.json")
    return 0


def _check_data(argv: list[str]) -> int:
    parser = ArgumentParser(
        prog="fast-timesformer check-data",
        description="Scan an annotation file (or a folder-per-class tree) and report every unreadable, empty "
        "or too-short video with the reason. Exit status 1 when any video is bad.",
    )
    parser.add_argument("annotations", metavar="ANNOTATIONS", help="annotation file or folder-per-class root")
    parser.add_argument("--root", help="folder that relative paths in the annotation file are relative to")
    parser.add_argument("--format", default="auto", help="annotation format (default: auto-detect)")
    parser.add_argument("--num-frames", type=int, default=8, help="frames a clip needs (default 8)")
    parser.add_argument("--sampling-rate", type=int, default=1, help="frame stride of a clip (default 1)")
    parser.add_argument("--report", metavar="FILE", help="also write the report to FILE")
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
                sampling_rate=args.sampling_rate, progress=progress,
            )  # fmt: skip
        except (OSError, ValueError) as error:
            bar.close()
            print(f"fast-timesformer check-data: error: {error}", file=sys.stderr)
            return 1
    text = report.format()
    print(text)
    if args.report:
        Path(args.report).write_text(text + "\n", encoding="utf-8")
    return 0 if report.ok else 1


def _demo(argv: list[str]) -> int:
    from fast_timesformer.demo import add_arguments, main_from_args

    parser = ArgumentParser(
        prog="fast-timesformer demo",
        description="Offline demo on the built-in motion dataset: generate it, train a small divided space-time "
        "model, evaluate it (video level), classify one file, train a space-only control, and write a report.",
    )
    add_arguments(parser)
    main_from_args(parser.parse_args(argv))
    return 0


PLAIN = {
    "classify": _classify,
    "demo": _demo,
    "export": _export,
    "convert": _convert,
    "check-data": _check_data,
}


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
    from fast_timesformer.runtime import tune_allocator

    tune_allocator()  # keep freed activation memory in the process: fewer page faults on CPU
    if command not in PLAIN and command not in TRAINER_COMMANDS and not command.startswith("-"):
        close = difflib.get_close_matches(command, [*TRAINER_COMMANDS, *PLAIN], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        print(
            f"fast-timesformer: error: unknown command {command!r}{hint}\n\n{USAGE}", file=sys.stderr, end=""
        )
        return 2
    try:
        if command in PLAIN:
            logging.basicConfig(level=logging.WARNING, format="%(message)s")
            return PLAIN[command](args[1:])
        # From a console script, LightningCLI reads sys.argv itself (and warns when given both).
        return _lightning_cli(None if argv is None else args)
    except SystemExit as exit_:  # argparse / jsonargparse: --help (0) or a usage error (2)
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except KeyboardInterrupt:
        print("fast-timesformer: interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        if _is_user_error(error):  # an expected outcome (bad data, NaN loss ...): one line, exit status 1
            print(f"fast-timesformer {command}: error: {error}", file=sys.stderr)
            return 1
        raise  # a bug: keep the traceback


#: (module, class) of errors whose message is the whole story; looked up only if the module was imported.
_USER_ERRORS = (
    ("fast_timesformer.callbacks", "NonFiniteLossError"),
    ("fast_timesformer.callbacks", "NonFiniteWeightsError"),
    ("fast_timesformer.checkpoints", "CheckpointError"),
    ("fast_timesformer.data.decoding", "VideoDecodeError"),
    ("fast_timesformer.data.dataset", "TooManyBadVideos"),
    ("fast_timesformer.data.annotations", "AnnotationError"),
)


def _is_user_error(error: BaseException) -> bool:
    for module, name in _USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(error, cls):
            return True
    return False


if __name__ == "__main__":
    sys.exit(main())
