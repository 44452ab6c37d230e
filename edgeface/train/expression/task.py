"""The expression-classification task of the trainer core (edgeface.train.core): transfer learning
(frozen base + new head, then optional fine-tuning of the top blocks at a lower learning rate) or a
small CNN from scratch, trained with Keras `fit`.

With a frozen base the base's pooled features are computed ONCE (for the original training images
plus `augment_copies` augmented views of each) and only the head trains on them: on a 2-core CPU
that is minutes instead of hours, and mathematically the same as training the head behind a
frozen base on those views (BatchNorm layers of a frozen base run in inference mode).

RUN_DIR gets: run.json, model.keras (the best float model by val accuracy), checkpoints/, log.csv, tb/.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION
from edgeface.train.core import RunFolder, TimeLimit, best_record, input_spec, warm_start
from edgeface.train.expression.config import FROM_SCRATCH, ExpressionConfig, init_model_path
from edgeface.utils.io import atomic_path
from edgeface.utils.progress import progress

TASK = TASK_CLASSIFICATION


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


# ---- logging ------------------------------------------------------------------------------

LOG_FIELDS = ["stage", "epoch", "step", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds"]


def _epoch_callback(keras, log, stage: str, ckpt_dir: Path, max_steps: int | None, state: dict,
                    limit: TimeLimit):
    """Log each epoch, keep the best weights by val accuracy (in memory + a checkpoint), cap steps
    (and training time: the stage stops after the batch that crosses the time limit)."""

    class _CB(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            limit.start()

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_train_batch_end(self, batch, logs=None):
            state["step"] += 1
            if max_steps is not None and state["step"] - state["stage_start"] >= max_steps:
                self.model.stop_training = True
            if limit.reached():
                if not self.model.stop_training:
                    print(f"{stage}: time limit of {limit.seconds / 60:.1f} min reached at step {state['step']}", flush=True)
                state["time_limited"] = True
                self.model.stop_training = True

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            lr = float(keras.backend.get_value(self.model.optimizer.learning_rate))
            row = {"stage": stage, "epoch": epoch + 1, "step": state["step"], "lr": lr,
                   "seconds": round(time.time() - self.t0, 2),
                   **{k: float(logs[k]) for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs}}
            log.row(row)
            log.scalars(state["step"], {k: v for k, v in row.items() if k not in ("stage", "epoch", "step")},
                        prefix=f"{stage}/")
            acc = row.get("val_accuracy", -1.0)
            if acc > state["best"]:
                state.update(best=acc, best_stage=stage, best_epoch=epoch + 1, weights=state["model"].get_weights())
                with atomic_path(ckpt_dir / f"{stage}_best.weights.h5") as tmp:
                    state["model"].save_weights(str(tmp) + ".weights.h5")
                    os.replace(str(tmp) + ".weights.h5", tmp)
            state["since_best"] = 0 if acc >= state["best"] else state["since_best"] + 1

    return _CB()


def _images_sequence(keras, x, y, batch_size, cfg: ExpressionConfig, rng):
    """Shuffled, augmented, normalised image batches for end-to-end training."""

    class _Seq(keras.utils.Sequence):
        def __init__(self):
            super().__init__()
            self.order = rng.permutation(len(x))

        def __len__(self):
            return math.ceil(len(x) / batch_size)

        def __getitem__(self, i):
            idx = self.order[i * batch_size:(i + 1) * batch_size]
            xb = xdata.augment(x[idx], rng, cfg.rotation, cfg.translate, cfg.flip, cfg.scale)
            return xdata.normalize(xb), y[idx]

        def on_epoch_end(self):
            self.order = rng.permutation(len(x))

    return _Seq()


def _optimizer(lr: float, weight_decay: float):
    from edgeface.train.common import make_optimizer
    return make_optimizer({"name": "adamw" if weight_decay > 0 else "adam", "weight_decay": weight_decay}, lr)


def class_weights(y: np.ndarray, n: int, power: float = 1.0) -> dict:
    """Inverse class frequency to the given power (1: fully balanced, 0.5: sqrt), mean weight per image 1."""
    counts = np.bincount(y, minlength=n).astype(np.float64)
    w = (len(y) / (n * np.maximum(counts, 1))) ** float(power)
    w *= len(y) / float((w * counts).sum())
    return {i: float(v) for i, v in enumerate(w)}


def _loss(keras, n_cls: int, label_smoothing: float):
    """Sparse-label cross-entropy, with label smoothing when asked (labels stay integer class ids)."""
    if not label_smoothing:
        return "sparse_categorical_crossentropy"
    import tensorflow as tf

    def smoothed_sparse_categorical_crossentropy(y_true, y_pred):
        onehot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), n_cls)
        return keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=float(label_smoothing))

    return smoothed_sparse_categorical_crossentropy


def _learning_rate(keras, cfg: "ExpressionConfig", lr: float, epochs: int, steps_per_epoch: int):
    """A constant rate, or linear warm-up then cosine decay over the stage's planned steps."""
    if cfg.lr_schedule == "constant":
        return lr
    total = max(1, epochs * steps_per_epoch)
    if cfg.max_steps is not None:
        total = min(total, cfg.max_steps)
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total - 1)
    if warm > 0:
        return keras.optimizers.schedules.CosineDecay(lr * 0.1, total - warm, alpha=0.0, warmup_target=lr,
                                                      warmup_steps=warm)
    return keras.optimizers.schedules.CosineDecay(lr, total, alpha=0.0)


