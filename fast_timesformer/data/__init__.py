"""Video data for FastTimeSformer: decode files, sample clips, augment, read annotations, batch, check.

The pipeline, file by file (each module's docstring has the details)::

    annotations.py  read_annotations / read_folder   -> AnnotationSet(records, classes)
      records.py      VideoRecord, AnnotationSet, AnnotationError and the readers' shared parsing helpers
      formats.py      the Kinetics CSV, Something-Something v2 JSON and UCF101 readers
    decoding.py     VideoReader.get_frames(indices)  -> uint8 (T, C, H, W) RGB, upright
      backends/       common.py (VideoDecodeError, limits, VideoSource), pyav.py, torchcodec.py
    sampling.py     dense_indices / segment_indices  -> which frame indices make a clip
    transforms.py   TrainTransform / EvalTransform   -> float32 (T, C, H, W), normalised
    dataset.py      VideoDataset, collate_videos     -> batches {"video": (B, T, C, H, W), ...}
    check.py        check_data                       -> DataReport of unreadable / short videos
    synthetic.py    generate_motion_dataset          -> the built-in motion task as .mp4 files
    synthetic_long.py  generate_long_dataset         -> the long task (32 frames x 64 px, events far apart)
    synthetic_multilabel.py  generate_multilabel_dataset -> several events per clip (multi-label)

Imports point one way: ``annotations`` -> ``formats`` -> ``records``, and ``decoding`` -> ``backends`` ->
``backends/common``; ``dataset`` and ``check`` sit on top of both.

**Layout.** Frames come out of the decoder as (T, C, H, W) — the only layout change, where a backend
hands its decoded (H, W, C) frames to `VideoReader.get_frames` — and stay that way through the
transforms; `collate_videos` stacks clips into (B, T, C, H, W), the model's default
``input_layout="btchw"``.

Importing this package is cheap and needs neither PyAV nor numpy: it imports them only when a video is
opened or a synthetic clip rendered (install them with ``pip install 'fast-timesformer[video]'``).
"""

from .annotations import (
    AnnotationError,
    AnnotationSet,
    VideoRecord,
    read_annotations,
    read_folder,
)
from .check import DataProblem, DataReport, check_data, check_video
from .dataset import BadSample, BadVideoTracker, TooManyBadVideos, VideoDataset, collate_videos
from .decoding import (
    DEFAULT_MAX_DURATION,
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    VideoDecodeError,
    VideoMetadata,
    VideoReader,
    is_still_image,
    probe_video,
    read_video_frames,
)
from .sampling import dense_indices, segment_indices
from .synthetic import MOTION_CLASSES, generate_motion_dataset
from .synthetic_long import LONG_CLASSES, generate_long_dataset
from .synthetic_multilabel import MULTILABEL_CLASSES, generate_multilabel_dataset
from .transforms import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    EvalTransform,
    TrainTransform,
    center_crop,
    horizontal_flip,
    normalize,
    random_crop,
    random_short_side_scale,
    resize_short_side,
    three_crop,
)

__all__ = [
    "DEFAULT_MAX_DURATION",
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "LONG_CLASSES",
    "MOTION_CLASSES",
    "MULTILABEL_CLASSES",
    "AnnotationError",
    "AnnotationSet",
    "BadSample",
    "BadVideoTracker",
    "DataProblem",
    "DataReport",
    "EvalTransform",
    "TooManyBadVideos",
    "TrainTransform",
    "VideoDataset",
    "VideoDecodeError",
    "VideoMetadata",
    "VideoReader",
    "VideoRecord",
    "center_crop",
    "check_data",
    "check_video",
    "collate_videos",
    "dense_indices",
    "generate_long_dataset",
    "generate_motion_dataset",
    "generate_multilabel_dataset",
    "is_still_image",
    "horizontal_flip",
    "normalize",
    "probe_video",
    "random_crop",
    "random_short_side_scale",
    "read_annotations",
    "read_folder",
    "read_video_frames",
    "resize_short_side",
    "segment_indices",
    "three_crop",
]
