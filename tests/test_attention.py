"""Attention mechanisms against independent references: naive float64 softmax, a loop Fastformer."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from fast_timesformer.attention import (
    ATTENTIONS,
    FastformerAttention,
    PerformerAttention,
    RegularAttention,
    build_attention,
    check_attention_kwargs,
    orthogonal_random_features,
)
from fast_timesformer.attention.performer import linear_attention, softmax_kernel_features
from fast_timesformer.attention.regular import SHORT_SEQUENCE
from fast_timesformer.layers.rotary import apply_rotary, rotary_cos_sin

DIM, HEADS, DIM_HEAD = 32, 2, 16


def naive_softmax_attention(module: RegularAttention, x: torch.Tensor, mask=None) -> torch.Tensor:
    """Textbook multi-head attention in float64 with the module's weights."""
    x = x.double()
    b, n, _ = x.shape
    qkv = x @ module.qkv.weight.double().T + module.qkv.bias.double()
    q, k, v = qkv.reshape(b, n, 3, HEADS, DIM_HEAD).permute(2, 0, 3, 1, 4)
    scores = q @ k.transpose(-1, -2) / math.sqrt(DIM_HEAD)
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
    out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, n, HEADS * DIM_HEAD)
    return out @ module.proj.weight.double().T + module.proj.bias.double()


@pytest.mark.parametrize("grad", [True, False], ids=["autograd", "inference"])
@pytest.mark.parametrize("tokens", [3, SHORT_SEQUENCE, SHORT_SEQUENCE + 1, 50])
def test_regular_matches_naive_float64_softmax(tokens, grad):
    # Short sequences in CPU inference take the explicit path, the rest the fused SDPA kernel: both exact.
    torch.manual_seed(0)
    module = RegularAttention(DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(3, tokens, DIM)
    with torch.set_grad_enabled(grad):
        out = module(x)
    assert out.requires_grad == grad
    torch.testing.assert_close(out.double(), naive_softmax_attention(module, x), atol=1e-5, rtol=1e-5)


def test_regular_short_sequences_keep_attention_dropout_in_training_without_autograd():
    torch.manual_seed(0)
    module = RegularAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, attn_dropout=0.5).train()
    x = torch.randn(3, 4, DIM)
    with torch.no_grad():
        first, second = module(x), module(x)
    assert not torch.allclose(first, second)  # dropout drew two masks
    torch.testing.assert_close(
        module.eval()(x).double(), naive_softmax_attention(module, x), atol=1e-5, rtol=1e-5
    )


def test_regular_mask_matches_naive_float64_softmax():
    torch.manual_seed(1)
    module = RegularAttention(DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(2, 9, DIM)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    torch.testing.assert_close(
        module(x, mask=mask).double(), naive_softmax_attention(module, x, mask), atol=1e-5, rtol=1e-5
    )


def exact_softmax(q, k, v):
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return scores.softmax(-1) @ v.double()


def favor_error(q, k, v, nb_features, seed):
    d = q.shape[-1]
    projection = orthogonal_random_features(nb_features, d, generator=torch.Generator().manual_seed(seed))
    qf = softmax_kernel_features(q, projection, is_query=True)
    kf = softmax_kernel_features(k, projection, is_query=False)
    approx = linear_attention(qf, kf, v).double()
    exact = exact_softmax(q, k, v)
    return ((approx - exact).norm() / exact.norm()).item()


@pytest.mark.parametrize("scale", [0.25, 0.5])
def test_favor_error_falls_as_features_grow(scale):
    """Small-norm q, k: the Monte-Carlo error shrinks like 1/sqrt(m) (256x features -> ~16x smaller)."""
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, 128, 32, generator=gen) * scale
    k = torch.randn(1, 2, 128, 32, generator=gen) * scale
    v = torch.randn(1, 2, 128, 32, generator=gen)
    errors = {m: sum(favor_error(q, k, v, m, s) for s in range(5)) / 5 for m in (16, 64, 256, 1024, 4096)}
    values = list(errors.values())
    assert all(a > b for a, b in zip(values, values[1:])), errors
    assert errors[4096] < errors[16] / 6, errors


