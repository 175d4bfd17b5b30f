"""bfloat16 training on the CPU: detection of bf16 units, the one warning, and Lightning's bf16-mixed loop."""

from __future__ import annotations

import warnings

import pytest
import torch

from fast_timesformer.training import precision
from fast_timesformer.training.precision import SlowPrecisionWarning, check_cpu_precision, cpu_bf16_units

X86_WITH = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 amx_tile\n"
X86_WITHOUT = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
ARM_WITH = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [(X86_WITH, True), (X86_WITHOUT, False), (ARM_WITH, True), ("model name: x\n", None)],
)
def test_bf16_units_are_read_from_the_cpu_flags(tmp_path, text, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(text)
    assert cpu_bf16_units.__wrapped__(str(cpuinfo)) is expected
    assert cpu_bf16_units.__wrapped__(str(tmp_path / "missing")) is None


def test_bf16_on_a_cpu_without_units_warns_once(monkeypatch):
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: False)  # this machine's flags, replaced
    monkeypatch.setattr(precision, "_warned", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert check_cpu_precision("bf16-mixed", "cpu")
        assert not check_cpu_precision("bf16-mixed", "cpu")  # once per process
        assert not check_cpu_precision("32-true", "cpu") and not check_cpu_precision("bf16-mixed", "cuda")
    assert [w.category for w in caught] == [SlowPrecisionWarning]
    assert "--trainer.precision 32-true" in str(caught[0].message)
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: True)
    monkeypatch.setattr(precision, "_warned", set())
    assert not check_cpu_precision("bf16-mixed", "cpu")


@pytest.mark.parametrize("attention", ["regular", "performer"])
def test_lightning_bf16_mixed_trains_on_the_cpu_with_favor_features_in_float32(attention, monkeypatch):
    from lightning.pytorch import Trainer

    from fast_timesformer.attention import performer
    from fast_timesformer.training import VideoClassifier

    torch.manual_seed(0)
    module = VideoClassifier(
        model_kwargs=dict(patch_size=8, dim=32, depth=2, heads=2, attention=attention),
        num_classes=3, num_frames=4, image_size=32, lr=1e-3, seed=0,
    )  # fmt: skip
    seen = {"matmul": set(), "features": set()}
    module.model.head.register_forward_hook(lambda mod, args, out: seen["matmul"].add(out.dtype))
    real = performer.softmax_kernel_features

    def features(*args, **kwargs):
        out = real(*args, **kwargs)
        seen["features"].add(out.dtype)
        return out

    monkeypatch.setattr(performer, "softmax_kernel_features", features)
    g = torch.Generator().manual_seed(0)
    batches = [{"video": torch.randn(2, 4, 3, 32, 32, generator=g), "label": torch.tensor([0, 2])}] * 3
    trainer = Trainer(
        accelerator="cpu", devices=1, precision="bf16-mixed", max_steps=3, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
    )  # fmt: skip
    before = [p.detach().clone() for p in module.parameters()]
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert trainer.global_step == 3
    assert torch.bfloat16 in seen["matmul"]  # autocast reached the model
    assert all(p.dtype == torch.float32 for p in module.parameters())  # master weights stay float32
    assert any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))
    if attention == "performer":
        assert seen["features"] == {torch.float32}


def test_float32_islands_apply_only_to_cpu_bf16_training():
    from fast_timesformer.layers.fast_paths import cpu_bf16_training, float32_sdpa

    x = torch.randn(2, 3)
    assert not cpu_bf16_training(x)  # no autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert cpu_bf16_training(x)
        with torch.no_grad():
            assert not cpu_bf16_training(x)  # inference keeps the bf16 kernels
    with torch.autocast("cpu", dtype=torch.float16):
        assert not cpu_bf16_training(x)
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 8, generator=g, dtype=torch.float64) for _ in range(3))
    reference = torch.softmax(q @ k.transpose(-1, -2) / 8**0.5, dim=-1) @ v
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = float32_sdpa(q.bfloat16(), k.bfloat16(), v.bfloat16(), None, 0.0)
    assert out.dtype == torch.bfloat16
    assert (out.double() - reference).abs().max() < 2e-2  # bf16 inputs, float32 arithmetic


def test_bf16_training_gradients_follow_float32():
    from fast_timesformer import FastTimeSformer

    torch.manual_seed(0)
    model = FastTimeSformer(
        num_frames=4, image_size=32, patch_size=8, dim=64, depth=2, heads=4, num_classes=5
    )
    video, labels = torch.randn(2, 4, 3, 32, 32), torch.tensor([1, 3])

    def grads(bf16: bool) -> torch.Tensor:
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = torch.nn.functional.cross_entropy(model(video), labels)
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    full, half = grads(False), grads(True)
    cosine = torch.nn.functional.cosine_similarity(full, half, dim=0)
    assert cosine > 0.99, cosine
