"""The model contract (TF-free): the model card schema (`ModelCard`, read through `load_card`), the
pixel normalisation, the task names, task inference from a Keras graph and the operating-point keys.

A card is NAME.json beside NAME.tflite. `ModelCard.from_dict` checks the fields the runtime, bench
and info rely on and keeps every other key verbatim (cards carry provenance that grows), so
`ModelCard.from_dict(d).to_dict() == d`. A bad card is bad input: CardError (exit 2) naming the
file and the field, e.g.

    model card m.json: field 'verification.threshold' must be a finite number, got 'abc'
"""
from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import MISSING, dataclass, field, fields
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
# A classifier card's notes.preprocessing.tta: the test-time augmentation the runtime applies by default
# (edgeface.runtime.tta builds the views).
TTA_MODES = ("none", "flip", "ten")
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


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


class _Checker:
    """Type checks that fail with one line naming the card and the dotted field."""

    def __init__(self, where: str):
        self.where = where

    def fail(self, at: str, expected: str, got) -> None:
        shown = repr(got) if not isinstance(got, (dict, list)) else type(got).__name__
        raise CardError(f"model card {self.where}: field '{at}' must be {expected}, got {shown}")

    def obj(self, value, at: str) -> dict:
        if not isinstance(value, dict):
            self.fail(at, "an object", value)
        return value

    def number(self, value, at: str):
        if not _is_number(value) or not math.isfinite(value):
            self.fail(at, "a finite number", value)
        return value

    def numbers(self, value, at: str):
        """A number or a per-channel list of numbers (normalization mean/std)."""
        if isinstance(value, list) and value and all(_is_number(v) and math.isfinite(v) for v in value):
            return value
        if not isinstance(value, list):
            return self.number(value, at)
        self.fail(at, "a number or a list of numbers", value)

    def count(self, value, at: str):
        if value is not None and (not _is_int(value) or value < 0):
            self.fail(at, "a non-negative integer or null", value)
        return value

    def string(self, value, at: str):
        if value is not None and not isinstance(value, str):
            self.fail(at, "a string", value)
        return value

    def strings(self, value, at: str):
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            self.fail(at, "a list of strings", value)
        return value

    def ints(self, value, at: str, length: int | None = None):
        if not (isinstance(value, list) and all(_is_int(v) for v in value)
                and (length is None or len(value) == length)):
            self.fail(at, f"a list of {length} integers" if length else "a list of integers", value)
        return value


_UNSET = object()
OPTIONAL = {"optional": True}  # field metadata: a card built in code writes the field only when it is set


def _default(f):
    """A dataclass field's default value, or _UNSET (not a typed key, or a required one)."""
    if f is None:
        return _UNSET
    if f.default is not MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not MISSING else _UNSET


def _to_json(value):
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    return copy.deepcopy(value)


@dataclass(frozen=True, kw_only=True)
class _Section:
    """One JSON object of a card: the fields the schema types, plus `extra`, every key it does not
    know, kept verbatim (cards carry provenance that grows). `layout` is the key order of the JSON it
    was read from (None when built in code), so that to_dict() gives back exactly what from_dict read."""
    extra: dict = field(default_factory=dict)
    layout: tuple[str, ...] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def _typed(cls) -> dict:
        """JSON key -> dataclasses.Field of every typed key."""
        return {f.name: f for f in fields(cls) if f.name not in ("extra", "layout")}

    @classmethod
    def _read(cls, d: dict, c: _Checker, at: str) -> dict:
        """The constructor arguments for the typed keys present in `d`, checked."""
        raise NotImplementedError

    @classmethod
    def _parse(cls, d, c: _Checker, at: str):
        d = c.obj(d, at)
        typed = cls._typed()
        return cls(**cls._read(d, c, at), extra=copy.deepcopy({k: v for k, v in d.items() if k not in typed}),
                   layout=tuple(d))

    def _values(self) -> dict:
        """The typed keys as JSON, in the order a card built in code writes them."""
        return {k: _to_json(getattr(self, k)) for k in self._typed()}

    def to_dict(self) -> dict:
        out = {**self._values(), **_to_json(self.extra)}
        typed = self._typed()
        if self.layout is None:
            optional = {k for k, f in typed.items() if f.metadata.get("optional")}
            return {k: v for k, v in out.items() if not (v is None and k in optional)}
        # As read: the source's keys in its order; a typed key it lacked is written once set.
        kept = {k: out[k] for k in self.layout if k in out}
        for k, v in out.items():
            default = _default(typed.get(k))
            if k not in kept and (default is _UNSET or _to_json(default) != v):
                kept[k] = v
        return kept


@dataclass(frozen=True, kw_only=True)
class Normalization(_Section):
    """input.normalization: the model input is (pixel - mean) / std, scalars or per channel."""
    mean: float | list[float] = PIXEL_MEAN
    std: float | list[float] = PIXEL_STD

    @classmethod
    def _read(cls, d, c, at):
        v = {k: c.numbers(d[k], f"{at}.{k}") for k in ("mean", "std") if k in d}
        std = v.get("std")
        if std is not None and any(s == 0 for s in (std if isinstance(std, list) else [std])):
            c.fail(f"{at}.std", "non-zero", std)
        return v


