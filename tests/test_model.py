"""FastTimeSformer: reference semantics, geometry, masks, layouts, precision hooks and errors."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from fast_timesformer import ATTENTION_TYPES, DividedAttention, FastTimeSformer, create_model, list_models
from fast_timesformer.attention import ATTENTIONS

TINY = dict(num_frames=4, num_classes=5, image_size=32, patch_size=8, dim=32, depth=2, heads=2)


def tiny(**overrides) -> FastTimeSformer:
    torch.manual_seed(0)
    return FastTimeSformer(**{**TINY, **overrides}).eval()


def randomize(model: FastTimeSformer, std: float = 0.3) -> FastTimeSformer:
    """Give every parameter (zero-initialised ones included) non-trivial values."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
        for block in model.blocks:
            for norm in (block.norm1, block.norm2, getattr(block, "temporal_norm1", None)):
                if norm is not None:
                    norm.weight.add_(1.0)
        model.norm.weight.add_(1.0)
    return model


# -- an independent, loop-based re-derivation of the official forward (reference notes 1.3-1.4) -------
def _ln(x, p, prefix):
    return F.layer_norm(x, x.shape[-1:], p[prefix + ".weight"], p[prefix + ".bias"], eps=1e-6)


def _mhsa(x, p, prefix, heads):
    """x (L, D) -> (L, D), textbook softmax attention."""
    length, dim = x.shape
    qkv = x @ p[prefix + ".qkv.weight"].T + p[prefix + ".qkv.bias"]
    q, k, v = qkv.reshape(length, 3, heads, dim // heads).permute(1, 2, 0, 3)
    attn = (q @ k.transpose(-1, -2) / math.sqrt(dim // heads)).softmax(-1)
    out = (attn @ v).transpose(0, 1).reshape(length, dim)
    return out @ p[prefix + ".proj.weight"].T + p[prefix + ".proj.bias"]


def _mlp(x, p, prefix):
    h = F.gelu(x @ p[prefix + ".fc1.weight"].T + p[prefix + ".fc1.bias"])
    return h @ p[prefix + ".fc2.weight"].T + p[prefix + ".fc2.bias"]


def reference_divided_forward(model: FastTimeSformer, video: torch.Tensor) -> torch.Tensor:
    """One clip (T, C, H, W) at the configured geometry, token by token as the official code describes."""
    p = {k: v.double() for k, v in model.state_dict().items()}
    heads, video = model.blocks[0].attn.heads, video.double()
    t = video.shape[0]
    patches = F.conv2d(
        video, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=model.patch_size
    )
    patches = patches.flatten(2).transpose(1, 2)  # (T, N, D)
    n = patches.shape[1]
    patches = patches + p["pos_embed"][0, 1:]
    cls = p["cls_token"][0, 0] + p["pos_embed"][0, 0]
    tokens = {(i, f): patches[f, i] + p["time_embed"][0, f] for i in range(n) for f in range(t)}
    for b in range(len(model.blocks)):
        pre = f"blocks.{b}"
        # temporal: each patch position over its frames, no CLS
        xt = {}
        for i in range(n):
            seq = torch.stack([tokens[i, f] for f in range(t)])
            res = _mhsa(_ln(seq, p, pre + ".temporal_norm1"), p, pre + ".temporal_attn", heads)
            res = res @ p[pre + ".temporal_fc.weight"].T + p[pre + ".temporal_fc.bias"]
            for f in range(t):
                xt[i, f] = tokens[i, f] + res[f]
        # spatial: each frame with a copy of the block-input CLS; CLS outputs averaged over frames
        cls_outs, new = [], {}
        for f in range(t):
            seq = torch.stack([cls] + [xt[i, f] for i in range(n)])
            res = _mhsa(_ln(seq, p, pre + ".norm1"), p, pre + ".attn", heads)
            cls_outs.append(res[0])
            for i in range(n):
                new[i, f] = xt[i, f] + res[1 + i]
        cls = cls + torch.stack(cls_outs).mean(0)
        cls = cls + _mlp(_ln(cls, p, pre + ".norm2"), p, pre + ".mlp")
        tokens = {key: v + _mlp(_ln(v, p, pre + ".norm2"), p, pre + ".mlp") for key, v in new.items()}
    cls = _ln(cls, p, "norm")
    return cls @ p["head.weight"].T + p["head.bias"]


def test_divided_matches_loop_reference():
    model = randomize(tiny(depth=2))
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        ours = model(video).double()
    reference = torch.stack([reference_divided_forward(model, v) for v in video])
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_official_initialisation_and_parameter_count():
    model = tiny()
    for block in model.blocks:
        assert torch.count_nonzero(block.temporal_fc.weight) == 0
        assert block.norm1.eps == block.temporal_norm1.eps == block.norm2.eps == 1e-6
        assert block.attn.qkv.bias is not None
    assert torch.count_nonzero(model.time_embed) == 0
    assert isinstance(model.patch_embed.proj, torch.nn.Conv2d)
    with torch.device("meta"):  # shapes only: no 121M-parameter initialisation
        base = create_model("timesformer_base_8x224")
    assert sum(p.numel() for p in base.parameters()) == 121_566_352  # official ViT-B/16 TimeSformer
    assert [f"{v:.4f}" for v in torch.linspace(0, 0.1, 12).tolist()] == [
        f"{b.drop_path.drop_prob:.4f}" for b in base.blocks
    ]


def test_state_dict_names_mirror_the_official_checkpoint():
    keys = set(tiny().state_dict())
    for name in (
        "cls_token", "pos_embed", "time_embed", "patch_embed.proj.weight", "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.1.temporal_norm1.bias",
        "blocks.1.temporal_attn.qkv.bias", "blocks.1.temporal_attn.proj.weight", "blocks.1.temporal_fc.weight",
        "blocks.1.norm2.weight", "blocks.1.mlp.fc1.weight", "blocks.1.mlp.fc2.bias", "norm.weight", "head.bias",
    ):  # fmt: skip
        assert name in keys
    assert "time_embed" not in tiny(attention_type="space_only").state_dict()


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_every_mechanism_and_layout_runs_any_geometry(attention, attention_type):
    model = tiny(attention=attention, attention_type=attention_type)
    assert model(torch.randn(2, 4, 3, 32, 32)).shape == (2, 5)
    assert model(torch.randn(1, 7, 3, 48, 24)).shape == (1, 5)  # other T, non-square H, W
    assert model.forward_features(torch.randn(1, 2, 3, 16, 40)).shape == (1, 32)


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
def test_meta_device_forward_counts_the_same_flops_as_the_cpu(attention):
    # Benchmarks count FLOPs on a meta-device copy (shapes only); every mechanism must run there. The count
    # matches the CPU's, except that torch 2.13's counter has no formula for the CPU flash-attention kernel
    # SDPA dispatches to, so on the CPU exact attention over > 16 tokens goes uncounted: meta counts more.
    from torch.utils.flop_counter import FlopCounterMode

    counts = []
    for device in ("cpu", "meta"):
        model = tiny(attention=attention).eval().to(device)
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            assert model(torch.randn(2, 4, 3, 32, 32, device=device)).shape == (2, 5)
        counts.append(counter.get_total_flops())
    cpu, meta = counts
    assert meta == cpu > 0 if attention != "regular" else meta > cpu > 0


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_inference_fast_paths_match_the_autograd_forward(attention, attention_type):
    # Without autograd the model takes in-place GELU and (for short sequences) explicit softmax paths.
    model = randomize(tiny(attention=attention, attention_type=attention_type), std=0.1)
    video = torch.randn(2, 4, 3, 32, 32)
    with_grad = model(video)
    assert with_grad.requires_grad
    with torch.inference_mode():
        torch.testing.assert_close(model(video), with_grad.detach(), atol=1e-5, rtol=1e-5)


def test_hooks_on_the_mlp_activation_fire_in_inference():
    # In-place GELU is an inference fast path; a hook registered on the activation keeps the module call.
    model = randomize(tiny(), std=0.1).eval()
    video = torch.randn(1, 4, 3, 32, 32)
    seen = []
    handle = model.blocks[0].mlp.act.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.inference_mode():
        hooked = model(video)
    handle.remove()
    with torch.inference_mode():
        torch.testing.assert_close(model(video), hooked)
    assert len(seen) == 1 and seen[0].shape[-1] == 4 * 32


def test_fused_temporal_projection_matches_the_two_layers_with_gradients():
    # temporal_fc(proj(h)) is computed as one composed linear map where nothing random stands between them.
    model = randomize(tiny(), std=0.1).train()
    video = torch.randn(2, 4, 3, 32, 32)
    rows = 2 * 16 * 4  # tokens of the temporal step: batch x patches x frames
    assert all(block._fuse_temporal_fc(rows) for block in model.blocks)
    # Fewer tokens than the projection's width: composing the weights would cost more than it saves.
    assert not model.blocks[0]._fuse_temporal_fc(model.blocks[0].temporal_attn.proj.in_features)
    results = []
    for fused in (True, False):
        for block in model.blocks:
            block.fuse_temporal_fc = fused
        model.zero_grad()
        logits = model(video)
        logits.square().sum().backward()
        results.append((logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (fused_logits, fused_grads), (plain_logits, plain_grads) = results
    torch.testing.assert_close(fused_logits, plain_logits, atol=1e-5, rtol=1e-5)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, atol=1e-5, rtol=1e-4, msg=name)
    # With drop path in training the official order (drop path, then temporal_fc) is kept.
    dropping = tiny(drop_path=0.2).train()
    assert [block._fuse_temporal_fc(rows) for block in dropping.blocks] == [True, False]  # block 0: rate 0
    assert all(block._fuse_temporal_fc(rows) for block in dropping.eval().blocks)
    # A forward hook on the temporal attention still sees every call, with the unfused layers' values.
    model.eval()
    for block in model.blocks:
        block.fuse_temporal_fc = True
    seen = []
    handle = model.blocks[0].temporal_attn.register_forward_hook(lambda module, args, out: seen.append(out))
    assert not model.blocks[0]._fuse_temporal_fc(rows) and model.blocks[1]._fuse_temporal_fc(rows)
    with torch.no_grad():
        torch.testing.assert_close(model(video), plain_logits, atol=1e-5, rtol=1e-5)
    handle.remove()
    assert len(seen) == 1 and seen[0].shape == (2 * 16, 4, 32)  # (B * patches, T, dim)
    assert model.blocks[0]._fuse_temporal_fc(rows)


def test_space_only_averages_frames_like_the_official_model():
    model = randomize(tiny(attention_type="space_only"))
    video = torch.randn(1, 4, 3, 32, 32)
    with torch.no_grad():
        per_frame = []
        x, _ = model._embed(video)  # (T, 1+N, D)
        for block in model.blocks:
            x = block(x, frames=4)
        per_frame = x[:, 0]
        expected = model.head(model.norm(per_frame.mean(0, keepdim=True)))
        torch.testing.assert_close(model(video), expected)


def test_embedding_interpolation_is_nearest_like_the_official_model():
    model = randomize(tiny(num_frames=8))
    torch.testing.assert_close(model._interpolated_time_embed(4), model.time_embed[:, [0, 2, 4, 6]])
    torch.testing.assert_close(
        model._interpolated_time_embed(16), model.time_embed.repeat_interleave(2, dim=1)
    )
    pos = model._interpolated_pos_embed((8, 8))  # 4x4 grid -> 8x8
    grid = model.pos_embed[0, 1:].reshape(4, 4, -1)
    torch.testing.assert_close(
        pos[0, 1:].reshape(8, 8, -1), grid.repeat_interleave(2, 0).repeat_interleave(2, 1)
    )
    assert model._interpolated_pos_embed((4, 4)) is model.pos_embed  # configured geometry: untouched
    linear = tiny(num_frames=8, embed_interpolation="linear")
    assert linear(torch.randn(1, 5, 3, 40, 32)).shape == (1, 5)


@pytest.mark.parametrize("attention", sorted(ATTENTIONS))
@pytest.mark.parametrize("attention_type", ATTENTION_TYPES)
def test_masked_frames_influence_nothing(attention, attention_type):
    model = randomize(tiny(attention=attention, attention_type=attention_type), std=0.1)
    video = torch.randn(2, 4, 3, 32, 32)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]])
    other = video.clone()
    other[~mask] = torch.randn_like(other[~mask]) * 10
    with torch.no_grad():
        torch.testing.assert_close(model(video, mask), model(other, mask), atol=1e-5, rtol=1e-4)
        assert not torch.allclose(model(video), model(other))  # without the mask they do matter


def test_input_layouts_agree():
    model = randomize(tiny())
    channels_first = FastTimeSformer(**TINY, input_layout="bcthw").eval()
    channels_first.load_state_dict(model.state_dict())
    video = torch.randn(2, 4, 3, 32, 32)
    torch.testing.assert_close(channels_first(video.transpose(1, 2)), model(video))


def test_seed_divided_attention_call_runs_verbatim_and_matches_manual_groups():
    b, f, n, dim = 2, 3, 5, 32
    torch.manual_seed(0)
    attention = DividedAttention(dim, dim_head=16, heads=2, dropout=0.0).eval()
    x = torch.randn(b, n * f + 1, dim)
    time_attended = attention(x, "b (f n) d", "(b n) f d", n=n)
    space_attended = attention(x, "b (f n) d", "(b f) n d", f=f)
    assert time_attended.shape == space_attended.shape == x.shape
    # Manual: frame-major tokens; for frame j, attend over [CLS, patches of j]; CLS output averaged.
    frames = x[:, 1:].reshape(b, f, n, dim)
    outs = [attention.attn(torch.cat([x[:, :1], frames[:, j]], dim=1)) for j in range(f)]
    torch.testing.assert_close(space_attended[:, 0], torch.stack([o[:, 0] for o in outs], 1).mean(1))
    torch.testing.assert_close(space_attended[:, 1:], torch.cat([o[:, 1:] for o in outs], dim=1))
    for name in ("performer", "fastformer"):
        other = DividedAttention(dim, dim_head=16, heads=2, attention=name)
        assert other(x, "b (f n) d", "(b n) f d", n=n).shape == x.shape


def test_rotary_positions_run_any_geometry_and_drop_learned_embeddings():
    for attention_type in ATTENTION_TYPES:
        model = tiny(pos_emb="rotary", attention_type=attention_type, attention="performer")
        assert "pos_embed" not in model.state_dict()
        assert model(torch.randn(1, 6, 3, 24, 40)).shape == (1, 5)


def test_sincos_positions_match_the_formula_and_give_fastformer_frame_order():
    from fast_timesformer.layers.sincos import sincos_embedding

    # against a float64 loop over the formula: per axis k = (dim/2)/axes frequencies, [sin .. | cos ..]
    rows, cols = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 0, 1, 7])
    table = sincos_embedding([rows, cols], 12)
    for n in range(5):
        expected = []
        for p in (rows[n].item(), cols[n].item()):
            angles = [p * 10000.0 ** (-i / 3) for i in range(3)]
            expected += [math.sin(a) for a in angles] + [math.cos(a) for a in angles]
        torch.testing.assert_close(table[n].double(), torch.tensor(expected, dtype=torch.float64))
    with pytest.raises(ValueError, match="even dim"):
        sincos_embedding([rows], 7)
    # Fastformer's pooling is a weighted sum, blind to order; with sincos its inputs carry the frame index, and
    # with rotary its rotated queries and keys do (pooling scores and query residual), so reversing the frames
    # changes the logits (with learned positions at their zero init it cannot).
    video = torch.randn(1, 4, 3, 32, 32)
    for pos_emb, attention_type in itertools.product(("sincos", "rotary"), ATTENTION_TYPES):
        model = randomize(tiny(pos_emb=pos_emb, attention="fastformer", attention_type=attention_type), 0.1)
        assert "pos_embed" not in model.state_dict() and "time_embed" not in model.state_dict()
        assert model(torch.randn(1, 6, 3, 24, 40)).shape == (1, 5)  # defined at every geometry
        with torch.no_grad():
            changed = not torch.allclose(model(video), model(video.flip(1)), atol=1e-5)
        assert changed == (attention_type != "space_only"), pos_emb  # space_only averages frames: order-free
    blind = tiny(attention="fastformer")  # learned, official init: time_embed = 0
    with torch.no_grad():
        torch.testing.assert_close(blind(video), blind(video.flip(1)), atol=1e-5, rtol=1e-5)


