"""The one training driver: every task (edgeface.train.face, edgeface.train.expression) runs here.

A task plug-in (`Task`) brings the model, the data, the per-step loss (and any state it moves after
a step, such as center-loss centres), the validation metrics and which one keeps the best model, and
its run.json fields. The driver owns the rest: the tf.distribute strategy and the distributed step,
each stage's optimizer and LR schedule, checkpoints and --resume, the time limit, logging and
progress bars, early stopping, keeping the best model, the run folder and run.json.

    info = Trainer(FaceTask(data_dir, cfg), run_dir, resume=False).run()

A run is one or more `Stage`s (expression transfer learning: the head on frozen-base features, then
fine-tuning); each trains its own variables with its own optimizer for up to `epochs` epochs,
`max_steps` steps or the time limit, validating after each epoch. `model.keras` is the best model
by the task's selection metric over all stages. A run folder holds: config.toml (the resolved
config: rerun or --resume with it), run.json, model.keras, checkpoints/, log.csv, curves.png, tb/.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError, first_line, sigterm_as_interrupt
from edgeface.train.core import RunFolder, TimeLimit, best_record
from edgeface.train.distribute import is_chief, make_strategy, read_tf_config
from edgeface.utils.io import read_json, write_json_atomic, write_text_atomic
from edgeface.utils.progress import progress


def say(msg: str) -> None:
    print(f"edgeface: {msg}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class LoopSettings:
    """How the driver runs a task, from the task's config."""
    seed: int
    batch_size: int                 # the global batch (split over the replicas of a strategy)
    strategy: str = "default"       # edgeface.train.distribute.STRATEGIES
    patience: int = 0               # a stage stops after this many epochs without a better model (0: never)
    log_every: int = 10             # TensorBoard train/ scalars every N steps
    checkpoint_every: int = 0       # also checkpoint every N steps inside an epoch (0: at epoch ends only)
    keep_checkpoints: int = 3
    time_limit_min: float | None = None  # a stage stops after this many minutes (the best model is kept)


@dataclass
class Stage:
    """One phase of a run: what trains, on which batches, for how long, with which optimizer."""
    name: str
    model: Any                      # what the step calls (the task's loss gets it back)
    variables: list                 # what the optimizer moves
    batches: Callable[[int, int], Any]  # (epoch, steps of it already done) -> that epoch's remaining global
                                        # batches: a tf.data.Dataset of dicts, each tensor one row per example
    steps_per_epoch: int
    epochs: int
    optim: dict                     # an [optim] section: make_optimizer / make_schedule (edgeface.train.common)
    max_steps: int | None = None    # cap on this stage's optimizer steps
    enter: Callable[[bool], None] | None = None  # before the stage trains; True when it starts (not resumed)
    record: dict = field(default_factory=dict)   # the task's fields in run.json's "stages" entry
    schedule: Any = None            # set by the driver
    optimizer: Any = None
    train_step: Any = None          # (global batch) -> the step's global-batch metrics

    def planned_steps(self) -> int:
        total = self.epochs * self.steps_per_epoch
        return min(total, self.max_steps) if self.max_steps else total


