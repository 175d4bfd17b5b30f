"""Weights: our format round trip, Hugging Face / official / ImageNet ViT imports, interpolation, attention swap.

References are independent of the loader: random-weight ``transformers`` models (Timesformer, ViT), a key map
written here from the reference notes (section 2.2), and the model's own forward-time interpolation.
"""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import parse_simple_yaml
from fast_timesformer.weights import (
    CheckpointError,
    convert,
    from_pretrained,
    load_weights,
    save_pretrained,
    swap_attention,
)

transformers = pytest.importorskip("transformers")

TINY = dict(image_size=32, patch_size=8, num_frames=4, dim=32, depth=2, heads=2)
LAYOUTS = ("divided_space_time", "joint_space_time", "space_only")

# Hugging Face -> official names (reference notes, section 2.2), written independently of the library's map.
HF_TO_OFFICIAL = [
    (r"^timesformer\.embeddings\.cls_token$", "cls_token"),
    (r"^timesformer\.embeddings\.position_embeddings$", "pos_embed"),
    (r"^timesformer\.embeddings\.time_embeddings$", "time_embed"),
    (r"^timesformer\.embeddings\.patch_embeddings\.projection\.", "patch_embed.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_before\.", r"blocks.\1.norm1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.attention\.qkv\.", r"blocks.\1.attn.qkv."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.attention\.output\.dense\.", r"blocks.\1.attn.proj."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_layernorm\.", r"blocks.\1.temporal_norm1."),
    (
        r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.attention\.qkv\.",
        r"blocks.\1.temporal_attn.qkv.",
    ),
    (
        r"^timesformer\.encoder\.layer\.(\d+)\.temporal_attention\.output\.dense\.",
        r"blocks.\1.temporal_attn.proj.",
    ),
    (r"^timesformer\.encoder\.layer\.(\d+)\.temporal_dense\.", r"blocks.\1.temporal_fc."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.layernorm_after\.", r"blocks.\1.norm2."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.intermediate\.dense\.", r"blocks.\1.mlp.fc1."),
    (r"^timesformer\.encoder\.layer\.(\d+)\.output\.dense\.", r"blocks.\1.mlp.fc2."),
    (r"^timesformer\.layernorm\.", "norm."),
    (r"^classifier\.", "head."),
]

CFG_YAML = """\
DATA:
  MEAN:
  - 0.45
  - 0.45
  - 0.45
  NUM_FRAMES: 4
  SAMPLING_RATE: 32
  TRAIN_CROP_SIZE: 32
  TRAIN_JITTER_SCALES: [36, 40]
  TEST_CROP_SIZE: 32
TRAIN:
  DATASET: kinetics
MODEL:
  ARCH: vit
  NUM_CLASSES: 5
TEST:
  NUM_ENSEMBLE_VIEWS: 1
  NUM_SPATIAL_CROPS: 3
TIMESFORMER:
  ATTENTION_TYPE: {attention_type}
  PRETRAINED_MODEL: ''
"""


