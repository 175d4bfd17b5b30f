"""Share a weights folder on the Hugging Face Hub, with a model card written from the run that made it.

:func:`prepare_hub_folder` writes the folder that gets uploaded::

    model.safetensors, config.json   our weights folder, copied as is (loads with ``from_pretrained(repo_id)``)
    README.md                        the model card: YAML front matter (licence, library, tags, pipeline tag),
                                     the model, the class list, the evaluation protocol, the measured results
                                     (``summary.json`` and the last values in every ``metrics.csv`` of the
                                     run folder), the training config (``config.yaml``), a usage snippet
    transformers/                    optional: the same model as a transformers Timesformer folder
                                     (:mod:`.to_transformers`), loaded with ``subfolder="transformers"``

:func:`push_to_hub` prepares that folder and uploads it with ``huggingface_hub.HfApi`` (``create_repo`` +
``upload_folder``); only the upload needs the network and ``huggingface_hub`` (the ``hub`` extra). It checks
for offline mode and a token first, so those fail at once with a one-line :class:`HubError`.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fast_timesformer.checkpoints.files import CheckpointError
from fast_timesformer.checkpoints.preprocessing import Preprocessing
from fast_timesformer.checkpoints.sources import Checkpoint, read_checkpoint
from fast_timesformer.errors import FastTimeSformerError

#: Licence written when none is given: "other" (the card then says the licence is not stated).
DEFAULT_LICENSE = "other"
CONFIG_LINES = 200  #: longest training config copied into the card


class HubError(FastTimeSformerError, RuntimeError):
    """The upload to the Hub failed (network, token, permissions); the message says which and what to do."""


# -- the run folder -----------------------------------------------------------------------------------------
def read_run(run: str | os.PathLike) -> dict[str, Any]:
    """What a run folder (``fast-timesformer fit`` root or ``demo`` output) holds for the card.

    Returns ``{"summary": dict | None, "config": (relative path, text) | None, "metrics": {relative path of
    each metrics.csv: {metric: last value}}, "best": {relative path: {metric: best value}}}``. The config is
    the shallowest ``config.yaml`` (what ``fit`` saved), else the shallowest ``hparams.yaml`` (what the
    LightningModule was built with: all a ``demo`` run has besides its recipe in ``summary.json``).
    """
    run = Path(run)
    if not run.is_dir():
        raise CheckpointError(
            run, "no such run folder", "pass the --trainer.default_root_dir or demo --output"
        )
    summary = None
    if (run / "summary.json").is_file():
        try:
            summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise CheckpointError(run / "summary.json", f"unreadable JSON ({error})") from None
    configs = sorted(run.rglob("config.yaml"), key=lambda p: (len(p.parts), str(p)))
    configs = configs or sorted(run.rglob("hparams.yaml"), key=lambda p: (len(p.parts), str(p)))
    config = None
    if configs:
        text = configs[0].read_text(encoding="utf-8", errors="replace")
        config = (str(configs[0].relative_to(run)), redact_local_paths(text))
    metrics, best = {}, {}
    for file in sorted(run.rglob("metrics.csv")):
        last, top = _read_metrics(file)
        if last:
            metrics[str(file.relative_to(run))] = last
            best[str(file.relative_to(run))] = top
    if summary is not None and not isinstance(summary, dict):
        raise CheckpointError(
            run / "summary.json", "expected a JSON object", "restore the file the run wrote"
        )
    if summary is None and config is None and not metrics:
        raise CheckpointError(
            run, "no summary.json, config.yaml or metrics.csv in this folder",
            "pass the folder `fast-timesformer fit` (--trainer.default_root_dir) or `demo --output` wrote",
        )  # fmt: skip
    return {"summary": summary, "config": config, "metrics": metrics, "best": best}


_ABSOLUTE = re.compile(
    r"""(?<![\w:./~-])(?P<quote>['"]?)(?P<path>(?:/|~/|[A-Za-z]:[\\/])[^\s'",\]}]*)(?P=quote)"""
)


def redact_local_paths(text: str) -> str:
    """``config.yaml`` without this machine's absolute paths (a public model card must not show them):
    each becomes ``<local>/NAME`` with only its last component, e.g. ``<local>/manifest.csv``."""

    def replace(match: re.Match) -> str:
        name = match.group("path").rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
        return f"{match.group('quote')}<local>/{name}{match.group('quote')}"

    return "\n".join(
        line if line.lstrip().startswith("#") else _ABSOLUTE.sub(replace, line) for line in text.splitlines()
    ) + ("\n" if text.endswith("\n") else "")


def _read_metrics(file: Path) -> tuple[dict[str, float], dict[str, float]]:
    """(last value, best value) of every validation / test metric column of a Lightning metrics.csv."""
    last: dict[str, float] = {}
    best: dict[str, float] = {}
    with file.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for name, cell in row.items():
                if not name or not cell or not name.startswith(("val", "test")):
                    continue
                try:
                    value = float(cell)
                except ValueError:
                    continue
                last[name] = value
                better = min if "loss" in name else max
                best[name] = better(best.get(name, value), value)
    return last, best


# -- the card -----------------------------------------------------------------------------------------------
def _protocol(prep: Preprocessing) -> str:
    sampling = (
        f"{prep.num_frames} frames, {prep.sampling_rate} apart"
        if prep.sampling == "dense"
        else f"{prep.num_frames} frames, one per segment"
    )
    views = f"{prep.num_temporal_clips} clip(s) x {prep.num_spatial_crops} crop(s) per video, scores averaged"
    return (
        f"{sampling}; short side resized to {prep.short_side or prep.crop_size} px, {prep.crop_size} px crop; "
        f"normalised with mean {list(prep.mean)} and std {list(prep.std)} on [0, 1] pixels; {views}"
    )


def _weights(weights: str | os.PathLike) -> Checkpoint:
    """Our weights folder read (a hub id is downloaded); anything else is refused with the command to run."""
    ckpt = read_checkpoint(weights)
    if ckpt.kind != "fast-timesformer":
        raise CheckpointError(
            weights, f"a {ckpt.kind} checkpoint, not a fast-timesformer weights folder",
            "convert it first: fast-timesformer convert SOURCE DIR, or export a training checkpoint",
        )  # fmt: skip
    return ckpt


def model_card(
    weights: str | os.PathLike,
    *,
    run: str | os.PathLike | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    transformers: bool = False,
) -> str:
    """The README.md of a weights folder (see the module docstring); ``run`` adds the measured results."""
    return _card(_weights(weights), run=run, repo_id=repo_id, license=license, transformers=transformers)


def _card(
    ckpt: Checkpoint,
    *,
    run: str | os.PathLike | None,
    repo_id: str | None,
    license: str | None,
    transformers: bool,
) -> str:
    config, names = ckpt.config, ckpt.class_names
    prep = Preprocessing.from_dict(ckpt.preprocessing)
    info = read_run(run) if run is not None else None
    repo = repo_id or "USER/MODEL"
    licence = license or DEFAULT_LICENSE
    params = sum(t.numel() for t in ckpt.state_dict.values())
    tags = ["video-classification", "timesformer", "fast-timesformer"]
    lines = [
        "---", f"license: {licence}", "library_name: fast-timesformer", "pipeline_tag: video-classification",
        "tags:", *[f"- {tag}" for tag in tags], "---", "",
        f"# {repo.split('/')[-1]}", "",
        f"A TimeSformer video classifier ({config.get('attention_type', 'divided_space_time')} attention, "
        f"{config.get('attention', 'regular')} mechanism) trained with "
        "[fast-timesformer](https://pypi.org/project/fast-timesformer/).", "",
        "## Model", "",
        "| field | value |", "|---|---|",
        *[f"| {key} | `{config[key]}` |" for key in (
            "num_frames", "image_size", "patch_size", "dim", "depth", "heads", "attention", "attention_type",
            "pos_emb", "num_classes",
        ) if key in config],
        f"| parameters | {params:,} |", "",
    ]  # fmt: skip
    if license is None:
        lines += ["Licence: not stated by the uploader (set it with `--license`).", ""]
    else:
        lines += [f"Licence: `{licence}`.", ""]
    lines += ["## Classes", ""]
    if names:
        lines += [f"{i}. {name}" for i, name in enumerate(names)] + [""]
    else:
        lines += [f"{config.get('num_classes', '?')} outputs, no class names saved.", ""]
    lines += ["## Evaluation protocol", "", _protocol(prep) + ".", ""]
    if info is not None:
        lines += _results(info)
    lines += _usage(repo, transformers, prep)
    return "\n".join(lines).rstrip() + "\n"


def _results(info: Mapping[str, Any]) -> list[str]:
    lines = ["## Results", ""]
    summary = info["summary"]
    if summary:
        measured = {
            key: summary[key]
            for key in (
                "val_top1", "val_mean_class_accuracy", "space_only_top1", "chance", "num_train_videos",
                "num_val_videos", "protocol", "seed", "seconds",
            )
            if summary.get(key) is not None
        }  # fmt: skip
        lines += ["From `summary.json`:", "", "| measure | value |", "|---|---|"]
        lines += [f"| {key} | {_fmt(value)} |" for key, value in measured.items()] + [""]
    for file, last in info["metrics"].items():
        best = info["best"][file]
        lines += [f"From `{file}` (last logged value; best over the run):", ""]
        lines += ["| metric | last | best |", "|---|---|---|"]
        lines += [f"| {name} | {_fmt(value)} | {_fmt(best[name])} |" for name, value in sorted(last.items())]
        lines += [""]
    if summary and isinstance(summary.get("recipe"), Mapping):  # the demo's whole training recipe
        recipe = json.dumps(summary["recipe"], indent=2, default=str).splitlines()
        lines += ["## Training recipe (`summary.json`)", "", "```json", *recipe, "```", ""]
    if info["config"]:
        file, text = info["config"]
        body = text.splitlines()
        cut = len(body) > CONFIG_LINES
        lines += [f"## Training config (`{file}`)", "", "```yaml", *body[:CONFIG_LINES]]
        lines += (["# ... (cut; the full file is in the run folder)"] if cut else []) + ["```", ""]
    return lines


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _usage(repo: str, transformers: bool, prep: Preprocessing) -> list[str]:
    lines = [
        "## Usage", "", "```python", "from fast_timesformer import FastTimeSformer", "",
        f'model = FastTimeSformer.from_pretrained("{repo}")  # needs huggingface_hub', "```", "",
        "```bash", f"hf download {repo} --local-dir weights",
        "fast-timesformer classify video.mp4 --weights weights --top-k 5", "```", "",
    ]  # fmt: skip
    if transformers:
        # the pipeline reads num_frames frames frame_sampling_rate apart from the start, one centre crop
        rate = f", frame_sampling_rate={prep.sampling_rate}" if prep.sampling == "dense" else ""
        lines += [
            "With transformers (the `transformers/` folder: a TimesformerForVideoClassification with the same "
            "logits; the pipeline decodes with PyAV and evaluates one clip, one centre crop):", "",
            "```python", "from huggingface_hub import snapshot_download",
            "from transformers import pipeline", "",
            f'folder = snapshot_download("{repo}", allow_patterns=["transformers/*"])',
            'classifier = pipeline("video-classification", model=f"{folder}/transformers")',
            f'print(classifier("video.mp4"{rate}))', "```", "",
        ]  # fmt: skip
    return lines


# -- the folder and the upload ------------------------------------------------------------------------------
#: What prepare_hub_folder writes; anything else in its folder is refused (it would be uploaded too).
HUB_FILES = ("model.safetensors", "config.json", "README.md", "transformers")


def prepare_hub_folder(
    weights: str | os.PathLike,
    directory: str | os.PathLike,
    *,
    run: str | os.PathLike | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    transformers: bool = False,
) -> Path:
    """Write the folder :func:`push_to_hub` uploads: the weights folder's files, README.md and, with
    ``transformers=True``, a ``transformers/`` subfolder (:func:`~.to_transformers.to_transformers`).

    ``directory`` must be new, empty, or a folder this function wrote before (its files are replaced, and a
    ``transformers/`` subfolder left from an earlier call is removed when ``transformers`` is False).
    Everything is checked (weights, run folder, what transformers can hold) before anything is written.
    """
    ckpt = _weights(weights)
    card = _card(ckpt, run=run, repo_id=repo_id, license=license, transformers=transformers)
    directory = Path(directory)
    if directory.exists():
        if not directory.is_dir():
            raise CheckpointError(directory, "exists and is not a folder", "pass a new or empty folder")
        other = sorted(p.name for p in directory.iterdir() if p.name not in HUB_FILES)
        if other:
            raise CheckpointError(
                directory,
                f"holds files that would be uploaded too: {other[:5]}",
                "pass a new or empty folder",
            )
    source = ckpt.file.parent  # a hub id was downloaded: its local folder
    if transformers:
        from fast_timesformer.checkpoints.to_transformers import to_transformers

        to_transformers(source, directory / "transformers")  # raises before writing what it cannot hold
    elif (directory / "transformers").is_dir():
        shutil.rmtree(directory / "transformers")
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("model.safetensors", "config.json"):
        shutil.copyfile(source / name, directory / name)
    (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


def push_to_hub(
    repo_id: str,
    weights: str | os.PathLike,
    *,
    run: str | os.PathLike | None = None,
    license: str | None = None,
    transformers: bool = False,
    private: bool | None = None,
    token: str | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
    endpoint: str | None = None,
    folder: str | os.PathLike | None = None,
) -> str:
    """Upload a weights folder with its model card to ``repo_id`` on the Hub; returns the commit URL.

    Args:
        repo_id: ``user/name`` (created if missing, ``private`` as given).
        weights: our weights folder (``save_pretrained``, ``fast-timesformer export`` or ``demo``'s weights/).
        run: the run folder whose ``summary.json`` / ``metrics.csv`` / ``config.yaml`` go into the card.
        license: the card's licence id (e.g. "apache-2.0"; weights fine-tuned from the official or Facebook
            hub TimeSformer inherit "cc-by-nc-4.0"); default "other".
        transformers: also upload the model as a transformers folder under ``transformers/``.
        private: create the repository as private (an existing one keeps its visibility).
        token: Hub token (default: ``HF_TOKEN`` or the one ``hf auth login`` saved).
        revision: branch to commit to.
        commit_message: the commit's message.
        endpoint: Hub URL (default: huggingface.co, or ``HF_ENDPOINT``).
        folder: where to stage the upload (kept); default a temporary folder removed afterwards.

    Raises :class:`HubError` (one line) when offline (``HF_HUB_OFFLINE``), without a token, or when the Hub
    refuses or cannot be reached. huggingface_hub sets no timeout on these calls: a network that drops packets
    instead of refusing them makes the upload wait.
    """
    try:
        import huggingface_hub
    except ImportError:
        raise ImportError(
            "pushing to the Hub needs huggingface_hub: pip install 'fast-timesformer[hub]'"
        ) from None
    # checked before staging: nothing is written for an upload that cannot happen
    if huggingface_hub.is_offline_mode():
        raise HubError(
            f"cannot upload {weights} to {repo_id}: offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE). "
            "Fix: unset it, or write the folder with --dry-run DIR and upload it later"
        )
    if not (token or huggingface_hub.get_token()):
        raise HubError(
            f"cannot upload {weights} to {repo_id}: no Hub token. Fix: run `hf auth login`, set HF_TOKEN, or "
            "pass --token (token=...)"
        )
    staging = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="fast-timesformer-hub-"))
    try:
        prepare_hub_folder(
            weights, staging, run=run, repo_id=repo_id, license=license, transformers=transformers
        )
        api = huggingface_hub.HfApi(endpoint=endpoint, token=token)
        try:
            api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=str(staging), repo_type="model", revision=revision,
                commit_message=commit_message or "Upload fast-timesformer model",
            )  # fmt: skip
        except Exception as error:  # network, authentication, permissions, a bad repo id ...
            reason = " ".join(str(error).split())[:300]  # Hub errors span lines: the message stays one line
            raise HubError(
                f"uploading {weights} to {repo_id} failed ({type(error).__name__}: {reason}). Fix: check the "
                "network and your token (hf auth login, or token=...), and that you may write to the repository"
            ) from error
        return str(getattr(commit, "commit_url", commit))
    finally:
        if folder is None:
            shutil.rmtree(staging, ignore_errors=True)


__all__ = [
    "DEFAULT_LICENSE",
    "HUB_FILES",
    "HubError",
    "model_card",
    "prepare_hub_folder",
    "push_to_hub",
    "read_run",
]
