"""What the model looks at: one map per clip of shape (T, Hp, Wp) -- a weight per frame and patch.

:func:`attention_maps` computes them for a batch of clips (:func:`explain_clips`: several methods from one
pass); :func:`fast_timesformer.inference.overlay.explain_video` reads a file with the preprocessing the
weights store and writes ``attention.png`` / ``attention.mp4``. Methods (:data:`METHODS`):

``rollout`` (``regular``, ``performer``)
    Attention rollout (Abnar & Zuidema, 2020) through every attention step of the model. The rule: each
    step's head-averaged attention A becomes ``0.5 * I + 0.5 * A`` (the residual carries half the signal);
    in a divided block the temporal step mixes the T tokens of each patch position, the spatial step mixes
    each frame's [CLS ; N patches], and the CLS row of a spatial step is split evenly over the real frames
    (the block averages CLS's T per-frame outputs). The product of all steps, last first, is read at the
    final CLS token: the map is its row over the input patch tokens. Joint blocks are one step over all
    1 + N*T tokens; ``space_only`` runs the same rule per frame, each frame's CLS counting 1/T. The MLPs
    and the output projections are ignored, as in every rollout.
``cls`` (``regular``, ``performer`` spatial attention)
    The raw attention of the CLS token in the last block's spatial (joint) attention over the patch tokens
    that attention mixes (in a divided block: after that block's temporal step), heads averaged; per frame
    it is weighted by the frame's share 1/T of the CLS average (divided, space_only).
``temporal`` (``divided_space_time`` only, every mechanism)
    Per patch position, how much each frame is attended to by the last block's temporal attention: the
    column mean over the T queries (``fastformer``: its pooling weights). Every position sums to 1.
``pooling`` (``fastformer``)
    Fastformer's additive pooling weights in the last block, ``(alpha + beta) / 2`` averaged over heads:
    alpha builds the global query and beta the global key, the only way tokens reach the CLS output.
``gradcam`` (every mechanism and layout)
    Grad-CAM on the patch tokens entering the last block (its output patches do not reach the CLS token):
    channel weights = the gradient of the target logit averaged over the clip's patch tokens, map =
    ReLU(sum over channels of weight x activation).

Performer attention has no matrix, but its *implicit* attention ``phi(q_i).phi(k_j) / sum_j
phi(q_i).phi(k_j)`` (the module's own random features) is exactly what its output is made of; it is
materialised here, which is fine at clip sizes. Fastformer has no token-to-token attention at all, so
``rollout`` and ``cls`` on it fail with an :class:`ExplainError` that names ``pooling`` and ``gradcam``.

How the numbers are had: forward hooks on every attention module recompute the weights in float64 from
the module's own inputs (tokens, mask, rotary tables) and parameters; the model is not changed, and its
fused fast paths step aside while a hook watches (:mod:`fast_timesformer.layers.fast_paths`). The recorder
keeps the head average on the CPU (what every method uses): for an 8 x 224 joint model that is 12 maps of
1569 x 1569, 240 MB in float64, instead of 12 times that per head. The model is evaluated in eval mode
(restored afterwards): dropout or a performer redraw would make the maps describe another network.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from fast_timesformer.attention import Attention, FastformerAttention, PerformerAttention, RegularAttention
from fast_timesformer.attention.performer import relu_kernel_features, softmax_kernel_features
from fast_timesformer.errors import FastTimeSformerError
from fast_timesformer.layers.rotary import apply_rotary

METHODS = ("rollout", "cls", "temporal", "pooling", "gradcam")
_MATRIX = (RegularAttention, PerformerAttention)  # mechanisms with a token-to-token attention matrix


class ExplainError(FastTimeSformerError, ValueError):
    """An attention map that this model cannot give; the message names the method to use instead."""


# -- recording the attention of every call -----------------------------------------------------------------
@dataclass
class AttentionCall:
    """One call of an attention module: ``weights`` are float64 on the CPU, averaged over heads.

    ``kind="matrix"``: (G, L, L), row i = how query i mixes the L tokens (softmax or implicit FAVOR+).
    ``kind="pooling"``: (G, 2, L), Fastformer's alpha (global query) and beta (global key) over tokens.
    G is the number of groups the block attends within (B*N temporal, B*T spatial, B joint).
    """

    block: int
    axis: str  # "time" or "space"
    kind: str
    weights: torch.Tensor


@dataclass
class AttentionRecorder:
    """The calls recorded by :func:`record_attention`, in forward order."""

    calls: list[AttentionCall] = field(default_factory=list)

    def last(self, axis: str) -> AttentionCall:
        """The last recorded call on ``axis``."""
        return [call for call in self.calls if call.axis == axis][-1]


def _qkv64(module: Attention, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None):
    """The module's q, k, v recomputed in float64: (G, H, L, d) each."""
    weight, bias = module.qkv.weight.double(), None if module.qkv.bias is None else module.qkv.bias.double()
    g, length, _ = x.shape
    qkv = F.linear(x.double(), weight, bias).view(g, length, 3, module.heads, module.dim_head)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (G, L, 3, H, d) -> 3 x (G, H, L, d)
    if rope is not None:
        q, k = apply_rotary(q, *rope), apply_rotary(k, *rope)
    return q, k, v


