"""``from_pretrained`` / ``save_pretrained`` for a model class, without this floor importing the model.

:class:`~fast_timesformer.model.FastTimeSformer` inherits :class:`PretrainedMixin`; the mixin hands the
class itself to :func:`~.loading.load_pretrained`, so the import arrows point one way: the model imports
the checkpoint layer, never the reverse.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from fast_timesformer.checkpoints.loading import load_pretrained
from fast_timesformer.checkpoints.preprocessing import Preprocessing
from fast_timesformer.checkpoints.saving import save_pretrained


class PretrainedMixin:
    """Loading and saving for a model whose constructor takes keyword arguments kept in ``self.config``.

    The model must skip its random initialisation when
    :func:`~fast_timesformer.checkpoints.init_weights_enabled` is False (its tensors are about to be loaded).
    """

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> Any:
        """Load our folders, Hugging Face, official ``.pyth`` or ImageNet ViT checkpoints as this class.

        Takes :func:`~fast_timesformer.checkpoints.load_pretrained`'s options (``return_report``,
        ``keep_image_head``, ``source_format``, ``revision``, ``cache_dir``) and constructor overrides such
        as ``num_classes=174`` or ``attention="performer"``. Returns the model in eval mode with
        ``class_names``, ``preprocessing`` (a :class:`Preprocessing`) and ``load_report`` attributes.
        """
        return load_pretrained(cls, path, **kwargs)

    def save_pretrained(
        self,
        directory: str | os.PathLike,
        *,
        preprocessing: Preprocessing | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        """Write ``model.safetensors`` + ``config.json`` to ``directory``; see :func:`~.saving.save_pretrained`."""
        save_pretrained(self, directory, preprocessing=preprocessing, class_names=class_names)


__all__ = ["PretrainedMixin"]
