"""Training utilities of the driver (edgeface.train.loop): seeding, LR schedules, optimizers, checkpoints with
resume, CSV + TensorBoard logging, early stopping.

    seed_everything(cfg["train"]["seed"])
    schedule = make_schedule(optim_cfg, steps_per_epoch, total_steps)
    opt = make_optimizer(optim_cfg, schedule)
    ckpt = Checkpointer(run_dir / "checkpoints", model=model, optimizer=opt, head=head)
    ckpt.restore_latest()          # --resume: state.epoch/step/best_metric come back too
    log = RunLogger(run_dir, resume_step=int(ckpt.state.step))
    ...
    log.row({"epoch": 1, "step": 100, "loss": 1.2}); log.scalars(step, {"loss": 1.2})
    ckpt.save()
"""
from __future__ import annotations

import csv
import io
import math
import os
import random
from pathlib import Path
from typing import Mapping

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from edgeface.errors import EdgefaceError
from edgeface.utils.io import write_text_atomic


def seed_everything(seed: int, deterministic_ops: bool = True) -> None:
    """Python, numpy, TF and Keras initialisers from one seed; deterministic TF kernels (CPU cost is small)."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


# ---------------------------------------------------------------------------------------------
# Learning-rate schedules (pure functions of the optimizer step, so a resumed run continues the curve)

class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from lr/warmup_steps to lr, then cosine decay to min_lr at total_steps."""

    def __init__(self, lr: float, total_steps: int, warmup_steps: int = 0, min_lr: float = 0.0):
        self.lr, self.total_steps = float(lr), max(1, int(total_steps))
        self.warmup_steps, self.min_lr = max(0, int(warmup_steps)), float(min_lr)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warm = float(self.warmup_steps)
        decay_len = max(1.0, self.total_steps - warm)
        progress = tf.clip_by_value((step - warm) / decay_len, 0.0, 1.0)
        cosine = self.min_lr + 0.5 * (self.lr - self.min_lr) * (1.0 + tf.cos(math.pi * progress))
        if self.warmup_steps == 0:
            return cosine
        return tf.where(step < warm, self.lr * (step + 1.0) / warm, cosine)

    def get_config(self):
        return {"lr": self.lr, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps,
                "min_lr": self.min_lr}


class WarmupStepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up, then lr * gamma^k after the k-th boundary (in steps)."""

    def __init__(self, lr: float, boundaries: list[int], gamma: float = 0.1, warmup_steps: int = 0):
        self.lr, self.gamma = float(lr), float(gamma)
        self.boundaries = sorted(int(b) for b in boundaries)
        self.warmup_steps = max(0, int(warmup_steps))

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        k = tf.reduce_sum(tf.cast(step >= tf.constant(self.boundaries or [2**62], tf.float32), tf.float32))
        decayed = self.lr * tf.pow(self.gamma, k)
        if self.warmup_steps == 0:
            return decayed
        warm = float(self.warmup_steps)
        return tf.where(step < warm, self.lr * (step + 1.0) / warm, decayed)

    def get_config(self):
        return {"lr": self.lr, "boundaries": self.boundaries, "gamma": self.gamma, "warmup_steps": self.warmup_steps}


def make_schedule(optim: Mapping, steps_per_epoch: int, total_steps: int):
    """From an [optim] config section: schedule "cosine" (warmup_epochs, min_lr), "step" (milestones,
    gamma) or "constant"."""
    if optim["lr"] <= 0:
        raise EdgefaceError(f"optim.lr must be > 0, got {optim['lr']}")
    warmup = int(round(float(optim.get("warmup_epochs", 0.0)) * steps_per_epoch))
    if optim["schedule"] == "constant":
        return WarmupStepDecay(optim["lr"], [], warmup_steps=0)
    if optim["schedule"] == "cosine":
        return WarmupCosine(optim["lr"], total_steps, min(warmup, max(0, total_steps - 1)), optim.get("min_lr", 0.0))
    if optim["schedule"] == "step":
        if not 0 < optim["gamma"] <= 1:
            raise EdgefaceError(f"optim.gamma must be in (0, 1], got {optim['gamma']}")
        return WarmupStepDecay(optim["lr"], [int(e * steps_per_epoch) for e in optim["milestones"]],
                               optim["gamma"], warmup)
    raise EdgefaceError(f"unknown optim.schedule {optim['schedule']!r}; choose cosine or step")


# Parameters that must not be decayed: BN scale/shift and biases (decaying them only hurts).
NO_DECAY_PATTERNS = ["gamma", "beta", "bias"]


def make_optimizer(optim: Mapping, learning_rate):
    """SGD (+momentum, Nesterov), Adam or AdamW from an [optim] config section, with decoupled
    weight decay that skips BN and bias parameters."""
    name = optim["name"].lower()
    wd = float(optim.get("weight_decay", 0.0)) or None
    clip = float(optim.get("clipnorm", 0.0)) or None
    common = dict(learning_rate=learning_rate, global_clipnorm=clip, jit_compile=False)
    if name == "sgd":
        opt = keras.optimizers.SGD(momentum=float(optim.get("momentum", 0.9)), nesterov=bool(optim.get("nesterov", True)),
                                   weight_decay=wd, **common)
    elif name == "adam":
        opt = keras.optimizers.Adam(weight_decay=wd, **common)
    elif name == "adamw":
        opt = keras.optimizers.AdamW(weight_decay=wd or 0.0, **common)
    else:
        raise EdgefaceError(f"unknown optim.name {optim['name']!r}; choose sgd, adam or adamw")
    if wd:
        opt.exclude_from_weight_decay(var_names=NO_DECAY_PATTERNS)
    return opt


# ---------------------------------------------------------------------------------------------
# Checkpoints

# The stage being trained, the step it started at and the stage of the best model; only a run of
# several stages holds them, so one-stage checkpoints keep the layout they always had.
STAGE_KEYS = ("stage", "stage_start", "best_stage")


class Checkpointer:
    """tf.train.Checkpoint over the given trackables plus run state (epoch, step, best metric,
    epochs without improvement), kept by a CheckpointManager. `state` values are tf.Variables."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3, staged: bool = False, **trackables):
        self.directory = Path(directory)
        self.state = {
            "epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch"),        # epochs completed
            "step": tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),          # optimizer steps done
            "epoch_step": tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch_step"),  # steps into the epoch
            "best_metric": tf.Variable(-np.inf, dtype=tf.float64, trainable=False, name="best_metric"),
            "best_epoch": tf.Variable(0, dtype=tf.int64, trainable=False, name="best_epoch"),
            "bad_epochs": tf.Variable(0, dtype=tf.int64, trainable=False, name="bad_epochs"),
        }
        if staged:  # a run of several stages (epoch, epoch_step and bad_epochs count within the stage)
            self.state.update({key: tf.Variable(0, dtype=tf.int64, trainable=False, name=key) for key in STAGE_KEYS})
        items = {k: v for k, v in trackables.items() if v is not None}
        self.checkpoint = tf.train.Checkpoint(**items, **self.state)
        self.manager = tf.train.CheckpointManager(self.checkpoint, str(self.directory), max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore_latest(self) -> str:
        """Restore the newest checkpoint (every listed object must match); raises if there is none."""
        path = self.latest
        if path is None:
            raise EdgefaceError(f"nothing to resume: no checkpoint in {self.directory}")
        try:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise EdgefaceError(f"checkpoint {path} does not match this model/config: {msg}") from None
        return path

    def save(self) -> str:
        # The manager writes the data files first and the `checkpoint` index last: a crash mid-save
        # leaves the previous checkpoint as the latest.
        return self.manager.save(checkpoint_number=int(self.state["step"].numpy()))

    def get(self, key: str):
        if key not in self.state and key in STAGE_KEYS:
            return 0  # a one-stage run: always in its stage 0, which started at step 0
        v = self.state[key].numpy()
        return float(v) if self.state[key].dtype == tf.float64 else int(v)

    def set(self, **values) -> None:
        for k, v in values.items():
            if k in STAGE_KEYS and k not in self.state and v == 0:
                continue  # a one-stage run's stage keys are always 0
            self.state[k].assign(v)


# ---------------------------------------------------------------------------------------------
# Logging

class RunLogger:
    """`log.csv` (one row per call to `row`) and TensorBoard scalars under `tb/`.

    On resume, rows logged after the restored step are dropped (they belong to a run segment the
    checkpoint does not contain), and new rows are appended. The CSV is rewritten atomically.
    """

    def __init__(self, run_dir: str | os.PathLike, fields: list[str], resume_step: int | None = None,
                 plot: tuple[str, ...] = ()):
        self.path = Path(run_dir) / "log.csv"
        self.fields = list(fields)
        self.plot = [k for k in plot if k in self.fields]  # curves.png: these columns against the step
        self.rows: list[dict] = []
        if resume_step is not None and self.path.is_file():
            with open(self.path, newline="", encoding="utf-8") as f:
                for r in csv.DictReader(f):
                    try:
                        if int(float(r.get("step") or 0)) <= resume_step:
                            self.rows.append({k: r.get(k, "") for k in self.fields})
                    except ValueError:
                        continue
        # TF's own summary writer: event files TensorBoard reads (the tensorboard package is optional).
        self.tb = tf.summary.create_file_writer(str(Path(run_dir) / "tb"))

    def row(self, values: Mapping) -> None:
        self.rows.append({k: _fmt(values.get(k, "")) for k in self.fields})
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.fields, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        write_text_atomic(self.path, buf.getvalue())
        if self.plot:
            plot_curves(self.rows, self.plot, self.path.with_name("curves.png"))

    def scalars(self, step: int, values: Mapping, prefix: str = "") -> None:
        if self.tb is None:
            return
        with self.tb.as_default():
            for k, v in values.items():
                if v is not None and v != "" and np.isfinite(float(v)):
                    tf.summary.write(f"{prefix}{k}", tf.constant(float(v), tf.float32), step=int(step),
                                     metadata=_SCALAR_METADATA)
        self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_curves(rows: list[dict], keys: list[str], path: Path) -> Path | None:
    """One panel per logged column against the optimizer step (the training run at a glance)."""
    try:
        from edgeface.utils.plots import pyplot, save_figure
        plt = pyplot()
    except ImportError:  # matplotlib is optional at training time
        return None

    def num(v):
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys):
        pts = [(num(r.get("step")), num(r.get(key))) for r in rows]
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", markersize=3)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return save_figure(fig, path)