def test_regular_weights_load_into_performer_model():
    regular = tiny()
    performer = tiny(attention="performer", attention_kwargs={"nb_features": 64})
    performer.load_state_dict(regular.state_dict(), strict=True)
    assert performer(torch.randn(1, 4, 3, 32, 32)).shape == (1, 5)
    before = [m.projection_matrix.clone() for m in performer.performer_modules()]
    performer.redraw_features(torch.Generator().manual_seed(1))
    assert all(not torch.equal(a, m.projection_matrix) for a, m in zip(before, performer.performer_modules()))


def test_qkv_bias_option_reaches_every_attention_layer():
    model = tiny(qkv_bias=False)
    assert all(b.attn.qkv.bias is None and b.temporal_attn.qkv.bias is None for b in model.blocks)


@pytest.mark.parametrize("attention", ["regular", "performer", "fastformer"])
def test_qk_init_std_redraws_query_and_key_rows_only(attention):
    official, wide = tiny(attention=attention), tiny(attention=attention, qk_init_std=0.2)
    assert wide.config["qk_init_std"] == 0.2 and official.config["qk_init_std"] == 0.02
    layers = 0
    for name, param in wide.named_parameters():
        before = dict(official.named_parameters())[name]
        if not name.endswith("qkv.weight"):
            assert torch.equal(param, before), name  # everything else drawn exactly as the official init
            continue
        layers += 1
        rows = 2 * param.shape[0] // 3  # [q; k; v]
        assert torch.equal(param[rows:], before[rows:]), name  # values keep the official draw
        qk = param[:rows]
        assert 0.17 < qk.std().item() < 0.22 and qk.abs().max().item() <= 0.6 + 1e-6, name  # 3-sigma cut
        assert 0.015 < before[:rows].std().item() < 0.025, name
    assert layers == 2 * TINY["depth"]  # temporal and spatial attention of every block


