"""FastTimeSformer: TimeSformer video classification with exact, Performer and Fastformer attention.

The core (this module, the model and the attention mechanisms) needs only torch and einops. Video decoding
(``fast_timesformer.data``), training (``fast_timesformer.training``) and the CLI import their own extras.
"""

from fast_timesformer.attention import (
    ATTENTIONS,
    FastformerAttention,
    PerformerAttention,
    RegularAttention,
    build_attention,
)
from fast_timesformer.checkpoints import push_to_hub, to_transformers
from fast_timesformer.model import ATTENTION_TYPES, DividedAttention, FastTimeSformer
from fast_timesformer.presets import PRESETS, create_model, list_models

__version__ = "0.3.0"

__all__ = [
    "ATTENTIONS",
    "ATTENTION_TYPES",
    "PRESETS",
    "DividedAttention",
    "FastTimeSformer",
    "FastformerAttention",
    "PerformerAttention",
    "RegularAttention",
    "__version__",
    "build_attention",
    "create_model",
    "list_models",
    "push_to_hub",
    "to_transformers",
]
