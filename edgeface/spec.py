"""The model card schema: one validator every reader of a card goes through (TF-free); also the
task names, task inference from a Keras graph, and the operating-point keys cards use.

A card is NAME.json beside NAME.tflite. Only the fields the runtime, bench and info rely on are
checked; unknown extra fields are allowed (cards carry provenance that grows over time). A bad
card is bad input: EdgefaceError (exit 2) naming the file and the field, e.g.

    model card m.json: field 'verification.threshold' must be a number, got 'abc'
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from edgeface.errors import EdgefaceError

# The fixed standardisation every edgeface model's card records by default: uint8 pixels -> [-1, 1].
PIXEL_MEAN = 127.5
PIXEL_STD = 127.5


def normalize_pixels(pixels_uint8, mean: float = PIXEL_MEAN, std: float = PIXEL_STD):
    import numpy as np

    return (np.asarray(pixels_uint8, dtype=np.float32) - mean) / std


TASK_EMBEDDING = "face_embedding"
TASK_CLASSIFICATION = "expression_classification"
TASKS = (TASK_EMBEDDING, TASK_CLASSIFICATION)
# verification.operating_points: name -> {threshold, [tar, far, accuracy]}
OPERATING_POINT_METRICS = ("tar", "far", "accuracy")


def infer_task(model) -> str:
    """A Keras model whose last layer is a softmax is a classifier; anything else is an embedder."""
    last = model.layers[-1]
    act = getattr(last, "activation", None)
    if getattr(act, "__name__", "") == "softmax" or type(last).__name__ == "Softmax":
        return TASK_CLASSIFICATION
    return TASK_EMBEDDING


def far_key(far: float) -> str:
    """The card key of a FAR operating point (verification.operating_points): 1e-3 -> "far_1e-3"."""
    return "far_" + f"{far:.0e}".replace("e-0", "e-").replace("e+0", "e")


class CardError(EdgefaceError):
    """A model card that does not follow the schema (exit 2)."""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class _Checker:
    def __init__(self, where: str):
        self.where = where

    def fail(self, field: str, expected: str, got) -> None:
        shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
        raise CardError(f"model card {self.where}: field '{field}' must be {expected}, got {shown}")

    def obj(self, value, field: str) -> dict:
        if not isinstance(value, dict):
            self.fail(field, "an object", value)
        return value

    def number(self, value, field: str, finite: bool = True):
        if not _is_number(value) or (finite and not math.isfinite(value)):
            self.fail(field, "a finite number" if finite else "a number", value)
        return value

    def numbers(self, value, field: str):
        """A number or a per-channel list of numbers (normalization mean/std)."""
        if isinstance(value, list) and value and all(_is_number(v) and math.isfinite(v) for v in value):
            return value
        if not isinstance(value, list):
            return self.number(value, field)
        self.fail(field, "a number or a list of numbers", value)


def validate_card(card, where: str = "<card>") -> dict:
    """Return `card` unchanged if it follows the schema, else raise CardError naming the field."""
    c = _Checker(where)
    if not isinstance(card, dict):
        raise CardError(f"model card {where}: must be a JSON object, got {type(card).__name__}")
    if "task" in card and card["task"] not in TASKS:
        c.fail("task", "one of " + ", ".join(TASKS), card["task"])
    if "name" in card and not isinstance(card["name"], str):
        c.fail("name", "a string", card["name"])
    for key in ("bytes", "budget_bytes"):
        v = card.get(key)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
            c.fail(key, "a non-negative integer or null", v)
    if card.get("input") is not None:
        inp = c.obj(card["input"], "input")
        if "shape" in inp:
            shape = inp["shape"]
            if not (isinstance(shape, list) and len(shape) == 4
                    and all(isinstance(v, int) and not isinstance(v, bool) for v in shape)):
                c.fail("input.shape", "a list of 4 integers", shape)
        if inp.get("normalization") is not None:
            norm = c.obj(inp["normalization"], "input.normalization")
            for key in ("mean", "std"):
                if key in norm:
                    c.numbers(norm[key], f"input.normalization.{key}")
            std = norm.get("std")
            if std is not None and any(v == 0 for v in (std if isinstance(std, list) else [std])):
                c.fail("input.normalization.std", "non-zero", std)
        for key in ("color", "alignment"):
            if inp.get(key) is not None and not isinstance(inp[key], str):
                c.fail(f"input.{key}", "a string", inp[key])
    if card.get("verification") is not None:
        ver = c.obj(card["verification"], "verification")
        if ver.get("threshold") is not None:
            c.number(ver["threshold"], "verification.threshold")
        if ver.get("operating_points") is not None:
            points = c.obj(ver["operating_points"], "verification.operating_points")
            for name, point in points.items():
                field = f"verification.operating_points.{name}"
                c.obj(point, field)
                c.number(point.get("threshold"), f"{field}.threshold")
                for metric in OPERATING_POINT_METRICS:
                    if point.get(metric) is not None:
                        c.number(point[metric], f"{field}.{metric}")
    return card


def card_path(model_path: str | os.PathLike) -> Path:
    """The model card sits beside the artifact: NAME.tflite -> NAME.json."""
    return Path(model_path).with_suffix(".json")


def load_card_file(path: str | os.PathLike) -> dict:
    """Read and validate one card file (it must exist)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise CardError(f"model card {path} is a directory") from None
    except OSError as e:
        raise CardError(f"cannot read model card {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise CardError(f"model card {path} is not valid JSON: {e}") from None
    try:
        card = json.loads(text)
    except json.JSONDecodeError as e:
        raise CardError(f"model card {path} is not valid JSON: {e}") from None
    return validate_card(card, str(path))


def load_card(model_path: str | os.PathLike) -> dict:
    """The validated card of an artifact, or {} when it has none (cards are optional for foreign models)."""
    p = card_path(model_path)
    if not p.exists():
        return {}
    return load_card_file(p)


def card_split_and_preprocessing(card: dict) -> tuple[dict, dict]:
    """(split spec, preprocessing) recorded on the card, with defaults for foreign models."""
    notes = card.get("notes") or {}
    config = (card.get("source") or {}).get("config") or {}
    split = dict(card.get("data_split") or notes.get("data_split") or {})
    if not split and config:  # a card written from run.json without the split: rebuild it from the config
        split = {k: config[k] for k in ("seed", "val_fraction", "test_fraction", "split_by") if k in config}
        if config.get("dataset") not in (None, "auto"):
            split["kind"] = config["dataset"]
    pre = dict(card.get("preprocessing") or notes.get("preprocessing") or {})
    return split, pre


def class_names_of(card: dict) -> list[str] | None:
    """The class names a classifier's card records, or None."""
    names = (card.get("output") or {}).get("class_names") or card.get("class_names")
    return list(names) if names else None