def test_qk_init_std_is_checked_and_loaded_weights_are_not_redrawn(tmp_path):
    with pytest.raises(ValueError, match="qk_init_std"):
        tiny(qk_init_std=0.0)
    model = tiny(qk_init_std=0.2)
    model.save_pretrained(tmp_path)
    loaded = FastTimeSformer.from_pretrained(tmp_path)
    assert loaded.config["qk_init_std"] == 0.2
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_per_axis_override():
    model = tiny(attention="regular", space_attention="performer", attention_kwargs={"nb_features": 32})
    assert type(model.blocks[0].temporal_attn).__name__ == "RegularAttention"
    assert type(model.blocks[0].attn).__name__ == "PerformerAttention"


def test_bf16_autocast_and_gradient_checkpointing():
    model = randomize(tiny(attention="performer"), std=0.05).train()
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model(video)).all()
    model = randomize(tiny(drop_path=0.0), std=0.05).train()
    model(video).sum().backward()
    plain = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_grad_checkpointing(True)
    model(video).sum().backward()
    for a, p in zip(plain, model.parameters()):
        torch.testing.assert_close(p.grad, a, atol=1e-5, rtol=1e-4)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = randomize(tiny(), std=0.05)
    video = torch.randn(1, 4, 3, 32, 32)
    compiled = torch.compile(model)
    torch.testing.assert_close(compiled(video), model(video), atol=1e-4, rtol=1e-4)


