"""The trainer core: the run folder and what run.json records about it, shared by every task.

The driver (edgeface.train.loop.Trainer) runs each task plug-in (edgeface.train.face.FaceTask,
edgeface.train.expression.task.ExpressionTask) and writes its run folder through `RunFolder`, so
`edgeface convert` (edgeface.convert.source) reads every task's run the same way:

    folder = RunFolder(run_dir, TASK_CLASSIFICATION, resume=False)
    folder.guard()                          # before any work: never train over another run
    ...
    folder.write(folder.record(model=..., config=..., data=..., input=input_spec("RGB", size=112),
                               license=..., best=best_record("val_accuracy", 0.91, 12), **task_fields))

Nothing here imports TensorFlow at import time (the CLIs import it for --help and --print-config).
"""
from __future__ import annotations

import functools
import math
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import edgeface
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASKS
from edgeface.utils.io import check_output_path, write_json_atomic


def input_spec(color: str, **shape: Any) -> dict:
    """run.json's "input": the model contract convert copies into the card (nothing downstream guesses it)."""
    return {**shape, "color": color, "normalization": {"mean": PIXEL_MEAN, "std": PIXEL_STD}}


def best_record(metric: str | None, value: float | None, epoch: int, **more: Any) -> dict:
    """run.json's "best": the validation metric that chose the kept model, its value and epoch."""
    finite = value is not None and math.isfinite(value)
    return {"metric": metric, "value": float(value) if finite else None, "epoch": int(epoch), **more}


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The code version a run was trained with (None outside a git checkout)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import tensorflow as tf
    import tf_keras as keras

    return {"edgeface": edgeface.__version__, "tensorflow": tf.__version__, "tf_keras": keras.__version__,
            "git_commit": git_commit()}


def warm_start(model, path: str | os.PathLike, what: str, against: str) -> None:
    """Copy a trained model's weights into the freshly built `model` (the same architecture);
    any difference is a one-line error naming `what` asked for it and what to check (`against`)."""
    from edgeface.nets.io import load_model

    mine, theirs = model.get_weights(), load_model(path).get_weights()
    if len(mine) != len(theirs) or any(a.shape != b.shape for a, b in zip(mine, theirs)):
        raise EdgefaceError(f"{what} {path}: its architecture differs from {against} "
                            f"({len(theirs)} vs {len(mine)} weight tensors)")
    model.set_weights(theirs)


class TimeLimit:
    """A training-time budget in minutes (None: none), counted from `start()`."""

    def __init__(self, minutes: float | None):
        self.seconds = minutes * 60.0 if minutes else None
        self.t0 = time.time()

    def start(self) -> None:
        self.t0 = time.time()

    def reached(self) -> bool:
        return self.seconds is not None and time.time() - self.t0 >= self.seconds


class RunFolder:
    """One training run's folder and wall clock, and run.json's shared layout."""

    def __init__(self, run_dir: str | os.PathLike, task: str, *, resume: bool = False):
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}")
        self.dir, self.task, self.resume = Path(run_dir), task, resume
        self.start()
        self.prev_wall = 0.0  # the wall time of the run's segments before a resume

    def start(self) -> None:
        """Start the wall clock (run.json's wall_time_s counts from here)."""
        self.t_start = time.time()

    def guard(self) -> None:
        """Refuse a folder that cannot be written or that holds another run (its checkpoints:
        continue it with --resume, or its model)."""
        check_output_path(self.dir, "run folder", folder=True)
        if self.resume:
            return
        ckpt_dir = self.dir / "checkpoints"
        if (ckpt_dir.is_dir() and any(ckpt_dir.iterdir())) or (self.dir / "model.keras").exists():
            raise EdgefaceError(f"{self.dir} already holds a run: pass --resume to continue it or choose another --out")

    def wall_time_s(self) -> float:
        return round(self.prev_wall + time.time() - self.t_start, 1)

    def record(self, *, model: dict, config: dict, data: dict, input: dict, license: str | None,
               **task_fields: Any) -> dict:
        """run.json: what convert reads from every task (task, model name/kwargs, resolved config,
        data, input spec, licence), then the task's own fields, then wall time and versions."""
        return {"task": self.task, "model": model, "config": config, "data": data, "input": input,
                **task_fields, "license": license, "wall_time_s": self.wall_time_s(), "versions": versions()}

    def write(self, info: dict, folder: Path | None = None) -> dict:
        """Write run.json atomically into the run folder (or `folder`: a non-chief worker's scratch)."""
        write_json_atomic((folder or self.dir) / "run.json", info)
        return info
