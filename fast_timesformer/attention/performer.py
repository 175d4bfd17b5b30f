"""FAVOR+ (Performer) attention: linear-time estimate of softmax attention with positive random features.

Choromanski et al., "Rethinking Attention with Performers" (2020). With x scaled by d^-1/4,

    phi(x) = m^-1/2 * exp(W x - |x|^2 / 2)        (W: m x d, rows drawn as below)

gives E[phi(q) . phi(k)] = exp(q . k / sqrt(d)), so ``phi(Q) (phi(K)^T V)`` normalised by
``phi(Q) phi(K)^T 1`` estimates exact softmax attention in O(N m d) time and O(N m) memory.

What this implementation does differently from performer-pytorch (see the reference notes):
- No ``+ eps`` on the features. performer-pytorch adds 1e-4 after subtracting one max over all keys, which
  floors ~all key features at unit-variance inputs and collapses the estimate to uniform averaging. The
  stabilisers here are exact no-ops in the normalised ratio (a constant per query row, and a constant per
  (batch, head) over keys), detached, and taken over real (unmasked) keys only, so neither padded tokens nor
  other batch elements can change a sample's output.
- The (m, d) projection is one buffer used through a matmul; it is never repeated per batch element.
- Features and the two linear-attention products run in float32 even under autocast (exp overflows bf16).
- Redraws are deterministic: draw number k of a module uses seed (feature_seed, k), so every distributed rank
  holding the same buffers draws the same features without communication.
"""

from __future__ import annotations

import contextlib
import math

import torch

from fast_timesformer.attention.base import Attention

KERNELS = ("softmax", "relu")
FEATURE_SCALINGS = ("chi", "sqrt_dim")
# Only a guard against 0/0 for a query whose features all underflow; far below any real denominator.
_TINY = 1e-30
# Unmasked softmax FAVOR+ runs over token chunks whose (B, H, chunk, m) float32 feature slabs are about this
# size, so the max / subtract / exp passes over each slab hit the cache instead of main memory (~1.5x faster
# at 6,272 tokens on a 2-core CPU).
_CHUNK_BYTES = 2 * 2**20


