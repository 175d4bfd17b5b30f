"""``VideoDataModule``: the LightningDataModule over :mod:`fast_timesformer.data` for every stage.

Its typed, keyword-only constructor is what ``fast-timesformer fit/validate/test/predict`` exposes as
``--data.*``. Training batches are deterministic functions of ``(seed, epoch)`` (see :mod:`.seeding`), so a
resumed run sees exactly the batches an uninterrupted one would have seen; unreadable videos are skipped and
counted per split, and a split with too many of them stops the run with a report.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader

from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.data import VideoDataset, collate_videos, read_annotations, read_folder
from fast_timesformer.errors import OptionError
from fast_timesformer.inference.views import describe_protocol
from fast_timesformer.training.seeding import EpochIndexSampler, SeededItems


def _check_options(given: dict[str, Any]) -> None:
    """Refuse values that cannot work before anything is read, naming the ``--data.`` option."""
    problems = []
    for name in ("num_frames", "sampling_rate", "crop_size", "batch_size", "eval_batch_size",
                 "val_num_temporal_clips", "test_num_temporal_clips"):  # fmt: skip
        value = given[name]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            problems.append(f"--data.{name} must be a positive integer, got {value!r}")
    for name in ("val_num_spatial_crops", "test_num_spatial_crops"):
        if given[name] not in (1, 3):
            problems.append(f"--data.{name} must be 1 or 3, got {given[name]!r}")
    if not isinstance(given["num_workers"], int) or given["num_workers"] < 0:
        problems.append(f"--data.num_workers must be 0 or more, got {given['num_workers']!r}")
    if not 0 <= given["max_bad_fraction"] <= 1:
        problems.append(f"--data.max_bad_fraction must be in [0, 1], got {given['max_bad_fraction']!r}")
    low, high = given["scale_range"]
    if not 0 < low <= high:
        problems.append(
            f"--data.scale_range must be [low, high] with 0 < low <= high, got {list(given['scale_range'])}"
        )
    if any(value <= 0 for value in given["std"]):
        problems.append(f"--data.std must be positive (it divides the pixels), got {list(given['std'])}")
    if problems:
        raise OptionError("; ".join(problems))


class VideoDataModule(LightningDataModule):
    """Videos from annotation files (or folder-per-class trees) for every stage, with the official pipeline.

    Training clips are sampled at random (dense ``num_frames`` x ``sampling_rate``, or one random frame per
    segment), scale-jittered to a short side in ``scale_range``, randomly cropped to ``crop_size`` and
    flipped. Validation and testing score every view -- ``*_num_temporal_clips`` evenly spaced clips x
    ``*_num_spatial_crops`` crops (3: left/centre/right after resizing the short side to ``crop_size``; 1: a
    centre crop after resizing it to ``scale_range[0]``) -- and the model combines them per video.

    Args:
        train: training annotations: a "path label" list, Kinetics CSV, SSv2 JSON, UCF101 split file,
            a manifest of the built-in dataset, or a folder-per-class root.
        val: validation annotations (used during ``fit`` and by ``validate``).
        test: test annotations (``test``); defaults to ``val``.
        predict: videos for ``predict`` (same formats; their labels are copied next to the predictions).
        root: folder that relative paths in the annotation files are relative to.
        format: annotation format, or "auto" to detect it from the file.
        classes: class names: a list, a file with one name per line, or SSv2's labels JSON; default: from
            the first annotation file (for lists, a ``classes.txt`` beside it is used when present).
        num_frames: frames per clip.
        sampling: "dense" (``num_frames`` frames ``sampling_rate`` apart, Kinetics) or "segment"
            (one frame per equal segment, SSv2).
        sampling_rate: frame stride of dense sampling (32 in "8x32").
        crop_size: side of the square crops the model sees.
        scale_range: training short-side jitter range in pixels (official: 256-320 for 224 crops).
        flip: random horizontal flips in training (turn off when left/right matters, e.g. SSv2).
        mean: per-channel normalisation mean (TimeSformer: 0.45).
        std: per-channel normalisation std (TimeSformer: 0.225).
        out_of_range: what fills a clip longer than the video: "loop" or "repeat_last".
        val_num_temporal_clips: temporal clips per video in validation.
        val_num_spatial_crops: spatial crops per clip in validation (1 or 3).
        test_num_temporal_clips: temporal clips per video in testing (TimeSformer: 1).
        test_num_spatial_crops: spatial crops per clip in testing (TimeSformer: 3).
        batch_size: training clips per batch per device.
        eval_batch_size: views per batch per device in val/test/predict (default: ``batch_size``).
        num_workers: DataLoader worker processes per device.
        max_bad_fraction: stop with an error (and a report file) when more than this fraction of the videos
            of a split cannot be decoded; below it, bad videos are skipped and counted.
        cache_frames: decode each video once and keep its frames in memory (small datasets such as the
            built-in one: later epochs only crop and normalise). Each DataLoader worker keeps its own copy.
        verify_checksums: where the annotation has a ``sha256`` column (the built-in datasets), compare the
            checksum whenever a video is decoded whole (with ``cache_frames``: once per video and worker, at
            no extra decoding); a mismatch is a skipped, counted bad video. ``check-data`` always verifies.
        allow_images: accept still images as one-frame videos (refused by default).
        allow_outside_root: accept relative video paths that leave ``root`` (``../..``; refused by default).
        multilabel: read every class of each video (label lists ``path a,b``, the Charades CSV) and give
            multi-hot targets; linked from ``--model.task multilabel`` by the command line.
        seed: seed of the training sampler's shuffling and of augmentation (identical on every rank, as DDP
            requires; None: the run's ``seed_everything`` value, else 0).
    """

    def __init__(
        self,
        *,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        predict: str | None = None,
        root: str | None = None,
        format: str = "auto",
        classes: str | list[str] | None = None,
        num_frames: int = 8,
        sampling: Literal["dense", "segment"] = "dense",
        sampling_rate: int = 32,
        crop_size: int = 224,
        scale_range: tuple[int, int] = (256, 320),
        flip: bool = True,
        mean: tuple[float, float, float] = (0.45, 0.45, 0.45),
        std: tuple[float, float, float] = (0.225, 0.225, 0.225),
        out_of_range: Literal["loop", "repeat_last"] = "loop",
        val_num_temporal_clips: int = 1,
        val_num_spatial_crops: int = 1,
        test_num_temporal_clips: int = 1,
        test_num_spatial_crops: int = 3,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        max_bad_fraction: float = 0.01,
        cache_frames: bool = False,
        verify_checksums: bool = False,
        allow_images: bool = False,
        allow_outside_root: bool = False,
        multilabel: bool = False,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if not any((train, val, test, predict)):
            raise OptionError(
                "VideoDataModule needs at least one of train, val, test or predict annotations "
                "(--data.train FILE ...)"
            )
        if sampling not in ("dense", "segment"):
            raise OptionError(f"unknown --data.sampling {sampling!r}; expected 'dense' or 'segment'")
        _check_options(locals())
        # Not merged into the logged hparams: names such as num_frames and seed also exist on the model.
        self.save_hyperparameters(logger=False)
        self.classes = self._read_classes()
        self.datasets: dict[str, Any] = {}
        self._resumed_seed: int | None = None

    @property
    def seed(self) -> int:
        """The data seed: ``seed`` if given, else the one of the run being resumed, else the
        ``seed_everything`` value, else 0."""
        if self.hparams.seed is not None:
            return int(self.hparams.seed)
        if self._resumed_seed is not None:
            return self._resumed_seed
        return int(os.environ.get("PL_GLOBAL_SEED", 0))

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints so that a resumed run shuffles and augments with the same seed."""
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if state_dict.get("seed") is not None:
            self._resumed_seed = int(state_dict["seed"])

    # -- classes, protocol, preprocessing -----------------------------------------------------------
    @property
    def num_classes(self) -> int:
        """Number of classes (the CLI links it to ``--model.num_classes``)."""
        return len(self.classes)

    def _read_classes(self) -> list[str]:
        classes = self.hparams.classes
        if isinstance(classes, (list, tuple)):
            return [str(name) for name in classes]
        # A class file (text, or SSv2's labels JSON) is read by the annotation reader of the first split.
        source = self.hparams.train or self.hparams.val or self.hparams.test or self.hparams.predict
        return list(self._annotations(source, classes).classes)

    def _annotations(self, source: str, classes: list[str] | str | None = None):
        if os.path.isdir(source):
            annotations = read_folder(source)
            if isinstance(classes, list) and list(annotations.classes) != classes:
                raise ValueError(
                    f"the class folders of {source} ({len(annotations.classes)}) differ from the training "
                    f"classes ({len(classes)}): pass --data.classes with one list for every split"
                )
            return annotations
        return read_annotations(
            source, format=self.hparams.format, root=self.hparams.root, classes=classes,
            allow_outside_root=self.hparams.allow_outside_root, multilabel=self.hparams.multilabel,
        )  # fmt: skip

    def views(self, stage: str) -> tuple[int, int]:
        """(temporal clips, spatial crops) scored per video in ``stage``."""
        hp = self.hparams
        if stage in ("val", "validate"):
            return hp.val_num_temporal_clips, hp.val_num_spatial_crops
        return hp.test_num_temporal_clips, hp.test_num_spatial_crops

    def protocol(self, stage: str, *, method: str | None = None) -> str:
        """The evaluation protocol of ``stage`` in words, e.g. "8x32, 1 clip x 3 crops, 224px"."""
        clips, crops = self.views(stage)
        hp = self.hparams
        return describe_protocol(
            num_frames=hp.num_frames, sampling_rate=hp.sampling_rate, sampling=hp.sampling,
            num_temporal_clips=clips, num_spatial_crops=crops, crop_size=hp.crop_size, method=method,
        )  # fmt: skip

    def preprocessing(self) -> Preprocessing:
        """What a weights folder must remember to classify new videos like the test split (config.json)."""
        hp = self.hparams
        clips, crops = self.views("test")
        return Preprocessing(
            mean=tuple(hp.mean), std=tuple(hp.std), num_frames=hp.num_frames, sampling=hp.sampling,
            sampling_rate=hp.sampling_rate, crop_size=hp.crop_size,
            short_side=hp.crop_size if crops == 3 else hp.scale_range[0],
            num_temporal_clips=clips, num_spatial_crops=crops, out_of_range=hp.out_of_range,
        )  # fmt: skip

    def label_frequencies(self) -> list[float]:
        """The fraction of training videos carrying each class (multi-label runs: ``pos_weight`` "auto")."""
        records = self._annotations(self.hparams.train, self.classes).records
        counts = [0] * len(self.classes)
        for record in records:
            for label in record.labels if record.labels is not None else (record.label,):
                counts[label] += 1
        return [count / max(1, len(records)) for count in counts]

    # -- datasets ----------------------------------------------------------------------------------
    def _dataset(self, source: str, mode: str) -> VideoDataset:
        hp = self.hparams
        annotations = self._annotations(source, self.classes)
        clips, crops = self.views("val" if mode == "val" else "test")
        return VideoDataset(
            annotations.records, self.classes, num_frames=hp.num_frames, sampling=hp.sampling,
            sampling_rate=hp.sampling_rate, mode=mode, crop_size=hp.crop_size, scale_range=tuple(hp.scale_range),
            num_temporal_clips=clips, num_spatial_crops=crops, flip=hp.flip and mode == "train",
            mean=tuple(hp.mean), std=tuple(hp.std), out_of_range=hp.out_of_range, seed=self.seed,
            max_bad_fraction=hp.max_bad_fraction, cache_frames=hp.cache_frames,
            verify_checksums=hp.verify_checksums, allow_images=hp.allow_images, multilabel=hp.multilabel,
        )  # fmt: skip

    def setup(self, stage: str) -> None:
        hp = self.hparams
        wanted: dict[str, tuple[str | None, str]] = {
            "fit": {"train": (hp.train, "train"), "val": (hp.val, "val")},
            "validate": {"val": (hp.val, "val")},
            "test": {"test": (hp.test or hp.val, "test")},
            "predict": {"predict": (hp.predict, "test")},
        }[stage]
        for split, (source, mode) in wanted.items():
            if split in self.datasets:
                continue
            if source is None:
                if split == "val":
                    continue  # fit without validation is allowed
                raise ValueError(f"`{stage}` needs --data.{split} (an annotation file or a folder of videos)")
            self.datasets[split] = self._dataset(source, mode)
            if self.trainer is not None:  # bad-video reports go next to the run's other files
                root = self.trainer.default_root_dir
                self.datasets[split].tracker.report_path = os.path.join(root, f"bad_videos_{split}.txt")

    def _loader(self, split: str, *, train: bool = False) -> DataLoader:
        hp = self.hparams
        dataset = self.datasets[split]
        sampler = None
        if train:
            # An explicit distributed sampler even on one process: the order depends only on (seed, epoch),
            # which Lightning sets every epoch, and each item's augmentation only on (seed, epoch, index),
            # so a resumed run sees exactly the batches an uninterrupted one would have seen.
            world = self.trainer.world_size if self.trainer is not None else 1
            rank = self.trainer.global_rank if self.trainer is not None else 0
            sampler = EpochIndexSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=self.seed)
            dataset = SeededItems(dataset, self.seed)
        return DataLoader(
            dataset,
            batch_size=hp.batch_size if train else (hp.eval_batch_size or hp.batch_size),
            sampler=sampler,
            shuffle=False,
            num_workers=hp.num_workers,
            collate_fn=collate_videos,
            pin_memory=bool(
                self.trainer is not None and self.trainer.accelerator.__class__.__name__ == "CUDAAccelerator"
            ),
            # Safe for exact resumption: items are seeded from (seed, epoch, index), not from the worker.
            persistent_workers=hp.num_workers > 0,
            drop_last=False,
        )

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Count the videos the batch had to skip; stops the run past ``max_bad_fraction`` (with a report)."""
        if self.trainer is not None and isinstance(batch, dict) and batch.get("skipped"):
            split = (
                "train"
                if self.trainer.training
                else "val"
                if self.trainer.validating or self.trainer.sanity_checking
                else ("test" if self.trainer.testing else "predict")
            )
            if split in self.datasets:
                self.datasets[split].tracker.update(batch)
        return batch

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val") if "val" in self.datasets else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")

    # -- outputs -----------------------------------------------------------------------------------
    def write_predictions(
        self, results: dict[str, Any], class_names: list[str] | None, directory: str | None
    ) -> str:
        """Write ``predictions.csv`` (video, label, prediction, probability, top-5) into ``directory``; for a
        multi-label model every class's probability, and ``per_class_ap.csv`` (AP, threshold, videos)."""
        import csv

        stage = results["stage"]
        records = self.datasets[stage].records
        names = class_names or [str(i) for i in range(results["scores"].shape[1])]
        probabilities = results["probabilities"]
        path = os.path.join(directory or ".", "predictions.csv")
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        if results["labels"].ndim == 2:  # multi-label: every class's probability, and the true label list
            thresholds = results.get("thresholds") or [0.5] * len(names)
            with open(path, "w", newline="", encoding="utf-8") as file:
                writer = csv.writer(file)
                writer.writerow(["video", "labels", "predicted", *names])
                for index, target, scores in zip(results["video"].tolist(), results["labels"], probabilities):
                    writer.writerow([
                        records[index].path,
                        ";".join(names[i] for i in target.nonzero().flatten().tolist()),
                        ";".join(n for n, p, t in zip(names, scores.tolist(), thresholds) if p >= t),
                        *(f"{float(v):.6f}" for v in scores),
                    ])  # fmt: skip
            with open(
                os.path.join(directory or ".", "per_class_ap.csv"), "w", newline="", encoding="utf-8"
            ) as file:
                writer = csv.writer(file)  # average precision of each class (empty: no video carries it)
                writer.writerow(["class", "average_precision", "threshold", "videos"])
                counts = results["labels"].sum(0).round().long().tolist()
                for name, ap, threshold, count in zip(names, results["per_class_ap"], thresholds, counts):
                    writer.writerow([name, "" if ap is None else f"{ap:.6f}", threshold, count])
            return path
        with open(path, "w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(["video", "label", "prediction", "probability", "top5"])
            for index, label, scores in zip(
                results["video"].tolist(), results["labels"].tolist(), probabilities
            ):
                top = scores.topk(min(5, len(names)))
                writer.writerow([
                    records[index].path,
                    names[label] if 0 <= label < len(names) else "",
                    names[int(top.indices[0])],
                    f"{float(top.values[0]):.6f}",
                    " ".join(names[int(i)] for i in top.indices),
                ])  # fmt: skip
        return path


__all__ = ["VideoDataModule"]
