"""FastTimeSformer: TimeSformer (Bertasius et al., 2021) with switchable attention mechanisms.

Token layout (written down once, used everywhere below). A clip of T frames, each cut into an Hp x Wp grid of
N = Hp*Wp patches (row-major), becomes

    x = [CLS ; patch tokens]                 (B, 1 + N*T, dim)
    patch token index = n * T + t            (patch-major, time-minor: the official TimeSformer order)

so the T tokens of one patch are contiguous: the temporal groups (B*N, T, dim) are a free view, and only the
spatial groups (B*T, N, dim) need one permute. ``space_only`` instead keeps one row per frame,
(B*T, 1 + N, dim), each with its own CLS copy, and averages over frames at the end.

The divided block follows the official code exactly (reference notes section 1.4): temporal attention over
patch tokens only (CLS excluded) -> ``temporal_fc`` -> residual; spatial attention per frame with the
*block-input* CLS repeated into every frame and its T outputs averaged back; MLP over all tokens. Parameter
names mirror the official checkpoints (``blocks.i.temporal_attn.qkv`` ...) so they load 1:1.

Geometry (T, H, W) always comes from the input tensor; learned embeddings are interpolated when it differs
from the configured ``num_frames`` / ``image_size``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from fast_timesformer.attention import (
    ATTENTIONS,
    DividedAttention,
    PerformerAttention,
    build_attention,
    check_attention_kwargs,
    check_attention_name,
)
from fast_timesformer.checkpoints import PretrainedMixin, init_weights_enabled
from fast_timesformer.checkpoints.validation import QK_INIT_STD_MAX
from fast_timesformer.layers import DropPath, Mlp, PatchEmbed
from fast_timesformer.layers.fast_paths import can_fuse_linears, fused_linears
from fast_timesformer.layers.rotary import rotary_cos_sin
from fast_timesformer.layers.sincos import sincos_embedding

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")
INPUT_LAYOUTS = ("btchw", "bcthw")
POS_EMBS = ("learned", "rotary", "sincos")
INTERPOLATIONS = ("nearest", "linear")

Rope = tuple[torch.Tensor, torch.Tensor]


class Block(nn.Module):
    """One TimeSformer block for any ``attention_type`` (see the module docstring for the token layout)."""

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        dim_head: int,
        mlp_ratio: float,
        attention_type: str,
        time_attention: str,
        space_attention: str,
        attention_kwargs: Mapping[str, Any] | None,
        attn_dropout: float,
        ff_dropout: float,
        drop_path: float,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.attention_type = attention_type
        common = dict(
            heads=heads,
            dim_head=dim_head,
            qkv_bias=qkv_bias,
            proj_dropout=ff_dropout,
            attention_kwargs=attention_kwargs,
        )
        if attention_type == "divided_space_time":
            self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.temporal_attn = build_attention(time_attention, dim, attn_dropout=attn_dropout, **common)
            self.temporal_fc = nn.Linear(dim, dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = build_attention(space_attention, dim, attn_dropout=attn_dropout, **common)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden_dim=int(dim * mlp_ratio), dropout=ff_dropout)

    def forward(
        self,
        x: torch.Tensor,
        *,
        frames: int,
        mask: torch.Tensor | None = None,
        ropes: dict[str, Rope] | None = None,
    ) -> torch.Tensor:
        """x: (B, 1+N*T, dim), or (B*T, 1+N, dim) for space_only; mask: bool (B, T) or None."""
        ropes = ropes or {}
        if self.attention_type == "divided_space_time":
            x = self._divided_attention(x, frames, mask, ropes)
        else:
            token_mask = None
            if self.attention_type == "joint_space_time" and mask is not None:
                token_mask = _joint_token_mask(mask, (x.shape[1] - 1) // frames)
            x = x + self.drop_path(self.attn(self.norm1(x), mask=token_mask, rope=ropes.get("space")))
        return x + self.drop_path(self.mlp(self.norm2(x)))

    #: Compose temporal_fc with the temporal attention's output projection where that is exact (below).
    fuse_temporal_fc = True

    def _fuse_temporal_fc(self, rows: int) -> bool:
        """True where composing temporal_attn.proj with temporal_fc is exact (nothing random between them),
        cheaper for ``rows`` tokens and unobserved (hooks on ``temporal_attn``, for attention maps or
        features, keep firing); see :mod:`fast_timesformer.layers.fast_paths`."""
        attn = self.temporal_attn
        exact = not self.training or (self.drop_path.drop_prob == 0 and attn.proj_drop.p == 0)
        return self.fuse_temporal_fc and exact and can_fuse_linears(attn.proj, self.temporal_fc, rows, [attn])

    def _divided_attention(
        self, x: torch.Tensor, frames: int, mask: torch.Tensor | None, ropes: dict[str, Rope]
    ) -> torch.Tensor:
        b, length, dim = x.shape
        n = (length - 1) // frames
        cls, patches = x[:, :1], x[:, 1:]  # (B, 1, D), (B, N*T, D)

        # Temporal attention: each patch position attends over its T frames; CLS takes no part.
        time_mask = None if mask is None else mask.repeat_interleave(n, dim=0)  # (B*N, T)
        xt = self.temporal_norm1(patches.reshape(b * n, frames, dim))  # (B*N, T, D): a view of (n t) order
        attn = self.temporal_attn
        if self._fuse_temporal_fc(b * n * frames):  # temporal_fc(proj(h)) as one linear map (fast_paths.py)
            rt = fused_linears(
                attn.mix(xt, mask=time_mask, rope=ropes.get("time")), attn.proj, self.temporal_fc
            )
        else:  # official order: drop path (and dropout) on the attention output, then temporal_fc
            rt = self.temporal_fc(self.drop_path(attn(xt, mask=time_mask, rope=ropes.get("time"))))
        xt = patches + rt.reshape(b, n * frames, dim)

        # Spatial attention: each frame attends over its N patches plus a copy of the block-input CLS.
        # One cat does both the (n t) -> (t n) regrouping and the CLS insertion: a single copy.
        xs = torch.cat(
            [cls.unsqueeze(1).expand(b, frames, 1, dim), xt.view(b, n, frames, dim).transpose(1, 2)], dim=2
        ).view(b * frames, 1 + n, dim)  # (B, T, 1+N, D) -> (B*T, 1+N, D)
        rs = self.drop_path(self.attn(self.norm1(xs), rope=ropes.get("space")))
        rs = rs.view(b, frames, 1 + n, dim)
        cls_out = _masked_frame_mean(rs[:, :, 0], mask).unsqueeze(1)  # (B, 1, D)
        # The residual add reads the (t n)-ordered outputs through a transposed view and writes (n t) order.
        patches_out = xt.view(b, n, frames, dim) + rs[:, :, 1:].transpose(1, 2)  # (B, N, T, D)
        return torch.cat([cls + cls_out, patches_out.reshape(b, n * frames, dim)], dim=1)


def _masked_frame_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over frames of (B, T, ...) values, counting only frames where mask (B, T) is True."""
    if mask is None:
        return values.mean(dim=1)
    weights = mask.to(values.dtype).reshape(mask.shape + (1,) * (values.ndim - 2))
    return (values * weights).sum(dim=1) / weights.sum(dim=1)


