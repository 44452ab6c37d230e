"""Train a face embedder on an aligned `<identity>/<image>.png` folder.

Loss = loss.weight * classification (softmax | center | ArcFace | CosFace)
       [+ loss.center_lambda * center loss]  [+ loss.distill_weight * (1 - cos(student, teacher))].
Early stopping / model selection on held-out IDENTITIES (never LFW): all same-identity pairs of the
validation identities (capped) plus as many random different-identity pairs, best-threshold accuracy.

RUN_DIR gets: config.toml (the resolved config: rerun with --config), run.json, model.keras (best
float backbone, no head), checkpoints/ (model, head, optimizer, centres, epoch/step/best metric),
log.csv (one row per epoch), tb/ (TensorBoard scalars).

train.strategy (--strategy) runs the same loop under tf.distribute, mirrored over this machine's
devices or over several hosts (TF_CONFIG), with data.batch_size as the global batch: docs/distributed.md.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError, first_line, sigterm_as_interrupt
from edgeface.spec import TASK_EMBEDDING
from edgeface.train import config as cfgmod
from edgeface.train.core import RunFolder, best_record, input_spec, warm_start
from edgeface.utils.io import read_json, write_json_atomic, write_text_atomic
from edgeface.utils.progress import progress

LOG_FIELDS = ["epoch", "step", "lr", "loss", "cls_loss", "center_loss", "distill_loss", "relational_loss",
              "train_acc", "val_acc", "val_threshold", "val_pairs", "val_teacher_cos", "images_per_s", "epoch_s"]
SELECT_METRICS = ("pair_acc", "teacher_cos")
LOSSES = ("softmax", "center", "arcface", "cosface")
STRATEGIES = ("default", "mirrored", "multiworker")
_STRATEGIES: dict = {}  # (name, devices or TF_CONFIG) -> the tf.distribute strategy made for it


def _say(msg: str) -> None:
    print(f"edgeface: {msg}", file=sys.stderr, flush=True)


# (section, key, smallest allowed value): integers that divide, count or size something
MIN_VALUES = (("data", "min_images", 1), ("data", "val_max_same", 1), ("data", "val_batch_size", 1),
              ("train", "log_every", 1), ("train", "keep_checkpoints", 1), ("train", "checkpoint_every", 0),
              ("train", "patience", 0), ("train", "finetune_steps", 1), ("train", "finetune_images", 1),
              ("optim", "warmup_epochs", 0.0), ("optim", "min_lr", 0.0), ("optim", "weight_decay", 0.0),
              ("optim", "clipnorm", 0.0), ("optim", "momentum", 0.0), ("optim", "gamma", 0.0))


def check_config(cfg: dict) -> None:
    d, loss, optim, tr = cfg["data"], cfg["loss"], cfg["optim"], cfg["train"]
    for section, key, low in MIN_VALUES:
        if cfg[section][key] < low:
            raise EdgefaceError(f"config {section}.{key} must be >= {low}, got {cfg[section][key]!r}")
    if not optim["lr"] > 0:
        raise EdgefaceError(f"config optim.lr must be > 0, got {optim['lr']!r}")
    if loss["name"] not in LOSSES:
        raise EdgefaceError(f"unknown loss.name {loss['name']!r}; choose from {', '.join(LOSSES)}")
    if not 0.0 <= d["val_fraction"] < 1.0:
        raise EdgefaceError(f"data.val_fraction must be in [0, 1), got {d['val_fraction']}")
    if d["batch_size"] < 2:
        raise EdgefaceError(f"data.batch_size must be >= 2, got {d['batch_size']}")
    if tr["epochs"] < 1 or tr["max_steps"] < 0:
        raise EdgefaceError("train.epochs must be >= 1 and train.max_steps >= 0")
    if min(loss["weight"], loss["distill_weight"], loss["relational_weight"], loss["center_lambda"]) < 0:
        raise EdgefaceError("loss weights must be >= 0")
    if loss["weight"] == 0 and not tr["teacher"] and loss["name"] != "center":
        raise EdgefaceError("loss.weight is 0 and no --teacher: nothing to train")
    if tr["teacher"] and loss["distill_weight"] == 0 and loss["relational_weight"] == 0:
        raise EdgefaceError("--teacher given but loss.distill_weight and loss.relational_weight are 0")
    if loss["relational_weight"] > 0 and not tr["teacher"]:
        raise EdgefaceError("loss.relational_weight > 0 needs a --teacher")
    if d["select"] not in SELECT_METRICS:
        raise EdgefaceError(f"unknown data.select {d['select']!r}; choose from {', '.join(SELECT_METRICS)}")
    if d["select"] == "teacher_cos" and not tr["teacher"]:
        raise EdgefaceError("data.select = teacher_cos needs a teacher")
    if not isinstance(d["val_identities"], list):
        raise EdgefaceError(f"data.val_identities must be a list of folder names, got {d['val_identities']!r}")
    if not isinstance(d["exclude_identities"], list):
        raise EdgefaceError(f"data.exclude_identities must be a list of folder names, got {d['exclude_identities']!r}")
    if not isinstance(d["extra"], list):
        raise EdgefaceError(f"data.extra must be a list of folders, got {d['extra']!r}")
    if d["extra"] and (not tr["teacher"] or loss["weight"] > 0 or loss["name"] == "center"):
        raise EdgefaceError("data.extra holds unlabelled faces: it needs a teacher and pure distillation "
                            "(loss.weight = 0, loss.name not center)")
    if not 0.0 <= tr["prune"] < 1.0:
        raise EdgefaceError(f"train.prune (sparsity) must be in [0, 1), got {tr['prune']}")
    if optim["name"] not in ("sgd", "adam", "adamw") or optim["schedule"] not in ("cosine", "step"):
        raise EdgefaceError("optim.name must be sgd|adam|adamw and optim.schedule cosine|step")
    if tr["strategy"] not in STRATEGIES:
        raise EdgefaceError(f"unknown train.strategy {tr['strategy']!r}; choose from {', '.join(STRATEGIES)}")


def read_tf_config(text: str | None) -> dict:
    """TF_CONFIG (the cluster and this worker's task) for train.strategy = multiworker, checked
    before TensorFlow loads: a bad one would otherwise hang or fail deep inside the strategy."""
    hint = "see docs/distributed.md"
    if not text or not text.strip():
        raise EdgefaceError(f"train.strategy = multiworker needs TF_CONFIG (JSON: the cluster's workers and this "
                            f"worker's task); {hint}")
    try:
        tfc = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgefaceError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); {hint}") from None
    cluster, task = (tfc.get("cluster"), tfc.get("task")) if isinstance(tfc, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise EdgefaceError(f'TF_CONFIG needs a "cluster" object and a "task" object; {hint}')
    for job, hosts in cluster.items():
        if job not in ("chief", "worker"):
            raise EdgefaceError(f"TF_CONFIG cluster job {job!r}: MultiWorkerMirroredStrategy has only chief and "
                                f"worker jobs; {hint}")
        if (not isinstance(hosts, list) or not hosts or (job == "chief" and len(hosts) > 1)
                or not all(isinstance(h, str) and h.rpartition(":")[2].isdigit() for h in hosts)):
            raise EdgefaceError(f'TF_CONFIG cluster.{job} must be a list of "host:port" strings (one chief at most), '
                                f"got {hosts!r}; {hint}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(cluster[kind]):
        raise EdgefaceError(f"TF_CONFIG task {task!r} is not one of the cluster's tasks "
                            f"({', '.join(f'{j} 0..{len(h) - 1}' for j, h in cluster.items())}); {hint}")
    return tfc


def is_chief(tf_config: dict | None) -> bool:
    """The one worker that writes the run folder: the chief, else worker 0 (TensorFlow's convention)."""
    if tf_config is None:
        return True
    task = tf_config["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0
                                       and "chief" not in tf_config["cluster"])


def resolve_config(run_dir: Path, config_file=None, sets=(), flags=None, resume: bool = False) -> dict:
    """Defaults <- (on resume: the run's saved config) <- --config <- --set <- flags."""
    base = None
    if resume:
        saved = run_dir / "config.toml"
        if not saved.is_file():
            raise EdgefaceError(f"nothing to resume: {saved} not found")
        base = cfgmod.load_toml(saved)
    cfg = cfgmod.FACE.resolve(config_file, sets, flags, base=base)
    check_config(cfg)
    return cfg


def drop_unaligned(folder, data_dir: Path, use_fallbacks: bool = False, min_images: int = 1):
    """Without use_fallbacks, the images `edgeface align` marked as not a detected face (centre-crop
    fallbacks of grey, tiny or rotated photos) are not training faces: leave them out."""
    from edgeface.data.pairs import is_aligned_root

    if use_fallbacks or not is_aligned_root(data_dir):
        return folder
    from edgeface.align.pipeline import read_manifest

    bad = {str((data_dir / r["output"]).resolve()) for r in read_manifest(data_dir)
           if r.get("status") != "ok" and r.get("output")}
    keep = [i for i, p in enumerate(folder.paths) if str(Path(p).resolve()) not in bad]
    if len(keep) == len(folder.paths):
        return folder
    _say(f"skipping {len(folder.paths) - len(keep)} fallback crops (no detected face) listed in "
         f"{data_dir / 'manifest.jsonl'} (data.use_fallbacks = true keeps them)")
    from edgeface.data.folders import ImageFolder

    labels = folder.labels[keep]
    counts = np.bincount(labels, minlength=folder.num_classes)
    classes = [c for c in range(folder.num_classes) if counts[c] >= min_images]
    new_label = {c: i for i, c in enumerate(classes)}
    rows = [i for i in keep if folder.labels[i] in new_label]
    return ImageFolder(folder.root, [folder.paths[i] for i in rows],
                       np.asarray([new_label[folder.labels[i]] for i in rows], np.int64),
                       [folder.class_names[c] for c in classes], dict(folder.meta))


def split_named(folder, names: list[str]):
    """(train, val) with exactly the named identities held out."""
    missing = sorted(set(names) - set(folder.class_names))
    if missing:
        raise EdgefaceError(f"data.val_identities not found in {folder.root}: {', '.join(missing[:5])}")
    held = {folder.class_names.index(n) for n in names}
    is_val = np.isin(folder.labels, sorted(held))
    return folder.subset(np.flatnonzero(~is_val)), folder.subset(np.flatnonzero(is_val))


def check_image_files(paths) -> None:
    """Every training image is a complete image file (checked before TensorFlow loads: a zero-byte
    PNG would otherwise fail deep inside tf.data, minutes in)."""
    from edgeface.utils.images import BadImage, check_image_bytes
    from edgeface.utils.io import read_input_file

    for p in paths:
        check_image_bytes(read_input_file(p, "image", BadImage), p)


# ---------------------------------------------------------------------------------------------
# Validation on held-out identities

def make_val_pairs(labels: np.ndarray, max_same: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(pair_index (P, 2), is_same (P,)): every same-identity pair (capped at max_same, sampled) plus
    the same number of distinct random different-identity pairs."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    same = []
    for lab in np.unique(labels):
        idx = np.flatnonzero(labels == lab)
        ii, jj = np.triu_indices(len(idx), k=1)
        same.append(np.stack([idx[ii], idx[jj]], axis=1))
    same = np.concatenate(same) if same else np.zeros((0, 2), np.int64)
    if len(same) > max_same:
        same = same[np.sort(rng.choice(len(same), max_same, replace=False))]
    n_diff_possible = (len(labels) ** 2 - np.sum(np.unique(labels, return_counts=True)[1] ** 2)) // 2
    if len(same) == 0 or n_diff_possible == 0:
        raise EdgefaceError("the validation identities give no same-identity or no different-identity pairs: "
                            "raise data.val_fraction (need >= 2 identities with >= 2 images) or set it to 0")
    want = int(min(len(same), n_diff_possible))
    diff: set[tuple[int, int]] = set()
    while len(diff) < want:
        a = rng.integers(0, len(labels), 4 * want)
        b = rng.integers(0, len(labels), 4 * want)
        for x, y in zip(a, b):
            if labels[x] != labels[y]:
                diff.add((int(min(x, y)), int(max(x, y))))
                if len(diff) == want:
                    break
    diff = np.array(sorted(diff), np.int64)
    pairs = np.concatenate([same, diff]).astype(np.int64)
    is_same = np.concatenate([np.ones(len(same), bool), np.zeros(len(diff), bool)])
    return pairs, is_same


def embed_dataset(model, ds) -> np.ndarray:
    out = [model(batch["image"], training=False).numpy() for batch in ds]
    return np.concatenate(out).astype(np.float32)


def mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean row-wise cosine of two (N, D) arrays."""
    from edgeface.runtime.interpreter import l2_normalize

    return float(np.mean(np.sum(l2_normalize(a) * l2_normalize(b), axis=1)))


def pair_accuracy(emb: np.ndarray, pairs, is_same) -> tuple[float, float]:
    """(best-threshold accuracy, threshold) of the cosine scores of these embeddings' pairs."""
    from edgeface.bench.verification import best_threshold, cosine_scores

    thr, acc = best_threshold(cosine_scores(emb, pairs), is_same)
    return acc, thr


def val_scores(model, val_ds, pairs, is_same, teacher_emb: np.ndarray | None = None) -> tuple[float, float, float | None]:
    """(pair accuracy, its threshold, mean cosine to the teacher's embeddings of the same images or None)."""
    emb = embed_dataset(model, val_ds)
    acc, thr = pair_accuracy(emb, pairs, is_same)
    return acc, thr, (mean_cosine(emb, teacher_emb) if teacher_emb is not None else None)


# ---------------------------------------------------------------------------------------------
# Training

class FaceTrainer:
    """Everything a training run holds; `run()` trains (resuming when asked) and returns run.json's dict."""

    def __init__(self, data_dir, run_dir, cfg: dict, resume: bool = False):
        self.data_dir, self.run_dir, self.cfg, self.resume = Path(data_dir), Path(run_dir), cfg, resume
        self.seed = int(cfg["train"]["seed"])
        # tf.distribute: set up by run(); out_dir is where this process writes (run_dir but on non-chief workers)
        self.strategy, self.tf_config, self.chief, self.out_dir = None, None, True, self.run_dir
        self.replicas = self.workers = 1
        self.folder = RunFolder(self.run_dir, TASK_EMBEDDING, resumable=True, resume=resume)

    # -- setup ----------------------------------------------------------------------------
    def _load_data(self) -> None:
        from edgeface.data.folders import scan_folder, split_by_identity
        from edgeface.data.pairs import is_aligned_root

        d = self.cfg["data"]
        folder = scan_folder(self.data_dir, min_images=d["min_images"],
                             exclude=[str(i) for i in d["exclude_identities"]])
        folder = drop_unaligned(folder, self.data_dir, d["use_fallbacks"], d["min_images"])
        check_image_files(folder.paths)
        if folder.num_classes < 2:
            raise EdgefaceError(f"{self.data_dir}: need >= 2 identities with >= {d['min_images']} images")
        if not is_aligned_root(self.data_dir):
            _say(f"warning: {self.data_dir} has no manifest.jsonl (not made by `edgeface align`); "
                 "faces are assumed to be aligned already")
        train, val = folder, None
        if d["val_identities"]:
            train, val = split_named(folder, [str(i) for i in d["val_identities"]])
            self.val_pairs, self.val_same = make_val_pairs(val.labels, d["val_max_same"], self.seed)
        elif d["val_fraction"] > 0:
            train, val = split_by_identity(folder, d["val_fraction"], seed=self.seed)
            try:
                self.val_pairs, self.val_same = make_val_pairs(val.labels, d["val_max_same"], self.seed)
            except EdgefaceError as e:  # too few identities to hold some out: train on all of them
                _say(f"warning: {folder.num_classes} identities are too few for a validation split ({e}); "
                     "training without validation (no early stopping, the last epoch is the model)")
                train, val = folder, None
        # Classification labels over the training identities only, 0..K-1 (held-out ids get no class).
        ids = np.unique(train.labels)
        remap = np.full(folder.num_classes, -1, np.int64)
        remap[ids] = np.arange(len(ids))
        self.train_paths, self.train_labels = list(train.paths), remap[train.labels]
        self.num_classes = len(ids)
        self.train_ids = [folder.class_names[i] for i in ids]
        self.val = val
        self.extra_counts = {}
        if d["extra"]:  # unlabelled (label -1) faces for the distillation term only
            from edgeface.data.distill_sets import extra_images

            held_out = {folder.class_names[i] for i in np.unique(val.labels)} if val is not None else set()
            extra, self.extra_counts = extra_images(d["extra"], held_out)
            self.train_paths += extra
            self.train_labels = np.concatenate([self.train_labels, np.full(len(extra), -1, np.int64)])
            _say(f"data.extra: {len(extra)} unlabelled faces " + ", ".join(
                f"{Path(k).name} {v['images']} (-{v['dropped']} from held-out ids)" for k, v in self.extra_counts.items()))
        if len(self.train_paths) < d["batch_size"]:
            raise EdgefaceError(f"{len(self.train_paths)} training images < data.batch_size {d['batch_size']}")
        self.steps_per_epoch = len(self.train_paths) // d["batch_size"]

    def _load_teacher(self) -> None:
        self.teacher, self.t_emb, self.t_emb_m, self.t_val = None, None, None, None
        spec = self.cfg["train"]["teacher"]
        if not spec:
            return
        from edgeface.teachers import load_teacher, teacher_embeddings
        from edgeface.utils.paths import cache_dir

        self.teacher = load_teacher(spec)
        # One per-path store per teacher: any run (any split, any data) reuses what was computed.
        cache = cache_dir() / "teacher_embeddings" / f"{self.teacher.name}_{self.teacher.sha256[:12]}.npz"
        from edgeface.teachers.base import set_cache

        beside = [set_cache(Path(d).parent, Path(d).name) for d in self.cfg["data"]["extra"]]
        self.t_emb, self.t_emb_m = teacher_embeddings(self.teacher, self.train_paths, cache,
                                                      also_from=[f for f in beside if f.is_file()])
        _say(f"teacher {self.teacher.name} ({self.teacher.dim}-d): embeddings for {len(self.train_paths)} images "
             f"cached in {cache}")
        if self.val is not None:  # the teacher_cos validation metric (never trained on)
            self.t_val, _ = teacher_embeddings(self.teacher, list(self.val.paths), cache)

    def _make_strategy(self):
        """None for train.strategy = default (no tf.distribute at all: today's single-device numerics)."""
        name = self.cfg["train"]["strategy"]
        if name == "default":
            return None
        import tensorflow as tf

        if name == "multiworker":  # reads TF_CONFIG; must exist before TensorFlow runs any op
            key = (name, os.environ.get("TF_CONFIG"))
            self.workers = sum(len(self.tf_config["cluster"].get(j, [])) for j in ("chief", "worker"))
        else:  # this machine's GPUs, else its CPU devices (several when split into logical devices)
            devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
            key = (name, tuple(d.name for d in devices))
        # One strategy per process and device set: every new one numbers its collectives from 1
        # again, and the runtime rejects a second run whose collectives clash with the first's.
        if key not in _STRATEGIES:
            _STRATEGIES[key] = (tf.distribute.MultiWorkerMirroredStrategy() if name == "multiworker"
                                else tf.distribute.MirroredStrategy(list(key[1])))
        strategy = _STRATEGIES[key]
        self.replicas = int(strategy.num_replicas_in_sync)
        bs = self.cfg["data"]["batch_size"]
        if bs % self.replicas:
            raise EdgefaceError(f"data.batch_size {bs} is the global batch: it must split evenly over the "
                                f"{self.replicas} replicas of train.strategy = {name}")
        _say(f"train.strategy {name}: {self.replicas} replicas on {self.workers} worker(s), "
             f"{bs // self.replicas} images per replica (global batch {bs})")
        return strategy

    def _build(self) -> None:
        import tensorflow as tf

        # Everything with variables lives under the strategy's scope (mirrored on every replica).
        with self.strategy.scope() if self.strategy is not None else contextlib.nullcontext():
            self._build_objects()
        if self.strategy is None:
            self._train_step = tf.function(self._step, reduce_retracing=True)
        else:
            self._train_step = tf.function(self._distributed_step, reduce_retracing=True)

    def _build_objects(self) -> None:
        import tf_keras as keras

        from edgeface.losses import CenterLoss, make_head
        from edgeface.nets import get_model
        from edgeface.nets.mobilenetv2 import describe
        from edgeface.train.common import Checkpointer, make_optimizer, make_schedule

        m, loss, tr = self.cfg["model"], self.cfg["loss"], self.cfg["train"]
        kwargs = {k: v for k, v in m.items() if k != "name"}
        try:
            self.model = get_model(m["name"], **kwargs)
        except TypeError as e:
            raise EdgefaceError(f"model {m['name']!r} does not accept these [model] options {sorted(kwargs)}: {e}") from None
        self.input_size = int(self.model.input_shape[1])
        self.dim = int(self.model.output_shape[-1])
        _say(describe(self.model))
        if tr["init"] and not self.resume:
            self._warm_start(tr["init"])
        if tr["freeze_bn"]:  # a non-trainable BatchNormalization runs in inference mode in TF2 Keras
            for layer in self.model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        if self.strategy is not None:
            # BatchNorm statistics over the global batch, as on one device: the loss does not depend
            # on how the batch is split. Not part of the layer config, so model.keras is unchanged.
            for layer in self.model.submodules:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.synchronized, layer.fused = True, False

        self.head = None
        if loss["weight"] > 0:
            margin = {"arcface": loss["arcface_margin"], "cosface": loss["cosface_margin"]}.get(loss["name"])
            self.head = make_head(loss["name"], self.num_classes, loss["scale"], margin, loss["easy_margin"])
            self.head.build((None, self.dim))
        self.center = CenterLoss(self.num_classes, self.dim, loss["center_alpha"]) if loss["name"] == "center" else None
        self.proj = None
        if self.teacher is not None and self.teacher.dim != self.dim:
            # Training-only: maps the student's space onto the teacher's; never exported.
            self.proj = keras.layers.Dense(self.teacher.dim, use_bias=False, name="distill_proj")
            self.proj.build((None, self.dim))

        e = tr["epochs"]
        total = e * self.steps_per_epoch
        if tr["max_steps"]:
            total = min(total, tr["max_steps"])
        self.total_steps = total
        self.schedule = make_schedule(self.cfg["optim"], self.steps_per_epoch, total)
        self.optimizer = make_optimizer(self.cfg["optim"], self.schedule)
        self.train_vars = list(self.model.trainable_variables)
        for extra in (self.head, self.proj):
            if extra is not None:
                self.train_vars += list(extra.trainable_variables)
        self.optimizer.build(self.train_vars)  # slots exist before restore, so they are restored too
        self.ckpt = Checkpointer(self.out_dir / "checkpoints", tr["keep_checkpoints"], model=self.model,
                                 head=self.head, optimizer=self.optimizer, center=self.center, proj=self.proj)

    def _warm_start(self, path) -> None:
        """Start from another run's weights (same architecture), e.g. to continue on new data."""
        warm_start(self.model, path, "train.init", "[model]")
        _say(f"warm start from {path}")

    # -- one optimizer step -----------------------------------------------------------------
    def _step(self, images, labels, t_emb, share=None):
        """One optimizer step. Under a strategy it runs on every replica with `share` = the replica's
        part of the global batch: each batch-mean loss is weighted by it, so the gradients the
        optimizer sums over the replicas are those of the global-batch mean."""
        import tensorflow as tf

        from edgeface.losses import cosine_distill_loss, similarity_distill_loss, softmax_cross_entropy

        def part(x):
            return x if share is None else x * share

        loss_cfg = self.cfg["loss"]
        zero = tf.constant(0.0)
        with tf.GradientTape() as tape:
            emb = self.model(images, training=True)
            total, cls, cen, dis, rel, acc = zero, zero, zero, zero, zero, zero
            if self.head is not None:
                logits = self.head(emb, labels, training=True)
                cls = part(softmax_cross_entropy(labels, logits))
                total += loss_cfg["weight"] * cls
                plain = self.head(emb, training=False)
                acc = part(tf.reduce_mean(tf.cast(tf.equal(tf.argmax(plain, 1), labels), tf.float32)))
            if self.center is not None:
                cen = part(self.center(emb, labels))
                total += loss_cfg["center_lambda"] * cen
            if self.teacher is not None:
                student = self.proj(emb) if self.proj is not None else emb
                dis = part(cosine_distill_loss(student, t_emb))
                total += loss_cfg["distill_weight"] * dis
                if loss_cfg["relational_weight"] > 0:  # on the exported embedding itself, not the projection
                    if share is None:
                        rel = similarity_distill_loss(emb, t_emb)
                    else:  # its pairs span the global batch: each replica scores all of them, counting 1/R
                        ctx = tf.distribute.get_replica_context()  # (all_gather's gradient sums back to own rows)
                        rel = similarity_distill_loss(ctx.all_gather(emb, 0), ctx.all_gather(t_emb, 0)) \
                            / ctx.num_replicas_in_sync
                    total += loss_cfg["relational_weight"] * rel
        grads = tape.gradient(total, self.train_vars)
        self.optimizer.apply_gradients(zip(grads, self.train_vars))
        out = {"loss": total, "cls_loss": cls, "center_loss": cen, "distill_loss": dis, "relational_loss": rel,
               "train_acc": acc}
        if self.center is not None:
            if share is None:
                self.center.update(emb, labels)
            else:  # moved once per step from the whole batch, in _distributed_step
                out.update(emb=emb, labels=labels)
        return out

    def _teacher_targets(self, batch):
        """The teacher embedding of each image as the pipeline served it (the mirror's when it flipped
        the image); an empty tensor without a teacher."""
        import tensorflow as tf

        if self.teacher is None:
            return tf.zeros((0,))
        return tf.where(batch["flip_flag"][:, None], batch["t_emb_m"], batch["t_emb"])

    def _distributed_step(self, batch):
        """strategy.run of _step on every replica's slice of the global batch; returns the global-batch means."""
        import tensorflow as tf

        bs = self.cfg["data"]["batch_size"]

        def replica_step(b):
            share = tf.cast(tf.shape(b["image"])[0], tf.float32) / bs
            return self._step(b["image"], b["label"], self._teacher_targets(b), share)

        out = self.strategy.run(replica_step, args=(batch,))
        if self.center is not None:
            # One moving-average step of the centres from the global batch (gathered in replica
            # order: the single-device batch), the same update on every copy. Gathering B x D
            # embeddings costs less than all-reducing K x D per-class sums when K is large.
            self.center.update(self.strategy.gather(out.pop("emb"), axis=0),
                               self.strategy.gather(out.pop("labels"), axis=0))
        return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in out.items()}

    # -- data --------------------------------------------------------------------------------
    def _epoch_dataset(self, epoch: int, skip_steps: int):
        """Epoch `epoch`'s batches: a permutation that depends only on (seed, epoch), so a resumed
        run sees the same order; `skip_steps` batches already trained are left out."""
        from edgeface.data.pipeline import make_dataset

        d = self.cfg["data"]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.train_paths))
        order = order[skip_steps * d["batch_size"]: self.steps_per_epoch * d["batch_size"]]
        extra = {}
        if self.teacher is not None:
            extra = {"t_emb": self.t_emb[order], "t_emb_m": self.t_emb_m[order]}
        augment = False
        if d["augment"]:
            augment = {k: d[k] for k in ("rotate_deg", "scale", "shift", "brightness", "contrast")}
        return make_dataset([self.train_paths[i] for i in order], self.train_labels[order], self.input_size,
                            d["batch_size"], training=True, augment=augment, seed=self.seed * 100_003 + epoch,
                            extra=extra, flip_flag=True, shuffle=False, drop_remainder=True)

    def _val_dataset(self):
        from edgeface.data.pipeline import make_dataset

        return make_dataset(self.val.paths, None, self.input_size, self.cfg["data"]["val_batch_size"],
                            training=False, flip_flag=True)

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> dict:
        self.folder.start()
        # Everything that can be checked without TensorFlow is, before the run folder is created.
        if self.cfg["train"]["strategy"] == "multiworker":
            self.tf_config = read_tf_config(os.environ.get("TF_CONFIG"))
            self.chief = is_chief(self.tf_config)
        self.folder.guard()
        self._load_data()
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

        self.strategy = self._make_strategy()  # first: MultiWorkerMirroredStrategy must precede any TF op
        seed_everything(self.seed)
        self._load_teacher()
        self._build()
        if self.t_val is not None and self.t_val.shape[1] != self.dim:  # a projection head: no direct cosine
            if self.cfg["data"]["select"] == "teacher_cos":
                raise EdgefaceError(f"data.select = teacher_cos needs the student's embedding size ({self.dim}) "
                                    f"to be the teacher's ({self.t_val.shape[1]})")
            self.t_val = None
        self.init_val_acc = self.init_val_cos = self.teacher_val_acc = None
        if self.resume:
            prev = self.run_dir / "run.json"
            prev_info = read_json(prev, "run.json") if prev.is_file() else {}
            old_ids = prev_info.get("data", {}).get("train_identities_sha256")
            if old_ids and old_ids != self._ids_sha():
                raise EdgefaceError(f"--resume with different training identities than {self.run_dir} was started "
                                    f"with (data was {prev_info['data'].get('dir')}): the class weights would not match")
            self.folder.prev_wall = float(prev_info.get("wall_time_s", 0.0))
            self.init_val_acc = prev_info.get("init_val_acc")
            self.init_val_cos = prev_info.get("init_val_teacher_cos")
            self.teacher_val_acc = prev_info.get("teacher_val_acc")
            path = self._restore()
            _say(f"resumed {path}: epoch {self.ckpt.get('epoch')} (+{self.ckpt.get('epoch_step')} steps), "
                 f"step {self.ckpt.get('step')}")
        write_text_atomic(self.out_dir / "config.toml", cfgmod.to_toml(self.cfg))
        logger = RunLogger(self.out_dir, LOG_FIELDS, resume_step=self.ckpt.get("step") if self.resume else None,
                           plot=("loss", "val_acc", "lr"))
        stopper = EarlyStopping(self.ckpt, self.cfg["train"]["patience"])
        val_ds = self._val_dataset() if self.val is not None else None
        if val_ds is not None and self.t_val is not None and not self.resume:
            # the ceiling that pair_acc can show: the teacher's own score on the same pairs
            self.teacher_val_acc = pair_accuracy(self.t_val, self.val_pairs, self.val_same)[0]
            _say(f"teacher val acc {self.teacher_val_acc:.4f}")
        if val_ds is not None and self.cfg["train"]["init"] and not self.resume:
            # the warm start's own score on the held-out people: what training must beat
            self.init_val_acc, _, self.init_val_cos = val_scores(self.model, val_ds, self.val_pairs, self.val_same,
                                                                 self.t_val)
            _say(f"warm start {self.cfg['train']['init']}: val acc {self.init_val_acc:.4f}"
                 + (f", teacher cos {self.init_val_cos:.4f}" if self.init_val_cos is not None else "")
                 + " before training")
        self._write_run_json(status="running")

        tr = self.cfg["train"]
        max_steps = tr["max_steps"] or None
        stop_reason = None
        # Whether a model.keras exists, read from the run folder by every worker before any step (so
        # before the chief can write one): all must make the same save calls, which are collective.
        self.have_model = (self.run_dir / "model.keras").is_file()
        try:
            while stop_reason is None:
                epoch = self.ckpt.get("epoch")
                if epoch >= tr["epochs"]:
                    stop_reason = "epochs"
                elif max_steps and self.ckpt.get("step") >= max_steps:
                    stop_reason = "max_steps"
                elif self._train_epoch(epoch, logger, stopper, val_ds, max_steps):
                    stop_reason = "early_stopping"
        finally:
            logger.close()
        info = self._write_run_json(status="done", stop_reason=stop_reason)
        if (tr["prune"] > 0 or tr["qat"]) and self.chief:  # single-device fine-tunes of the saved model
            info = self._optimize(stop_reason)
        return info

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

    def _train_epoch(self, epoch, logger, stopper, val_ds, max_steps) -> bool:
        """Train the rest of epoch `epoch` (or up to max_steps), validate, checkpoint. True = stop early."""
        import tensorflow as tf

        from edgeface.nets.io import save_model

        tr, bs = self.cfg["train"], self.cfg["data"]["batch_size"]
        skip = self.ckpt.get("epoch_step")
        todo = self.steps_per_epoch - skip
        if max_steps:
            todo = min(todo, max_steps - self.ckpt.get("step"))
        sums, n, t0 = {}, 0, time.time()
        bar = progress(total=todo, desc=f"epoch {epoch + 1}/{tr['epochs']}", unit="step")
        batches = self._epoch_dataset(epoch, skip).take(todo)
        if self.strategy is not None:
            # Each global batch is split over the replicas; with several workers, tf.data's DATA
            # auto-shard gives every worker its replicas' slices (the file list is in memory, so
            # there are no files to shard by).
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            batches = self.strategy.experimental_distribute_dataset(batches.with_options(options))
        for batch in batches:
            if self.strategy is not None:
                out = {k: float(v) for k, v in self._train_step(batch).items()}
            else:
                out = {k: float(v) for k, v in self._train_step(batch["image"], batch["label"],
                                                                 self._teacher_targets(batch)).items()}
            if not np.isfinite(out["loss"]):
                raise EdgefaceError(f"loss became {out['loss']} at step {self.ckpt.get('step') + 1}: "
                                    "lower optim.lr or loss.scale")
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
            if n == 1:
                t_first = time.time()  # throughput excludes the first step (graph tracing)
            step = self.ckpt.get("step") + 1
            self.ckpt.set(step=step, epoch_step=self.ckpt.get("epoch_step") + 1)
            if step % tr["log_every"] == 0:
                logger.scalars(step, {**out, "lr": float(self.schedule(step - 1))}, prefix="train/")
            if tr["checkpoint_every"] and step % tr["checkpoint_every"] == 0 and n < todo:
                self.ckpt.save()  # resumable mid-epoch: the epoch's batch order depends only on (seed, epoch)
            bar.set_postfix(loss=f"{out['loss']:.3f}", refresh=False)
            bar.update(1)
        bar.close()
        t_end = time.time()
        epoch_s = t_end - t0
        if n == 0:
            raise EdgefaceError(f"epoch {epoch + 1} produced no batches (check the data folder)")
        if self.ckpt.get("epoch_step") >= self.steps_per_epoch:
            self.ckpt.set(epoch=epoch + 1, epoch_step=0)
            shown = float(epoch + 1)
        else:  # stopped inside the epoch (max_steps): a fractional epoch in the log
            shown = epoch + self.ckpt.get("epoch_step") / self.steps_per_epoch
        step = self.ckpt.get("step")
        row = {"epoch": shown, "step": step, "lr": float(self.schedule(step - 1)),
               **{k: v / n for k, v in sums.items()}, "epoch_s": epoch_s,
               "images_per_s": (n - 1) * bs / (t_end - t_first) if n > 1 else n * bs / max(epoch_s, 1e-9)}
        improved = True
        if val_ds is not None:
            acc, thr, cos = val_scores(self.model, val_ds, self.val_pairs, self.val_same, self.t_val)
            row.update(val_acc=acc, val_threshold=thr, val_pairs=len(self.val_same), val_teacher_cos=cos)
            improved = stopper.update(cos if self.cfg["data"]["select"] == "teacher_cos" else acc, epoch + 1)
            logger.scalars(step, {"accuracy": acc, "threshold": thr, **({"teacher_cos": cos} if cos is not None else {})},
                           prefix="val/")
        else:
            self.ckpt.set(best_epoch=epoch + 1)  # no validation: the last model is the one kept
        if improved or not self.have_model:
            save_model(self.model, self.out_dir / "model.keras")
            self.have_model = True
        logger.row(row)
        self.ckpt.save()
        _say(f"epoch {shown:.3g}: step {step}, loss {row['loss']:.4f}"
             + (f", val acc {row['val_acc']:.4f}"
                + (f", teacher cos {row['val_teacher_cos']:.4f}" if row.get("val_teacher_cos") is not None else "")
                + (" (best)" if improved else "") if val_ds is not None else "")
             + f", {row['images_per_s']:.1f} img/s")
        return stopper.should_stop

    # -- after training -----------------------------------------------------------------------
    def _optimize(self, stop_reason: str) -> dict:
        """--prune / --qat: edgeface.optimize's fine-tunes (as `convert --prune/--qat-finetune` runs
        them) on the best model, saved beside it."""
        from edgeface.data.pipeline import load_images
        from edgeface.nets.io import load_model, save_model
        from edgeface.optimize.finetune import prune_and_qat
        from edgeface.spec import normalize_pixels

        tr = self.cfg["train"]
        rng = np.random.default_rng(self.seed)
        pick = rng.choice(len(self.train_paths), min(tr["finetune_images"], len(self.train_paths)), replace=False)
        images = normalize_pixels(load_images([self.train_paths[i] for i in sorted(pick)], self.input_size))
        done = prune_and_qat(load_model(self.run_dir / "model.keras"), images, sparsity=tr["prune"],
                             prune_steps=tr["finetune_steps"], qat_steps=tr["finetune_steps"] if tr["qat"] else None,
                             seed=self.seed)
        optimized = {}
        if "prune" in done.record:
            optimized["pruned"] = {"file": "model_pruned.keras", "sparsity": tr["prune"], **done.record["prune"]}
            save_model(done.model, self.run_dir / "model_pruned.keras")
        if done.qat is not None:
            # .h5: TF-MOT's quantize layers do not round-trip through the .keras format.
            optimized["qat"] = {"file": "model_qat.h5", **done.record["qat"]}
            save_model(done.qat, self.run_dir / "model_qat.h5")
        return self._write_run_json(status="done", stop_reason=stop_reason, optimized=optimized)

    def _license(self) -> str:
        """What the weights inherit: the training data's terms and, when distilled, the teacher's."""
        text = "trained by edgeface; the terms of its training data (training_data) apply"
        if self.teacher is not None:
            text += f"; distilled from {self.teacher.name}, whose terms apply too: {self.teacher.license}"
        return text

    def _ids_sha(self) -> str:
        return hashlib.sha256("\n".join(self.train_ids).encode()).hexdigest()

    def _write_run_json(self, status: str, stop_reason: str | None = None, optimized: dict | None = None) -> dict:
        from edgeface.align.transform import registered_template_for

        m = self.cfg["model"]
        bs = self.cfg["data"]["batch_size"]
        metric = {"pair_acc": "val_pair_accuracy", "teacher_cos": "val_teacher_cosine"}[self.cfg["data"]["select"]]
        info = self.folder.record(
            status=status,
            stop_reason=stop_reason,
            model={"name": m["name"], "kwargs": {k: v for k, v in m.items() if k != "name"},
                   "input_size": self.input_size, "embedding_dim": self.dim,
                   "params": int(self.model.count_params())},
            # (the registered template of the input size: a crop resized to another size is not its
            # template any more, and every registered template has a size of its own)
            alignment=registered_template_for(self.input_size, self.input_size),
            input=input_spec("RGB", size=self.input_size),
            config=self.cfg,
            data={"dir": str(self.data_dir.resolve()), "train_images": len(self.train_paths),
                  "extra": self.extra_counts,
                  "train_identities": self.num_classes, "train_identities_sha256": self._ids_sha(),
                  "val_images": len(self.val.paths) if self.val is not None else 0,
                  "val_identities": len(np.unique(self.val.labels)) if self.val is not None else 0,
                  "val_pairs": int(len(self.val_same)) if self.val is not None else 0},
            best=best_record(metric if self.val is not None else None, self.ckpt.get("best_metric"),
                             self.ckpt.get("best_epoch")),
            epochs_done=self.ckpt.get("epoch"), steps=self.ckpt.get("step"),
            steps_per_epoch=self.steps_per_epoch, total_steps_planned=self.total_steps,
            model_file="model.keras",
            teacher=self.teacher.describe() if self.teacher is not None else None,
            license=self._license(),
            init_val_acc=self.init_val_acc,
            init_val_teacher_cos=self.init_val_cos,
            teacher_val_acc=self.teacher_val_acc,
            distribute={"strategy": self.cfg["train"]["strategy"], "replicas": self.replicas,
                        "workers": self.workers, "global_batch": bs, "per_replica_batch": bs // self.replicas},
        )
        if optimized:
            info["optimized"] = optimized
        return self.folder.write(info, self.out_dir)


def train_face(data_dir, run_dir, cfg: dict, resume: bool = False) -> dict:
    """Train (or resume) a face embedder; returns the run.json dict."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EdgefaceError(f"data folder not found: {data_dir}")
    return FaceTrainer(data_dir, run_dir, cfg, resume).run()