def test_presets_head_and_weight_decay_helpers():
    assert {"timesformer_base_8x224", "timesformer_hr_16x448", "timesformer_l_96x224"} <= set(list_models())
    model = create_model("timesformer_micro_8x32", num_classes=7)
    assert model.head.out_features == 7
    model.reset_classifier(3)
    assert model(torch.randn(1, 8, 3, 32, 32)).shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 8, 3, 32, 32)).shape == (1, 64)
    assert model.no_weight_decay() == {"pos_embed", "cls_token", "time_embed"}
    with pytest.raises(ValueError, match="unknown model 'timesformer_giant'"):
        create_model("timesformer_giant")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(attention="flash"), r"unknown attention 'flash'; expected one of \['fastformer', 'performer', 'regular'\]"),
        (dict(attention_type="axial"), r"unknown attention_type 'axial'; expected one of"),
        (dict(time_attention="linear"), r"unknown time_attention 'linear'"),
        (dict(attention_kwargs={"nb_features": 8}), r"unknown attention_kwargs \['nb_features'\] for attention \['regular'\]"),
        (dict(dim=30, heads=4), r"dim \(30\) must be divisible by heads \(4\)"),
        (dict(image_size=30), r"image_size \(30, 30\) must be a multiple of patch_size 8"),
        (dict(input_layout="tbchw"), r"unknown input_layout 'tbchw'"),
        (dict(attention_type="joint_space_time", time_attention="regular"), r"time_attention only applies to"),
    ],
)  # fmt: skip
def test_bad_configuration_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FastTimeSformer(**{**TINY, **kwargs})