def _joint_token_mask(mask: torch.Tensor, patches: int) -> torch.Tensor:
    """Frame mask (B, T) -> token mask (B, 1 + N*T) in (n t) order, CLS always real."""
    tokens = mask.unsqueeze(1).expand(-1, patches, -1).reshape(mask.shape[0], -1)
    return torch.cat([tokens.new_ones(mask.shape[0], 1), tokens], dim=1)


class FastTimeSformer(PretrainedMixin, nn.Module):
    """TimeSformer video classifier with ``regular`` (SDPA), ``performer`` (FAVOR+) or ``fastformer`` attention.

    Args:
        num_frames: frames the learned ``time_embed`` is sized for (other counts are interpolated).
        num_classes: classifier outputs; 0 gives an identity head (features only).
        image_size: side (or (H, W)) the learned ``pos_embed`` is sized for (other sizes are interpolated).
        patch_size: square patch side in pixels.
        channels: input channels.
        dim: token width.
        depth: number of blocks.
        heads: attention heads.
        dim_head: width per head (default dim // heads; TimeSformer uses 64).
        mlp_ratio: MLP hidden width / dim.
        attention: mechanism for every attention layer: "regular" | "performer" | "fastformer".
        time_attention: override for the temporal attention of divided blocks (e.g. "regular" over 8 frames).
        space_attention: override for spatial / joint attention (e.g. "performer" over 785 patches).
        attention_type: "divided_space_time" | "joint_space_time" | "space_only".
        attention_kwargs: mechanism options, e.g. {"nb_features": 256, "kernel": "softmax", "redraw_interval": 1000}.
        pos_emb: "learned" (official absolute embeddings), "rotary" (RoPE: 1-D time, 2-D space, 3-D joint)
            or "sincos" (fixed sinusoidal embeddings added to the tokens, time and 2-D space). Every
            mechanism takes every choice. Fastformer has no query-key products, so rotary is not relative
            there: the rotated queries and keys make its pooling scores and its query residual depend on
            each token's absolute position (on the demo task it trains far better than sincos, BENCHMARKS.md).
        attn_dropout: dropout on attention weights.
        ff_dropout: dropout in the MLP and after attention output projections.
        drop_path: maximum stochastic-depth rate, linearly increasing over the blocks (official: 0.1).
        input_layout: "btchw" (default, (B, T, C, H, W)) or "bcthw" (channels-first clips).
        embed_interpolation: resize learned embeddings for other geometries with "nearest" (official, for
            parity) or "linear" (bilinear over space, linear over time).
        qkv_bias: bias in the qkv projections (True in TimeSformer).
        qk_init_std: standard deviation of the initial query and key weights (the query and key rows of every
            ``qkv`` weight, temporal and spatial), truncated at 3 sigma. The official 0.02 starts every
            attention almost uniform; 0.2 made the long task's second move come on more seeds (16 frames of
            32 px: 2 of 6 in 3,000 steps, 3 of 6 in 6,000, against 0 of 6 in 3,000 with 0.02; full size: 1
            of 4, and 0.02 also learned it on the one seed tried), not on all (BENCHMARKS.md, "Larger
            initial query/key weights"). Only random initialisation reads it: loaded weights are never
            redrawn.
    """

    def __init__(
        self,
        *,
        num_frames: int = 8,
        num_classes: int = 400,
        image_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        channels: int = 3,
        dim: int = 768,
        depth: int = 12,
        heads: int = 12,
        dim_head: int | None = None,
        mlp_ratio: float = 4.0,
        attention: str = "regular",
        time_attention: str | None = None,
        space_attention: str | None = None,
        attention_type: str = "divided_space_time",
        attention_kwargs: Mapping[str, Any] | None = None,
        pos_emb: str = "learned",
        attn_dropout: float = 0.0,
        ff_dropout: float = 0.0,
        drop_path: float = 0.0,
        input_layout: str = "btchw",
        embed_interpolation: str = "nearest",
        qkv_bias: bool = True,
        qk_init_std: float = 0.02,
    ) -> None:
        super().__init__()
        self.config = dict(
            num_frames=num_frames, num_classes=num_classes,
            image_size=list(image_size) if isinstance(image_size, (tuple, list)) else image_size,
            patch_size=patch_size, channels=channels, dim=dim, depth=depth, heads=heads, dim_head=dim_head,
            mlp_ratio=mlp_ratio, attention=attention, time_attention=time_attention,
            space_attention=space_attention, attention_type=attention_type,
            attention_kwargs=dict(attention_kwargs or {}), pos_emb=pos_emb, attn_dropout=attn_dropout,
            ff_dropout=ff_dropout, drop_path=drop_path, input_layout=input_layout,
            embed_interpolation=embed_interpolation, qkv_bias=qkv_bias, qk_init_std=qk_init_std,
        )  # fmt: skip
        _check_choice("attention_type", attention_type, ATTENTION_TYPES)
        _check_choice("input_layout", input_layout, INPUT_LAYOUTS)
        _check_choice("pos_emb", pos_emb, POS_EMBS)
        _check_choice("embed_interpolation", embed_interpolation, INTERPOLATIONS)
        number = isinstance(qk_init_std, (int, float)) and not isinstance(qk_init_std, bool)
        if not number or not 0 < qk_init_std < QK_INIT_STD_MAX:
            raise ValueError(
                f"qk_init_std must be a number in (0, {QK_INIT_STD_MAX:g}), got {qk_init_std!r} (official: 0.02)"
            )
        check_attention_name(attention)
        if time_attention is not None and attention_type != "divided_space_time":
            raise ValueError(
                f"time_attention only applies to attention_type='divided_space_time' (got {attention_type!r}); "
                "use attention= or space_attention= instead"
            )
        self.time_attention = check_attention_name(time_attention or attention, "time_attention")
        self.space_attention = check_attention_name(space_attention or attention, "space_attention")
        in_use = [self.space_attention] + (
            [self.time_attention] if attention_type == "divided_space_time" else []
        )
        attention_kwargs = check_attention_kwargs(attention_kwargs, in_use)
        if dim_head is None:
            if dim % heads:
                raise ValueError(
                    f"dim ({dim}) must be divisible by heads ({heads}), or pass dim_head explicitly"
                )
            dim_head = dim // heads
        if pos_emb == "sincos" and dim % 2:
            raise ValueError(f"pos_emb='sincos' needs an even dim, got {dim}")
        if pos_emb == "rotary" and dim_head % 2:
            raise ValueError(f"pos_emb='rotary' needs an even dim_head, got {dim_head}")
        size = tuple(image_size) if isinstance(image_size, (tuple, list)) else (image_size, image_size)
        if size[0] % patch_size or size[1] % patch_size:
            raise ValueError(f"image_size {size} must be a multiple of patch_size {patch_size}")

        self.num_frames, self.num_classes, self.dim = num_frames, num_classes, dim
        self.patch_size, self.channels, self.dim_head = patch_size, channels, dim_head
        self.attention_type, self.input_layout, self.pos_emb = attention_type, input_layout, pos_emb
        self.embed_interpolation, self.qk_init_std = embed_interpolation, float(qk_init_std)
        self.grid = (size[0] // patch_size, size[1] // patch_size)
        self.grad_checkpointing = False

        self.patch_embed = PatchEmbed(patch_size=patch_size, channels=channels, dim=dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if pos_emb == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid[0] * self.grid[1], dim))
            if attention_type != "space_only":
                self.time_embed = nn.Parameter(torch.zeros(1, num_frames, dim))
        rates = torch.linspace(0, drop_path, depth, device="cpu").tolist()  # as official; cpu: meta-safe
        self.blocks = nn.ModuleList(
            Block(
                dim, heads=heads, dim_head=dim_head, mlp_ratio=mlp_ratio, attention_type=attention_type,
                time_attention=self.time_attention, space_attention=self.space_attention,
                attention_kwargs=attention_kwargs, attn_dropout=attn_dropout, ff_dropout=ff_dropout,
                drop_path=rate, qkv_bias=qkv_bias,
            )
            for rate in rates
        )  # fmt: skip
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()
        if init_weights_enabled():  # False while a checkpoint loader builds the model to fill it
            self._init_weights()

    # -- initialisation and housekeeping -------------------------------------------------------------
    @torch.no_grad()
    def _init_weights(self) -> None:
        """Official init: trunc-normal(0.02) for Linear weights, CLS and pos_embed; zero time_embed/temporal_fc.

        With ``qk_init_std`` other than 0.02, the query and key rows of every ``qkv`` are then redrawn with it.
        """
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        if hasattr(self, "pos_embed"):
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        # time_embed stays zero and every block's temporal_fc starts at zero, so at step 0 the model is the
        # image ViT applied per frame (official behaviour: the bug-turned-feature zeroes all 12 blocks).
        for block in self.blocks:
            if hasattr(block, "temporal_fc"):
                nn.init.zeros_(block.temporal_fc.weight)
                nn.init.zeros_(block.temporal_fc.bias)
            for attn in (getattr(block, "temporal_attn", None), block.attn):
                if attn is not None and hasattr(attn, "reset_fastformer_parameters"):
                    attn.reset_fastformer_parameters()
        if self.qk_init_std == 0.02:
            return
        for block in self.blocks:  # after the official draws, so that every other tensor matches them
            for attn in (getattr(block, "temporal_attn", None), block.attn):
                if attn is not None:
                    std, rows = self.qk_init_std, 2 * attn.heads * attn.dim_head  # [q; k] rows of [q; k; v]
                    nn.init.trunc_normal_(attn.qkv.weight[:rows], std=std, a=-3 * std, b=3 * std)

    def no_weight_decay(self) -> set[str]:
        """Parameter names that should not get weight decay (embeddings and the CLS token)."""
        return {name for name in ("pos_embed", "cls_token", "time_embed") if hasattr(self, name)}

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block in the backward pass instead of storing its activations."""
        self.grad_checkpointing = enable

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` (0: identity)."""
        self.num_classes = num_classes
        self.config["num_classes"] = num_classes
        device = self.norm.weight.device
        self.head = nn.Linear(self.dim, num_classes, device=device) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.trunc_normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    def performer_modules(self) -> list[PerformerAttention]:
        """Every FAVOR+ attention layer of the model."""
        return [module for module in self.modules() if isinstance(module, PerformerAttention)]

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Redraw the random features of every performer layer (deterministic per layer when no generator)."""
        for module in self.performer_modules():
            module.redraw_features(generator)

    # from_pretrained / save_pretrained come from PretrainedMixin (fast_timesformer.checkpoints).

    # -- input checks and embeddings -----------------------------------------------------------------
    def _check_inputs(self, video: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Validate and return the video as (B, T, C, H, W)."""
        layout = "(B, T, C, H, W)" if self.input_layout == "btchw" else "(B, C, T, H, W)"
        if video.ndim != 5:
            raise ValueError(
                f"expected video {layout} with C={self.channels}, got a {video.ndim}-D tensor of shape "
                f"{tuple(video.shape)}"
                + (": add a batch dimension with video.unsqueeze(0)" if video.ndim == 4 else "")
            )
        if not video.is_floating_point():
            raise TypeError(
                f"expected a float video, got dtype {video.dtype}: convert and normalise it first"
            )
        if self.input_layout == "bcthw":
            video = video.transpose(1, 2)
        b, t, c, h, w = video.shape
        if c != self.channels:
            other = "bcthw" if self.input_layout == "btchw" else "btchw"
            raise ValueError(
                f"expected video {layout} with C={self.channels}, got {tuple(video.shape if self.input_layout == 'btchw' else video.transpose(1, 2).shape)}: "
                f"pass input_layout='{other}' if your clips are laid out the other way"
            )
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(
                f"frame size {h}x{w} is not a multiple of patch_size {self.patch_size}: resize or crop to e.g. "
                f"{max(self.patch_size, h // self.patch_size * self.patch_size)}x"
                f"{max(self.patch_size, w // self.patch_size * self.patch_size)}"
            )
        if mask is not None:
            if mask.shape != (b, t) or mask.dtype != torch.bool:
                raise ValueError(
                    f"expected mask of shape (B, T) = ({b}, {t}) and dtype bool (True = real frame), "
                    f"got {tuple(mask.shape)} {mask.dtype}"
                )
            if not bool(mask.any(dim=1).all()):
                raise ValueError("every clip needs at least one real frame: a mask row is all False")
        return video

    def _interpolated_pos_embed(self, grid: tuple[int, int]) -> torch.Tensor:
        """pos_embed (1, 1+N0, D) resized to the input's patch grid (CLS position kept)."""
        if grid == self.grid:
            return self.pos_embed
        cls_pos, patch_pos = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        patch_pos = patch_pos.reshape(1, *self.grid, self.dim).permute(0, 3, 1, 2)  # (1, D, H0, W0)
        mode = "nearest" if self.embed_interpolation == "nearest" else "bilinear"
        patch_pos = F.interpolate(patch_pos, size=grid, mode=mode)
        return torch.cat([cls_pos, patch_pos.flatten(2).transpose(1, 2)], dim=1)

    def _interpolated_time_embed(self, frames: int) -> torch.Tensor:
        """time_embed (1, T0, D) resized to the input's frame count."""
        if frames == self.time_embed.shape[1]:
            return self.time_embed
        mode = "nearest" if self.embed_interpolation == "nearest" else "linear"
        return F.interpolate(self.time_embed.transpose(1, 2), size=frames, mode=mode).transpose(1, 2)

    def _ropes(self, frames: int, grid: tuple[int, int], device: torch.device) -> dict[str, Rope] | None:
        """Rotary (cos, sin) tables for this geometry: 1-D time, 2-D space (+CLS), 3-D joint (+CLS)."""
        if self.pos_emb != "rotary":
            return None
        t = torch.arange(frames, device=device)
        rows = torch.arange(grid[0], device=device).repeat_interleave(grid[1])  # row-major patches
        cols = torch.arange(grid[1], device=device).repeat(grid[0])
        ropes = {"time": rotary_cos_sin([t], self.dim_head)}
        if self.attention_type == "joint_space_time":  # (n t) order
            ropes["space"] = rotary_cos_sin(
                [t.repeat(len(rows)), rows.repeat_interleave(frames), cols.repeat_interleave(frames)],
                self.dim_head,
                prepend_identity=True,
            )
        else:
            ropes["space"] = rotary_cos_sin([rows, cols], self.dim_head, prepend_identity=True)
        return ropes

    def _embed(self, video: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, T, C, H, W) -> tokens: (B, 1+N*T, D), or (B*T, 1+N, D) for space_only."""
        b, t, c, h, w = video.shape
        grid = (h // self.patch_size, w // self.patch_size)
        x = self.patch_embed(video.reshape(b * t, c, h, w))  # (B*T, N, D)
        cls = self.cls_token
        if self.pos_emb == "learned":
            pos = self._interpolated_pos_embed(grid)
            x, cls = x + pos[:, 1:], cls + pos[:, :1]
        elif self.pos_emb == "sincos":  # fixed; CLS carries no position
            rows = torch.arange(grid[0], device=x.device).repeat_interleave(grid[1])  # row-major patches
            cols = torch.arange(grid[1], device=x.device).repeat(grid[0])
            x = x + sincos_embedding([rows, cols], self.dim).to(x.dtype)
        if self.attention_type == "space_only":
            return torch.cat([cls.expand(b * t, -1, -1), x], dim=1), grid
        x = rearrange(x, "(b t) n d -> b n t d", b=b)
        if self.pos_emb == "learned":
            x = x + self._interpolated_time_embed(t).unsqueeze(1)  # CLS never gets time_embed
        elif self.pos_emb == "sincos":
            x = x + sincos_embedding([torch.arange(t, device=x.device)], self.dim).to(x.dtype)
        x = x.reshape(b, -1, self.dim)  # (B, N*T, D) in (n t) order
        return torch.cat([cls.expand(b, -1, -1), x], dim=1), grid

    # -- forward -------------------------------------------------------------------------------------
    def forward_features(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Pooled clip features (B, dim): the final-normed CLS token.

        Args:
            video: float clip, (B, T, C, H, W) (or (B, C, T, H, W) with input_layout="bcthw").
            mask: optional bool (B, T), True for real frames; padded frames influence nothing.
        """
        video = self._check_inputs(video, mask)
        b, t = video.shape[:2]
        x, grid = self._embed(video)
        ropes = self._ropes(t, grid, x.device)
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, frames=t, mask=mask, ropes=ropes, use_reentrant=False)
            else:
                x = block(x, frames=t, mask=mask, ropes=ropes)
        cls = x[:, 0]
        if self.attention_type == "space_only":
            cls = _masked_frame_mean(cls.reshape(b, t, self.dim), mask)  # official: average frames, then norm
        return self.norm(cls)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Classifier on pooled features (B, dim) -> logits (B, num_classes)."""
        return self.head(features)

    def forward(self, video: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, num_classes) for a float clip (B, T, C, H, W); see :meth:`forward_features`."""
        return self.forward_head(self.forward_features(video, mask))


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of {list(choices)}")


__all__ = ["ATTENTIONS", "ATTENTION_TYPES", "Block", "DividedAttention", "FastTimeSformer"]