def predict_images(model, x_uint8: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """Class probabilities of a Keras model on uint8 images (normalised here)."""
    out = [model.predict_on_batch(xdata.normalize(x_uint8[i:i + batch_size])) for i in range(0, len(x_uint8), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, model.output_shape[-1]), np.float32)


def _features(extractor, x_uint8, batch_size, desc):
    out = []
    for i in progress(range(0, len(x_uint8), batch_size), total=math.ceil(len(x_uint8) / batch_size), desc=desc, unit="batch"):
        out.append(extractor.predict_on_batch(xdata.normalize(x_uint8[i:i + batch_size])))
    return np.concatenate(out).astype(np.float32)


def _stage_epochs(epochs: int, n: int, batch_size: int, max_steps: int | None) -> int:
    if max_steps is None:
        return epochs
    return max(1, min(epochs, math.ceil(max_steps / math.ceil(n / batch_size))))


def train_expression(data_dir: str | os.PathLike, run_dir: str | os.PathLike, cfg: ExpressionConfig) -> dict:
    """Train, keep the best model by val accuracy, write RUN_DIR. Returns run.json's content."""
    import tf_keras as keras

    from edgeface.nets import expression as xnets
    from edgeface.train.common import RunLogger, seed_everything

    folder = RunFolder(run_dir, TASK, resumable=False)
    run_dir = folder.dir
    folder.guard()
    seed_everything(cfg.seed, deterministic_ops=False)  # Keras fit's kernels as they were: no op determinism
    rng = np.random.default_rng(cfg.seed)

    data = xdata.load_dataset(data_dir, cfg.dataset, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.split_by)
    n_cls = len(data.class_names)
    model, kwargs = build_model(cfg, n_cls)
    if cfg.init is not None:
        path = init_model_path(cfg.init)
        warm_start(model, path, "init", "the configured backbone, filters, head_units and input_size")
        print(f"warm start from {path}", flush=True)
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)  # only once the inputs are known good
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    x_tr, y_tr = xdata.load_images(data.splits["train"], size, channels, cfg.clahe, "train images")
    x_va, y_va = xdata.load_images(data.splits["val"], size, channels, cfg.clahe, "val images")

    log = RunLogger(run_dir, LOG_FIELDS, plot=("loss", "val_accuracy", "lr"))
    state = {"step": 0, "stage_start": 0, "best": -1.0, "best_stage": None, "best_epoch": 0,
             "weights": None, "since_best": 0, "model": model}
    cw = class_weights(y_tr, n_cls, float(cfg.class_weight)) if cfg.class_weight else None
    if cw:
        print("class weights: " + ", ".join(f"{c} {cw[i]:.2f}" for i, c in enumerate(data.class_names)), flush=True)
    stages = []
    pretrained = cfg.weights is not None

    def fit(stage, fit_model, train_data, val_data, epochs, lr, n_train, y=None):
        state["stage_start"] = state["step"]
        state["since_best"] = 0
        epochs = _stage_epochs(epochs, n_train, cfg.batch_size, cfg.max_steps)
        schedule = _learning_rate(keras, cfg, lr, epochs, math.ceil(n_train / cfg.batch_size))
        fit_model.compile(optimizer=_optimizer(schedule, cfg.weight_decay), loss=_loss(keras, n_cls, cfg.label_smoothing),
                          metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=cfg.patience)
        cb = _epoch_callback(keras, log, stage, run_dir / "checkpoints", cfg.max_steps, state,
                             TimeLimit(cfg.time_limit_min))
        t0 = time.time()
        if y is None:  # a Sequence
            fit_model.fit(train_data, validation_data=val_data, epochs=epochs, verbose=0,
                          callbacks=[cb, stop, _bar(keras, stage, epochs)], class_weight=cw)
        else:
            fit_model.fit(train_data, y, batch_size=cfg.batch_size, validation_data=val_data, epochs=epochs,
                          shuffle=True, verbose=0, callbacks=[cb, stop, _bar(keras, stage, epochs)], class_weight=cw)
        stages.append({"stage": stage, "epochs_run": len([r for r in log.rows if r["stage"] == stage]),
                       "epochs_planned": epochs, "time_limited": bool(state.pop("time_limited", False)),
                       "steps": state["step"] - state["stage_start"], "lr": lr, "lr_schedule": cfg.lr_schedule,
                       "seconds": round(time.time() - t0, 1),
                       "best_val_accuracy": max((float(r["val_accuracy"]) for r in log.rows
                                                 if r["stage"] == stage and r.get("val_accuracy") not in ("", None)), default=None)})

    if pretrained:
        # Stage 1: frozen base, head only, on precomputed features (+ augmented views).
        xnets.set_base_trainable(model, 0)
        extractor = xnets.feature_extractor(model)
        views = [x_tr] + [xdata.augment(x_tr, rng, cfg.rotation, cfg.translate, cfg.flip, cfg.scale) for _ in range(cfg.augment_copies)]
        f_tr = _features(extractor, np.concatenate(views), 64, "base features (train)")
        y_rep = np.tile(y_tr, len(views))
        f_va = _features(extractor, x_va, 64, "base features (val)")
        head = xnets.head_model(model)
        fit("head", head, f_tr, (f_va, y_va), cfg.epochs, cfg.lr, len(f_tr), y=y_rep)
        if cfg.fine_tune_blocks > 0:
            model.set_weights(state["weights"])  # fine-tune from the best head
            n = xnets.set_base_trainable(model, cfg.fine_tune_blocks)
            print(f"fine-tuning the top {cfg.fine_tune_blocks} base blocks ({n} layers) at lr {cfg.fine_tune_lr}", flush=True)
            seq = _images_sequence(keras, x_tr, y_tr, cfg.batch_size, cfg, rng)
            fit("finetune", model, seq, (xdata.normalize(x_va), y_va), cfg.fine_tune_epochs, cfg.fine_tune_lr, len(x_tr))
    else:
        xnets.set_base_trainable(model, None)
        seq = _images_sequence(keras, x_tr, y_tr, cfg.batch_size, cfg, rng)
        fit("scratch", model, seq, (xdata.normalize(x_va), y_va), cfg.epochs, cfg.lr, len(x_tr))

    model.set_weights(state["weights"])
    for layer in model.layers:  # the saved model is a plain inference graph; trainability is a training detail
        layer.trainable = True
    from edgeface.nets import save_model
    save_model(model, run_dir / "model.keras")

    val_acc = float((predict_images(model, x_va).argmax(1) == y_va).mean())
    test = None
    if data.splits["test"] and cfg.evaluate_test:
        x_te, y_te = xdata.load_images(data.splits["test"], size, channels, cfg.clahe, "test images")
        test = float((predict_images(model, x_te).argmax(1) == y_te).mean())
    info = folder.record(
        model={"name": cfg.model_name(), "kwargs": kwargs, "params": int(model.count_params())},
        config=asdict(cfg),
        data={"dir": str(Path(data_dir).resolve()), "split": data.split_spec, "counts": data.counts()},
        class_names=data.class_names,
        input=input_spec("GRAY" if channels == 1 else "GRAY->RGB", shape=[1, size, size, channels]),
        preprocessing=preprocessing_card(cfg.clahe, channels),
        transfer=transfer_note(cfg.weights) if cfg.init is None else
        f"none (a from-scratch architecture), warm-restarted from {cfg.init}",
        best_val_accuracy=state["best"],
        best=best_record("val_accuracy", state["best"], state["best_epoch"], stage=state["best_stage"]),
        val_accuracy=val_acc,
        test_accuracy_float_keras=test,
        stages=stages,
        teacher=None,
        license=cfg.license,
    )
    log.close()
    folder.write(info)
    return info


def _bar(keras, stage: str, epochs: int):
    """A per-epoch progress bar (counts, rate, ETA) on stderr."""

    class _Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = progress(total=epochs, desc=stage, unit="epoch")

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.set_postfix(acc=f"{logs.get('accuracy', 0):.3f}", val=f"{logs.get('val_accuracy', 0):.3f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return _Bar()


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


