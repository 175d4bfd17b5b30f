"""Ours -> a transformers ``TimesformerForVideoClassification`` folder, checked with the real transformers.

References are independent of the exporter: transformers' own model classes and processors loading the
folder, transformers' ``pipeline`` on a real encoded video, and our reader importing the folder back.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import read_checkpoint
from fast_timesformer.checkpoints.to_transformers import (
    TRANSFORMERS_FILES,
    check_transformers_logits,
    to_transformers,
)
from fast_timesformer.cli import main
from fast_timesformer.weights import CheckpointError, convert, from_pretrained, save_pretrained

transformers = pytest.importorskip("transformers")

TINY = dict(image_size=32, patch_size=8, num_frames=4, dim=32, depth=2, heads=2)
MEAN, STD = [0.4, 0.5, 0.6], [0.2, 0.25, 0.3]


def tiny(**overrides) -> FastTimeSformer:
    """A tiny model whose every parameter is non-trivial, so that a misplaced tensor cannot go unnoticed."""
    torch.manual_seed(0)
    model = FastTimeSformer(**{**TINY, "num_classes": 5, **overrides}).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.2)
    return model


def names(count: int) -> list[str]:
    return [f"class_{i}" for i in range(count)]


def hf_logits(folder, clip: torch.Tensor) -> torch.Tensor:
    hf = transformers.TimesformerForVideoClassification.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        return hf(pixel_values=clip).logits


# -- every geometry transformers holds gives the same logits -------------------------------------------------
GEOMETRIES = {
    "divided": {},
    "joint": {"attention_type": "joint_space_time"},
    "other_sizes": dict(image_size=48, patch_size=16, num_frames=2, heads=4, mlp_ratio=2.0, qkv_bias=False),
    "channels_first": {"input_layout": "bcthw", "num_classes": 3},
}


@pytest.mark.parametrize("overrides", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_transformers_loads_the_folder_and_gives_our_logits(tmp_path, overrides):
    model = tiny(**overrides)
    cfg = model.config
    out = to_transformers(model, tmp_path / "hf", class_names=names(cfg["num_classes"]))
    assert sorted(p.name for p in out.iterdir()) == sorted(TRANSFORMERS_FILES)

    # every tensor lands under transformers' own name and shape: nothing missing, nothing extra
    from safetensors.torch import load_file

    reference = transformers.TimesformerForVideoClassification(
        transformers.TimesformerConfig.from_pretrained(out)
    )
    exported = load_file(out / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in exported.items()} == {
        k: tuple(v.shape) for k, v in reference.state_dict().items()
    }

    side = cfg["image_size"]
    clip = torch.randn(2, cfg["num_frames"], 3, side, side, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(clip.transpose(1, 2) if cfg["input_layout"] == "bcthw" else clip)
    theirs = hf_logits(out, clip)
    assert ours.shape == theirs.shape == (2, cfg["num_classes"])
    assert (ours - theirs).abs().max() <= 1e-4
    assert check_transformers_logits(model, out) <= 1e-4


def test_config_and_processors_carry_labels_and_our_preprocessing(tmp_path):
    prep = dict(mean=MEAN, std=STD, short_side=40, crop_size=32, num_frames=4, sampling_rate=3)
    out = to_transformers(tiny(), tmp_path / "hf", class_names=names(5), preprocessing=prep)
    config = transformers.AutoConfig.from_pretrained(out)
    assert config.model_type == "timesformer" and config.num_frames == 4 and config.image_size == 32
    assert config.id2label == dict(enumerate(names(5))) and config.label2id["class_3"] == 3
    assert transformers.AutoModelForVideoClassification.from_pretrained(out).num_labels == 5

    processor = transformers.AutoImageProcessor.from_pretrained(out)  # the one the pipeline uses here
    assert list(processor.image_mean) == MEAN and list(processor.image_std) == STD
    assert processor.size == {"shortest_edge": 40} and processor.crop_size == {"height": 32, "width": 32}
    video = json.loads((out / "video_preprocessor_config.json").read_text())
    assert video["num_frames"] == 4 and video["image_mean"] == MEAN and video["size"]["shortest_edge"] == 40
    kept = json.loads((out / "config.json").read_text())["fast_timesformer"]
    assert kept["preprocessing"]["sampling_rate"] == 3 and kept["model"]["dim"] == 32


def test_video_processor_config_loads_in_transformers(tmp_path):
    if not transformers.utils.is_torchvision_available():
        pytest.skip(
            "torchvision is not installed: transformers' TimesformerVideoProcessor (video_preprocessor_config"
            ".json) needs it; without it the pipeline uses preprocessor_config.json, tested above"
        )
    out = to_transformers(tiny(), tmp_path / "hf", preprocessing=dict(mean=MEAN, std=STD, short_side=40))
    processor = transformers.AutoVideoProcessor.from_pretrained(out)
    assert type(processor).__name__ == "TimesformerVideoProcessor"
    assert list(processor.image_mean) == MEAN and processor.size.shortest_edge == 40
    assert processor.crop_size.height == 32 and processor.num_frames == 4


def test_pipeline_classifies_a_real_video_like_our_model(tmp_path):
    av = pytest.importorskip("av", reason="the video-classification pipeline decodes with PyAV")
    if not transformers.utils.is_av_available():
        pytest.skip("transformers does not see PyAV: its video-classification pipeline cannot decode")
    from video_fixtures import write_video

    # 32 x 32 frames: the processor's resize (shortest edge 32) and centre crop (32) leave them as they are,
    # so the pipeline and our own normalisation see the same pixels
    generator = np.random.default_rng(0)
    frames = generator.integers(0, 256, size=(6, 32, 32, 3), dtype=np.uint8)
    video = write_video(tmp_path / "clip.mp4", frames=frames, width=32, height=32, options={"crf": "10"})
    model = tiny()
    out = to_transformers(
        model, tmp_path / "hf", class_names=names(5), preprocessing=dict(mean=MEAN, std=STD)
    )
    classifier = transformers.pipeline("video-classification", model=str(out))
    result = classifier(str(video), top_k=5)

    with av.open(str(video)) as container:  # the pipeline reads frames 0..T-1 (frame_sampling_rate=1)
        decoded = [f.to_ndarray(format="rgb24") for _, f in zip(range(4), container.decode(video=0))]
    pixels = torch.from_numpy(np.stack(decoded)).permute(0, 3, 1, 2).float() / 255  # (T, C, H, W)
    pixels = (pixels - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]
    with torch.no_grad():
        probabilities = model(pixels[None]).softmax(-1)[0]
    assert {r["label"] for r in result} == set(names(5))
    for row in result:
        assert abs(row["score"] - float(probabilities[int(row["label"].split("_")[1])])) <= 1e-4


# -- the way back: our reader imports the folder to the same tensors ---------------------------------------
def test_round_trip_reads_back_identical_tensors(tmp_path):
    model = tiny(attention_type="joint_space_time")
    prep = dict(mean=MEAN, std=STD, short_side=40, crop_size=32)
    out = to_transformers(model, tmp_path / "hf", class_names=names(5), preprocessing=prep)

    back = from_pretrained(out)
    original = model.state_dict()
    assert set(back.state_dict()) == set(original)
    assert all(torch.equal(back.state_dict()[k], original[k]) for k in original)
    assert back.class_names == names(5) and back.config["attention_type"] == "joint_space_time"
    assert (list(back.preprocessing.mean), back.preprocessing.short_side) == (MEAN, 40)

    convert(out, tmp_path / "ours")
    again = read_checkpoint(tmp_path / "ours")
    assert again.kind == "fast-timesformer" and again.class_names == names(5)
    assert all(torch.equal(again.state_dict[k], original[k]) for k in original)


def test_a_checkpoint_path_exports_like_the_model(tmp_path):
    model = tiny()
    save_pretrained(model, tmp_path / "ours", class_names=names(5))
    out = to_transformers(tmp_path / "ours", tmp_path / "hf")
    assert transformers.AutoConfig.from_pretrained(out).id2label[4] == "class_4"
    assert check_transformers_logits(model, out) <= 1e-4
    with pytest.raises(ValueError, match="verify=True needs a model"):
        to_transformers(tmp_path / "ours", tmp_path / "hf2", verify=True)


def test_bfloat16_model_is_verified_in_float32(tmp_path):
    model = tiny().to(torch.bfloat16)
    out = to_transformers(model, tmp_path / "hf", verify=True)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    assert next(model.parameters()).dtype == torch.bfloat16  # the check works on a float32 copy


# -- what transformers cannot hold: refused, naming the field, nothing written ------------------------------
REFUSED = {
    "performer": ({"attention": "performer"}, "attention='performer'"),
    "fastformer": ({"attention": "fastformer"}, "attention='fastformer'"),
    "fastformer_in_time": ({"time_attention": "fastformer"}, "time_attention='fastformer'"),
    "rotary": ({"pos_emb": "rotary"}, "pos_emb='rotary'"),
    "space_only": ({"attention_type": "space_only"}, "attention_type='space_only'"),
    "dim_head": ({"dim_head": 8}, "dim_head=8"),
    "non_square": ({"image_size": (32, 48)}, "image_size=[32, 48]"),
    "features_only": ({"num_classes": 0}, "num_classes=0"),
}


@pytest.mark.parametrize("overrides, field", REFUSED.values(), ids=REFUSED.keys())
def test_what_transformers_cannot_hold_is_refused_by_field(tmp_path, overrides, field):
    with pytest.raises(CheckpointError) as caught:
        to_transformers(tiny(**overrides), tmp_path / "hf")
    message = str(caught.value)
    assert field in message and "\n" not in message and "Fix:" in message
    assert not (tmp_path / "hf").exists()


# -- the command ---------------------------------------------------------------------------------------------
def test_convert_to_transformers_with_verify(tmp_path, capsys):
    save_pretrained(tiny(), tmp_path / "ours", class_names=names(5))
    args = ["convert", str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "transformers"]
    assert main([*args, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "TimesformerForVideoClassification folder" in out and "verified" in out
    assert transformers.AutoConfig.from_pretrained(tmp_path / "hf").id2label[0] == "class_0"

    assert main(["convert", str(tmp_path / "ours"), str(tmp_path / "x"), "--verify"]) == 2
    assert "add --to transformers" in capsys.readouterr().err


def test_convert_refuses_a_performer_model_in_one_line(tmp_path, capsys):
    save_pretrained(tiny(attention="performer"), tmp_path / "performer")
    assert main(["convert", str(tmp_path / "performer"), str(tmp_path / "hf"), "--to", "transformers"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fast-timesformer convert: error:")
    assert str(tmp_path / "performer") in err and "attention='performer'" in err
    assert not (tmp_path / "hf").exists()
    # a regular model swapped to performer on the way is refused the same way
    save_pretrained(tiny(), tmp_path / "ours")
    args = ["convert", str(tmp_path / "ours"), str(tmp_path / "hf"), "--to", "transformers"]
    assert main([*args, "--attention", "fastformer"]) == 1
    assert "attention='fastformer'" in capsys.readouterr().err
