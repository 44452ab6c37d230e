"""What `edgeface convert MODEL` converts: a training run directory or a saved Keras model file.

A run directory gives the model plus everything the card needs (task, class names, training data,
teacher, normalisation, preprocessing); a bare Keras file gives only the graph, so the rest is
inferred from it and said to be inferred.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.align.transform import registered_template_for
from edgeface.convert.tflite import model_input_shape
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION, TASK_EMBEDDING, infer_task
from edgeface.utils.io import read_json

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


@dataclass
class Source:
    model: object
    path: Path
    run_dir: Path | None = None
    run: dict = field(default_factory=dict)

    @property
    def task(self) -> str:
        task = str(self.run.get("task") or "")
        if task.startswith("face"):
            return TASK_EMBEDDING
        if task.startswith("expr"):
            return TASK_CLASSIFICATION
        return infer_task(self.model)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return model_input_shape(self.model)

    def config(self) -> dict:
        return self.run.get("config") or {}

    def training_dir(self) -> str | None:
        """The run's training data folder (the default calibration source)."""
        cfg = self.config()
        data = self.run.get("data")
        for v in (data.get("dir") if isinstance(data, dict) else data, self.run.get("data_dir"),
                  self.run.get("train_dir"), cfg.get("data_dir"), cfg.get("train_dir"), cfg.get("data")):
            if isinstance(v, str) and v:
                return v
        return None

    def training_data(self) -> str | None:
        """The training folder for the card, plus any label-free distillation folders (data.extra);
        an imported edgeface file's run carries its card's own record instead."""
        if self.run.get("training_data"):
            return self.run["training_data"]
        main = self.training_dir()
        data = self.run.get("data")
        extra = list((data.get("extra") or {}) if isinstance(data, dict) else [])
        if main and extra:
            return f"{main} + label-free distillation faces: {', '.join(extra)}"
        return main

    def license(self) -> str | None:
        """The run's licence note; for runs that predate it, what a distilled model inherits."""
        text = self.run.get("license") or self.config().get("license")
        teacher = self.run.get("teacher") or {}
        if not text and teacher.get("license"):
            text = f"distilled from {teacher.get('name', 'a teacher')}, whose terms apply: {teacher['license']}"
        return text

    def normalization(self) -> dict:
        inp = self.run.get("input") or {}
        norm = inp.get("normalization") or self.run.get("normalization") or {}
        return {"mean": float(norm.get("mean", PIXEL_MEAN)), "std": float(norm.get("std", PIXEL_STD))}

    def preprocessing(self) -> dict:
        """grayscale/clahe as the run trained with (expression runs), else plain RGB."""
        pre = self.run.get("preprocessing") or {}
        return {"grayscale": bool(pre.get("grayscale", False)), "clahe": pre.get("clahe")}

    def card_extra(self) -> dict:
        """Everything the model card needs that the TFLite graph cannot tell."""
        h, w, c = self.input_shape
        cfg = self.config()
        task = self.task
        alignment = (self.run.get("alignment") or cfg.get("alignment") or cfg.get("template")
                     or (registered_template_for(h, w) if task == TASK_EMBEDDING else None))
        model_info = self.run.get("model") or {}
        src = {"run_dir": str(self.run_dir.resolve())} if self.run_dir else {"checkpoint": str(self.path.resolve())}
        src["config"] = cfg or None
        src["model"] = model_info or None
        if isinstance(self.run.get("source"), dict):  # an import: which file (and its own source) it came from
            src["imported_from"] = self.run["source"]
        extra = {
            "task": task,
            "color": "GRAY" if c == 1 else "RGB",
            "normalization": self.normalization(),
            "alignment": alignment,
            "source": src,
            "training_data": self.training_data(),
            "teacher": self.run.get("teacher"),
            "license": self.license(),
        }
        if task == TASK_CLASSIFICATION:
            extra["class_names"] = self.run.get("class_names")
        if self.run.get("preprocessing"):
            extra["notes"] = {"preprocessing": self.run["preprocessing"]}
        split = (self.run.get("data") or {}).get("split") if isinstance(self.run.get("data"), dict) else None
        if task == TASK_CLASSIFICATION and isinstance(split, dict):
            # as convert_run writes them: the bench rebuilds the held-out split from the card
            extra.setdefault("notes", {}).update({"data_split": split, "transfer": self.run.get("transfer")})
        return extra


def load_keras_file(path: Path):
    """Load with the project loader (knows edgeface's custom layers), else plain tf-keras."""
    try:
        from edgeface.nets import load_model
    except ImportError:
        load_model = None
    try:
        if load_model is not None:
            return load_model(path)
        import tf_keras as keras
        return keras.models.load_model(path, compile=False)
    except EdgefaceError:
        raise
    except Exception as e:  # corrupt zip, wrong format, unknown layer: one line, not a traceback
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgefaceError(f"cannot load Keras model {path}: {msg[:300]}") from None


def load_source(path: str | os.PathLike) -> Source:
    path = Path(path)
    if not path.exists():
        raise EdgefaceError(f"model not found: {path}")
    if path.is_dir():
        run = read_json(path / "run.json", "run.json")
        model_file = path / "model.keras"
        if not model_file.is_file():
            raise EdgefaceError(f"run directory {path} has no model.keras")
        return Source(load_keras_file(model_file), model_file, path, run)
    if path.suffix.lower() not in KERAS_SUFFIXES:
        raise EdgefaceError(f"expected a run directory or a Keras model ({', '.join(KERAS_SUFFIXES)}), got {path}")
    return Source(load_keras_file(path), path)
