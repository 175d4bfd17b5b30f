"""Deployment: ONNX (run by the real onnxruntime) and torch.export files, verified against eager PyTorch;
``classify --weights model.onnx`` gives what the weights folder gives; ``--compile``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from video_fixtures import write_video

from fast_timesformer import FastTimeSformer
from fast_timesformer.checkpoints import Preprocessing, save_pretrained
from fast_timesformer.cli import main
from fast_timesformer.inference import Predictor

pytest.importorskip("onnxruntime", reason="ONNX needs the [export] extra")
pytest.importorskip("onnx", reason="ONNX needs the [export] extra")

from fast_timesformer.inference.deploy import ExportError, export_model, read_onnx_metadata  # noqa: E402
from fast_timesformer.inference.onnx_predictor import OnnxModel, OnnxPredictor  # noqa: E402

TINY = dict(num_frames=4, image_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=3)
PREP = Preprocessing(num_frames=4, sampling_rate=2, crop_size=32, short_side=32, num_spatial_crops=3)
NAMES = ["a", "b", "c"]


def tiny(**kwargs) -> FastTimeSformer:
    torch.manual_seed(0)
    model = FastTimeSformer(**{**TINY, **kwargs}).eval()
    model.preprocessing, model.class_names = PREP, NAMES
    return model


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("weights") / "tiny"
    save_pretrained(tiny(), folder, preprocessing=PREP, class_names=NAMES)
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", num_frames=20, width=48, height=40)


@pytest.mark.parametrize("layout", ["divided_space_time", "joint_space_time", "space_only"])
@pytest.mark.parametrize("attention", ["regular", "performer", "fastformer"])
def test_every_mechanism_and_layout_exports_to_onnx_and_matches_eager(attention, layout, tmp_path):
    model = tiny(attention=attention, attention_type=layout)
    result = export_model(model, tmp_path / "m.onnx", exporter="torchscript")  # the faster exporter here
    assert result.max_abs_diff < 1e-5 and result.input_shape == ("batch", 4, 3, 32, 32)
    onnx_model = OnnxModel(tmp_path / "m.onnx")
    video = torch.randn(5, 4, 3, 32, 32)  # a batch size never traced: the batch is dynamic
    torch.testing.assert_close(onnx_model(video), model(video), atol=1e-5, rtol=1e-5)
    assert onnx_model.config["attention"] == attention and onnx_model.class_names == NAMES


def test_default_export_command_onnx_then_classify_gives_the_folders_predictions(
    weights, video, tmp_path, capsys
):
    onnx_file = tmp_path / "model.onnx"
    assert main(["export", str(weights), str(onnx_file), "--format", "onnx"]) == 0  # dynamo, the default
    out = capsys.readouterr().out
    assert "verified against eager PyTorch: max logit difference" in out and "batch dynamic" in out
    assert read_onnx_metadata(onnx_file)["preprocessing"] == PREP.to_dict()
    assert main(["classify", str(video), "--weights", str(weights), "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)
    assert main(["classify", str(video), "--weights", str(onnx_file), "--json"]) == 0
    onnx = json.loads(capsys.readouterr().out)
    assert onnx["protocol"] == eager["protocol"] == "4x2, 1 clip x 3 crops, 32px"  # the same views
    for mine, theirs in zip(onnx["results"][0]["predictions"], eager["results"][0]["predictions"]):
        assert mine["label"] == theirs["label"] and mine["probability"] == pytest.approx(
            theirs["probability"], abs=1e-5
        )


def test_torch_export_program_round_trip(weights, tmp_path, capsys):
    program = tmp_path / "model.pt2"
    assert main(["export", str(weights), str(program), "--format", "torch-export"]) == 0
    assert "verified against eager PyTorch" in capsys.readouterr().out
    module = torch.export.load(program).module()
    video = torch.randn(3, 4, 3, 32, 32)
    torch.testing.assert_close(module(video), tiny()(video), atol=1e-5, rtol=1e-5)


def test_bad_exports_and_onnx_files_are_one_line_errors(weights, video, tmp_path, capsys):
    def one_line(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 1
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(err) == 1 and "Traceback" not in err[0], err
        return err[0]

    assert "no such file or folder" in one_line(
        "export", str(tmp_path / "nope"), str(tmp_path / "m.onnx"), "--format", "onnx"
    )
    assert "name it *.onnx" in one_line("export", str(weights), str(tmp_path / "m.bin"), "--format", "onnx")
    assert "use `convert`" in one_line(
        "export", str(weights), str(tmp_path / "folder")
    )  # weights from a folder
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    assert "not a readable ONNX file" in one_line("classify", str(video), "--weights", str(text))
    assert "no such ONNX file" in one_line(
        "classify", str(video), "--weights", str(tmp_path / "missing.onnx")
    )
    foreign = tmp_path / "foreign.onnx"  # a valid ONNX file that we did not write: no preprocessing known
    torch.onnx.export(torch.nn.Linear(2, 2), (torch.randn(1, 2),), foreign, dynamo=False)
    assert "export it with `fast-timesformer export`" in one_line(
        "classify", str(video), "--weights", str(foreign)
    )
    export_model(tiny(), tmp_path / "m.onnx", exporter="torchscript")
    with pytest.raises(ExportError, match=r"exported for input \(batch, 4, 3, 32, 32\)"):
        OnnxModel(tmp_path / "m.onnx")(torch.randn(1, 8, 3, 32, 32))
    with pytest.raises(
        ExportError, match="differs from eager PyTorch"
    ):  # the check is real: a zero tolerance
        export_model(
            tiny(attention="performer"), tmp_path / "p.onnx", exporter="torchscript", tolerance=1e-12
        )
    assert not (tmp_path / "p.onnx").exists()  # nothing half-verified left behind
    with pytest.raises(Exception, match="CPU"):
        OnnxPredictor.from_pretrained(tmp_path / "m.onnx", device="meta")


def test_compile_option_gives_eager_results(weights, video, capsys):
    assert main(["classify", str(video), "--weights", str(weights), "--json"]) == 0
    eager = json.loads(capsys.readouterr().out)["results"][0]["predictions"]
    assert main(["classify", str(video), "--weights", str(weights), "--json", "--compile"]) == 0
    compiled = json.loads(capsys.readouterr().out)["results"][0]["predictions"]
    assert [p["label"] for p in compiled] == [p["label"] for p in eager]
    assert [p["probability"] for p in compiled] == pytest.approx([p["probability"] for p in eager], abs=1e-5)
    predictor = Predictor.from_pretrained(weights, compile=True)
    assert set(predictor.model.state_dict()) == set(tiny().state_dict())  # compiled in place: same names