def test_favor_does_not_collapse_at_unit_variance():
    """Unit-variance q, k: FAVOR+'s relative variance is ~exp(|q+k|^2 / sqrt(d)), so the error is large, but
    it must still fall with m. performer-pytorch's eps floor instead pins it at the uniform-average error."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 128, 32, generator=gen) for _ in range(3))
    few = sum(favor_error(q, k, v, 64, s) for s in range(3)) / 3
    many = sum(favor_error(q, k, v, 32768, s) for s in range(3)) / 3
    assert many < 0.8 * few, (few, many)
    # Not collapsed: the features of different keys still differ (an eps floor makes ~all of them equal).
    projection = orthogonal_random_features(256, 32, generator=torch.Generator().manual_seed(0))
    features = softmax_kernel_features(k, projection, is_query=False)
    assert (features > 1e-4).float().mean() > 0.05


def test_orthogonal_features_are_block_orthogonal_and_gaussian_normed():
    w = orthogonal_random_features(40, 16, generator=torch.Generator().manual_seed(0))
    assert w.shape == (40, 16)
    block = w[:16] / w[:16].norm(dim=1, keepdim=True)
    torch.testing.assert_close(block @ block.T, torch.eye(16), atol=1e-5, rtol=0)
    # chi-distributed norms have mean ~ sqrt(d); sqrt_dim scaling gives exactly sqrt(d).
    assert 2.5 < w.norm(dim=1).mean() < 5.5
    fixed = orthogonal_random_features(40, 16, scaling="sqrt_dim")
    torch.testing.assert_close(fixed.norm(dim=1), torch.full((40,), 4.0))


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_batch_invariance_with_an_extreme_neighbour(name):
    """A sample's output must not depend on the other samples in its batch."""
    torch.manual_seed(0)
    module = build_attention(name, DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(1, 20, DIM)
    extreme = torch.randn(1, 20, DIM) * 50
    alone = module(x)
    batched = module(torch.cat([x, extreme]))[:1]
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(ATTENTIONS))
def test_masked_tokens_change_nothing(name):
    torch.manual_seed(0)
    module = build_attention(name, DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    x = torch.randn(2, 12, DIM)
    mask = torch.ones(2, 12, dtype=torch.bool)
    mask[:, 8:] = False
    y = x.clone()
    y[:, 8:] = torch.randn(2, 4, DIM) * 100
    torch.testing.assert_close(module(x, mask=mask)[:, :8], module(y, mask=mask)[:, :8], atol=1e-5, rtol=1e-4)


def naive_fastformer(module: FastformerAttention, x: torch.Tensor) -> torch.Tensor:
    """Paper equations, one head and one token at a time, float64."""
    x = x.double()[0]
    n = x.shape[0]
    qkv = x @ module.qkv.weight.double().T + module.qkv.bias.double()
    q_all, k_all, v_all = qkv.split(HEADS * DIM_HEAD, dim=-1)
    heads_out = []
    for h in range(HEADS):
        sl = slice(h * DIM_HEAD, (h + 1) * DIM_HEAD)
        q, k, v = q_all[:, sl], k_all[:, sl], v_all[:, sl]
        wq, wk = module.w_q[h].double(), module.w_k[h].double()
        alpha = torch.softmax(torch.stack([q[i] @ wq / math.sqrt(DIM_HEAD) for i in range(n)]), 0)
        gq = sum(alpha[i] * q[i] for i in range(n))
        p = torch.stack([gq * k[i] for i in range(n)])
        beta = torch.softmax(torch.stack([p[i] @ wk / math.sqrt(DIM_HEAD) for i in range(n)]), 0)
        gk = sum(beta[i] * p[i] for i in range(n))
        heads_out.append(torch.stack([gk * v[i] for i in range(n)]))
    u = torch.cat(heads_out, dim=-1)
    r = u @ module.transform.weight.double().T + module.transform.bias.double() + q_all
    return (r @ module.proj.weight.double().T + module.proj.bias.double()).unsqueeze(0)


def test_fastformer_matches_paper_equations():
    torch.manual_seed(0)
    module = FastformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD).eval()
    with torch.no_grad():  # larger pooling weights so the softmaxes are far from uniform
        module.w_q.normal_(0, 1.0)
        module.w_k.normal_(0, 1.0)
    x = torch.randn(1, 10, DIM)
    torch.testing.assert_close(module(x).double(), naive_fastformer(module, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", ["performer", "fastformer"])
def test_linear_mechanisms_cost_grows_linearly(name):
    """FLOPs at 2N tokens are ~2x those at N (exact attention would be ~4x on the attention part)."""
    module = build_attention(name, DIM, heads=HEADS, dim_head=DIM_HEAD).eval()

    def flops(n):
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            module(torch.randn(1, n, DIM))
        return counter.get_total_flops()

    assert flops(4096) / flops(2048) == pytest.approx(2.0, rel=0.02)


def test_regular_state_dict_loads_into_performer_strictly():
    regular = RegularAttention(DIM, heads=HEADS, dim_head=DIM_HEAD)
    performer = PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, nb_features=64)
    before = performer.projection_matrix.clone()
    performer.load_state_dict(regular.state_dict(), strict=True)
    torch.testing.assert_close(performer.qkv.weight, regular.qkv.weight)
    torch.testing.assert_close(performer.projection_matrix, before)


def test_performer_redraw_is_explicit_deterministic_and_frozen_in_eval():
    torch.manual_seed(0)
    a = PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, nb_features=32, redraw_interval=2)
    b = PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, nb_features=32, redraw_interval=2)
    b.load_state_dict(a.state_dict())  # same buffers, like two DDP ranks
    x = torch.randn(1, 5, DIM)
    a.eval()
    first = a.projection_matrix.clone()
    for _ in range(5):
        a(x)
    torch.testing.assert_close(a.projection_matrix, first)  # eval never redraws
    a.train(), b.train()
    a(x)
    torch.testing.assert_close(a.projection_matrix, first)  # 1 call < interval
    a(x), b(x), b(x)
    assert not torch.equal(a.projection_matrix, first)
    torch.testing.assert_close(a.projection_matrix, b.projection_matrix)  # identical on every "rank"
    gen_draw = a.projection_matrix.clone()
    a.redraw_features(torch.Generator().manual_seed(123))
    assert not torch.equal(a.projection_matrix, gen_draw)
    assert a.projection_matrix.data_ptr() == a.projection_matrix.data_ptr()  # in place: same buffer


