"""The expression-classification task of the training driver (edgeface.train.loop): transfer
learning (frozen base + new head, then optional fine-tuning of the top blocks at a lower learning
rate) or a small CNN from scratch, one driver stage each.

With a frozen base the base's pooled features are computed ONCE (for the original training images
plus `augment_copies` augmented views of each) and only the head trains on them: on a 2-core CPU
that is minutes instead of hours, and mathematically the same as training the head behind a
frozen base on those views (BatchNorm layers of a frozen base run in inference mode).

The run folder is the driver's (resumable, and it runs under a tf.distribute strategy like any
task); model.keras is the best float model by val accuracy over all stages.
"""
from __future__ import annotations

import functools
import math
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION
from edgeface.train.core import input_spec, warm_start
from edgeface.train.expression.config import FROM_SCRATCH, ExpressionConfig, init_model_path, teacher_runs, to_toml
from edgeface.train.loop import LoopSettings, Stage, Task, Trainer, say
from edgeface.utils.io import sha256_file
from edgeface.utils.progress import progress

TASK = TASK_CLASSIFICATION
LOG_FIELDS = ["stage", "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "epoch_s", "images_per_s"]
FEATURE_BATCH = 64  # images per call when precomputing the frozen base's features


def build_model(cfg: ExpressionConfig, num_classes: int):
    from edgeface.nets import get_model
    kwargs = model_kwargs(cfg, num_classes)
    return get_model(cfg.model_name(), **kwargs), kwargs


def model_kwargs(cfg: ExpressionConfig, num_classes: int) -> dict:
    from edgeface.nets.expression import DEFAULT_INPUT, is_face_model_path
    channels = cfg.channels or (1 if cfg.backbone in FROM_SCRATCH else 3)
    size = cfg.input_size
    if size is None and (cfg.backbone in FROM_SCRATCH or not is_face_model_path(cfg.weights)):
        size = DEFAULT_INPUT[cfg.backbone]
    kwargs = {"num_classes": num_classes, "input_size": size, "weights": cfg.weights,
              "head_units": cfg.head_units, "dropout": cfg.dropout, "channels": channels}
    if cfg.backbone == "vgg":
        from edgeface.nets.expression import VGG_FILTERS
        kwargs.update(filters=[list(b) for b in (cfg.filters or VGG_FILTERS)], block_dropout=cfg.block_dropout)
    return kwargs


def class_weights(y: np.ndarray, n: int, power: float = 1.0) -> dict:
    """Inverse class frequency to the given power (1: fully balanced, 0.5: sqrt), mean weight per image 1."""
    counts = np.bincount(y, minlength=n).astype(np.float64)
    w = (len(y) / (n * np.maximum(counts, 1))) ** float(power)
    w *= len(y) / float((w * counts).sum())
    return {i: float(v) for i, v in enumerate(w)}


def predict_images(model, x_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a Keras model on uint8 images (normalised here)."""
    out = [model.predict_on_batch(xdata.normalize(x_uint8[i:i + batch_size])) for i in range(0, len(x_uint8), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


class ExpressionTask(Task):
    """Expression classification: stages "head" (+ "finetune") on a pretrained base, or "scratch"."""

    name = TASK
    log_fields = LOG_FIELDS
    plot = ("loss", "val_accuracy", "lr")
    select_key = select_name = "val_accuracy"

    def __init__(self, data_dir, cfg: ExpressionConfig):
        self.data_dir, self.cfg = Path(data_dir), cfg
        self.loop = LoopSettings(seed=cfg.seed, batch_size=cfg.batch_size, strategy=cfg.strategy,
                                 patience=cfg.patience, time_limit_min=cfg.time_limit_min)

    def load_data(self) -> None:
        cfg = self.cfg
        self.data = xdata.load_dataset(self.data_dir, cfg.dataset, cfg.seed, cfg.val_fraction, cfg.test_fraction,
                                       cfg.split_by)
        self.num_classes = len(self.data.class_names)

    def build(self, resume: bool, out_dir: Path) -> list[Stage]:
        import tensorflow as tf

        from edgeface.nets import expression as xnets

        cfg = self.cfg
        self.out_dir = out_dir
        self.model, self.kwargs = build_model(cfg, self.num_classes)
        if cfg.init is not None and not resume:
            path = init_model_path(cfg.init)
            warm_start(self.model, path, "init", "the configured backbone, filters, head_units and input_size")
            say(f"warm start from {path}")
        self.size, self.channels = int(self.model.input_shape[1]), int(self.model.input_shape[3])
        self.x_tr, self.y_tr = xdata.load_images(self.data.splits["train"], self.size, self.channels, cfg.clahe,
                                                 "train images")
        self.x_va, self.y_va = xdata.load_images(self.data.splits["val"], self.size, self.channels, cfg.clahe,
                                                 "val images")
        if len(self.x_tr) < cfg.batch_size:
            raise EdgefaceError(f"{len(self.x_tr)} training images < batch_size {cfg.batch_size}")
        self.t_tr, self.teacher_record = None, None
        if cfg.teacher is not None:  # soft targets: the teachers' mean flip-averaged probabilities on the clean images
            self.t_tr, members = self._teacher_targets(teacher_runs(cfg.teacher))
            agree = float((self.t_tr.argmax(1) == self.y_tr).mean())
            name = "+".join(m["name"] for m in members)
            say(f"teacher {name}: agrees with {agree:.1%} of the training labels; weight {cfg.teacher_weight}")
            self.teacher_record = {"name": name, "members": members, "weight": float(cfg.teacher_weight),
                                   "train_label_agreement": round(agree, 4),
                                   "targets": "mean over the teachers of the image's and its mirror's probabilities"}
        self.class_weight = None
        if cfg.class_weight:
            cw = class_weights(self.y_tr, self.num_classes, float(cfg.class_weight))
            say("class weights: " + ", ".join(f"{c} {cw[i]:.2f}" for i, c in enumerate(self.data.class_names)))
            self.class_weight = tf.constant([cw[i] for i in range(self.num_classes)], tf.float32)

        images_per_epoch = len(self.x_tr) // cfg.batch_size
        if cfg.weights is None:
            xnets.set_base_trainable(self.model, None)
            return [self._stage("scratch", self.model, None, functools.partial(self._image_batches, "scratch"),
                                images_per_epoch, cfg.epochs, cfg.lr)]
        stages = []
        if cfg.fine_tune_blocks > 0:  # (its variables first: the head stage leaves the base frozen)
            n = xnets.set_base_trainable(self.model, cfg.fine_tune_blocks)
            say(f"then fine-tuning the top {cfg.fine_tune_blocks} base blocks ({n} layers) at lr {cfg.fine_tune_lr}")
            stages.append(self._stage("finetune", self.model, cfg.fine_tune_blocks,
                                      functools.partial(self._image_batches, "finetune"), images_per_epoch, cfg.fine_tune_epochs, cfg.fine_tune_lr))
        xnets.set_base_trainable(self.model, 0)
        views = (1 + cfg.augment_copies) * len(self.x_tr)
        head = self._stage("head", xnets.head_model(self.model), 0, self._feature_batches, views // cfg.batch_size,
                           cfg.epochs, cfg.lr)
        return [head, *stages]

    def _stage(self, name, model, trainable_blocks, batches, steps_per_epoch, epochs, lr) -> Stage:
        cfg = self.cfg
        optim = {"name": "adamw" if cfg.weight_decay > 0 else "adam", "weight_decay": cfg.weight_decay, "lr": lr,
                 "schedule": cfg.lr_schedule, "warmup_epochs": cfg.warmup_epochs}
        return Stage(name, model, list(model.trainable_variables), batches, steps_per_epoch, epochs, optim,
                     max_steps=cfg.max_steps, enter=lambda starts: self._enter(name, trainable_blocks, starts),
                     record={"lr": lr, "lr_schedule": cfg.lr_schedule})

    def _enter(self, name: str, trainable_blocks: int | None, starts: bool) -> None:
        from edgeface.nets import expression as xnets
        from edgeface.nets.io import load_model

        if name == "finetune" and starts:  # fine-tune from the best head
            self.model.set_weights(load_model(self.out_dir / "model.keras").get_weights())
        self.trainable_blocks = trainable_blocks
        xnets.set_base_trainable(self.model, trainable_blocks)
        if name == "head":
            self._features()

    def trackables(self) -> dict:
        return {"model": self.model}

    # -- data -----------------------------------------------------------------------------------------
    def _features(self) -> None:
        """The frozen base's pooled features of the training images and their augmented views, and of
        the val images: what the head stage trains and validates on."""
        from edgeface.nets import expression as xnets

        cfg = self.cfg
        extractor = xnets.feature_extractor(self.model)
        rng = np.random.default_rng(cfg.seed)
        views = [self.x_tr] + [xdata.augment(self.x_tr, rng, cfg.rotation, cfg.translate, cfg.flip, cfg.scale)
                               for _ in range(cfg.augment_copies)]
        self.f_tr = _predict(extractor, np.concatenate(views), "base features (train)")
        self.f_y = np.tile(self.y_tr, len(views))
        self.f_va = _predict(extractor, self.x_va, "base features (val)")

    def _epoch_order(self, stage: str, epoch: int, n: int) -> tuple[np.ndarray, np.random.Generator]:
        """This epoch's example order and augmentation stream: functions of (seed, stage, epoch) only,
        so a resumed run sees the same batches."""
        rng = np.random.default_rng([self.cfg.seed, ["head", "finetune", "scratch"].index(stage), epoch])
        return rng.permutation(n), rng

    def _batches(self, arrays: dict, skip_steps: int):
        """Batches of equal-length arrays (one epoch, already ordered), the first skip_steps left out."""
        import tensorflow as tf

        bs = self.cfg.batch_size
        return tf.data.Dataset.from_tensor_slices({k: v[skip_steps * bs:] for k, v in arrays.items()}) \
            .batch(bs, drop_remainder=True)

    def _feature_batches(self, epoch: int, skip_steps: int):
        order, _ = self._epoch_order("head", epoch, len(self.f_tr))
        return self._batches({"input": self.f_tr[order], "label": self.f_y[order]}, skip_steps)

    def _image_batches(self, stage: str, epoch: int, skip_steps: int):
        """Shuffled, augmented, normalised image batches (the whole epoch is augmented, so skipping
        leaves the same images as an uninterrupted run's)."""
        cfg = self.cfg
        order, rng = self._epoch_order(stage, epoch, len(self.x_tr))
        x = xdata.augment(self.x_tr[order], rng, cfg.rotation, cfg.translate, cfg.flip, cfg.scale)
        if cfg.erase:
            x = xdata.random_erase(x, rng, cfg.erase)
        arrays = {"label": self.y_tr[order]}
        if self.t_tr is not None:
            arrays["target"] = self.t_tr[order]
        if cfg.mixup:  # each image blended with a partner: the partner's label (and target) go along
            x, _, partner, lam = xdata.mixup(xdata.normalize(x), np.arange(len(x)), rng, cfg.mixup)
            arrays.update({f"{k}_b": v[partner] for k, v in arrays.items()}, lam=lam)
        else:
            x = xdata.normalize(x)
        return self._batches({"input": x, **arrays}, skip_steps)

    # -- loss and validation -------------------------------------------------------------------------------
    def _cross_entropy(self, labels, probs):
        """Per-example cross-entropy of class probabilities, label-smoothed when asked."""
        import tensorflow as tf
        import tf_keras as keras

        onehot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes)
        return keras.losses.categorical_crossentropy(onehot, probs, label_smoothing=float(self.cfg.label_smoothing))

    def _weighted_cross_entropy(self, labels, probs):
        import tensorflow as tf

        per_example = self._cross_entropy(labels, probs)
        if self.class_weight is not None:  # inverse class frequency (mean weight per image 1)
            per_example = per_example * tf.gather(self.class_weight, labels)
        return per_example

    def _teacher_targets(self, runs: list[str]) -> tuple[np.ndarray, list[dict]]:
        """(N, classes) mean over `runs` of each training image's and its mirror's probabilities, and
        what each teacher was (name, path, sha256)."""
        from edgeface.nets.io import load_model

        total, members = np.zeros((len(self.x_tr), self.num_classes), np.float64), []
        for run in runs:
            path = init_model_path(run)
            teacher = load_model(path)
            if tuple(teacher.input_shape[1:]) != tuple(self.model.input_shape[1:]) or \
                    teacher.output_shape[-1] != self.num_classes:
                raise EdgefaceError(f"teacher {run} maps {teacher.input_shape[1:]} to {teacher.output_shape[-1]} "
                                    f"classes; this run {self.model.input_shape[1:]} to {self.num_classes}")
            total += (_predict(teacher, self.x_tr, f"teacher targets ({path.parent.name})")
                      + _predict(teacher, self.x_tr[:, :, ::-1], f"teacher targets ({path.parent.name}, mirrored)")) / 2
            members.append({"name": path.parent.name, "path": str(path), "sha256": sha256_file(path)})
            del teacher
        return (total / len(runs)).astype(np.float32), members

    def _image_loss(self, batch, suffix: str, probs):
        """One image's loss: class-weighted cross-entropy to its label, and with a teacher
        (1 - w) of that plus w of the cross-entropy to the teacher's probabilities."""
        import tensorflow as tf
        import tf_keras as keras

        labels = batch["label" + suffix]
        per_example = self._weighted_cross_entropy(labels, probs)
        if "target" + suffix in batch:
            w = float(self.cfg.teacher_weight)
            soft = keras.losses.categorical_crossentropy(batch["target" + suffix], probs)
            if self.class_weight is not None:
                soft = soft * tf.gather(self.class_weight, labels)
            per_example = (1.0 - w) * per_example + w * soft
        return per_example

    def loss(self, stage, batch, gather):
        import tensorflow as tf

        labels = batch["label"]
        probs = stage.model(batch["input"], training=True)
        per_example = self._image_loss(batch, "", probs)
        if "lam" in batch:  # mixup: the loss of each blend's two images, in its proportions
            per_example = batch["lam"] * per_example + (1.0 - batch["lam"]) * self._image_loss(batch, "_b", probs)
        correct = tf.cast(tf.equal(tf.argmax(probs, 1), tf.cast(labels, tf.int64)), tf.float32)
        return tf.reduce_mean(per_example), {"accuracy": tf.reduce_mean(correct)}, {}

    def validate(self, stage) -> dict:
        import tensorflow as tf

        x = self.f_va if stage.name == "head" else xdata.normalize(self.x_va)
        probs = np.concatenate([stage.model(x[i:i + FEATURE_BATCH], training=False).numpy()
                                for i in range(0, len(x), FEATURE_BATCH)])
        loss = float(tf.reduce_mean(self._cross_entropy(self.y_va, probs)))
        return {"val_loss": loss, "val_accuracy": float((probs.argmax(1) == self.y_va).mean())}

    # -- the kept model and run.json --------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from edgeface.nets import expression as xnets
        from edgeface.nets.io import save_model

        xnets.set_base_trainable(self.model, None)  # the saved model is a plain inference graph
        save_model(self.model, path)
        xnets.set_base_trainable(self.model, self.trainable_blocks)

    def config_toml(self) -> str:
        return to_toml(self.cfg)

    def finish(self, run_dir: Path) -> dict:
        """The kept model's val accuracy and (unless evaluate_test is off) its test accuracy."""
        from edgeface.nets.io import load_model

        model = load_model(run_dir / "model.keras")
        test = None
        if self.data.splits["test"] and self.cfg.evaluate_test:
            x_te, y_te = xdata.load_images(self.data.splits["test"], self.size, self.channels, self.cfg.clahe,
                                           "test images")
            test = float((predict_images(model, x_te).argmax(1) == y_te).mean())
        return {"val_accuracy": float((predict_images(model, self.x_va).argmax(1) == self.y_va).mean()),
                "test_accuracy_float_keras": test}

    def record(self, best: dict) -> dict:
        cfg = self.cfg
        return dict(
            model={"name": cfg.model_name(), "kwargs": self.kwargs, "params": int(self.model.count_params())},
            config=asdict(cfg),
            data={"dir": str(self.data_dir.resolve()), "split": self.data.split_spec, "counts": self.data.counts()},
            class_names=self.data.class_names,
            input=input_spec("GRAY" if self.channels == 1 else "GRAY->RGB",
                             shape=[1, self.size, self.size, self.channels]),
            preprocessing=preprocessing_card(cfg.clahe, self.channels),
            transfer=transfer_note(cfg.weights) if cfg.init is None else
            f"none (a from-scratch architecture), warm-restarted from {cfg.init}",
            best_val_accuracy=best["value"],
            teacher=self.teacher_record,
            license=cfg.license,
        )


def train_expression(data_dir: str | os.PathLike, run_dir: str | os.PathLike, cfg: ExpressionConfig,
                     resume: bool = False) -> dict:
    """Train (or resume), keep the best model by val accuracy, write RUN_DIR. Returns run.json's content."""
    return Trainer(ExpressionTask(data_dir, cfg), run_dir, resume).run()


def _predict(model, x_uint8: np.ndarray, desc: str) -> np.ndarray:
    """The model's outputs on uint8 images (normalised here), with a progress bar."""
    out = [model(xdata.normalize(x_uint8[i:i + FEATURE_BATCH]), training=False).numpy()
           for i in progress(range(0, len(x_uint8), FEATURE_BATCH), total=math.ceil(len(x_uint8) / FEATURE_BATCH),
                             desc=desc, unit="batch")]
    return np.concatenate(out).astype(np.float32)


def preprocessing_card(use_clahe: bool, channels: int) -> dict:
    """How a host turns a face image into the model input (recorded on the card and in run.json)."""
    return {"grayscale": True, "clahe": {"clip_limit": 2.0, "grid": 8} if use_clahe else None,
            "resize": "INTER_AREA down / INTER_LINEAR up", "replicate_gray_to_rgb": channels == 3,
            "normalization": {"mean": PIXEL_MEAN, "std": PIXEL_STD}}


def transfer_note(weights) -> str:
    from edgeface.nets.expression import is_face_model_path
    if weights is None:
        return "none: trained from scratch (random init)"
    if weights == "imagenet":
        return "ImageNet (keras.applications)"
    if is_face_model_path(weights):
        src = Path(weights) if Path(weights).is_dir() else Path(weights).parent
        try:
            from edgeface.utils.io import read_json
            run = read_json(src / "run.json") if (src / "run.json").is_file() else {}
        except EdgefaceError:
            run = {}
        task = str(run.get("task") or "")
        if task.startswith("face"):
            return f"edgeface face embedder {weights}: its base, frozen (transfer from face identity features)"
        if task == TASK:
            return f"edgeface expression model {weights} (trained on {run.get('data', {}).get('dir')}): its base, frozen"
        return f"pretrained edgeface model {weights}: its base up to the last feature map, frozen"
    return f"base weights file {weights}"


def load_run(run_dir: str | os.PathLike) -> tuple[dict, object]:
    """(run.json, the float Keras model) of an expression run."""
    from edgeface.utils.io import read_json
    run_dir = Path(run_dir)
    info = read_json(run_dir / "run.json", "run.json")
    if info.get("task") != TASK:
        raise EdgefaceError(f"{run_dir} is not an expression run (task {info.get('task')!r})")
    p = run_dir / "model.keras"
    if not p.is_file():
        raise EdgefaceError(f"model not found: {p}")
    from edgeface.nets import load_model
    return info, load_model(p)
