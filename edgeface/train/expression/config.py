"""The expression trainer's config: a flat schema (`lr = 1e-3`, `--set lr=0.05`) loaded by the same
loader as the face trainer's (edgeface.train.config: `extends`, `--set`, unknown keys fail), then
checked here. TF-free, so a bad key fails before TensorFlow loads.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable

from edgeface.errors import EdgefaceError
from edgeface.nets.expression import DEFAULT_INPUT
from edgeface.train import config as cfgmod
from edgeface.train.distribute import STRATEGIES

BACKBONES = tuple(DEFAULT_INPUT)  # the expression nets (each with its default input size)
FROM_SCRATCH = ("cnn", "vgg")  # gray 48x48 nets that take no pretrained base
LR_SCHEDULES = ("constant", "cosine")
MIN_INPUT_SIZE = 32  # the backbones downsample by up to 32x


@dataclass
class ExpressionConfig:
    backbone: str = "cnn"
    weights: str | None = None  # "imagenet" | FILE (.h5 base weights, or a face model .keras / RUN_DIR) | None
    input_size: int | None = None  # None: the backbone default, or the face model's input size
    channels: int | None = None  # None: 1 for the CNNs (cnn, vgg), 3 for backbones
    filters: list | None = None  # vgg only: one list of conv widths per block, e.g. [[32], [64], [128, 128], [256]]
    block_dropout: float = 0.0  # vgg only: dropout after each block's pooling
    head_units: int = 100
    dropout: float = 0.5
    clahe: bool = True
    dataset: str = "auto"
    split_by: str | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0
    batch_size: int = 32
    epochs: int = 30  # head epochs (frozen base) or end-to-end epochs (from scratch)
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 8  # early stop after this many epochs without a better val accuracy
    fine_tune_blocks: int = 0  # unfreeze the top K base blocks after the head stage
    fine_tune_epochs: int = 10
    fine_tune_lr: float = 1e-4
    augment_copies: int = 4  # augmented views per image when precomputing frozen-base features
    rotation: float = 10.0
    translate: float = 0.1
    scale: float = 0.05  # random zoom +-
    flip: bool = True
    class_weight: bool | float = False  # weight the loss by inverse class frequency (a number: its power, 0.5 = sqrt)
    label_smoothing: float = 0.0
    erase: float = 0.0  # random erasing: the probability that a training image gets one noise rectangle
    mixup: float = 0.0  # mixup's Beta(alpha, alpha); 0: off (from-scratch backbones only)
    lr_schedule: str = "constant"  # or "cosine": linear warm-up over warmup_epochs, then cosine decay to 0
    warmup_epochs: float = 0.0
    time_limit_min: float | None = None  # stop a stage after this many minutes of training (the best epoch is kept)
    evaluate_test: bool = True  # False: do not touch the test split at the end of training (it is benched once, later)
    max_steps: int | None = None  # cap optimizer steps per stage (smoke tests)
    license: str | None = None  # the training data's terms, recorded in run.json and on the model cards
    init: str | None = None  # from-scratch backbones: start from this run's model.keras (a warm restart; same architecture)
    teacher: str | list | None = None  # from-scratch backbones: soft targets from this run's model.keras, or the
                                        # mean of several runs' (an ensemble teacher; self-distillation)
    teacher_weight: float = 0.5  # the targets' share of the loss: (1 - w) * labels + w * teacher probabilities
    strategy: str = "default"  # tf.distribute: default | mirrored | multiworker; batch_size is the global batch

    def model_name(self) -> str:
        return f"expr_{self.backbone}"


# The dataclass's defaults are the schema's; the types of the keys whose default is None (an example
# of each), and class_weight, which takes true/false or a number (None: any type, checked below).
KINDS = {"weights": "", "input_size": 0, "channels": 0, "filters": [], "split_by": "", "time_limit_min": 0.0,
         "max_steps": 0, "license": "", "init": "", "teacher": None, "class_weight": None}
SCHEMA = cfgmod.Schema({f.name: f.default for f in fields(ExpressionConfig)}, kinds=KINDS)


def load_config(path: str | os.PathLike | None, overrides: dict | None = None, sets: Iterable[str] = (),
                resume_from: str | os.PathLike | None = None) -> ExpressionConfig:
    """A TOML config (flat keys of ExpressionConfig; `extends` another), then `--set KEY=VALUE` items,
    then the non-None CLI overrides, checked. `resume_from`: a run folder whose saved config is the base."""
    base = cfgmod.saved_config(resume_from) if resume_from is not None else None
    cfg = ExpressionConfig(**SCHEMA.resolve(path, sets, overrides, base=base))
    if isinstance(cfg.weights, str) and cfg.weights.lower() in ("none", ""):
        cfg.weights = None
    check_config(cfg)
    return cfg


def check_config(cfg: ExpressionConfig) -> None:
    if cfg.init is not None:
        if cfg.backbone not in FROM_SCRATCH or cfg.weights is not None:
            raise EdgefaceError(f"init continues a from-scratch backbone ({', '.join(FROM_SCRATCH)}) without weights")
        if not init_model_path(cfg.init).is_file():
            raise EdgefaceError(f"init: no model.keras at {cfg.init}")
    if cfg.teacher is not None:
        if cfg.backbone not in FROM_SCRATCH or cfg.weights is not None:
            raise EdgefaceError(f"teacher distils into a from-scratch backbone ({', '.join(FROM_SCRATCH)}) without weights")
        for run in teacher_runs(cfg.teacher):
            if not init_model_path(run).is_file():
                raise EdgefaceError(f"teacher: no model.keras at {run}")
    if not (math.isfinite(float(cfg.teacher_weight)) and 0.0 <= cfg.teacher_weight <= 1.0):
        raise EdgefaceError(f"teacher_weight is a share in [0, 1], got {cfg.teacher_weight!r}")
    if cfg.backbone not in BACKBONES:
        raise EdgefaceError(f"unknown backbone {cfg.backbone!r}; choose from {', '.join(BACKBONES)}")
    if cfg.batch_size < 1 or cfg.epochs < 1 or cfg.fine_tune_blocks < 0 or cfg.augment_copies < 0:
        raise EdgefaceError("batch_size and epochs must be >= 1 and fine_tune_blocks / augment_copies >= 0")
    if cfg.fine_tune_blocks and cfg.fine_tune_epochs < 1:
        raise EdgefaceError(f"fine_tune_epochs must be >= 1 with fine_tune_blocks, got {cfg.fine_tune_epochs}")
    for name in ("lr", "fine_tune_lr"):
        value = getattr(cfg, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise EdgefaceError(f"{name} must be a positive number, got {value!r}")
    if cfg.input_size is not None and cfg.input_size < MIN_INPUT_SIZE:
        raise EdgefaceError(f"input_size must be >= {MIN_INPUT_SIZE} pixels, got {cfg.input_size}")
    if cfg.lr_schedule not in LR_SCHEDULES:
        raise EdgefaceError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {cfg.lr_schedule!r}")
    if not 0.0 <= float(cfg.label_smoothing) < 1.0:
        raise EdgefaceError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing!r}")
    if not 0.0 <= float(cfg.erase) <= 1.0:
        raise EdgefaceError(f"erase is a probability in [0, 1], got {cfg.erase!r}")
    if not (math.isfinite(float(cfg.mixup)) and cfg.mixup >= 0):
        raise EdgefaceError(f"mixup is a Beta alpha >= 0 (0: off), got {cfg.mixup!r}")
    if (cfg.mixup or cfg.erase) and cfg.weights is not None:
        raise EdgefaceError("erase and mixup apply to from-scratch training (the frozen base's features are precomputed)")
    if not isinstance(cfg.class_weight, (bool, int, float)) or cfg.class_weight < 0:
        raise EdgefaceError(f"class_weight must be true/false or a power >= 0, got {cfg.class_weight!r}")
    if cfg.filters is not None and cfg.backbone != "vgg":
        raise EdgefaceError("filters applies to the vgg backbone only")
    if cfg.time_limit_min is not None and cfg.time_limit_min <= 0:
        raise EdgefaceError(f"time_limit_min must be > 0, got {cfg.time_limit_min}")
    if cfg.strategy not in STRATEGIES:
        raise EdgefaceError(f"unknown strategy {cfg.strategy!r}; choose from {', '.join(STRATEGIES)}")
    if cfg.strategy == "multiworker" and cfg.time_limit_min is not None:  # each worker's clock would stop it elsewhere
        raise EdgefaceError("time_limit_min does not work with strategy = multiworker; use max_steps")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise EdgefaceError(f"max_steps must be >= 1, got {cfg.max_steps}")


def to_toml(cfg: ExpressionConfig) -> str:
    """The resolved config as TOML (what --config reads)."""
    return cfgmod.to_toml(asdict(cfg))


def teacher_runs(teacher) -> list[str]:
    """The teacher key as a list of run folders (or .keras files): one string, or a non-empty list of them."""
    runs = [teacher] if isinstance(teacher, str) else teacher
    if not isinstance(runs, list) or not runs or not all(isinstance(r, str) and r for r in runs):
        raise EdgefaceError(f"teacher is a run folder or a non-empty list of run folders, got {teacher!r}")
    return runs


def init_model_path(init: str) -> Path:
    p = Path(init)
    return p / "model.keras" if p.is_dir() else p
