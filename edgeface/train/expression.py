"""Train a facial-expression classifier: transfer learning (frozen base + new head, then optional
fine-tuning of the top blocks at a lower learning rate) or a small CNN from scratch.

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
import tomllib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.spec import TASK_CLASSIFICATION
from edgeface.utils.io import atomic_path, write_json_atomic
from edgeface.utils.progress import progress

BACKBONES = ("mobilenetv2", "resnet50", "vgg16", "densenet121", "cnn", "vgg")
FROM_SCRATCH = ("cnn", "vgg")  # gray 48x48 nets that take no pretrained base
LR_SCHEDULES = ("constant", "cosine")
TASK = TASK_CLASSIFICATION
PIXEL_NORMALIZATION = {"mean": 127.5, "std": 127.5}
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
    lr_schedule: str = "constant"  # or "cosine": linear warm-up over warmup_epochs, then cosine decay to 0
    warmup_epochs: float = 0.0
    time_limit_min: float | None = None  # stop a stage after this many minutes of training (the best epoch is kept)
    evaluate_test: bool = True  # False: do not touch the test split at the end of training (it is benched once, later)
    max_steps: int | None = None  # cap optimizer steps per stage (smoke tests)
    license: str | None = None  # the training data's terms, recorded in run.json and on the model cards
    init: str | None = None  # from-scratch backbones: start from this run's model.keras (a warm restart; same architecture)

    def model_name(self) -> str:
        return f"expr_{self.backbone}"


def load_config(path: str | os.PathLike | None, overrides: dict) -> ExpressionConfig:
    """A TOML config (flat keys of ExpressionConfig) with non-None CLI overrides on top."""
    values: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise EdgefaceError(f"config not found: {p}")
        try:
            values = tomllib.loads(p.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise EdgefaceError(f"config {p} is not valid TOML: {e}") from None
    known = {f.name for f in fields(ExpressionConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise EdgefaceError(f"unknown config keys in {path}: {', '.join(unknown)}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    cfg = ExpressionConfig(**values)
    if isinstance(cfg.weights, str) and cfg.weights.lower() in ("none", ""):
        cfg.weights = None
    if cfg.init is not None:
        if cfg.backbone not in FROM_SCRATCH or cfg.weights is not None:
            raise EdgefaceError(f"init continues a from-scratch backbone ({', '.join(FROM_SCRATCH)}) without weights")
        if not init_model_path(cfg.init).is_file():
            raise EdgefaceError(f"init: no model.keras at {cfg.init}")
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
    if float(cfg.class_weight) < 0:
        raise EdgefaceError(f"class_weight must be true/false or a power >= 0, got {cfg.class_weight!r}")
    if cfg.filters is not None and cfg.backbone != "vgg":
        raise EdgefaceError("filters applies to the vgg backbone only")
    if cfg.time_limit_min is not None and cfg.time_limit_min <= 0:
        raise EdgefaceError(f"time_limit_min must be > 0, got {cfg.time_limit_min}")
    if cfg.max_steps is not None and cfg.max_steps < 1:
        raise EdgefaceError(f"max_steps must be >= 1, got {cfg.max_steps}")
    return cfg


def init_model_path(init: str) -> Path:
    p = Path(init)
    return p / "model.keras" if p.is_dir() else p


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
                    time_limit_s: float | None = None):
    """Log each epoch, keep the best weights by val accuracy (in memory + a checkpoint), cap steps
    (and training time: the stage stops after the batch that crosses `time_limit_s`)."""

    class _CB(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t_stage = time.time()

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = time.time()

        def on_train_batch_end(self, batch, logs=None):
            state["step"] += 1
            if max_steps is not None and state["step"] - state["stage_start"] >= max_steps:
                self.model.stop_training = True
            if time_limit_s is not None and time.time() - self.t_stage >= time_limit_s:
                if not self.model.stop_training:
                    print(f"{stage}: time limit of {time_limit_s / 60:.1f} min reached at step {state['step']}", flush=True)
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


def _class_weights(y: np.ndarray, n: int, power: float = 1.0) -> dict:
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
    import tensorflow as tf
    import tf_keras as keras

    from edgeface.nets import expression as xnets

    t_start = time.time()
    run_dir = Path(run_dir)
    if (run_dir / "model.keras").exists():
        raise EdgefaceError(f"{run_dir} already holds a trained model.keras: choose a new --out")
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    data = xdata.load_dataset(data_dir, cfg.dataset, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.split_by)
    n_cls = len(data.class_names)
    model, kwargs = build_model(cfg, n_cls)
    if cfg.init is not None:
        _load_init(model, init_model_path(cfg.init))
    (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)  # only once the inputs are known good
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    x_tr, y_tr = xdata.load_images(data.splits["train"], size, channels, cfg.clahe, "train images")
    x_va, y_va = xdata.load_images(data.splits["val"], size, channels, cfg.clahe, "val images")

    from edgeface.train.common import RunLogger
    log = RunLogger(run_dir, LOG_FIELDS, plot=("loss", "val_accuracy", "lr"))
    state = {"step": 0, "stage_start": 0, "best": -1.0, "best_stage": None, "best_epoch": 0,
             "weights": None, "since_best": 0, "model": model}
    cw = _class_weights(y_tr, n_cls, float(cfg.class_weight)) if cfg.class_weight else None
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
        limit = cfg.time_limit_min * 60.0 if cfg.time_limit_min else None
        cb = _epoch_callback(keras, log, stage, run_dir / "checkpoints", cfg.max_steps, state, limit)
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
    info = {
        "task": TASK,
        "model": {"name": cfg.model_name(), "kwargs": kwargs, "params": int(model.count_params())},
        "config": asdict(cfg),
        "data": {"dir": str(Path(data_dir).resolve()), "split": data.split_spec, "counts": data.counts()},
        "class_names": data.class_names,
        "input": {"shape": [1, size, size, channels], "color": "GRAY" if channels == 1 else "GRAY->RGB",
                  "normalization": PIXEL_NORMALIZATION},
        "preprocessing": preprocessing_card(cfg.clahe, channels),
        "transfer": transfer_note(cfg.weights) if cfg.init is None else
                    f"none (a from-scratch architecture), warm-restarted from {cfg.init}",
        "best_val_accuracy": state["best"],
        "best": {"stage": state["best_stage"], "epoch": state["best_epoch"]},
        "val_accuracy": val_acc,
        "test_accuracy_float_keras": test,
        "stages": stages,
        "wall_time_s": round(time.time() - t_start, 1),
        "teacher": None,
        "license": cfg.license,
        "versions": {"tensorflow": tf.__version__, "tf_keras": keras.__version__, "edgeface": edgeface.__version__,
                     "git_commit": _git_commit()},
    }
    log.close()
    write_json_atomic(run_dir / "run.json", info)
    return info


def _load_init(model, path: Path) -> None:
    """Copy a trained model's weights into the freshly built one; any shape difference is a one-line error."""
    from edgeface.nets import load_model
    src = load_model(path)
    got, want = [w.shape for w in src.get_weights()], [w.shape for w in model.get_weights()]
    if got != want:
        raise EdgefaceError(f"init {path}: its weights do not match the configured architecture "
                            f"({len(got)} tensors vs {len(want)}; check backbone, filters, head_units, input_size)")
    model.set_weights(src.get_weights())
    print(f"warm start from {path}", flush=True)