def _scalar_metadata():
    # What tensorboard's tf.summary.scalar attaches, built from TF's own protos: scalar events that
    # TensorBoard displays, without needing the tensorboard package at training time.
    from tensorflow.core.framework import summary_pb2

    md = summary_pb2.SummaryMetadata()
    md.plugin_data.plugin_name = "scalars"
    return md


_SCALAR_METADATA = _scalar_metadata()


def _fmt(v):
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}"
    return v


def read_log(run_dir: str | os.PathLike) -> list[dict]:
    """log.csv rows as dicts of floats (empty cells -> None)."""
    path = Path(run_dir) / "log.csv"
    if not path.is_file():
        raise EdgefaceError(f"no log.csv in {run_dir}")
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


class EarlyStopping:
    """Patience on a higher-is-better metric; its state lives in a Checkpointer so resume keeps it."""

    def __init__(self, ckpt: Checkpointer, patience: int, min_delta: float = 1e-4):
        self.ckpt, self.patience, self.min_delta = ckpt, int(patience), float(min_delta)

    def update(self, value: float, epoch: int) -> bool:
        """Record this epoch's metric; True when it is a new best."""
        if value > self.ckpt.get("best_metric") + self.min_delta:
            self.ckpt.set(best_metric=value, best_epoch=epoch, bad_epochs=0)
            return True
        self.ckpt.set(bad_epochs=self.ckpt.get("bad_epochs") + 1)
        return False

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.ckpt.get("bad_epochs") >= self.patience