def orthogonal_random_features(
    nb_features: int,
    dim: int,
    *,
    scaling: str = "chi",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw an (nb_features, dim) matrix of orthogonal random features (Performer, section 2.4).

    Rows come in blocks of ``dim`` mutually orthogonal unit vectors (Q of the QR decomposition of a Gaussian
    matrix, sign-corrected so Q is Haar-distributed); the last block is truncated. Each row is then rescaled:
    ``chi`` gives it the norm of a Gaussian vector (so every row is marginally N(0, I), unbiased estimator),
    ``sqrt_dim`` gives every row norm sqrt(dim) (lower variance, slightly biased).
    """
    if scaling not in FEATURE_SCALINGS:
        raise ValueError(f"unknown feature scaling {scaling!r}; expected one of {FEATURE_SCALINGS}")
    gaussian = torch.randn(math.ceil(nb_features / dim), dim, dim, generator=generator)
    q, r = torch.linalg.qr(gaussian)  # batched: one orthonormal block per matrix
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1)).unsqueeze(-2)  # Haar: fix QR's sign ambiguity
    rows = q.transpose(-2, -1).reshape(-1, dim)[:nb_features]  # (blocks*dim, dim), rows orthogonal per block
    if scaling == "chi":
        norms = torch.randn(nb_features, dim, generator=generator).norm(dim=1)
    else:
        norms = torch.full((nb_features,), math.sqrt(dim))
    return rows * norms.unsqueeze(1)


def _project(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """(x d^-1/4) W^T for x (..., N, d), W (m, d) -> (..., N, m), as one 2-D matmul.

    The scaling is folded into the small (d, m) matrix, and the explicit 2-D product keeps torch.matmul from
    broadcasting W to one (d, m) copy per (batch, head) -- 300 MB per call for the temporal attention of an
    8 x 448 clip (4,704 groups x 6 heads), exactly the per-batch copy the seed suffered from.
    """
    d = x.shape[-1]
    return (x.reshape(-1, d) @ (projection.T * d**-0.25)).view(*x.shape[:-1], projection.shape[0])


def softmax_kernel_features(
    x: torch.Tensor, projection: torch.Tensor, *, is_query: bool, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Positive random features of q or k (B, H, N, d) -> (B, H, N, m), float32.

    The stabiliser subtracted inside the exp is a per-query-row max for queries and a per-(batch, head) max
    over real keys for keys; both cancel exactly in the normalised attention, so they are detached.
    Masked keys get zero features (they then add nothing to either sum).

    Cost: one matmul and three in-place passes over the (N, m) logits. For queries the ``-|x|^2 / 2`` term is
    a per-row constant, exactly like the stabiliser, so it cancels too and is never computed.
    """
    logits = _project(x, projection)  # (B, H, N, m)
    d = x.shape[-1]
    if is_query:
        with torch.no_grad():
            shift = logits.amax(dim=-1, keepdim=True)  # (B, H, N, 1)
    else:
        half_sq_norm = 0.5 * d**-0.5 * x.pow(2).sum(-1, keepdim=True)  # |x d^-1/4|^2 / 2, (B, H, N, 1)
        with torch.no_grad():
            # max over real keys and features of (logits - |x|^2/2), from the row maxima: no extra big pass.
            row_max = logits.amax(dim=-1, keepdim=True) - half_sq_norm
            if mask is not None:
                row_max = row_max.masked_fill(~mask[:, None, :, None], float("-inf"))
            stabiliser = row_max.amax(dim=-2, keepdim=True)  # (B, H, 1, 1)
        shift = half_sq_norm + stabiliser
    features = logits.sub_(shift).exp_()  # in place: the matmul's backward does not need its output
    if mask is not None and not is_query:
        features = features * mask[:, None, :, None]
    return features


def relu_kernel_features(
    x: torch.Tensor, projection: torch.Tensor, *, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Generalised-attention features ReLU(W x d^-1/4) + 1e-3 (Performer's "generalized ReLU" kernel)."""
    features = torch.relu(_project(x, projection)) + 1e-3
    if mask is not None:
        features = features * mask[:, None, :, None]
    return features


def linear_attention(q_features: torch.Tensor, k_features: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j), without any N x N tensor.

    The normaliser rides along as an extra all-ones value column, so numerator and denominator come out of
    the same two matmuls instead of two more passes over the (N, m) feature matrices.

    The products are associated the cheap way round. Long sequences: phi(Q) (phi(K)^T [V 1]), linear in N
    through the (m, d+1) context. Sequences shorter than about 2m(d+1)/(m+d+1) tokens (~100 for m=256,
    d=64 -- e.g. divided attention's 8-frame temporal groups): (phi(Q) phi(K)^T) [V 1], whose (N, N)
    product is then smaller and cheaper than the context. Same numbers either way (associativity).
    """
    n, m, d = v.shape[-2], q_features.shape[-1], v.shape[-1]
    v_ones = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)  # (B, H, N, d+1)
    if _short(n, m, d):
        out = (q_features @ k_features.transpose(-2, -1)) @ v_ones  # (B, H, N, N) @ (B, H, N, d+1)
    else:
        context = k_features.transpose(-2, -1) @ v_ones  # (B, H, m, d+1): [phi(K)^T V | phi(K)^T 1]
        out = q_features @ context  # (B, H, N, d+1)
    return out[..., :d] / out[..., d:].clamp_min(_TINY)


def _short(tokens: int, features: int, dim_head: int) -> bool:
    """True where (phi(Q) phi(K)^T) V costs fewer FLOPs than phi(Q) (phi(K)^T V) (see linear_attention)."""
    return tokens * (features + dim_head + 1) < 2 * features * (dim_head + 1)


def chunked_softmax_favor(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, projection: torch.Tensor
) -> torch.Tensor:
    """Unmasked softmax-kernel FAVOR+ over token chunks: (B, H, N, d) -> (B, H, N, d).

    The same numbers as ``linear_attention(softmax_kernel_features(q, ...), softmax_kernel_features(k, ...),
    v)``, without ever holding the two (B, H, N, m) feature matrices. Keys: chunk by chunk, features
    stabilised by the running maximum over the chunks so far, and the context accumulated so far rescaled by
    exp(old max - new max) whenever that maximum grows (the flash-attention trick), so the finished context
    is exactly the one the per-(batch, head) maximum over all keys gives. Queries: chunk by chunk, features
    times the finished context.
    """
    b, h, n, d = v.shape
    m = projection.shape[0]
    step = max(64, _CHUNK_BYTES // (b * h * m * 4))  # tokens per chunk
    v_ones = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)  # (B, H, N, d+1)
    context = running_max = None
    for start in range(0, n, step):
        keys = k[..., start : start + step, :]
        logits = _project(keys, projection)  # (B, H, chunk, m)
        half_sq_norm = 0.5 * d**-0.5 * keys.pow(2).sum(-1, keepdim=True)
        with torch.no_grad():
            chunk_max = (logits.amax(dim=-1, keepdim=True) - half_sq_norm).amax(dim=-2, keepdim=True)
            new_max = (
                chunk_max if running_max is None else torch.maximum(running_max, chunk_max)
            )  # (B, H, 1, 1)
        features = logits.sub_(half_sq_norm + new_max).exp_()
        part = features.transpose(-2, -1) @ v_ones[..., start : start + step, :]  # (B, H, m, d+1)
        context = part if context is None else context * torch.exp(running_max - new_max) + part
        running_max = new_max
    outputs = []
    for start in range(0, n, step):
        out = softmax_kernel_features(q[..., start : start + step, :], projection, is_query=True) @ context
        outputs.append(out[..., :d] / out[..., d:].clamp_min(_TINY))  # (B, H, chunk, d)
    return torch.cat(outputs, dim=-2)


class PerformerAttention(Attention):
    """Multi-head FAVOR+ attention; same parameters as :class:`RegularAttention` plus feature buffers.

    Args (through ``attention_kwargs``):
        nb_features: number of random features m (default ``int(dim_head * ln(dim_head))``, 266 for 64).
        kernel: ``"softmax"`` (positive orthogonal random features, estimates softmax attention) or
            ``"relu"`` (generalized attention; not an estimate of softmax).
        redraw_interval: in training, redraw the features every this many forward calls (None: never;
            the paper redraws periodically). Eval never redraws.
        feature_scaling: ``"chi"`` (unbiased, default) or ``"sqrt_dim"`` row norms.
    """

    extra_kwargs = ("nb_features", "kernel", "redraw_interval", "feature_scaling")

    def __init__(
        self,
        dim: int,
        *,
        heads: int,
        dim_head: int,
        qkv_bias: bool = True,
        attn_dropout: float = 0.0,
        proj_dropout: float = 0.0,
        nb_features: int | None = None,
        kernel: str = "softmax",
        redraw_interval: int | None = None,
        feature_scaling: str = "chi",
    ) -> None:
        super().__init__(
            dim,
            heads=heads,
            dim_head=dim_head,
            qkv_bias=qkv_bias,
            attn_dropout=0.0,
            proj_dropout=proj_dropout,
        )
        if attn_dropout:
            raise ValueError(
                "attn_dropout is not defined for performer attention (there is no attention matrix to drop); "
                "set attn_dropout=0 or use ff_dropout / drop_path for regularisation"
            )
        if kernel not in KERNELS:
            raise ValueError(f"unknown performer kernel {kernel!r}; expected one of {KERNELS}")
        if redraw_interval is not None and redraw_interval <= 0:
            raise ValueError(
                f"redraw_interval must be a positive number of steps or None, got {redraw_interval}"
            )
        self.nb_features = int(nb_features or int(dim_head * math.log(dim_head)))
        if self.nb_features <= 0:
            raise ValueError(f"nb_features must be positive, got {nb_features}")
        self.kernel = kernel
        self.redraw_interval = redraw_interval
        self.feature_scaling = feature_scaling
        seed = int(torch.randint(0, 2**62, (1,)).item())
        self.register_buffer("feature_seed", torch.tensor(seed, dtype=torch.int64))
        self.register_buffer("feature_draws", torch.zeros((), dtype=torch.int64))
        self.register_buffer("calls_since_redraw", torch.zeros((), dtype=torch.int64))
        self.register_buffer("projection_matrix", self._draw(self._seeded_generator()))

    # -- random features -----------------------------------------------------------------------------
    def _seeded_generator(self) -> torch.Generator:
        seed = (int(self.feature_seed) * 1_000_003 + int(self.feature_draws)) % (2**63)
        return torch.Generator().manual_seed(seed)

    def _draw(self, generator: torch.Generator) -> torch.Tensor:
        return orthogonal_random_features(
            self.nb_features, self.dim_head, scaling=self.feature_scaling, generator=generator
        )

    @torch.no_grad()
    def redraw_features(self, generator: torch.Generator | None = None) -> None:
        """Draw new random features (in place, same buffer).

        With ``generator=None`` the next draw of this module's deterministic sequence is used, identical on
        every rank that holds the same buffers; pass a generator to control it yourself.
        """
        self.feature_draws += 1
        new = self._draw(generator if generator is not None else self._seeded_generator())
        self.projection_matrix.copy_(new.to(self.projection_matrix))
        self.calls_since_redraw.zero_()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, *args) -> None:
        # Softmax checkpoints have no feature buffers: they load into a performer model as they are, so
        # pretrained exact-attention weights can run with FAVOR+. The module keeps its own features then.
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, *args)
        own = {
            prefix + name
            for name in ("feature_seed", "feature_draws", "calls_since_redraw", "projection_matrix")
        }
        if not own & set(state_dict):
            missing_keys[:] = [key for key in missing_keys if key not in own]

    # -- attention -----------------------------------------------------------------------------------
    def attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        if self.training and self.redraw_interval is not None:
            self.calls_since_redraw += 1
            if int(self.calls_since_redraw) >= self.redraw_interval:
                self.redraw_features()
        out_dtype = v.dtype
        device = q.device.type  # no autocast to turn off on devices without one (meta: FLOP counting)
        full_precision = (
            torch.autocast(device_type=device, enabled=False)
            if torch.amp.is_autocast_available(device)
            else contextlib.nullcontext()
        )
        with full_precision:
            q, k, v = q.float(), k.float(), v.float()
            projection = self.projection_matrix.float()
            if self.kernel == "softmax" and mask is None and not _short(q.shape[-2], *projection.shape):
                out = chunked_softmax_favor(q, k, v, projection)  # (B, H, N, d)
            else:
                if self.kernel == "softmax":
                    q_features = softmax_kernel_features(q, projection, is_query=True)
                    k_features = softmax_kernel_features(k, projection, is_query=False, mask=mask)
                else:
                    q_features = relu_kernel_features(q, projection)
                    k_features = relu_kernel_features(k, projection, mask=mask)
                out = linear_attention(q_features, k_features, v)  # (B, H, N, d)
        b, h, n, d = out.shape
        return out.transpose(1, 2).reshape(b, n, h * d).to(out_dtype)

    def extra_repr(self) -> str:
        return (
            f"nb_features={self.nb_features}, kernel={self.kernel!r}, redraw_interval={self.redraw_interval}"
        )