def _git_commit() -> str | None:
    """The code version a run was trained with (None outside a git checkout)."""
    import subprocess
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


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
            "normalization": PIXEL_NORMALIZATION}


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


# ---- export: TFLite artifacts with cards ----------------------------------------------------

def convert_run(run_dir: str | os.PathLike, dtypes, out_dir: str | os.PathLike | None = None,
                name: str | None = None, model=None, budget: int | None = None,
                card_overrides: dict | None = None) -> list[dict]:
    """RUN_DIR's model -> OUT/NAME_{dtype}.tflite + cards (class names, preprocessing, split, calibration).

    Card fields come from the shared converter's reading of run.json; int8 is calibrated on the
    run's own training split so no val/test image shapes the quantisation ranges.
    """
    from edgeface.convert.source import load_source
    from edgeface.convert.tflite import convert_keras
    from edgeface.data.calibration import load_split_calibration

    run_dir = Path(run_dir)
    src = load_source(run_dir)
    info = src.run
    model = model if model is not None else src.model
    extra = src.card_extra()
    reps, calib = (None, None)
    if "int8" in dtypes:
        reps, calib = load_split_calibration(info, tuple(model.input_shape[1:]))
        extra["calibration"] = calib
    notes = dict(extra.get("notes") or {})
    notes.update({"preprocessing": info.get("preprocessing"), "data_split": info["data"]["split"],
                  "transfer": info.get("transfer")})
    extra["notes"] = notes
    extra.update(card_overrides or {})
    name = name or f"edgeface_{info['model']['name']}" + ("_pruned" if info.get("pruned_from") else "")
    return convert_keras(model, out_dir or run_dir / "tflite", name, dtypes, representative=reps,
                         card_extra=extra, budget=budget)


