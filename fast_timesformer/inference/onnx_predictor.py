"""Classify video files with an exported ONNX file, through onnxruntime, exactly as :class:`Predictor` does.

:class:`OnnxPredictor` *is* a :class:`~fast_timesformer.inference.Predictor` whose model is an onnxruntime
session: the views of a file (decoding, sampling, resizing, cropping, normalisation, clips x crops) and the
combination of their scores are the very same code, so the preprocessing cannot drift from the PyTorch path.
The preprocessing and class names come from the file's ``fast_timesformer`` metadata, written by
:func:`~fast_timesformer.inference.deploy.export_model`. Needs the ``export`` extra (onnx, onnxruntime).

    predictor = OnnxPredictor.from_pretrained("model.onnx")
    results, errors = predictor.classify(["clip.mp4"], top_k=5)
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn

from fast_timesformer.checkpoints import Preprocessing
from fast_timesformer.errors import OptionError
from fast_timesformer.inference.deploy import ExportError, onnx_session, read_onnx_metadata
from fast_timesformer.inference.predictor import Predictor


class OnnxModel(nn.Module):
    """An onnxruntime session behind ``nn.Module``'s call: float32 video (B, T, C, H, W) -> logits (B, C).

    Holds no parameters; ``.to("cpu")`` and ``.eval()`` are no-ops. The input's frames and size must be the
    exported ones (the file's metadata says which); anything else is refused with the expected shape.
    """

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.metadata = read_onnx_metadata(self.path)
        self.session = onnx_session(self.path, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.metadata["input"]["shape"])  # ("batch", T, C, H, W)
        self.config = dict(self.metadata["model"])
        self.num_classes = int(self.metadata["output"]["shape"][1])
        self.num_frames = int(self.config["num_frames"])
        self.class_names = self.metadata.get("class_names")
        self.preprocessing = Preprocessing.from_dict(self.metadata["preprocessing"])
        self.task = self.metadata.get("task")  # {"type": "multilabel", "thresholds": [...]} or None

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        if tuple(video.shape[1:]) != self.input_shape[1:]:
            expected = ", ".join(str(s) for s in self.input_shape)
            raise ExportError(
                f"{self.path} was exported for input ({expected}), got {tuple(video.shape)}: frames and size "
                "are fixed at export; re-export with the preprocessing you want"
            )
        array = video.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])


class OnnxPredictor(Predictor):
    """:class:`Predictor` running an ONNX file from ``fast-timesformer export --format onnx`` (CPU only).

    Same constructor keywords, methods and results as :class:`Predictor`; ``model`` is an :class:`OnnxModel`.
    """

    @classmethod
    def from_pretrained(
        cls, weights: str | os.PathLike, *, device: str | torch.device = "cpu", threads: int | None = None,
        **options: Any,
    ) -> OnnxPredictor:  # fmt: skip
        """Load an exported ``.onnx`` file; ``options`` are :class:`Predictor`'s keywords.

        ``threads``: onnxruntime intra-op threads (default: onnxruntime's, one per core).
        """
        if torch.device(device).type != "cpu":
            raise OptionError(
                f"ONNX files run on the CPU here (onnxruntime's CPU provider), got --device {device}: "
                "drop --device, or classify with the weights folder on that device"
            )
        if not os.path.isfile(weights):
            raise ExportError(
                f"{weights}: no such ONNX file: pass the .onnx written by `fast-timesformer export`"
            )
        model = OnnxModel(weights, threads=threads)
        return cls(model, preprocessing=model.preprocessing, class_names=model.class_names, **options)


__all__ = ["OnnxModel", "OnnxPredictor"]