def test_bad_input_errors_name_shapes_and_fix():
    model = tiny()
    with pytest.raises(
        ValueError,
        match=r"expected video \(B, T, C, H, W\) with C=3, got .*\(2, 3, 4, 32, 32\).*input_layout='bcthw'",
    ):
        model(torch.randn(2, 3, 4, 32, 32))
    with pytest.raises(ValueError, match=r"4-D tensor.*unsqueeze\(0\)"):
        model(torch.randn(4, 3, 32, 32))
    with pytest.raises(ValueError, match=r"frame size 30x32 is not a multiple of patch_size 8"):
        model(torch.randn(1, 4, 3, 30, 32))
    with pytest.raises(ValueError, match=r"expected mask of shape \(B, T\) = \(1, 4\) and dtype bool"):
        model(torch.randn(1, 4, 3, 32, 32), torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one real frame"):
        model(torch.randn(1, 4, 3, 32, 32), torch.zeros(1, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="expected a float video, got dtype torch.uint8"):
        model(torch.zeros(1, 4, 3, 32, 32, dtype=torch.uint8))


def test_global_hooks_see_every_layer_on_the_fast_paths():
    # A global forward hook (register_module_forward_hook) must see temporal_fc, proj and the MLP activation,
    # which the fused projection and in-place GELU would otherwise skip.
    from torch.nn.modules.module import register_module_forward_hook

    model = tiny(depth=1).eval()
    block = model.blocks[0]
    video = torch.randn(2, 4, 3, 32, 32)
    rows = 2 * 16 * 4
    assert block._fuse_temporal_fc(rows)  # the fast path applies without the hook
    with torch.no_grad():
        plain = model(video)
    seen = set()
    handle = register_module_forward_hook(lambda module, args, out: seen.add(id(module)))
    try:
        assert not block._fuse_temporal_fc(rows)
        with torch.no_grad():
            hooked = model(video)
    finally:
        handle.remove()
    assert {id(block.temporal_fc), id(block.temporal_attn.proj), id(block.mlp.act)} <= seen
    torch.testing.assert_close(hooked, plain)