def test_performer_features_run_in_float32_under_bf16_autocast():
    torch.manual_seed(0)
    module = PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, nb_features=64).eval()
    x = torch.randn(2, 30, DIM) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), module(x), atol=0.05, rtol=0.05)


def test_relu_kernel_option_runs_and_is_not_softmax():
    module = PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, kernel="relu").eval()
    out = module(torch.randn(1, 7, DIM))
    assert out.shape == (1, 7, DIM) and torch.isfinite(out).all()


def test_unknown_options_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown attention 'flash'.*fastformer.*performer.*regular"):
        build_attention("flash", DIM, heads=HEADS, dim_head=DIM_HEAD)
    with pytest.raises(
        ValueError, match=r"unknown attention_kwargs \['nb_feature'\].*valid keys.*nb_features"
    ):
        check_attention_kwargs({"nb_feature": 3}, ["performer"])
    with pytest.raises(ValueError, match="unknown performer kernel"):
        PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, kernel="tanh")
    with pytest.raises(ValueError, match="attn_dropout is not defined for performer"):
        PerformerAttention(DIM, heads=HEADS, dim_head=DIM_HEAD, attn_dropout=0.1)


def test_rotary_is_a_rotation_and_relative():
    cos, sin = rotary_cos_sin([torch.arange(6), torch.arange(6) % 3], 16, prepend_identity=True)
    x = torch.randn(2, 7, 16)
    rotated = apply_rotary(x, cos, sin)
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))  # norm-preserving
    torch.testing.assert_close(rotated[:, 0], x[:, 0])  # CLS: identity
    # 1-D: q.k after rotation depends only on the position offset.
    cos, sin = rotary_cos_sin([torch.arange(10)], 16)
    q, k = torch.randn(16), torch.randn(16)
    score = lambda i, j: apply_rotary(q, cos[i], sin[i]) @ apply_rotary(k, cos[j], sin[j])  # noqa: E731
    torch.testing.assert_close(score(2, 5), score(6, 9))