@dataclass(frozen=True, kw_only=True)
class InputSpec(_Section):
    """input: the tensor the host feeds and how to make it from an RGB uint8 crop."""
    shape: list[int] | None = None          # [1, H, W, C] as the interpreter reports it
    dtype: str | None = None
    quantization: dict | None = None        # {scale, zero_point} of int8 input tensors
    color: str | None = None                # RGB | GRAY
    normalization: Normalization | None = None
    alignment: str | None = None            # an edgeface.align.transform template name; None: not aligned

    @classmethod
    def _read(cls, d, c, at):
        v = {k: d[k] for k in ("dtype", "quantization") if k in d}
        if "shape" in d:
            v["shape"] = c.ints(d["shape"], f"{at}.shape", length=4)
        for k in ("color", "alignment"):
            if k in d:
                v[k] = c.string(d[k], f"{at}.{k}")
        if d.get("normalization") is not None:
            v["normalization"] = Normalization._parse(d["normalization"], c, f"{at}.normalization")
        elif "normalization" in d:
            v["normalization"] = None
        return v

    @property
    def size(self) -> tuple[int, int] | None:
        """(height, width), or None when the card records no shape."""
        return (self.shape[1], self.shape[2]) if self.shape else None

    @property
    def mean(self) -> float | list[float]:
        return (self.normalization or Normalization()).mean

    @property
    def std(self) -> float | list[float]:
        return (self.normalization or Normalization()).std


@dataclass(frozen=True, kw_only=True)
class OutputSpec(_Section):
    """output: the tensor the graph returns; an embedder's dimension or a classifier's class names."""
    shape: list[int] | None = None
    dtype: str | None = None
    quantization: dict | None = None
    embedding_dim: int | None = field(default=None, metadata=OPTIONAL)
    class_names: list[str] | None = field(default=None, metadata=OPTIONAL)
    l2_normalized: bool | None = None       # False: normalise embeddings on the host

    @classmethod
    def _read(cls, d, c, at):
        v = {k: d[k] for k in ("dtype", "quantization", "l2_normalized") if k in d}
        if d.get("shape") is not None:
            v["shape"] = c.ints(d["shape"], f"{at}.shape")
        if "embedding_dim" in d:
            v["embedding_dim"] = c.count(d["embedding_dim"], f"{at}.embedding_dim")
        if "class_names" in d:
            v["class_names"] = c.strings(d["class_names"], f"{at}.class_names")
        return v


@dataclass(frozen=True, kw_only=True)
class OperatingPoint(_Section):
    """verification.operating_points.NAME: a cosine threshold and the rates it gave on the pairs."""
    threshold: float
    tar: float | None = field(default=None, metadata=OPTIONAL)
    far: float | None = field(default=None, metadata=OPTIONAL)
    accuracy: float | None = field(default=None, metadata=OPTIONAL)

    @classmethod
    def _read(cls, d, c, at):
        v = {"threshold": c.number(d.get("threshold"), f"{at}.threshold")}
        v.update((k, c.number(d[k], f"{at}.{k}")) for k in OPERATING_POINT_METRICS if d.get(k) is not None)
        return v


@dataclass(frozen=True, kw_only=True)
class Verification(_Section):
    """verification: what `edgeface bench --update-cards` measured (LFW accuracy, thresholds)."""
    threshold: float | None = None          # the default decision: the best-accuracy threshold
    lfw_accuracy: float | None = None
    operating_points: dict[str, OperatingPoint] | None = None
    pairs: str | None = None                # the pairs file measured on

    @classmethod
    def from_dict(cls, d: dict, where: str = "<card>") -> "Verification":
        return cls._parse(d, _Checker(where), "verification")

    @classmethod
    def _read(cls, d, c, at):
        v = {k: c.number(d[k], f"{at}.{k}") for k in ("threshold", "lfw_accuracy") if d.get(k) is not None}
        v.update((k, None) for k in ("threshold", "lfw_accuracy") if k in d and d[k] is None)
        if d.get("operating_points") is not None:
            points = c.obj(d["operating_points"], f"{at}.operating_points")
            v["operating_points"] = {name: OperatingPoint._parse(p, c, f"{at}.operating_points.{name}")
                                     for name, p in points.items()}
        elif "operating_points" in d:
            v["operating_points"] = None
        if "pairs" in d:
            v["pairs"] = c.string(d["pairs"], f"{at}.pairs")
        return v


@dataclass(frozen=True, kw_only=True)
class Provenance:
    """Where the model came from (top-level keys of the card JSON)."""
    source: dict | None = None              # run_dir or checkpoint, its config, the architecture
    calibration: dict | None = None         # the int8 calibration images
    converter: dict | None = None           # tool versions and conversion flags
    training_data: str | None = None
    teacher: dict | None = None


SCHEMA_VERSION = 1  # a card without schema_version is version 1


