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