class Task:
    """What a task plugs into the driver. Defaults are a task's that needs nothing more."""
    name: str                       # run.json "task" (edgeface.spec.TASKS)
    loop: LoopSettings
    log_fields: list[str]           # log.csv columns (of: stage, epoch, step, lr, the step's metrics,
                                    # the validation metrics, epoch_s, images_per_s)
    plot: tuple[str, ...] = ()      # curves.png panels
    select_key: str                 # the validation metric that keeps the best model (higher is better)
    select_name: str | None         # its name in run.json's "best" (None: no validation split)

    def load_data(self) -> None:
        """Read and check the data, TF-free, before the run folder is made."""

    def prepare(self) -> None:
        """Once TensorFlow and the strategy are up, outside the strategy's scope: what needs no
        variables of the run (e.g. a teacher's targets: no collective ops a worker could run alone)."""

    def build(self, resume: bool, out_dir: Path) -> list[Stage]:
        """Models and extra state (inside the strategy's scope); no warm start when resuming. The
        kept model is written to `out_dir` / model.keras (where a later stage may start from it)."""
        raise NotImplementedError

    def trackables(self) -> dict:
        """What checkpoints hold beside the stages' optimizers (the model, heads, centres)."""
        raise NotImplementedError

    def loss(self, stage: Stage, batch: dict, gather: Callable) -> tuple[Any, dict, dict]:
        """(total loss, metrics, tensors for `update`) of this replica's batch: batch means, except
        terms over `gather(x)` (x of every replica, concatenated), which are global-batch values."""
        raise NotImplementedError

    def update(self, stage: Stage, tensors: dict) -> None:
        """After the optimizer step, from the whole global batch's `tensors` (e.g. move the centres)."""

    def validate(self, stage: Stage) -> dict | None:
        """The validation metrics of the current model (None: no validation split)."""
        return None

    def save(self, path: Path) -> None:
        """Write the kept (best) model."""
        raise NotImplementedError

    def config_toml(self) -> str:
        raise NotImplementedError

    def resumed(self, previous: dict) -> None:
        """--resume: check the previous run.json against this run and take back what it measured."""

    def before_training(self) -> None:
        """A fresh run's measurements before the first step (e.g. the warm start's own score)."""

    def record(self, best: dict) -> dict:
        """run.json's task fields: RunFolder.record's model, config, data, input, license and the task's own."""
        raise NotImplementedError

    def finish(self, run_dir: Path) -> dict:
        """After training, on the writing worker: more run.json fields (test scores, pruned models)."""
        return {}


def _bound(step, stage: Stage):
    def stage_step(batch):
        return step(stage, batch)

    return stage_step


def gather_replicas(x):
    """x of every replica, concatenated in replica order (inside a replica step under a strategy)."""
    import tensorflow as tf

    return tf.distribute.get_replica_context().all_gather(x, 0)


