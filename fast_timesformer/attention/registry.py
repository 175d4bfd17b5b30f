"""The registry of attention mechanisms: build one by name, check a name and its ``attention_kwargs``.

Every mechanism takes the same constructor arguments (``dim, heads, dim_head, qkv_bias, attn_dropout,
proj_dropout``) plus its own knobs, which arrive through one explicit ``attention_kwargs`` mapping; unknown
keys are an error that lists the valid ones. To add a mechanism: subclass :class:`Attention` (implement
``attend``; list its knobs in ``extra_kwargs``) and add it to :data:`ATTENTIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from fast_timesformer.attention.base import Attention
from fast_timesformer.attention.fastformer import FastformerAttention
from fast_timesformer.attention.performer import PerformerAttention
from fast_timesformer.attention.regular import RegularAttention

ATTENTIONS: dict[str, type[Attention]] = {
    "regular": RegularAttention,
    "performer": PerformerAttention,
    "fastformer": FastformerAttention,
}


def check_attention_name(name: str, what: str = "attention") -> str:
    """Return ``name`` if it is a registered mechanism, else raise a ValueError listing the valid ones."""
    if name not in ATTENTIONS:
        raise ValueError(f"unknown {what} {name!r}; expected one of {sorted(ATTENTIONS)}")
    return name


def check_attention_kwargs(kwargs: Mapping[str, Any] | None, mechanisms: Sequence[str]) -> dict[str, Any]:
    """Validate ``attention_kwargs`` against the mechanisms in use; every key must belong to one of them."""
    kwargs = dict(kwargs or {})
    valid = {key for name in mechanisms for key in ATTENTIONS[name].extra_kwargs}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ValueError(
            f"unknown attention_kwargs {unknown} for attention {sorted(set(mechanisms))}; "
            f"valid keys: {sorted(valid) or 'none (this mechanism has no extra options)'}"
        )
    return kwargs


def build_attention(
    name: str,
    dim: int,
    *,
    heads: int,
    dim_head: int,
    qkv_bias: bool = True,
    attn_dropout: float = 0.0,
    proj_dropout: float = 0.0,
    attention_kwargs: Mapping[str, Any] | None = None,
) -> Attention:
    """Build mechanism ``name``, passing it the ``attention_kwargs`` entries it accepts."""
    cls = ATTENTIONS[check_attention_name(name)]
    own = {key: value for key, value in (attention_kwargs or {}).items() if key in cls.extra_kwargs}
    return cls(
        dim,
        heads=heads,
        dim_head=dim_head,
        qkv_bias=qkv_bias,
        attn_dropout=attn_dropout,
        proj_dropout=proj_dropout,
        **own,
    )


__all__ = ["ATTENTIONS", "build_attention", "check_attention_kwargs", "check_attention_name"]