def perturb(module: torch.nn.Module, std: float = 0.3, seed: int = 0) -> None:
    """Make every parameter non-trivial so that a misplaced tensor cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * std)


def hf_timesformer(attention_type: str, num_labels: int = 5):
    config = transformers.TimesformerConfig(
        image_size=32, patch_size=8, num_frames=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, attention_type=attention_type, num_labels=num_labels,
        id2label={i: f"class_{i}" for i in range(num_labels)},
    )  # fmt: skip
    model = transformers.TimesformerForVideoClassification(config).eval()
    perturb(model)
    return model


def clip(frames: int = 4, size: int = 32, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def official_state_dict(hf_model) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in hf_model.state_dict().items():
        for pattern, target in HF_TO_OFFICIAL:
            if re.match(pattern, key):
                out[re.sub(pattern, target, key)] = value.clone()
                break
        else:
            raise KeyError(key)
    return out


def tiny(**overrides) -> FastTimeSformer:
    torch.manual_seed(0)
    model = FastTimeSformer(**{**TINY, "num_classes": 5, **overrides}).eval()
    perturb(model, std=0.2)
    return model


# -- Hugging Face Timesformer --------------------------------------------------------------------------------
@pytest.mark.parametrize("weights_file", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("attention_type", ["divided_space_time", "joint_space_time"])
def test_hugging_face_folder_gives_the_same_logits(tmp_path, attention_type, weights_file):
    hf = hf_timesformer(attention_type)
    if weights_file == "model.safetensors":
        hf.save_pretrained(tmp_path)
        (tmp_path / "preprocessor_config.json").write_text(json.dumps(
            {"image_mean": [0.45] * 3, "image_std": [0.225] * 3, "crop_size": {"height": 32, "width": 32},
             "size": {"shortest_edge": 32}}
        ))  # fmt: skip
    else:
        hf.config.save_pretrained(tmp_path)
        torch.save(hf.state_dict(), tmp_path / "pytorch_model.bin")
    assert (tmp_path / weights_file).is_file()
    model, report = from_pretrained(tmp_path, return_report=True)
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)
    assert report.format == "huggingface" and report.renamed == len(hf.state_dict()) and not report.created
    assert model.class_names == [f"class_{i}" for i in range(5)]
    assert model.config["attention_type"] == attention_type and model.config["heads"] == 2
    assert model.preprocessing.mean == (0.45,) * 3 and model.preprocessing.num_frames == 4


def test_hugging_face_space_only_equals_frame_averaged_features(tmp_path):
    """HF space_only classifies every frame, shape (B*T, C); the official model averages the per-frame CLS
    features over frames before the final norm. Rebuild that from HF's own last hidden states and modules."""
    hf = hf_timesformer("space_only")
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    x = clip()
    with torch.no_grad():
        out = hf(pixel_values=x, output_hidden_states=True)
        assert out.logits.shape == (2 * 4, 5)  # HF: one row per frame
        cls = out.hidden_states[-1][:, 0].reshape(2, 4, -1).mean(dim=1)  # (B, D), before the final norm
        reference = hf.classifier(hf.timesformer.layernorm(cls))
        torch.testing.assert_close(model(x), reference, atol=1e-4, rtol=0)


def test_hugging_face_backbone_without_head_and_sharded_weights(tmp_path):
    from safetensors.torch import save_file

    hf = hf_timesformer("divided_space_time")
    backbone = hf.timesformer  # TimesformerModel: names without the "timesformer." prefix, no classifier
    backbone.config.save_pretrained(tmp_path)
    state = backbone.state_dict()
    keys = sorted(state)
    shards = {"model-00001-of-00002.safetensors": keys[:20], "model-00002-of-00002.safetensors": keys[20:]}
    for name, shard_keys in shards.items():
        save_file({k: state[k].contiguous() for k in shard_keys}, tmp_path / name)
    weight_map = {k: name for name, shard_keys in shards.items() for k in shard_keys}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))

    model = from_pretrained(tmp_path)
    assert model.num_classes == 0 and model.class_names is None  # features only
    x = clip()
    with torch.no_grad():
        reference = backbone(pixel_values=x).last_hidden_state[:, 0]  # final-normed CLS token
        torch.testing.assert_close(model(x), reference, atol=1e-4, rtol=0)
    with_head = from_pretrained(tmp_path, num_classes=3)
    assert with_head.load_report.created["head.weight"].startswith("fresh head")


def test_hugging_face_without_qkv_bias(tmp_path):
    config = hf_timesformer("divided_space_time").config
    config.qkv_bias = False
    hf = transformers.TimesformerForVideoClassification(config).eval()
    perturb(hf)
    hf.save_pretrained(tmp_path)
    model = from_pretrained(tmp_path)
    assert model.config["qkv_bias"] is False
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)


def test_hugging_face_layer_norm_eps_must_be_timesformers(tmp_path):
    hf = hf_timesformer("divided_space_time")
    hf.config.layer_norm_eps = 1e-12
    hf.save_pretrained(tmp_path)
    with pytest.raises(CheckpointError, match=r"config\.json.*layer_norm_eps is 1e-12"):
        from_pretrained(tmp_path)


