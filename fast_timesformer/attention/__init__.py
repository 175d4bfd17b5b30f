"""Attention mechanisms behind one interface, and the registry that builds them by name.

base.py        the interface: fused ``qkv`` + ``proj`` (official names), ``attend`` left to subclasses
regular.py     exact softmax through SDPA
performer.py   FAVOR+ (positive orthogonal random features), linear in tokens
fastformer.py  additive attention, linear in tokens
registry.py    ``ATTENTIONS`` (name -> class), ``build_attention``, the name / ``attention_kwargs`` checks
divided.py     the seed's ``DividedAttention`` (attention within einops-chosen groups)
"""

from fast_timesformer.attention.base import Attention
from fast_timesformer.attention.divided import DividedAttention
from fast_timesformer.attention.fastformer import FastformerAttention
from fast_timesformer.attention.performer import PerformerAttention, orthogonal_random_features
from fast_timesformer.attention.registry import (
    ATTENTIONS,
    build_attention,
    check_attention_kwargs,
    check_attention_name,
)
from fast_timesformer.attention.regular import RegularAttention

__all__ = [
    "ATTENTIONS",
    "Attention",
    "DividedAttention",
    "FastformerAttention",
    "PerformerAttention",
    "RegularAttention",
    "build_attention",
    "check_attention_kwargs",
    "check_attention_name",
    "orthogonal_random_features",
]