# ---- pruning the head by distinctiveness ---------------------------------------------------

def _split_images(info: dict, split: str, size: int, channels: int):
    spec = info["data"]["split"]
    data = xdata.load_dataset(info["data"]["dir"], spec["kind"], spec["seed"], spec["val_fraction"],
                              spec["test_fraction"], spec["split_by"] if spec["split_by"] in ("subject", "stratified") else None)
    return xdata.load_images(data.splits[split], size, channels, bool(info["preprocessing"].get("clahe")), f"{split} images")


def hidden_activations(model, x_norm: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, units) activations of the head's hidden layer: the 'patterns' distinctiveness compares."""
    import tf_keras as keras

    from edgeface.nets.expression import HIDDEN_LAYER
    probe = keras.Model(model.input, model.get_layer(HIDDEN_LAYER).output)
    return np.concatenate([probe.predict_on_batch(x_norm[i:i + batch_size]) for i in range(0, len(x_norm), batch_size)])


def prune_run_head(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, merge_deg: float = 15.0,
                   remove_deg: float = 165.0, max_patterns: int = 2000) -> dict:
    """Prune the head's hidden units by distinctiveness (Gedeon & Harris): units whose activation
    vectors over the training patterns are within `merge_deg` of another unit are merged into it,
    pairs more than `remove_deg` apart (complementary) are both removed. Writes OUT (default
    RUN_DIR/pruned) as a run directory of its own (model.keras, run.json, prune.json) and returns the
    report with val/test accuracy before and after (float Keras)."""
    from edgeface.nets.expression import HIDDEN_LAYER
    from edgeface.optimize.distinctiveness import prune_dense_by_distinctiveness

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "pruned"
    info, model = load_run(run_dir)
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    x_tr, _ = _split_images(info, "train", size, channels)
    pick = np.random.default_rng(0).permutation(len(x_tr))[:max_patterns]
    patterns = xdata.normalize(x_tr[np.sort(pick)])
    t0 = time.time()
    pruned, report = prune_dense_by_distinctiveness(model, HIDDEN_LAYER, patterns, merge_deg=merge_deg,
                                                    remove_deg=remove_deg)
    seconds = time.time() - t0

    def accuracy(m, split):
        x, y = _split_images(info, split, size, channels)
        return float((predict_images(m, x).argmax(1) == y).mean()) if len(y) else None

    result = {
        "run_dir": str(run_dir), "layer": HIDDEN_LAYER, "merge_deg": merge_deg, "remove_deg": remove_deg,
        "patterns": {"split": "train", "count": int(len(patterns))},
        "units_before": int(model.get_layer(HIDDEN_LAYER).units),
        "units_after": int(pruned.get_layer(HIDDEN_LAYER).units),
        "params_before": int(model.count_params()), "params_after": int(pruned.count_params()),
        "val_accuracy_before": accuracy(model, "val"), "val_accuracy_after": accuracy(pruned, "val"),
        "test_accuracy_before": accuracy(model, "test"), "test_accuracy_after": accuracy(pruned, "test"),
        "seconds": round(seconds, 1), "distinctiveness": report,
    }
    from edgeface.nets import save_model
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(pruned, out_dir / "model.keras")
    new_info = dict(info)
    new_info["model"] = {**info["model"], "kwargs": {**info["model"]["kwargs"], "head_units": result["units_after"]},
                         "params": result["params_after"]}
    new_info.update({"pruned_from": str(run_dir), "pruning": {k: v for k, v in result.items() if k != "distinctiveness"},
                     "val_accuracy": result["val_accuracy_after"], "test_accuracy_float_keras": result["test_accuracy_after"]})
    write_json_atomic(out_dir / "run.json", new_info)
    write_json_atomic(out_dir / "prune.json", result)
    return result