@dataclass(frozen=True, kw_only=True)
class ModelCard(_Section):
    """The model card, NAME.json beside NAME.tflite: the contract between convert, bench and runtime."""
    task: str
    schema_version: int = SCHEMA_VERSION
    name: str | None = None
    file: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    dtype: str | None = None                # float32 | float16 | int8 | dynamic
    input: InputSpec = field(default_factory=InputSpec)
    output: OutputSpec = field(default_factory=OutputSpec)
    ops: list[str] | None = None
    budget_bytes: int | None = None
    license: str | None = None
    provenance: Provenance = field(default_factory=Provenance)
    verification: Verification | None = field(default=None, metadata=OPTIONAL)

    @classmethod
    def from_dict(cls, d, where: str = "<card>") -> "ModelCard":
        """The card a JSON object describes; CardError naming `where` and the field if it breaks the schema."""
        if not isinstance(d, dict):
            raise CardError(f"model card {where}: must be a JSON object, got {type(d).__name__}")
        return cls._parse(d, _Checker(where), "")

    @classmethod
    def _typed(cls) -> dict:
        typed = {k: f for k, f in super()._typed().items() if k != "provenance"}
        return {**typed, **{f.name: f for f in fields(Provenance)}}

    @classmethod
    def _read(cls, d, c, at):
        if "task" not in d:
            raise CardError(f"model card {c.where}: field 'task' is missing (one of {', '.join(TASKS)})")
        if d["task"] not in TASKS:
            c.fail("task", "one of " + ", ".join(TASKS), d["task"])
        v = {"task": d["task"]}
        if "schema_version" in d:
            if not _is_int(d["schema_version"]) or not 1 <= d["schema_version"] <= SCHEMA_VERSION:
                c.fail("schema_version", f"a version this edgeface reads (1 to {SCHEMA_VERSION})", d["schema_version"])
            v["schema_version"] = d["schema_version"]
        v.update((k, c.string(d[k], k)) for k in ("name", "file", "sha256", "dtype", "license") if k in d)
        v.update((k, c.count(d[k], k)) for k in ("bytes", "budget_bytes") if k in d)
        if "ops" in d:
            v["ops"] = c.strings(d["ops"], "ops")
        if "input" in d:
            v["input"] = InputSpec._parse(d["input"], c, "input")
        if "output" in d:
            v["output"] = OutputSpec._parse(d["output"], c, "output")
        if d.get("verification") is not None:
            v["verification"] = Verification._parse(d["verification"], c, "verification")
        v["provenance"] = Provenance(**{f.name: copy.deepcopy(d[f.name]) for f in fields(Provenance) if f.name in d})
        return v

    def _values(self) -> dict:
        p = self.provenance
        return {"schema_version": self.schema_version, "name": self.name, "task": self.task, "file": self.file,
                "bytes": self.bytes, "sha256": self.sha256, "dtype": self.dtype,
                "input": self.input.to_dict(), "output": self.output.to_dict(), "ops": _to_json(self.ops),
                "source": _to_json(p.source), "calibration": _to_json(p.calibration),
                "converter": _to_json(p.converter), "budget_bytes": self.budget_bytes,
                "training_data": p.training_data, "teacher": _to_json(p.teacher), "license": self.license,
                "verification": _to_json(self.verification)}

    @property
    def threshold(self) -> float | None:
        """The default cosine decision threshold (best accuracy), or None before `edgeface bench` measured it."""
        return self.verification.threshold if self.verification else None

    @property
    def operating_points(self) -> dict[str, OperatingPoint]:
        return (self.verification.operating_points or {}) if self.verification else {}

    @property
    def class_names(self) -> list[str] | None:
        """The class names a classifier's card records (output.class_names; top level in old cards), or None."""
        names = self.output.class_names or self.extra.get("class_names")
        return list(names) if names else None

    def split_and_preprocessing(self) -> tuple[dict, dict]:
        """(data split, preprocessing) a classifier was trained with; rebuilt from the run's config when
        the card predates notes.data_split."""
        notes = self.extra.get("notes") or {}
        config = (self.provenance.source or {}).get("config") or {}
        split = dict(self.extra.get("data_split") or notes.get("data_split") or {})
        if not split and config:
            split = {k: config[k] for k in ("seed", "val_fraction", "test_fraction", "split_by") if k in config}
            if config.get("dataset") not in (None, "auto"):
                split["kind"] = config["dataset"]
        pre = dict(self.extra.get("preprocessing") or notes.get("preprocessing") or {})
        return split, pre


def card_path(model_path: str | os.PathLike) -> Path:
    """The model card sits beside the artifact: NAME.tflite -> NAME.json."""
    return Path(model_path).with_suffix(".json")


def load_card_file(path: str | os.PathLike) -> ModelCard:
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
    return ModelCard.from_dict(card, str(path))


def load_card(model_path: str | os.PathLike) -> ModelCard | None:
    """The validated card of an artifact, or None when it has none (cards are optional for foreign models)."""
    p = card_path(model_path)
    if not p.exists():
        return None
    return load_card_file(p)


def card_split_and_preprocessing(card: ModelCard | None) -> tuple[dict, dict]:
    """(data split, preprocessing) recorded on the card; ({}, {}) for a model without one."""
    return card.split_and_preprocessing() if card else ({}, {})