def test_hub_id_downloads_with_huggingface_hub(tmp_path, monkeypatch):
    hf_hub = pytest.importorskip("huggingface_hub")
    hf = hf_timesformer("divided_space_time")
    hf.save_pretrained(tmp_path)
    calls = []

    def fake_snapshot_download(repo_id, **kwargs):
        calls.append((repo_id, kwargs))
        return str(tmp_path)

    monkeypatch.setattr(hf_hub, "snapshot_download", fake_snapshot_download)
    model = from_pretrained("facebook/timesformer-tiny-test", revision="main")
    assert calls[0][0] == "facebook/timesformer-tiny-test" and calls[0][1]["revision"] == "main"
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)

    def offline(repo_id, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(hf_hub, "snapshot_download", offline)
    with pytest.raises(
        CheckpointError, match=r"facebook/timesformer-tiny-test: .*hub failed.*network unreachable"
    ):
        from_pretrained("facebook/timesformer-tiny-test")
    monkeypatch.setitem(__import__("sys").modules, "huggingface_hub", None)
    with pytest.raises(CheckpointError, match=r"needs huggingface_hub.*pip install huggingface_hub"):
        from_pretrained("facebook/timesformer-tiny-test")


# -- official .pyth ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wrapping", ["model_state+cfg", "module.state_dict", "model", "module", "bare"])
def test_official_pyth_gives_the_same_logits(tmp_path, wrapping):
    hf = hf_timesformer("divided_space_time")
    official = official_state_dict(hf)
    if wrapping == "model_state+cfg":
        payload = {
            "epoch": 15, "optimizer_state": {}, "cfg": CFG_YAML.format(attention_type="divided_space_time"),
            "model_state": {f"model.{k}": v for k, v in official.items()},
        }  # fmt: skip
    elif wrapping == "module.state_dict":
        payload = {"state_dict": {f"module.model.{k}": v for k, v in official.items()}}
    elif wrapping in ("model", "module"):  # timm/DeiT-style and DDP-style wrappers
        payload = {wrapping: {f"model.{k}": v for k, v in official.items()}, "epoch": 3}
    else:
        payload = {f"model.{k}": v for k, v in official.items()}
    torch.save(payload, tmp_path / "TimeSformer_divST_4x32_32.pyth")
    model, report = from_pretrained(tmp_path / "TimeSformer_divST_4x32_32.pyth", heads=2, return_report=True)
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(model(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)
    assert report.format == "official" and len(report.loaded) == len(official)
    if wrapping == "model_state+cfg":
        prep = model.preprocessing
        assert prep.sampling == "dense" and prep.sampling_rate == 32 and prep.num_spatial_crops == 3


def test_official_space_only_reads_num_frames_from_cfg_even_without_pyyaml(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "yaml", None)  # the minimal reader takes over
    official = official_state_dict(hf_timesformer("space_only"))
    cfg = CFG_YAML.format(attention_type="space_only").replace("NUM_FRAMES: 4", "NUM_FRAMES: 6")
    torch.save(
        {"model_state": {f"model.{k}": v for k, v in official.items()}, "cfg": cfg}, tmp_path / "s.pyth"
    )
    model = from_pretrained(tmp_path / "s.pyth", heads=2)
    assert model.config["attention_type"] == "space_only" and model.num_frames == 6  # no time_embed to read


def test_minimal_yaml_reader_matches_pyyaml():
    yaml = pytest.importorskip("yaml")
    text = CFG_YAML.format(attention_type="divided_space_time")
    assert parse_simple_yaml(text) == yaml.safe_load(text)


# -- our format ----------------------------------------------------------------------------------------------
CASES = [
    (attention, layout, "learned")
    for attention in ("regular", "performer", "fastformer")
    for layout in LAYOUTS
]
CASES += [("regular", "divided_space_time", "rotary"), ("performer", "joint_space_time", "rotary")]
CASES += [("fastformer", "divided_space_time", "sincos")]


@pytest.mark.parametrize("attention,attention_type,pos_emb", CASES)
def test_save_load_gives_identical_logits(tmp_path, attention, attention_type, pos_emb):
    kwargs = {"nb_features": 24} if attention == "performer" else {}
    model = tiny(attention=attention, attention_type=attention_type, pos_emb=pos_emb, attention_kwargs=kwargs)
    save_pretrained(model, tmp_path)
    loaded, report = FastTimeSformer.from_pretrained(tmp_path, return_report=True)
    x = clip()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.config == model.config
    assert not report.created and not report.dropped and len(report.loaded) == len(model.state_dict())


def test_config_json_holds_everything_needed(tmp_path):
    model = tiny()
    model.save_pretrained(tmp_path, class_names=list("abcde"), preprocessing={"sampling_rate": 4})
    meta = json.loads((tmp_path / "config.json").read_text())
    assert meta["format"] == "fast-timesformer" and meta["format_version"] == 1
    assert meta["architecture"] == "FastTimeSformer" and meta["model"] == model.config
    assert meta["class_names"] == list("abcde")
    prep = meta["preprocessing"]
    assert prep["mean"] == [0.45] * 3 and prep["std"] == [0.225] * 3 and prep["sampling_rate"] == 4
    assert prep["num_frames"] == 4 and prep["crop_size"] == 32 and prep["num_spatial_crops"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = from_pretrained(tmp_path)
    assert loaded.class_names == list("abcde") and loaded.preprocessing.sampling_rate == 4
    with pytest.raises(ValueError, match="2 class_names"):
        save_pretrained(model, tmp_path, class_names=["a", "b"])


def test_tied_and_non_contiguous_tensors_are_saved(tmp_path):
    model = tiny()
    model.blocks[1].temporal_attn.qkv.weight = model.blocks[1].attn.qkv.weight  # tied (shared storage)
    fc = model.blocks[0].mlp.fc2
    fc.weight = torch.nn.Parameter(fc.weight.detach().t().contiguous().t())  # non-contiguous
    assert not fc.weight.is_contiguous()
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path)
    x = clip()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_save_is_atomic(tmp_path, monkeypatch):
    import safetensors.torch

    save_pretrained(tiny(), tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken(tensors, path, metadata=None):
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        save_pretrained(tiny(num_classes=3), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # untouched, no temporary left


def test_convert_writes_our_format(tmp_path):
    hf = hf_timesformer("divided_space_time")
    hf.save_pretrained(tmp_path / "hf")
    out = convert(tmp_path / "hf", tmp_path / "ours")
    assert (
        out == tmp_path / "ours"
        and json.loads((out / "config.json").read_text())["class_names"][0] == "class_0"
    )
    x = clip()
    with torch.no_grad():
        torch.testing.assert_close(from_pretrained(out)(x), hf(pixel_values=x).logits, atol=1e-4, rtol=0)


# -- ImageNet ViT initialisation -----------------------------------------------------------------------------
def test_timm_vit_initialises_a_video_model_equal_to_the_image_model_on_a_static_clip(tmp_path):
    image = tiny(attention_type="space_only", num_frames=1, num_classes=10)  # = a ViT on one frame
    state = dict(
        image.state_dict()
    )  # timm names: cls_token, pos_embed, patch_embed.proj, blocks.i.attn.qkv ...
    state["pre_logits.fc.weight"], state["pre_logits.fc.bias"] = torch.randn(32, 32), torch.zeros(32)
    torch.save(state, tmp_path / "vit_tiny.pth")
    frame = clip(frames=1)
    static = frame.expand(-1, 4, -1, -1, -1)  # the same frame 4 times

    video, report = from_pretrained(
        tmp_path / "vit_tiny.pth", heads=2, num_classes=10, keep_image_head=True, return_report=True
    )
    assert video.config["attention_type"] == "divided_space_time" and video.num_frames == 8
    with torch.no_grad():
        torch.testing.assert_close(video(static), image(frame), atol=1e-5, rtol=0)
        assert torch.equal(video.blocks[0].temporal_attn.qkv.weight, image.blocks[0].attn.qkv.weight)
        assert not video.time_embed.any() and not video.blocks[1].temporal_fc.weight.any()
    assert "blocks.0.temporal_attn.qkv.weight" in report.created and "pre_logits.fc.weight" in report.dropped

    from safetensors.torch import save_file  # the same tensors as a timm hub folder

    (tmp_path / "timm").mkdir()
    (tmp_path / "timm" / "config.json").write_text(
        json.dumps({"architecture": "vit_tiny_patch8_32", "num_classes": 10})
    )
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "timm" / "model.safetensors")
    from_hub_folder = from_pretrained(tmp_path / "timm", heads=2, num_classes=10, keep_image_head=True)
    with torch.no_grad():
        torch.testing.assert_close(from_hub_folder(static), image(frame), atol=1e-5, rtol=0)

    fresh = from_pretrained(tmp_path / "vit_tiny.pth", heads=2, num_classes=3, num_frames=4)
    assert "head.weight" in fresh.load_report.dropped and fresh.num_classes == 3
    with torch.no_grad():  # the features are the image model's; only the head is new
        torch.testing.assert_close(
            fresh.forward_features(static), image.forward_features(frame), atol=1e-5, rtol=0
        )
    with pytest.raises(
        CheckpointError, match="vit_tiny.pth: keep_image_head=True, but the image head has 10"
    ):
        from_pretrained(tmp_path / "vit_tiny.pth", heads=2, keep_image_head=True, num_classes=3)


def test_hugging_face_vit_initialises_a_video_model(tmp_path):
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, layer_norm_eps=1e-6, num_labels=7,
    )  # fmt: skip
    vit = transformers.ViTForImageClassification(config).eval()
    perturb(vit)
    vit.save_pretrained(tmp_path)
    video = from_pretrained(tmp_path, num_frames=4, num_classes=7, keep_image_head=True)
    frame = clip(frames=1)
    with torch.no_grad():
        reference = vit(pixel_values=frame[:, 0]).logits
        torch.testing.assert_close(video(frame.expand(-1, 4, -1, -1, -1)), reference, atol=1e-4, rtol=0)
    assert video.load_report.format == "vit"


# -- interpolation -------------------------------------------------------------------------------------------
def test_fewer_frames_keep_every_other_time_embedding(tmp_path):
    model = tiny(num_frames=8)
    save_pretrained(model, tmp_path)
    loaded, report = from_pretrained(tmp_path, num_frames=4, return_report=True)
    assert torch.equal(loaded.time_embed, model.time_embed[:, [0, 2, 4, 6]])  # nearest: floor(i * 8 / 4)
    assert loaded.config["num_frames"] == 4 and loaded.preprocessing.num_frames == 4
    assert "time_embed" in report.interpolated
    x = clip(frames=4)
    with torch.no_grad():  # the same as the 8-frame model run on 4 frames (forward-time interpolation)
        torch.testing.assert_close(loaded(x), model(x), atol=1e-6, rtol=0)


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_other_image_size_resizes_pos_embed(tmp_path, mode):
    model = tiny(embed_interpolation=mode)
    save_pretrained(model, tmp_path)
    loaded = from_pretrained(tmp_path, image_size=64)
    assert loaded.pos_embed.shape == (1, 1 + 8 * 8, 32) and loaded.preprocessing.crop_size == 64
    x = clip(size=64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    if mode == "nearest":  # each old patch position covers a 2 x 2 block of new ones
        grid = loaded.pos_embed[0, 1:].reshape(8, 8, 32)
        assert torch.equal(grid[::2, ::2], model.pos_embed[0, 1:].reshape(4, 4, 32)) and torch.equal(
            grid[1, 1], grid[0, 0]
        )


# -- head, attention swap, strictness ------------------------------------------------------------------------
def test_other_num_classes_replaces_the_head_with_a_message(tmp_path, caplog):
    model = tiny()
    save_pretrained(model, tmp_path, class_names=list("abcde"))
    with caplog.at_level(logging.WARNING, logger="fast_timesformer.weights"):
        loaded = from_pretrained(tmp_path, num_classes=3)
    assert "head replaced" in caplog.text and "5 classes" in caplog.text
    assert loaded.head.weight.shape == (3, 32) and loaded.class_names is None
    assert loaded.load_report.created["head.weight"].startswith("fresh head for 3 classes")
    assert (
        not loaded.head.bias.any() and 0.01 < float(loaded.head.weight.detach().std()) < 0.03
    )  # trunc-normal(0.02)
    with torch.no_grad():
        torch.testing.assert_close(loaded.forward_features(clip()), model.forward_features(clip()))


def test_softmax_weights_run_with_performer_and_the_error_falls_with_more_features(tmp_path):
    model = tiny(attention_type="divided_space_time")
    save_pretrained(model, tmp_path)
    x = clip(batch=4)
    with torch.no_grad():
        reference = model(x)
        errors = []
        for nb_features in (16, 4096):
            torch.manual_seed(0)
            performer = from_pretrained(
                tmp_path, attention="performer", attention_kwargs={"nb_features": nb_features}
            )
            errors.append(float((performer(x) - reference).norm() / reference.norm()))
    assert errors[1] < errors[0] / 3 and errors[1] < 0.01, errors
    report = performer.load_report
    assert report.created["blocks.0.attn.projection_matrix"].startswith("fresh random features")
    assert performer.config["attention"] == "performer"


def test_fastformer_swap_creates_its_parameters_and_back_drops_them(tmp_path, caplog):
    model = tiny()
    fast = swap_attention(model, attention="fastformer")
    assert "blocks.1.temporal_attn.w_q" in fast.load_report.created
    assert torch.equal(fast.blocks[1].attn.qkv.weight, model.blocks[1].attn.qkv.weight)
    assert fast(clip()).shape == (2, 5)
    save_pretrained(fast, tmp_path)
    with caplog.at_level(logging.WARNING, logger="fast_timesformer.weights"):
        back = from_pretrained(tmp_path, attention="regular")
    assert "fastformer parameters" in caplog.text and "blocks.0.attn.w_k" in back.load_report.dropped
    with torch.no_grad():
        assert torch.equal(back(clip()), model(clip()))


def test_performer_with_other_nb_features_draws_fresh_features(tmp_path):
    save_pretrained(tiny(attention="performer", attention_kwargs={"nb_features": 24}), tmp_path)
    loaded = from_pretrained(tmp_path, attention_kwargs={"nb_features": 40})
    assert loaded.blocks[0].attn.projection_matrix.shape == (40, 16)
    assert "blocks.0.attn.projection_matrix" in loaded.load_report.dropped


def test_unknown_and_missing_keys_are_listed_by_name(tmp_path):
    state = dict(tiny().state_dict())
    state["blocks.0.attn.extra_gate"] = torch.zeros(3)
    del state["blocks.1.norm2.bias"]
    torch.save(state, tmp_path / "weird.pth")
    with pytest.raises(CheckpointError, match=r"weird\.pth: .*missing 1 key\(s\): blocks\.1\.norm2\.bias; "
                       r"unexpected 1 key\(s\): blocks\.0\.attn\.extra_gate"):  # fmt: skip
        from_pretrained(tmp_path / "weird.pth", heads=2)


def test_load_weights_into_an_existing_model(tmp_path):
    model = tiny()
    save_pretrained(model, tmp_path)
    target = FastTimeSformer(**{**TINY, "num_frames": 8}, num_classes=5).eval()
    report = load_weights(target, tmp_path)
    assert "time_embed" in report.interpolated and target.load_report is report
    with torch.no_grad():
        torch.testing.assert_close(target(clip()), model(clip()), atol=1e-6, rtol=0)


def test_weights_folders_are_readable_by_other_users(tmp_path):
    # mkstemp creates 0600 files; an exported model must be readable by a serving process (umask applies).
    import os
    import stat

    old = os.umask(0o022)
    try:
        tiny().save_pretrained(tmp_path / "w")
    finally:
        os.umask(old)
    for name in ("config.json", "model.safetensors"):
        assert stat.S_IMODE((tmp_path / "w" / name).stat().st_mode) == 0o644


def test_building_without_init_is_local_to_the_thread(tmp_path):
    # A loader builds its model inside no_init_weights(); a model built meanwhile elsewhere is initialised.
    import threading

    from fast_timesformer.checkpoints import init_weights_enabled, no_init_weights

    seen = []
    with no_init_weights():
        thread = threading.Thread(target=lambda: seen.append((init_weights_enabled(), tiny())))
        thread.start()
        thread.join()
        assert not init_weights_enabled()
    enabled, model = seen[0]
    assert enabled and model.cls_token.abs().sum() > 0  # trunc-normal init ran in the other thread
    assert init_weights_enabled()


def test_user_facing_errors_share_one_base():
    from fast_timesformer.data import AnnotationError, TooManyBadVideos, VideoDecodeError
    from fast_timesformer.errors import FastTimeSformerError
    from fast_timesformer.training import NonFiniteLossError, NonFiniteWeightsError

    for cls, builtin in [(CheckpointError, ValueError), (AnnotationError, ValueError),
                         (VideoDecodeError, RuntimeError), (TooManyBadVideos, RuntimeError),
                         (NonFiniteLossError, RuntimeError), (NonFiniteWeightsError, RuntimeError)]:  # fmt: skip
        assert issubclass(cls, FastTimeSformerError) and issubclass(cls, builtin)


def test_classify_needs_no_training_extra(tmp_path):
    # classify (the Predictor) must import with lightning and torchmetrics unavailable.
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['torchmetrics'] = None; sys.modules['lightning'] = None\n"
        "import fast_timesformer.cli.classify, fast_timesformer.inference\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
