"""Attention maps (fast_timesformer.inference.explain / overlay, ``fast-timesformer explain``).

The recorded attention is checked against naive float64 recomputations written here from the papers'
formulas (not the library's helpers), and against the modules' own outputs (the weights times the values
give what the module returned); the rollout against the explicit product of full token-mixing matrices;
Grad-CAM against a gradient read with ``retain_grad``. The files are real: encoded videos in, a PNG and an
MP4 out, through the real command.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from video_fixtures import write_audio_only, write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing, save_pretrained
from fast_timesformer.cli import main
from fast_timesformer.data import synthetic
from fast_timesformer.inference import METHODS, ExplainError, attention_maps, explain_clips, explain_video
from fast_timesformer.inference.explain import (
    attention_weights,
    patch_coverage,
    record_attention,
    region_mass,
)

TINY = dict(num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=3)
LAYOUTS = ("divided_space_time", "joint_space_time", "space_only")


def tiny(attention: str = "regular", attention_type: str = "divided_space_time", **extra) -> FastTimeSformer:
    torch.manual_seed(0)
    model = FastTimeSformer(**TINY, attention=attention, attention_type=attention_type, **extra).eval()
    with torch.no_grad():  # temporal_fc starts at zero: give the temporal step something to do
        for block in model.blocks:
            if hasattr(block, "temporal_fc"):
                block.temporal_fc.weight.normal_(0, 0.1)
    return model


def clips(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 4, 3, 32, 32, generator=torch.Generator().manual_seed(1))


def captured_calls(model: FastTimeSformer, video: torch.Tensor, mask=None) -> list[dict]:
    """Every attention call's input, keywords and output, captured with hooks of the test's own."""
    calls, handles = [], []
    for block in model.blocks:
        for name in ("temporal_attn", "attn"):
            module = getattr(block, name, None)
            if module is None:
                continue

            def hook(module, args, kwargs, output, name=name):
                calls.append({"module": module, "x": args[0].detach(), **kwargs, "out": output.detach()})

            handles.append(module.register_forward_hook(hook, with_kwargs=True))
    with torch.no_grad():
        model(video, mask)
    for handle in handles:
        handle.remove()
    return calls


def naive_qkv(module, x: torch.Tensor):
    """q, k, v (G, H, L, d) in float64, straight from the qkv weights (rows [q; k; v], head-major)."""
    h, d = module.heads, module.dim_head
    w, b = module.qkv.weight.double(), module.qkv.bias.double()
    y = torch.einsum("glc,oc->glo", x.double(), w) + b  # (G, L, 3*H*d)
    q, k, v = (y[..., i * h * d : (i + 1) * h * d].unflatten(-1, (h, d)).transpose(1, 2) for i in range(3))
    return q, k, v


def naive_softmax(q, k, mask=None):
    scores = torch.einsum("ghid,ghjd->ghij", q, k) / math.sqrt(q.shape[-1])
    weights = scores.exp()
    if mask is not None:
        weights = weights * mask[:, None, None, :].double()
    return weights / weights.sum(-1, keepdim=True)


def naive_favor(q, k, projection, mask=None):
    """Performer's implicit attention, phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m) with x' = x d^-1/4."""
    d, m = q.shape[-1], projection.shape[0]

    def phi(x):
        x = x * d**-0.25
        return torch.exp(x @ projection.double().T - 0.5 * (x * x).sum(-1, keepdim=True)) / math.sqrt(m)

    kernel = phi(q) @ phi(k).transpose(-2, -1)  # (G, H, L, L): estimates exp(q.k / sqrt(d))
    if mask is not None:
        kernel = kernel * mask[:, None, None, :].double()
    return kernel / kernel.sum(-1, keepdim=True)


def module_output(module, weights, v):
    """What an attention module returns for per-head weights (G, H, L, L) and values (G, H, L, d)."""
    mixed = (weights @ v).transpose(1, 2).flatten(2)  # (G, L, H*d)
    return torch.nn.functional.linear(mixed, module.proj.weight.double(), module.proj.bias.double())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("attention", ["regular", "performer"])
def test_recorded_attention_equals_naive_float64(attention, layout):
    model, video = tiny(attention, layout), clips()
    mask = torch.tensor([[True, True, True, True], [True, True, False, False]])
    if layout == "space_only":
        mask = None  # space_only takes no frame mask inside attention
    reference = captured_calls(model, video, mask)
    with torch.no_grad(), record_attention(model) as recorder:
        model(video, mask)
    assert len(recorder.calls) == len(reference) == (4 if layout == "divided_space_time" else 2)
    for call, ref in zip(recorder.calls, reference):
        module = ref["module"]
        q, k, v = naive_qkv(module, ref["x"])
        if attention == "regular":
            naive = naive_softmax(q, k, ref.get("mask"))
        else:
            naive = naive_favor(q, k, module.projection_matrix, ref.get("mask"))
        kind, per_head = attention_weights(module, ref["x"], mask=ref.get("mask"))
        assert kind == "matrix" and per_head.dtype == torch.float64
        torch.testing.assert_close(per_head, naive, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(call.weights, naive.mean(1), rtol=1e-10, atol=1e-12)
        # ... and they are the weights the module used: weights @ values reproduce its float32 output.
        torch.testing.assert_close(module_output(module, naive, v).float(), ref["out"], rtol=1e-4, atol=1e-5)
        if ref.get("mask") is not None:  # padded frames are never attended to: their columns are zero
            assert float(call.weights.transpose(-2, -1)[~ref["mask"]].abs().max()) == 0


def test_rotary_attention_is_what_the_module_used():
    model, video = tiny("regular", pos_emb="rotary"), clips(1)
    reference = captured_calls(model, video)
    with torch.no_grad(), record_attention(model) as recorder:
        model(video)
    for call, ref in zip(recorder.calls, reference):
        _, per_head = attention_weights(ref["module"], ref["x"], rope=ref["rope"])
        _, _, v = naive_qkv(ref["module"], ref["x"])
        torch.testing.assert_close(call.weights, per_head.mean(1))
        torch.testing.assert_close(
            module_output(ref["module"], per_head, v).float(), ref["out"], atol=1e-5, rtol=1e-4
        )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fastformer_pooling_weights_equal_naive_float64(layout):
    model, video = tiny("fastformer", layout), clips()
    reference = captured_calls(model, video)
    with torch.no_grad(), record_attention(model) as recorder:
        model(video)
    for call, ref in zip(recorder.calls, reference):
        module = ref["module"]
        q, k, v = naive_qkv(module, ref["x"])
        d = q.shape[-1]
        alpha = torch.softmax(torch.einsum("ghld,hd->ghl", q, module.w_q.double()) / math.sqrt(d), -1)
        global_query = torch.einsum("ghl,ghld->ghd", alpha, q)
        p = global_query.unsqueeze(2) * k  # (G, H, L, d)
        beta = torch.softmax(torch.einsum("ghld,hd->ghl", p, module.w_k.double()) / math.sqrt(d), -1)
        assert call.kind == "pooling"
        torch.testing.assert_close(
            call.weights, torch.stack([alpha, beta], 2).mean(1), rtol=1e-10, atol=1e-12
        )
        # The pooling weights rebuild the module's output: u = g_k * v, out = proj(transform(u) + q).
        global_key = torch.einsum("ghl,ghld->ghd", beta, p)
        u = (global_key.unsqueeze(2) * v).transpose(1, 2).flatten(2)
        t = module.transform
        out = torch.nn.functional.linear(u, t.weight.double(), t.bias.double()) + q.transpose(1, 2).flatten(2)
        out = torch.nn.functional.linear(out, module.proj.weight.double(), module.proj.bias.double())
        torch.testing.assert_close(out.float(), ref["out"], rtol=1e-4, atol=1e-5)


def explicit_rollout(model, recorder, b, t, n) -> torch.Tensor:
    """The rollout rule of the module docstring as a product of full (1 + N*T)^2 mixing matrices."""
    size = 1 + n * t  # token 0: CLS; token 1 + n*T + t: patch n of frame t ((n t) order)
    eye = torch.eye(size, dtype=torch.float64)
    product = eye.expand(b, size, size).clone()
    for call in recorder.calls:  # forward order: product = S_last ... S_first
        mix = torch.zeros(b, size, size, dtype=torch.float64)
        a = call.weights
        if model.attention_type == "joint_space_time":
            mix = a.view(b, size, size)
        elif call.axis == "time":
            a = a.view(b, n, t, t)
            mix[:, 0, 0] = 1  # CLS takes no part in temporal attention
            for i in range(n):
                rows = 1 + i * t + torch.arange(t)
                mix[:, rows[:, None], rows[None, :]] = a[:, i]
        else:
            a = a.view(b, t, 1 + n, 1 + n)
            for f in range(t):
                patches = 1 + torch.arange(n) * t + f
                tokens = torch.cat([torch.zeros(1, dtype=torch.long), patches])
                mix[:, patches[:, None], tokens[None, :]] = a[:, f, 1:]
                mix[:, 0, tokens] += a[:, f, 0] / t  # CLS: the mean of its T per-frame outputs
        product = (0.5 * eye + 0.5 * mix) @ product
    return product[:, 0, 1:].reshape(b, n, t).transpose(1, 2)  # (B, T, N)


@pytest.mark.parametrize("layout", ["divided_space_time", "joint_space_time"])
def test_rollout_is_the_documented_product(layout):
    model, video = tiny("regular", layout), clips()
    with torch.no_grad(), record_attention(model) as recorder:
        model(video)
    expected = explicit_rollout(model, recorder, 2, 4, 16)
    maps = attention_maps(model, video, method="rollout")  # (B, T, Hp, Wp)
    assert maps.shape == (2, 4, 4, 4)
    torch.testing.assert_close(maps.double().flatten(2), expected, rtol=1e-5, atol=1e-7)


def test_cls_and_temporal_are_the_last_block_rows():
    model, video = tiny("regular"), clips()
    with torch.no_grad(), record_attention(model) as recorder:
        model(video)
    maps = explain_clips(model, video, methods=["cls", "temporal"]).maps
    space = recorder.last("space").weights.view(2, 4, 17, 17)  # (B, T, 1+N, 1+N)
    torch.testing.assert_close(maps["cls"].double().flatten(2), space[:, :, 0, 1:] / 4, rtol=1e-6, atol=1e-8)
    time = recorder.last("time").weights.view(2, 16, 4, 4)  # (B, N, query, key)
    torch.testing.assert_close(
        maps["temporal"].double().flatten(2), time.mean(2).transpose(1, 2), rtol=1e-6, atol=1e-8
    )
    torch.testing.assert_close(maps["temporal"].sum(1), torch.ones(2, 4, 4))  # every position sums to 1


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("attention", ["regular", "performer", "fastformer"])
def test_gradcam_equals_retained_gradient(attention, layout):
    model, video = tiny(attention, layout), clips(1)
    store = {}
    handle = model.blocks[0].register_forward_hook(lambda m, a, out: store.update(x=out))
    with torch.enable_grad():
        logits = model(video)
        store["x"].retain_grad()
        logits[0, 2].backward()
    handle.remove()
    tokens, grad = store["x"].detach().double(), store["x"].grad.double()
    model.zero_grad(set_to_none=True)
    if layout == "space_only":  # (T, 1+N, D) -> (N, T, D)
        tokens, grad = tokens[:, 1:].transpose(0, 1), grad[:, 1:].transpose(0, 1)
    else:  # (1, 1+N*T, D) in (n t) order -> (N, T, D)
        tokens, grad = tokens[0, 1:].view(16, 4, -1), grad[0, 1:].view(16, 4, -1)
    expected = torch.relu((grad.mean((0, 1)) * tokens).sum(-1)).T.reshape(4, 4, 4)  # (T, Hp, Wp)
    cam = attention_maps(model, video, method="gradcam", target=2)[0]
    torch.testing.assert_close(cam.double(), expected, rtol=1e-4, atol=1e-9)
    assert float(cam.sum()) > 0
    assert not torch.equal(cam, attention_maps(model, video, method="gradcam", target=0)[0])
    assert next(model.parameters()).grad is None  # only the tokens' gradient was taken


def test_padded_frames_get_no_weight():
    model, video = tiny("regular"), clips()
    mask = torch.tensor([[True, True, True, True], [True, True, True, False]])
    maps = explain_clips(model, video, methods=["rollout", "cls", "temporal", "gradcam"], mask=mask).maps
    for method, value in maps.items():
        assert float(value[1, 3].abs().sum()) == 0, method
        assert float(value[1, :3].sum()) > 0, method


def test_explaining_keeps_the_model_mode():
    model = tiny("performer")
    model.train()
    explain_clips(model, clips(1), methods=["rollout"])
    assert model.training
    assert int(model.blocks[0].attn.feature_draws) == 0  # evaluated in eval mode: no redraw


@pytest.mark.parametrize(
    "attention, layout, method, names",
    [
        ("regular", "space_only", "temporal", ["space_only has no attention across frames", "'gradcam'"]),
        ("regular", "joint_space_time", "temporal", ["no separate temporal attention", "'rollout'"]),
        ("fastformer", "divided_space_time", "rollout", ["fastformer", "method='pooling'", "'gradcam'"]),
        ("fastformer", "space_only", "cls", ["method='pooling'"]),
        ("regular", "divided_space_time", "pooling", ["fastformer's pooling weights", "'rollout'"]),
        ("regular", "divided_space_time", "saliency", ["unknown method", "gradcam"]),
    ],
)
def test_maps_a_model_cannot_give_name_one_it_can(attention, layout, method, names):
    with pytest.raises(ExplainError) as caught:
        attention_maps(tiny(attention, layout), clips(1), method=method)
    message = str(caught.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_method_names_of_the_command_are_the_library_ones():
    from fast_timesformer.cli.explain import METHOD_NAMES

    assert METHOD_NAMES == METHODS


def test_motion_masks_mark_what_the_clip_shows():
    rng = synthetic.clip_rng(0, "val", 5)
    frames = synthetic.render_clip(1, rng=rng, num_frames=8, size=16, hold=1).astype(float)
    masks = synthetic.motion_masks(1, rng=synthetic.clip_rng(0, "val", 5), num_frames=8, size=16, hold=1)
    flash_frames = masks["flash"].reshape(8, -1).all(1)
    assert flash_frames.sum() == 4 and not masks["flash"][~flash_frames].any()
    assert 0 < masks["bar"].mean() and not masks["bar"][flash_frames].any()
    bar_pixels = frames[masks["bar"]]
    background = frames[~(masks["bar"] | masks["flash"] | masks["distractor"])]
    assert bar_pixels.mean() > 120 > background.mean()  # bright bar on a dark (40) canvas


def test_region_mass_measures_concentration():
    region = torch.zeros(2, 16, 16, dtype=torch.bool)
    region[:, :8, :8] = True  # the top-left patch of 4
    coverage = patch_coverage(region, 8)
    assert coverage.shape == (2, 2, 2) and float(coverage.mean()) == 0.25
    focused = coverage.clone()
    assert region_mass(focused, coverage) == (1.0, 0.25)
    mass, share = region_mass(torch.ones(2, 2, 2), coverage)
    assert mass == pytest.approx(share)


def square_clips(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noise clips (n, 4, 3, 32, 32) with one patch-sized square in one frame, red (class 0) or blue (1):
    the clips, the labels and where the square is, (n, T, Hp, Wp) -- 1 of the 64 patch tokens."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(n, 4, 3, 32, 32, generator=g) * 0.3
    labels = torch.randint(0, 2, (n,), generator=g)
    where = torch.zeros(n, 4, 4, 4)
    rows, cols, frames = torch.randint(0, 4, (3, n), generator=g)
    colours = torch.tensor([[2.0, -1.0, -1.0], [-1.0, -1.0, 2.0]])
    for i, (row, col, frame) in enumerate(zip(rows.tolist(), cols.tolist(), frames.tolist())):
        video[i, frame, :, 8 * row : 8 * row + 8, 8 * col : 8 * col + 8] = colours[labels[i], :, None, None]
        where[i, frame, row, col] = 1
    return video, labels, where


@pytest.mark.parametrize("attention", ["regular", "performer"])
def test_maps_of_a_trained_model_sit_on_the_evidence(attention):
    # The class is the colour of one square in one frame, so everything the model needs is 1/64 of the clip.
    # After training, the maps must put several times that share on it; an untrained model's put ~1x.
    train, labels, _ = square_clips(512, 0)
    test, test_labels, where = square_clips(64, 1)
    torch.manual_seed(0)
    model = FastTimeSformer(**{**TINY, "num_classes": 2}, attention=attention)
    methods = ("rollout", "gradcam")
    untrained = explain_clips(model.eval(), test, methods=methods).maps
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(150):
        batch = torch.randint(0, 512, (32,))
        torch.nn.functional.cross_entropy(model(train[batch]), labels[batch]).backward()
        optimizer.step()
        optimizer.zero_grad()
    result = explain_clips(model.eval(), test, methods=methods)
    assert (result.logits.argmax(-1) == test_labels).float().mean() >= 0.9

    def ratio(maps: torch.Tensor) -> float:
        masses = [region_mass(maps[i], where[i]) for i in range(len(where))]
        return sum(m for m, _ in masses) / sum(s for _, s in masses)

    # measured (seed 0): rollout 2.8x / 4.3x, gradcam 14.7x / 4.4x for regular / performer
    assert ratio(result.maps["rollout"]) > 1.8 and ratio(result.maps["gradcam"]) > 3.0
    assert ratio(untrained["rollout"]) < 1.3


# -- files and the command -----------------------------------------------------------------------------------
def save(folder: Path, model: FastTimeSformer) -> Path:
    prep = Preprocessing(num_frames=4, sampling_rate=2, crop_size=32, short_side=32, num_spatial_crops=1)
    save_pretrained(model, folder, preprocessing=prep, class_names=["a", "b", "c"])
    return folder


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("weights") / "tiny", tiny("regular"))


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=16, width=48, height=32)


def test_command_writes_a_readable_png_and_mp4(weights, video, tmp_path, capsys):
    out = tmp_path / "maps"
    rc = main(["explain", str(video), "--weights", str(weights), "--output", str(out), "--method", "rollout",
               "--method", "cls", "--method", "gradcam", "--target", "b"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    assert "predicted" in printed and "rollout" in printed and "attention.png" in printed
    import matplotlib.image

    png = matplotlib.image.imread(out / "attention.png")
    assert png.shape[0] > 200 and png.shape[1] > 400 and png[..., :3].std() > 0.05  # 4 rows of 4 frames
    with av.open(str(out / "attention.mp4")) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape[1] == 2 * frames[0].shape[0]  # the clip beside its overlay
    record = json.loads((out / "attention.json").read_text())
    assert record["methods"] == ["rollout", "cls", "gradcam"] and record["gradcam_target"] == 1
    assert np.array(record["maps"]["rollout"]).shape == (4, 4, 4)  # (T, Hp, Wp)
    assert len(record["frame_indices"]) == 4 and sum(record["frame_mass"]["cls"]) == pytest.approx(1)
    # The command's maps are the library's for the same clip.
    again = explain_video(video, output=tmp_path / "api", weights=weights, methods=["rollout"])
    np.testing.assert_allclose(np.array(record["maps"]["rollout"]), again.maps["rollout"].numpy(), rtol=1e-6)


@pytest.fixture(scope="module")
def space_only_weights(tmp_path_factory) -> Path:
    return save(tmp_path_factory.mktemp("weights") / "space_only", tiny("regular", "space_only"))


def bad_cases(tmp: Path, weights: Path, space_only: Path, video: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "notes.mp4").write_text("this is not a video\n")
    audio = write_audio_only(tmp / "audio.m4a")
    frame = np.zeros((32, 32, 3), np.uint8)
    still = tmp / "still.png"
    import matplotlib.image

    matplotlib.image.imsave(still, frame)
    w = ["--weights", str(weights), "--output", str(tmp / "out")]
    return {
        "missing file": ([str(tmp / "nope.mp4"), *w], "file not found"),
        "not a video": ([str(tmp / "notes.mp4"), *w], "notes.mp4"),
        "audio only": ([str(audio), *w], "audio.m4a"),
        "still image": ([str(still), *w], "--allow-images"),
        "over the pixel limit": ([str(video), *w, "--max-pixels", "100"], "--max-pixels"),
        "temporal map, space_only": (
            [str(video), "--weights", str(space_only), "--output", str(tmp / "o"), "--method", "temporal"],
            "space_only has no attention across frames",
        ),
        "missing weights": ([str(video), "--weights", str(tmp / "none"), "--output", str(tmp / "o")], "none"),
        "bogus device": ([str(video), *w, "--device", "bogus"], "--device 'bogus' is not a device"),
        "unknown target": ([str(video), *w, "--method", "gradcam", "--target", "zebra"], "zebra"),
    }


def test_bad_input_gets_one_line(weights, space_only_weights, video, tmp_path, capsys):
    for name, (argv, needle) in bad_cases(tmp_path, weights, space_only_weights, video).items():
        rc = main(["explain", *argv])
        err = capsys.readouterr().err.strip()
        assert rc == 1, (name, err)
        assert len(err.splitlines()) == 1 and err.startswith("fast-timesformer explain: error:"), (name, err)
        assert needle in err, (name, err)
        assert "Traceback" not in err
    assert not (tmp_path / "out" / "attention.png").exists()  # nothing written for a bad input


def test_fps_must_be_positive(weights, video, tmp_path, capsys):
    assert (
        main(["explain", str(video), "--weights", str(weights), "--output", str(tmp_path), "--fps", "0"]) == 2
    )
    assert "--fps" in capsys.readouterr().err