class Trainer:
    """Runs a Task: `run()` trains (resuming when asked) and returns run.json's dict."""

    def __init__(self, task: Task, run_dir, resume: bool = False):
        self.task, self.run_dir, self.resume, self.loop = task, Path(run_dir), resume, task.loop
        # tf.distribute is set up by run(); out_dir is where this process writes (run_dir but on non-chief workers)
        self.strategy, self.tf_config, self.chief, self.out_dir = None, None, True, self.run_dir
        self.replicas = self.workers = 1
        self.folder = RunFolder(self.run_dir, task.name, resume=resume)
        self.stage_records: list[dict] = []

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        self.folder.start()
        # Everything that can be checked without TensorFlow is, before the run folder is created.
        if self.loop.strategy == "multiworker":
            self.tf_config = read_tf_config(os.environ.get("TF_CONFIG"))
            self.chief = is_chief(self.tf_config)
        self.folder.guard()
        self.task.load_data()
        created = False
        if self.chief:
            created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        else:
            # Only the chief writes the run folder. The others still save everything (saving reads
            # synchronised variables, a collective every worker must join), into scratch removed at the end.
            self.out_dir = Path(tempfile.mkdtemp(prefix="edgeface-worker-"))
        old_term = sigterm_as_interrupt()
        try:
            return self._run()
        except BaseException as e:
            if self.chief:
                self._mark_failed(e, created)
            raise
        finally:
            if old_term is not None:
                signal.signal(signal.SIGTERM, old_term)
            if not self.chief:
                shutil.rmtree(self.out_dir, ignore_errors=True)

    def _mark_failed(self, error: BaseException, created: bool) -> None:
        """A failed run says so in run.json (never stays "running"); a folder it created and left
        empty is removed."""
        reason = "interrupted" if isinstance(error, KeyboardInterrupt) else f"{type(error).__name__}: {first_line(error)}"
        run_json = self.run_dir / "run.json"
        if run_json.is_file():
            with contextlib.suppress(Exception):
                info = read_json(run_json, "run.json")
                info.update(status="failed", stop_reason=reason)
                write_json_atomic(run_json, info)
        elif created:  # failed before run.json: nothing in the folder is worth keeping
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _run(self) -> dict:
        from edgeface.train.common import EarlyStopping, RunLogger, seed_everything

        # first: MultiWorkerMirroredStrategy must precede any TF op
        self.strategy, self.replicas, self.workers = make_strategy(self.loop.strategy, self.tf_config,
                                                                   self.loop.batch_size)
        seed_everything(self.loop.seed)
        self.task.prepare()
        self.build()
        if self.resume:
            prev = self.run_dir / "run.json"
            prev_info = read_json(prev, "run.json") if prev.is_file() else {}
            self.task.resumed(prev_info)
            self.folder.prev_wall = float(prev_info.get("wall_time_s", 0.0))
            self.stage_records = list(prev_info.get("stages", []))
            path = self._restore()
            say(f"resumed {path}: stage {self.stage.name}, epoch {self.ckpt.get('epoch')} "
                f"(+{self.ckpt.get('epoch_step')} steps), step {self.ckpt.get('step')}")
        else:
            self.task.before_training()
        write_text_atomic(self.out_dir / "config.toml", self.task.config_toml())
        logger = RunLogger(self.out_dir, self.task.log_fields, plot=self.task.plot,
                           resume_step=self.ckpt.get("step") if self.resume else None)
        stopper = EarlyStopping(self.ckpt, self.loop.patience)
        self._write_run_json(status="running")
        # Whether a model.keras exists, read from the run folder by every worker before any step (so
        # before the chief can write one): all must make the same save calls, which are collective.
        self.have_model = (self.run_dir / "model.keras").is_file()
        try:
            stop_reason = self._train_stages(logger, stopper)
        finally:
            logger.close()
        fields = self.task.finish(self.run_dir) if self.chief else {}
        return self._write_run_json(status="done", stop_reason=stop_reason, **fields)

    def _train_stages(self, logger, stopper) -> str:
        """Train the stages from the checkpointed one on; returns the last stage's stop reason."""
        while True:
            index = self.ckpt.get("stage")
            stage = self.stages[index]
            if stage.enter is not None:
                stage.enter(self._stage_step() == 0)
            limit = TimeLimit(self.loop.time_limit_min)
            reason = self._stop_reason(stage, stopper)
            while reason is None:
                timed_out = self._train_epoch(stage, logger, stopper, limit)
                reason = "time_limit" if timed_out else self._stop_reason(stage, stopper)
            if reason == "time_limit":
                say(f"{stage.name}: time limit of {limit.seconds / 60:.3g} min reached at step {self.ckpt.get('step')}")
            self._record_stage(index, reason)
            if index + 1 == len(self.stages):
                return reason
            self.ckpt.set(stage=index + 1, stage_start=self.ckpt.get("step"), epoch=0, epoch_step=0, bad_epochs=0)
            self.ckpt.save()

    @property
    def stage(self) -> Stage:
        return self.stages[self.ckpt.get("stage")]

    def _stop_reason(self, stage: Stage, stopper) -> str | None:
        if self.ckpt.get("epoch") >= stage.epochs:
            return "epochs"
        if stage.max_steps and self._stage_step() >= stage.max_steps:
            return "max_steps"
        if stopper.should_stop:
            return "early_stopping"
        return None

    def _stage_step(self) -> int:
        return self.ckpt.get("step") - self.ckpt.get("stage_start")

    def _record_stage(self, index: int, reason: str) -> None:
        stage = self.stages[index]
        done = self.ckpt.get("epoch") + self.ckpt.get("epoch_step") / stage.steps_per_epoch
        self.stage_records[index:] = [{"stage": stage.name, "epochs_run": round(done, 4), "epochs_planned": stage.epochs,
                                       "steps": self._stage_step(), "steps_per_epoch": stage.steps_per_epoch,
                                       "stop_reason": reason, **stage.record}]

    # -- setup ----------------------------------------------------------------------------------
    def build(self) -> None:
        """The task's stages, their optimizers and compiled steps, the checkpoint (no training)."""
        import tensorflow as tf

        from edgeface.train.common import Checkpointer, make_optimizer, make_schedule

        # Everything with variables lives under the strategy's scope (mirrored on every replica).
        with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
            self.stages = self.task.build(self.resume, self.out_dir)
            optimizers = {}
            for i, stage in enumerate(self.stages):
                stage.schedule = make_schedule(stage.optim, stage.steps_per_epoch, stage.planned_steps())
                stage.optimizer = make_optimizer(stage.optim, stage.schedule)
                stage.optimizer.build(stage.variables)  # slots exist before restore, so they are restored too
                # (the first keeps the name one-stage runs have always checkpointed it under)
                optimizers["optimizer" if i == 0 else f"optimizer_{stage.name}"] = stage.optimizer
            self.ckpt = Checkpointer(self.out_dir / "checkpoints", self.loop.keep_checkpoints,
                                     staged=len(self.stages) > 1, **self.task.trackables(), **optimizers)
        step = self._step_on_one_device if self.strategy is None else self._distributed_step
        for stage in self.stages:
            stage.train_step = tf.function(_bound(step, stage), reduce_retracing=True)

    def _restore(self) -> str:
        """--resume: the latest checkpoint of the run folder (a non-chief worker reads the chief's)."""
        if self.chief:
            return self.ckpt.restore_latest()
        import tensorflow as tf

        path = tf.train.latest_checkpoint(str(self.run_dir / "checkpoints"))
        if path is None:
            raise EdgefaceError(f"nothing to resume: no checkpoint in {self.run_dir / 'checkpoints'} "
                                "(every worker must see the chief's run folder)")
        self.ckpt.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    # -- one optimizer step -----------------------------------------------------------------------
    def _apply(self, stage: Stage, batch: dict, share=None, gather=None) -> tuple[dict, dict]:
        """Loss, gradients, optimizer step. Under a strategy this runs on every replica with `share`
        = the replica's part of the global batch: the loss and metrics are weighted by it, so what
        the optimizer sums over the replicas is the gradient of the global-batch mean."""
        import tensorflow as tf

        with tf.GradientTape() as tape:
            total, metrics, tensors = self.task.loss(stage, batch, gather or (lambda x: x))
            if share is not None:
                total = total * share
                metrics = {k: v * share for k, v in metrics.items()}
        grads = tape.gradient(total, stage.variables)
        stage.optimizer.apply_gradients(zip(grads, stage.variables))
        return {"loss": total, **metrics}, tensors

    def _step_on_one_device(self, stage: Stage, batch: dict) -> dict:
        out, tensors = self._apply(stage, batch)
        self.task.update(stage, tensors)
        return out

    def _distributed_step(self, stage: Stage, batch: dict) -> dict:
        """strategy.run of the step on every replica's slice of the global batch; the global-batch means."""
        import tensorflow as tf

        def replica_step(b):
            share = tf.cast(tf.shape(tf.nest.flatten(b)[0])[0], tf.float32) / self.loop.batch_size
            return self._apply(stage, b, share, gather_replicas)

        out, tensors = self.strategy.run(replica_step, args=(batch,))
        if tensors:
            # One update from the global batch (gathered in replica order: the single-device batch),
            # the same on every copy. Gathering B x D embeddings costs less than all-reducing K x D
            # per-class sums when K is large.
            self.task.update(stage, {k: self.strategy.gather(v, axis=0) for k, v in tensors.items()})
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

    # -- one epoch ------------------------------------------------------------------------------------
    def _distribute(self, batches):
        import tensorflow as tf

        if self.strategy is None:
            return batches
        # Each global batch is split over the replicas; with several workers, tf.data's DATA
        # auto-shard gives every worker its replicas' slices (the data is in memory: no files to shard by).
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        return self.strategy.experimental_distribute_dataset(batches.with_options(options))

    def _train_epoch(self, stage: Stage, logger, stopper, limit: TimeLimit) -> bool:
        """Train the rest of the current epoch (up to max_steps or the time limit), validate, checkpoint.
        True when the time limit is reached (it is checked after every step)."""
        epoch, skip = self.ckpt.get("epoch"), self.ckpt.get("epoch_step")
        todo = stage.steps_per_epoch - skip
        if stage.max_steps:
            todo = min(todo, stage.max_steps - self._stage_step())
        label = f"{stage.name} " if len(self.stages) > 1 else ""
        sums, n, t0 = {}, 0, time.time()
        bar = progress(total=todo, desc=f"{label}epoch {epoch + 1}/{stage.epochs}", unit="step")
        for batch in self._distribute(stage.batches(epoch, skip).take(todo)):
            out = {k: float(v) for k, v in stage.train_step(batch).items()}
            if not np.isfinite(out["loss"]):
                raise EdgefaceError(f"loss became {out['loss']} at step {self.ckpt.get('step') + 1}: "
                                    "lower the learning rate")
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if n == 1:
                t_first = time.time()  # throughput excludes the first step (graph tracing)
            step = self.ckpt.get("step") + 1
            self.ckpt.set(step=step, epoch_step=self.ckpt.get("epoch_step") + 1)
            if step % self.loop.log_every == 0:
                logger.scalars(step, {**out, "lr": self._lr(stage)}, prefix="train/")
            cut = limit.reached() and n < todo  # the time limit ends the stage inside this epoch
            if self.loop.checkpoint_every and step % self.loop.checkpoint_every == 0 and n < todo and not cut:
                self.ckpt.save()  # resumable mid-epoch: the epoch's batch order depends only on (seed, epoch)
            bar.set_postfix(loss=f"{out['loss']:.3f}", refresh=False)
            bar.update(1)
            if cut:
                break
        bar.close()
        t_end = time.time()
        epoch_s = t_end - t0
        if n == 0:
            raise EdgefaceError(f"epoch {epoch + 1} produced no batches (check the data folder)")
        if self.ckpt.get("epoch_step") >= stage.steps_per_epoch:
            self.ckpt.set(epoch=epoch + 1, epoch_step=0)
            shown = float(epoch + 1)
        else:  # stopped inside the epoch (max_steps, time limit): a fractional epoch in the log
            shown = epoch + self.ckpt.get("epoch_step") / stage.steps_per_epoch
        bs = self.loop.batch_size
        row = {"stage": stage.name, "epoch": shown, "step": self.ckpt.get("step"), "lr": self._lr(stage),
               **{k: v / n for k, v in sums.items()}, "epoch_s": epoch_s,
               "images_per_s": (n - 1) * bs / (t_end - t_first) if n > 1 else n * bs / max(epoch_s, 1e-9)}
        metrics = self.task.validate(stage)
        improved = True
        if metrics is not None:
            row.update(metrics)
            improved = stopper.update(metrics[self.task.select_key], epoch + 1)
            logger.scalars(row["step"], {k.removeprefix("val_"): v for k, v in metrics.items() if v is not None},
                           prefix="val/")
        else:
            self.ckpt.set(best_epoch=epoch + 1)  # no validation: the last model is the one kept
        if improved:
            self.ckpt.set(best_stage=self.ckpt.get("stage"))
        if improved or not self.have_model:
            self.task.save(self.out_dir / "model.keras")
            self.have_model = True
        logger.row(row)
        self.ckpt.save()
        shown_metrics = "".join(f", {k} {v:.4f}" for k, v in (metrics or {}).items() if isinstance(v, float))
        say(f"{label}epoch {shown:.3g}: step {row['step']}, loss {row['loss']:.4f}{shown_metrics}"
            + (" (best)" if improved and metrics is not None else "") + f", {row['images_per_s']:.1f} img/s")
        return limit.reached()

    def _lr(self, stage: Stage) -> float:
        return float(stage.schedule(max(0, self._stage_step() - 1)))

    # -- run.json ---------------------------------------------------------------------------------------
    def _write_run_json(self, status: str, stop_reason: str | None = None, **fields) -> dict:
        bs = self.loop.batch_size
        best = best_record(self.task.select_name, self.ckpt.get("best_metric"), self.ckpt.get("best_epoch"),
                           stage=self.stages[self.ckpt.get("best_stage")].name)
        info = self.folder.record(
            status=status, stop_reason=stop_reason, **self.task.record(best), best=best,
            epochs_done=self.ckpt.get("epoch"), steps=self.ckpt.get("step"), stages=self.stage_records,
            distribute={"strategy": self.loop.strategy, "replicas": self.replicas, "workers": self.workers,
                        "global_batch": bs, "per_replica_batch": bs // self.replicas},
            **fields)
        return self.folder.write(info, self.out_dir)
