"""Checkpoint files <-> state dicts, and how a state dict is fitted to a model. Torch only (safetensors when
a ``.safetensors`` file is read or written); this floor never imports the model.

    files.py          safe reading (safetensors header checks, ``torch.load(weights_only=True)``, wrappers),
                      finite-weights check, atomic writes
    sources.py        what a path is (our folder, Hugging Face folder, official ``.pyth``, ImageNet ViT, hub
                      id) and reading it into a :class:`Checkpoint` (tensors under our names + configuration)
    names.py          Hugging Face Timesformer / ViT names -> ours; configurations from shapes or config.json
    official.py       the PySlowFast YAML config inside official checkpoints
    preprocessing.py  :class:`Preprocessing`: the input protocol a weights folder remembers
    saving.py         our folder: ``model.safetensors`` + ``config.json``
    loading.py        build a model class from a checkpoint and apply the tensors (head, embeddings,
                      image -> video, attention swap), strictly, with a :class:`LoadReport`
    pretrained.py     :class:`PretrainedMixin`: ``from_pretrained`` / ``save_pretrained`` for the model class
    to_transformers.py  ours -> a transformers ``TimesformerForVideoClassification`` folder (names inverted)
    hub.py            model card from a run folder, ``push_to_hub`` through huggingface_hub

The FastTimeSformer-facing functions (``from_pretrained``, ``convert`` ...) are in :mod:`fast_timesformer.weights`.
"""

from fast_timesformer.checkpoints.files import CheckpointError, atomic_write, non_finite_tensors
from fast_timesformer.checkpoints.hub import HubError, model_card, prepare_hub_folder, push_to_hub
from fast_timesformer.checkpoints.loading import (
    LoadReport,
    init_weights_enabled,
    load_pretrained,
    load_weights,
    no_init_weights,
    swap_attention,
)
from fast_timesformer.checkpoints.official import parse_cfg, parse_simple_yaml
from fast_timesformer.checkpoints.preprocessing import (
    DEFAULT_MEAN,
    DEFAULT_STD,
    Preprocessing,
    default_preprocessing,
)
from fast_timesformer.checkpoints.pretrained import PretrainedMixin
from fast_timesformer.checkpoints.saving import save_pretrained
from fast_timesformer.checkpoints.sources import (
    FORMAT_NAME,
    FORMAT_VERSION,
    SOURCE_FORMATS,
    Checkpoint,
    read_checkpoint,
)
from fast_timesformer.checkpoints.to_transformers import to_transformers

__all__ = [
    "DEFAULT_MEAN",
    "DEFAULT_STD",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "SOURCE_FORMATS",
    "Checkpoint",
    "CheckpointError",
    "HubError",
    "LoadReport",
    "Preprocessing",
    "PretrainedMixin",
    "atomic_write",
    "default_preprocessing",
    "init_weights_enabled",
    "load_pretrained",
    "load_weights",
    "model_card",
    "no_init_weights",
    "non_finite_tensors",
    "parse_cfg",
    "parse_simple_yaml",
    "prepare_hub_folder",
    "push_to_hub",
    "read_checkpoint",
    "save_pretrained",
    "swap_attention",
    "to_transformers",
]
