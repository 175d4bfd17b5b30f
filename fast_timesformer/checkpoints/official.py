"""The PySlowFast training config (YAML) embedded in official TimeSformer checkpoints, read safely.

PyYAML's ``safe_load`` when it is installed, else a minimal reader for yacs dumps; either way nothing in the
text is executed. :func:`preprocessing_from_cfg` turns the config into our preprocessing fields.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def parse_cfg(text: str) -> dict[str, Any]:
    """The PySlowFast training config embedded in official checkpoints (YAML); {} when unreadable."""
    try:
        import yaml

        parsed = yaml.safe_load(text)
        return parsed if isinstance(parsed, dict) else {}
    except ImportError:
        return parse_simple_yaml(text)
    except Exception:
        return {}


def parse_simple_yaml(text: str) -> dict[str, Any]:
    """Minimal YAML reader for yacs dumps: nested mappings, ``- item`` and ``[a, b]`` lists, scalars.

    Used when PyYAML is not installed; anything it does not understand is skipped, never executed.
    """
    lines = [(len(raw) - len(raw.lstrip(" ")), raw.strip()) for raw in text.splitlines()]
    lines = [(indent, line) for indent, line in lines if line and not line.startswith("#")]

    def block(start: int, indent: int) -> tuple[Any, int]:
        if start < len(lines) and lines[start][1].startswith("- ") and lines[start][0] == indent:
            items, i = [], start
            while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
                items.append(_scalar(lines[i][1][2:]))
                i += 1
            return items, i
        out, i = {}, start
        while i < len(lines) and lines[i][0] == indent:
            key, sep, value = lines[i][1].partition(":")
            i += 1
            if not sep:
                continue
            if value.strip():
                out[key.strip()] = _scalar(value.strip())
            elif i < len(lines) and (
                lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("- "))
            ):
                out[key.strip()], i = block(i, lines[i][0])
            else:
                out[key.strip()] = None
        while i < len(lines) and lines[i][0] > indent:  # skip what we could not place
            i += 1
        return out, i

    try:
        parsed, _ = block(0, lines[0][0] if lines else 0)
        return parsed if isinstance(parsed, dict) else {}
    except Exception:
        return {}


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        return [_scalar(part) for part in text[1:-1].split(",") if part.strip()]
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "none", "~", ""):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def preprocessing_from_cfg(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Preprocessing and geometry from a PySlowFast config (DATA.NUM_FRAMES, DATA.TRAIN_CROP_SIZE ...)."""
    data, test = cfg.get("DATA") or {}, cfg.get("TEST") or {}
    pairs = [
        ("num_frames", data.get("NUM_FRAMES")), ("sampling_rate", data.get("SAMPLING_RATE")),
        ("crop_size", data.get("TEST_CROP_SIZE") or data.get("TRAIN_CROP_SIZE")),
        ("mean", data.get("MEAN")), ("std", data.get("STD")),
        ("num_temporal_clips", test.get("NUM_ENSEMBLE_VIEWS")), ("num_spatial_crops", test.get("NUM_SPATIAL_CROPS")),
    ]  # fmt: skip
    out = {key: value for key, value in pairs if value is not None}
    dataset = str((cfg.get("TRAIN") or {}).get("DATASET") or (cfg.get("TEST") or {}).get("DATASET") or "")
    if dataset:  # Something-Something is sampled one frame per segment, Kinetics densely
        out["sampling"] = "segment" if "ssv2" in dataset.lower() else "dense"
    if "crop_size" in out and out.get("num_spatial_crops", 3) == 3:
        out["short_side"] = out["crop_size"]  # 3-crop testing resizes the short side to the crop size
    return out


__all__ = ["parse_cfg", "parse_simple_yaml", "preprocessing_from_cfg"]
