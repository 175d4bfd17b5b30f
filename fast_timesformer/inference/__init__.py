"""Using a trained model: weights folder + video files -> predictions (``video`` extra, no training deps).

predictor.py  Predictor: load a weights folder once, score files with the stored preprocessing
views.py      combining the views of a video (mean of softmax / sum of logits), the protocol in words
runtime.py    process-wide CPU settings (glibc allocator tuning) for inference-heavy scripts
"""

from fast_timesformer.inference.predictor import Predictor, classify_videos
from fast_timesformer.inference.runtime import tune_allocator
from fast_timesformer.inference.views import (
    ENSEMBLE_METHODS,
    VideoPredictions,
    aggregate_views,
    describe_protocol,
    format_metrics,
)

__all__ = [
    "ENSEMBLE_METHODS",
    "Predictor",
    "VideoPredictions",
    "aggregate_views",
    "classify_videos",
    "describe_protocol",
    "format_metrics",
    "tune_allocator",
]
