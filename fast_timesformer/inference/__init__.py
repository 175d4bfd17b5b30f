"""Using a trained model: weights folder + video files -> predictions (``video`` extra, no training deps).

predictor.py  Predictor: load a weights folder once, score files with the stored preprocessing
views.py      combining the views of a video (mean of softmax / sum of logits), the protocol in words
explain.py    attention maps (T, Hp, Wp) per clip: rollout, last-layer CLS, pooling weights, Grad-CAM
overlay.py    explain_video: a file -> attention.png / attention.mp4 (maps drawn over the frames)
timeline.py   timeline: slide the clip window over a long video -> windows, segments, CSV/JSON/PNG
embed.py      embed_videos: pooled (and per-window) features -> .safetensors/.npy + index; nearest_neighbours
deploy.py     export_model: a weights folder / checkpoint -> ONNX or torch.export, verified against eager
onnx_predictor.py  OnnxPredictor: classify with an exported .onnx through onnxruntime (same views)
runtime.py    process-wide CPU settings (glibc allocator tuning) for inference-heavy scripts
"""

from fast_timesformer.inference.embed import Embeddings, embed_videos, load_embeddings, nearest_neighbours
from fast_timesformer.inference.explain import METHODS, ExplainError, attention_maps, explain_clips
from fast_timesformer.inference.overlay import explain_video
from fast_timesformer.inference.predictor import Predictor, classify_videos
from fast_timesformer.inference.runtime import tune_allocator
from fast_timesformer.inference.timeline import Segment, Timeline, timeline
from fast_timesformer.inference.views import (
    ENSEMBLE_METHODS,
    VideoPredictions,
    aggregate_views,
    describe_protocol,
    format_metrics,
)

__all__ = [
    "ENSEMBLE_METHODS",
    "METHODS",
    "Embeddings",
    "ExplainError",
    "Predictor",
    "Segment",
    "Timeline",
    "VideoPredictions",
    "aggregate_views",
    "attention_maps",
    "classify_videos",
    "describe_protocol",
    "embed_videos",
    "explain_clips",
    "explain_video",
    "format_metrics",
    "load_embeddings",
    "nearest_neighbours",
    "timeline",
    "tune_allocator",
]