def attention_weights(
    module: Attention,
    x: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[str, torch.Tensor]:
    """What ``module(x, mask=mask, rope=rope)`` attends with, recomputed in float64: (kind, weights).

    Regular: ``softmax(q k^T / sqrt(d))``. Performer: the implicit attention of its random features.
    Fastformer: its pooling weights (alpha, beta). Per head: ``"matrix"`` weights are (G, H, L, L),
    ``"pooling"`` ones (G, H, 2, L), on the device of ``x``.
    """
    q, k, _ = _qkv64(module, x, rope)
    d = q.shape[-1]
    if isinstance(module, FastformerAttention):
        return "pooling", _fastformer_pooling(module, q, k, mask)
    if isinstance(module, PerformerAttention):
        projection = module.projection_matrix.double()
        if module.kernel == "softmax":
            qf = softmax_kernel_features(q, projection, is_query=True)
            kf = softmax_kernel_features(k, projection, is_query=False, mask=mask)
        else:
            qf, kf = relu_kernel_features(q, projection), relu_kernel_features(k, projection, mask=mask)
        scores = qf @ kf.transpose(-2, -1)  # (G, H, L, L)
        return "matrix", scores / scores.sum(-1, keepdim=True).clamp_min(1e-300)
    if isinstance(module, RegularAttention):
        scores = (q @ k.transpose(-2, -1)) * d**-0.5  # (G, H, L, L)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        return "matrix", scores.softmax(-1)
    raise ExplainError(f"cannot read the attention of {type(module).__name__}: use method='gradcam'")


def _fastformer_pooling(module: FastformerAttention, q, k, mask) -> torch.Tensor:
    """alpha and beta of Fastformer (see attention/fastformer.py) -> (G, H, 2, L)."""
    scale = q.shape[-1] ** -0.5

    def pool(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scores = (x * (w * scale).unsqueeze(-2)).sum(-1)  # (G, H, L)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        return scores.softmax(-1)

    alpha = pool(q, module.w_q.double())
    global_query = (alpha.unsqueeze(-2) @ q).squeeze(-2)  # (G, H, d)
    beta = pool(k, module.w_k.double() * global_query)
    return torch.stack([alpha, beta], dim=2)


@contextlib.contextmanager
def record_attention(model: nn.Module) -> Iterator[AttentionRecorder]:
    """Record the attention of every attention call of a FastTimeSformer while the block is open."""
    recorder = AttentionRecorder()
    handles = []
    for index, block in enumerate(model.blocks):
        for axis, name in (("time", "temporal_attn"), ("space", "attn")):
            module = getattr(block, name, None)
            if module is None:
                continue

            def hook(module, args, kwargs, output, index=index, axis=axis):
                x = args[0] if args else kwargs["x"]
                kind, weights = attention_weights(
                    module, x.detach(), mask=kwargs.get("mask"), rope=kwargs.get("rope")
                )
                recorder.calls.append(AttentionCall(index, axis, kind, weights.mean(1).cpu()))

            handles.append(module.register_forward_hook(hook, with_kwargs=True))
    try:
        yield recorder
    finally:
        for handle in handles:
            handle.remove()


# -- maps ------------------------------------------------------------------------------------------------
def _mechanism(model: nn.Module, axis: str) -> str:
    return model.time_attention if axis == "time" else model.space_attention


def _require_matrix(model: nn.Module, method: str) -> None:
    divided = model.attention_type == "divided_space_time"
    axes = ("time", "space") if divided and method == "rollout" else ("space",)
    pooled = [
        f"{axis}: {_mechanism(model, axis)!r}" for axis in axes if _mechanism(model, axis) == "fastformer"
    ]
    if pooled:
        raise ExplainError(
            f"method={method!r} needs token-to-token attention, but this model uses fastformer "
            f"({', '.join(pooled)}), which has none: use method='pooling' (its additive pooling weights) "
            "or method='gradcam'"
        )


def check_method(model: nn.Module, method: str) -> None:
    """Raise :class:`ExplainError` unless ``model`` can give maps by ``method``; the message names one that
    can."""
    if method not in METHODS:
        raise ExplainError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    if method in ("rollout", "cls"):
        _require_matrix(model, method)
    elif method == "temporal" and model.attention_type != "divided_space_time":
        why = (
            "space_only has no attention across frames"
            if model.attention_type == "space_only"
            else "joint_space_time attends over space and time at once, with no separate temporal attention"
        )
        raise ExplainError(
            f"method='temporal' reads the temporal attention of divided_space_time blocks, but this model's "
            f"attention_type is {model.attention_type!r} ({why}): use method='rollout', 'cls' or 'gradcam'"
        )
    elif method == "pooling" and model.space_attention != "fastformer":
        raise ExplainError(
            f"method='pooling' reads fastformer's pooling weights, but this model's attention is "
            f"{model.space_attention!r}: use method='rollout', 'cls' or 'gradcam'"
        )


def default_method(model: nn.Module) -> str:
    """``rollout`` where the model has attention matrices throughout, else ``pooling`` (fastformer)."""
    try:
        _require_matrix(model, "rollout")
    except ExplainError:
        return "pooling" if model.space_attention == "fastformer" else "gradcam"
    return "rollout"


def _frame_weights(mask: torch.Tensor | None, b: int, t: int) -> torch.Tensor:
    """(B, T) float64: each real frame's share of the CLS average."""
    real = torch.ones(b, t, dtype=torch.float64) if mask is None else mask.double().cpu()
    return real / real.sum(1, keepdim=True)


def _rollout(model, recorder, b, t, n, mask) -> torch.Tensor:
    """CLS row of the rollout over the input patch tokens -> (B, N, T) (see the module docstring)."""
    w = _frame_weights(mask, b, t)
    layout = model.attention_type
    if layout == "space_only":
        rows = torch.cat([w.unsqueeze(-1), torch.zeros(b, t, n, dtype=torch.float64)], dim=-1)  # (B, T, 1+N)
        for call in reversed(recorder.calls):
            a = call.weights.view(b, t, 1 + n, 1 + n)
            rows = 0.5 * rows + 0.5 * torch.einsum("btq,btqk->btk", rows, a)
        return rows[:, :, 1:].transpose(1, 2)  # (B, N, T)
    cls = torch.ones(b, dtype=torch.float64)
    patches = torch.zeros(b, n, t, dtype=torch.float64)
    for call in reversed(recorder.calls):
        a = call.weights  # heads averaged
        if layout == "joint_space_time":
            row = torch.cat([cls.unsqueeze(1), patches.reshape(b, n * t)], dim=1)  # (B, 1+N*T), (n t) order
            row = 0.5 * row + 0.5 * torch.einsum("bq,bqk->bk", row, a)
            cls, patches = row[:, 0], row[:, 1:].reshape(b, n, t)
        elif call.axis == "time":  # (B*N, T, T): CLS takes no part
            a = a.view(b, n, t, t)
            patches = 0.5 * patches + 0.5 * torch.einsum("bnq,bnqk->bnk", patches, a)
        else:  # spatial, per frame: (B*T, 1+N, 1+N), CLS copied into every frame
            a = a.view(b, t, 1 + n, 1 + n)
            rows = torch.cat([(cls.unsqueeze(1) * w).unsqueeze(-1), patches.transpose(1, 2)], dim=-1)
            mixed = torch.einsum("btq,btqk->btk", rows, a)  # (B, T, 1+N)
            cls = 0.5 * cls + 0.5 * mixed[:, :, 0].sum(1)
            patches = 0.5 * patches + 0.5 * mixed[:, :, 1:].transpose(1, 2)
    return patches


def _last_layer(model, recorder, method, b, t, n, mask) -> torch.Tensor:
    """cls / temporal / pooling maps from the last block -> (B, N, T)."""
    layout = model.attention_type
    if method == "temporal":
        call = recorder.last("time")
        if call.kind == "pooling":
            return call.weights.mean(1).view(b, n, t)  # (alpha + beta) / 2
        a = call.weights.view(b, n, t, t)  # (B, N, query, key)
        queries = torch.ones(b, t, dtype=torch.float64) if mask is None else mask.double().cpu()
        return torch.einsum("bq,bnqk->bnk", queries / queries.sum(1, keepdim=True), a)
    call = recorder.last("space")
    if method == "pooling":
        row = call.weights.mean(1)  # (G, L): (alpha + beta) / 2
    else:
        row = call.weights[:, 0]  # (G, L): the CLS query's row
    if layout == "joint_space_time":
        return row[:, 1:].reshape(b, n, t)
    return (row.view(b, t, 1 + n)[:, :, 1:] * _frame_weights(mask, b, t).unsqueeze(-1)).transpose(1, 2)


def _gradcam(model, video, mask, target) -> tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM on the patch tokens entering the last block -> (B, N, T) and the logits (B, C)."""
    store: dict[str, torch.Tensor] = {}

    def pre_hook(module, args, kwargs):
        tokens = args[0].detach().requires_grad_(True)  # cut below: only the gradient here is needed
        store["tokens"] = tokens
        return (tokens, *args[1:]), kwargs

    handle = model.blocks[-1].register_forward_pre_hook(pre_hook, with_kwargs=True)
    try:
        # inference_mode(False) + clone: a clip made under torch.inference_mode cannot enter autograd as is
        with torch.inference_mode(False), torch.enable_grad():
            video = video.clone()
            logits = model(video, mask)
            classes = logits.argmax(-1) if target is None else target
            score = logits.gather(1, classes.view(-1, 1)).sum()  # clips are independent: one backward
            (grad,) = torch.autograd.grad(score, store["tokens"])
    finally:
        handle.remove()
    tokens = store["tokens"].detach().double()
    grad = grad.double()
    b, t = video.shape[:2]
    if model.attention_type == "space_only":  # (B*T, 1+N, D) -> patches (B, N, T, D)
        n = tokens.shape[1] - 1
        tokens, grad = (z[:, 1:].reshape(b, t, n, -1).transpose(1, 2) for z in (tokens, grad))
    else:  # (B, 1+N*T, D) in (n t) order -> (B, N, T, D)
        n = (tokens.shape[1] - 1) // t
        tokens, grad = (z[:, 1:].reshape(b, n, t, -1) for z in (tokens, grad))
    real = torch.ones(b, 1, t, dtype=torch.float64) if mask is None else mask.double().cpu()[:, None, :]
    tokens, grad = tokens.cpu(), grad.cpu() * real.unsqueeze(-1)
    channel_weights = grad.sum((1, 2), keepdim=True) / (n * real.sum((1, 2), keepdim=True)[..., None])
    cam = torch.relu((channel_weights * tokens).sum(-1)) * real  # (B, N, T); padded frames stay 0
    return cam, logits.detach()


@dataclass
class Explanation:
    """Maps of a batch of clips: ``maps[method]`` is float32 (B, T, Hp, Wp); ``logits`` (B, C)."""

    maps: dict[str, torch.Tensor]
    logits: torch.Tensor
    grid: tuple[int, int]


def explain_clips(
    model: nn.Module,
    video: torch.Tensor,
    *,
    methods: Sequence[str] = ("rollout",),
    mask: torch.Tensor | None = None,
    target: torch.Tensor | int | None = None,
) -> Explanation:
    """Maps of every method in ``methods`` for a batch of clips, from one recorded forward pass.

    Args:
        model: a FastTimeSformer (evaluated as it is: put it in eval mode first).
        video: float clips as the model takes them, (B, T, C, H, W) (or (B, C, T, H, W) for "bcthw").
        methods: names from :data:`METHODS` (see the module docstring for what each computes).
        mask: optional bool (B, T), True for real frames; padded frames get zero weight.
        target: class whose logit ``gradcam`` explains (an int, or (B,) indices); None: the prediction.
    """
    for method in methods:
        check_method(model, method)
    if video.ndim != 5:
        raise ExplainError(f"expected a batch of clips (B, T, C, H, W), got shape {tuple(video.shape)}")
    frames_axis = 2 if getattr(model, "input_layout", "btchw") == "bcthw" else 1
    b, t = video.shape[0], video.shape[frames_axis]
    hp, wp = (side // model.patch_size for side in video.shape[-2:])
    was_training = model.training
    model.eval()
    try:
        maps, logits = _explain(model, video, methods, mask, target, b, t, hp * wp)
    finally:
        model.train(was_training)
    out = {
        m: maps[m].transpose(1, 2).reshape(b, t, hp, wp).float() for m in methods
    }  # (B, N, T) -> (B, T, Hp, Wp)
    return Explanation(maps=out, logits=logits.float().cpu(), grid=(hp, wp))


def _explain(model, video, methods, mask, target, b, t, n) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The maps (B, N, T) of ``methods`` and the logits, the model in eval mode."""
    maps: dict[str, torch.Tensor] = {}
    logits = None
    wanted = [m for m in methods if m != "gradcam"]
    if wanted:
        with torch.no_grad(), record_attention(model) as recorder:
            logits = model(video, mask)
        for method in wanted:
            if method == "rollout":
                maps[method] = _rollout(model, recorder, b, t, n, mask)
            else:
                maps[method] = _last_layer(model, recorder, method, b, t, n, mask)
    if "gradcam" in methods:
        if isinstance(target, int):
            target = torch.full((b,), target, dtype=torch.long)
        if target is not None:
            target = target.to(video.device)
        maps["gradcam"], grad_logits = _gradcam(model, video, mask, target)
        logits = grad_logits if logits is None else logits
    return maps, logits


def attention_maps(
    model: nn.Module,
    video: torch.Tensor,
    *,
    method: str = "rollout",
    mask: torch.Tensor | None = None,
    target: torch.Tensor | int | None = None,
) -> torch.Tensor:
    """One map per clip, float32 (B, T, Hp, Wp): where ``model`` looks in ``video`` by ``method``.

    See the module docstring for the methods and :func:`explain_clips` for the arguments. Raises
    :class:`ExplainError` for a method the model's mechanism or layout cannot give, naming one that works.
    """
    return explain_clips(model, video, methods=(method,), mask=mask, target=target).maps[method]


# -- measuring a map against where things are -------------------------------------------------------
def patch_coverage(region: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Pixel mask (T, H, W) -> the fraction of each patch it covers, (T, Hp, Wp) in [0, 1]."""
    return F.avg_pool2d(region.double().unsqueeze(1), patch_size).squeeze(1)  # (T, 1, H, W) -> (T, Hp, Wp)


def region_mass(patch_map: torch.Tensor, coverage: torch.Tensor) -> tuple[float, float]:
    """(mass, share): the fraction of a map's weight on a region, and the region's share of the clip.

    ``coverage`` (T, Hp, Wp) is the fraction of each patch the region covers (:func:`patch_coverage`); mass
    = sum(map * coverage) / sum(map), share = mean(coverage). A map that ignores the region has mass ~
    share; mass / share well above 1 says the map concentrates on it.
    """
    patch_map, coverage = patch_map.double(), coverage.double()
    return float((patch_map * coverage).sum() / patch_map.sum().clamp_min(1e-300)), float(coverage.mean())


__all__ = [
    "METHODS",
    "AttentionCall",
    "AttentionRecorder",
    "ExplainError",
    "Explanation",
    "attention_maps",
    "attention_weights",
    "check_method",
    "default_method",
    "explain_clips",
    "patch_coverage",
    "record_attention",
    "region_mass",
]
