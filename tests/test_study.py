"""The accuracy study's configurations (benchmarks/accuracy.py, issue 11) each build and learn.

The study itself is a benchmark (BENCHMARKS.md, "Accuracy against wall-clock"); here every configuration it
names -- mechanism recipe plus layout or per-axis overrides -- is built at both tasks' geometries and must
fit one small fixed batch in a few optimizer steps, so a configuration that cannot train fails here, not
an hour into the study.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from fast_timesformer import create_model

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "accuracy.py"


def load_study():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("accuracy_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STUDY = load_study()


@pytest.mark.parametrize("name", list(STUDY.CONFIGS))
def test_each_configuration_fits_a_batch(name):
    recipe = STUDY.config_recipe(name, epochs=None, task="motion")
    mechanism, extra = STUDY.CONFIGS[name]
    assert recipe.attention == mechanism and all(
        recipe.model_kwargs[key] == value for key, value in extra.items()
    )
    torch.manual_seed(0)
    model = create_model(
        recipe.preset, num_classes=4, num_frames=recipe.num_frames, image_size=recipe.size,
        attention=recipe.attention, **recipe.model_kwargs,
    ).train()  # fmt: skip
    if "attention_type" in extra:
        assert all(not hasattr(block, "temporal_attn") for block in model.blocks)
    if "time_attention" in extra:
        assert type(model.blocks[0].temporal_attn).__name__ == "RegularAttention"
        assert type(model.blocks[0].attn).__name__ != "RegularAttention"
    video = torch.randn(8, recipe.num_frames, 3, recipe.size, recipe.size)
    labels = torch.arange(8) % 4
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(model(video), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < 0.6 * losses[0], losses


@pytest.mark.parametrize(
    "name", ["divided regular", "joint performer", "joint fastformer", "hybrid performer"]
)
def test_long_task_configurations_run_at_2048_tokens(name):
    recipe = STUDY.config_recipe(name, epochs=None, task="long")
    assert (recipe.task, recipe.num_frames, recipe.size) == ("long", 32, 64)
    model = create_model(
        recipe.preset, num_classes=4, num_frames=recipe.num_frames, image_size=recipe.size,
        attention=recipe.attention, **recipe.model_kwargs,
    )  # fmt: skip
    loss = model(torch.randn(1, 32, 3, 64, 64)).logsumexp(-1).sum()
    loss.backward()  # one training step's backward at 1 + 64 x 32 tokens
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def load_plateau_script():
    path = SCRIPT.parent / "long_plateau.py"
    spec = importlib.util.spec_from_file_location("long_plateau_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: long_plateau.py's probes of the plateau, all off (the official model).
PLATEAU_OFFICIAL = {
    "block_init_std": 0.0,
    "temporal_fc_std": 0.0,
    "time_direction": "both",
    "qk_norm": "none",
}


def test_long_plateau_reads_each_move_from_the_class_names():
    """benchmarks/long_plateau.py scores each stripe's move from the four-class label: the bit must be the one
    the class name states (LONG_CLASSES is sorted: red's move is the high bit, blue's the low one)."""
    from fast_timesformer.data.synthetic_long import LONG_CLASSES

    plateau = load_plateau_script()
    labels = torch.arange(len(LONG_CLASSES))
    for move in ("red", "blue"):
        expected = [int(name.split("_")[name.split("_").index(move) + 1] == "right") for name in LONG_CLASSES]
        assert plateau.move_labels(labels, move).tolist() == expected


def test_long_plateau_move_head_keeps_the_body():
    """The "then the missing move alone" run continues the same network with a fresh 2-class head only."""
    plateau = load_plateau_script()
    model = create_model("timesformer_micro_8x32", num_classes=4, num_frames=4, image_size=32, depth=1)
    moved = plateau.with_move_head(model, seed=0)
    assert moved.head.out_features == 2 and model.head.out_features == 4
    body = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    assert all(torch.equal(moved.state_dict()[k], v) for k, v in body.items())
    video = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(moved.eval().forward_features(video), model.eval().forward_features(video))


def test_long_plateau_builds_the_model_its_flags_name():
    """--qk-init-std (0: the official 0.02), --attention, --space-attention, --attention-type reach the model
    (what the option itself draws: tests/test_model.py)."""
    from types import SimpleNamespace

    plateau = load_plateau_script()
    args = SimpleNamespace(
        dim=64, heads=4, depth=2, qk_init_std=0.2, attention="regular", space_attention="performer",
        attention_type="divided_space_time", **PLATEAU_OFFICIAL,
    )  # fmt: skip
    model = plateau.build_model(args, frames=8, size=32, num_classes=4, seed=0)
    assert model.config["qk_init_std"] == 0.2 and model.config["space_attention"] == "performer"
    assert type(model.blocks[0].attn).__name__ == "PerformerAttention"
    assert 0.15 < model.blocks[0].temporal_attn.qkv.weight[:128].std().item() < 0.22
    joint = SimpleNamespace(**{**vars(args), "qk_init_std": 0.0, "space_attention": None,
                               "attention": "fastformer", "attention_type": "joint_space_time"})  # fmt: skip
    model = plateau.build_model(joint, 8, 32, 4, seed=0)
    assert model.config["qk_init_std"] == 0.02 and model.attention_type == "joint_space_time"
    assert type(model.blocks[0].attn).__name__ == "FastformerAttention"


def test_long_plateau_probes_change_only_what_they_name():
    """--temporal-fc-std, --block-init-std, --time-direction split and --qk-norm: off, the model is the official
    one; on, each redraws or replaces exactly its part, and the directional heads match a float64 reference."""
    from types import SimpleNamespace

    plateau = load_plateau_script()
    base = dict(dim=32, heads=2, depth=2, qk_init_std=0.0, attention="regular", space_attention=None,
                attention_type="divided_space_time")  # fmt: skip

    def build(**probes):
        args = SimpleNamespace(**base, **{**PLATEAU_OFFICIAL, **probes})
        return plateau.build_model(args, frames=4, size=16, num_classes=4, seed=0)

    official = build().state_dict()
    assert all(not block.temporal_fc.weight.any() for block in build().blocks)  # the official zero init
    fc = build(temporal_fc_std=0.02).state_dict()
    changed = {k for k in official if not torch.equal(official[k], fc[k])}
    assert changed == {"blocks.0.temporal_fc.weight", "blocks.1.temporal_fc.weight"}
    wide = build(block_init_std=0.1)
    assert 0.07 < wide.blocks[0].mlp.fc1.weight.std().item() < 0.1 and wide.blocks[1].temporal_fc.weight.any()
    assert torch.equal(wide.patch_embed.proj.weight, official["patch_embed.proj.weight"])

    q, k, v = torch.randn(3, 5, 2, 6, 8, dtype=torch.float64).unbind(0)  # (B, H, T, d)
    out = plateau.directional_attend(None, q, k, v, None).view(5, 6, 2, 8).transpose(1, 2)
    scores = q @ k.transpose(-1, -2) / 8**0.5
    past = torch.ones(6, 6, dtype=torch.bool).tril()
    for head, allowed in enumerate((past, past.T)):  # head 0: this and earlier frames; head 1: later ones
        weights = scores[:, head].masked_fill(~allowed, float("-inf")).softmax(-1)
        torch.testing.assert_close(out[:, head], weights @ v[:, head])
    split = build(time_direction="split")
    assert all(b.temporal_attn.attend.__func__ is plateau.directional_attend for b in split.blocks)
    assert type(split.blocks[0].attn).attend is split.blocks[0].attn.attend.__func__  # space untouched

    normed = build(qk_norm="all")
    x = torch.randn(3, 7, 32)
    for attn in (normed.blocks[0].temporal_attn, normed.blocks[1].attn):
        q, k, _ = attn.split_heads(x, None)
        for normalised in (q, k):  # RMS 1 per head vector: every logit within +-sqrt(dim_head)
            torch.testing.assert_close(normalised.pow(2).mean(-1), torch.ones(3, 2, 7), atol=1e-3, rtol=0)
    assert build(qk_norm="time").blocks[0].attn.split_heads.__func__ is not plateau.qk_normed_split_heads
