"""The face-embedding task of the training driver (edgeface.train.loop): train an embedder on an
aligned `<identity>/<image>.png` folder.

Loss = loss.weight * classification (softmax | center | ArcFace | CosFace)
       [+ loss.center_lambda * center loss]  [+ loss.distill_weight * (1 - cos(student, teacher))].
Early stopping / model selection on held-out IDENTITIES (never LFW): all same-identity pairs of the
validation identities (capped) plus as many random different-identity pairs, best-threshold accuracy.

The run folder is the driver's; model.keras is the best float backbone (no head), checkpoints/ hold
the model, head, optimizer, centres and the run state. train.strategy (--strategy) runs under
tf.distribute, with data.batch_size as the global batch: docs/distributed.md.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.spec import TASK_EMBEDDING
from edgeface.train import config as cfgmod
from edgeface.train.core import input_spec, warm_start
from edgeface.train.distribute import STRATEGIES
from edgeface.train.loop import LoopSettings, Stage, Task, Trainer, say

LOG_FIELDS = ["epoch", "step", "lr", "loss", "cls_loss", "center_loss", "distill_loss", "relational_loss",
              "train_acc", "val_acc", "val_threshold", "val_pairs", "val_teacher_cos", "val_extra_teacher_cos", "val_both_teacher_cos", "images_per_s", "epoch_s"]
# data.select -> the validate() key that keeps the best epoch, and its name in run.json
SELECT_METRICS = {"pair_acc": ("val_acc", "val_pair_accuracy"),
                  "teacher_cos": ("val_teacher_cos", "val_teacher_cosine"),
                  # the mean of the two cosines: the held-out people's photos and the held-out extra faces
                  # weigh the same, so neither domain alone picks the epoch (benchmarks/face_models.md, round 9)
                  "teacher_cos_both": ("val_both_teacher_cos", "val_both_teacher_cosine")}
TEACHER_SELECTS = ("teacher_cos", "teacher_cos_both")  # the choices scored against a teacher's embeddings
LOSSES = ("softmax", "center", "arcface", "cosface")

# (section, key, smallest allowed value): integers that divide, count or size something
MIN_VALUES = (("data", "min_images", 1), ("data", "val_max_same", 1), ("data", "val_batch_size", 1),
              ("train", "log_every", 1), ("train", "keep_checkpoints", 1), ("train", "checkpoint_every", 0),
              ("train", "patience", 0), ("train", "time_limit_min", 0.0), ("train", "finetune_steps", 1), ("train", "finetune_images", 1),
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
    if d["select"] in TEACHER_SELECTS and not tr["teacher"]:
        raise EdgefaceError(f"data.select = {d['select']} needs a teacher")
    if d["select"] == "teacher_cos_both" and not d["extra_val_fraction"] > 0:
        raise EdgefaceError("data.select = teacher_cos_both needs data.extra_val_fraction > 0")
    if not 0.0 <= d["extra_val_fraction"] < 1.0:
        raise EdgefaceError(f"data.extra_val_fraction must be in [0, 1), got {d['extra_val_fraction']!r}")
    if d["extra_val_fraction"] > 0 and not (d["extra"] and tr["teacher"]):
        raise EdgefaceError("data.extra_val_fraction > 0 needs data.extra folders and a teacher")
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
    if tr["strategy"] == "multiworker" and tr["time_limit_min"]:  # each worker's clock would stop it at another step
        raise EdgefaceError("train.time_limit_min does not work with train.strategy = multiworker; use train.max_steps")


def resolve_config(run_dir: Path, config_file=None, sets=(), flags=None, resume: bool = False) -> dict:
    """Defaults <- (on resume: the run's saved config) <- --config <- --set <- flags."""
    base = cfgmod.saved_config(run_dir) if resume else None
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
    say(f"skipping {len(folder.paths) - len(keep)} fallback crops (no detected face) listed in "
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


def pair_accuracy(emb: np.ndarray, pairs, is_same) -> tuple[float, float]:
    """(best-threshold accuracy, threshold) of the cosine scores of these embeddings' pairs."""
    from edgeface.bench.verification import best_threshold, cosine_scores

    thr, acc = best_threshold(cosine_scores(emb, pairs), is_same)
    return acc, thr


def val_scores(model, val_ds, pairs, is_same, teacher_emb: np.ndarray | None = None) -> tuple[float, float, float | None]:
    """(pair accuracy, its threshold, mean cosine to the teacher's embeddings of the same images or None)."""
    from edgeface.optimize.distill import mean_cosine

    emb = embed_dataset(model, val_ds)
    acc, thr = pair_accuracy(emb, pairs, is_same)
    return acc, thr, (mean_cosine(emb, teacher_emb) if teacher_emb is not None else None)


# ---------------------------------------------------------------------------------------------
# The task

class FaceTask(Task):
    """Face embedding: softmax/center/margin classification and/or distillation from a teacher, one stage."""

    name = TASK_EMBEDDING
    log_fields = LOG_FIELDS
    plot = ("loss", "val_acc", "lr")

    def __init__(self, data_dir, cfg: dict):
        self.data_dir, self.cfg = Path(data_dir), cfg
        tr = cfg["train"]
        self.seed = int(tr["seed"])
        self.loop = LoopSettings(seed=self.seed, batch_size=cfg["data"]["batch_size"], strategy=tr["strategy"],
                                 patience=tr["patience"], log_every=tr["log_every"],
                                 checkpoint_every=tr["checkpoint_every"], keep_checkpoints=tr["keep_checkpoints"],
                                 time_limit_min=tr["time_limit_min"] or None)
        self.select_key = SELECT_METRICS[cfg["data"]["select"]][0]
        self.init_val_acc = self.init_val_cos = self.teacher_val_acc = self.init_extra_cos = None
        self.val = None
        self.extra_val_paths: list[str] = []

    @property
    def select_name(self) -> str | None:
        if self.val is None:
            return None
        return SELECT_METRICS[self.cfg["data"]["select"]][1]

    # -- data (TF-free) --------------------------------------------------------------------------
    def load_data(self) -> None:
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
            say(f"warning: {self.data_dir} has no manifest.jsonl (not made by `edgeface align`); "
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
                say(f"warning: {folder.num_classes} identities are too few for a validation split ({e}); "
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
            if d["extra_val_fraction"] > 0:
                from edgeface.data.distill_sets import split_extra_held_out

                extra, self.extra_val_paths, held = split_extra_held_out(d["extra"], extra, d["extra_val_fraction"])
                if not self.extra_val_paths:
                    raise EdgefaceError(f"data.extra_val_fraction {d['extra_val_fraction']} holds out no face of "
                                        f"the {len(extra)} extra faces; raise it")
                for k, n in held.items():
                    self.extra_counts[k]["images"] -= n
                    self.extra_counts[k]["validation"] = n
            self.train_paths += extra
            self.train_labels = np.concatenate([self.train_labels, np.full(len(extra), -1, np.int64)])
            say(f"data.extra: {len(extra)} unlabelled faces " + ", ".join(
                f"{Path(k).name} {v['images']} (-{v['dropped']} from held-out ids)" for k, v in self.extra_counts.items()))
        if len(self.train_paths) < d["batch_size"]:
            raise EdgefaceError(f"{len(self.train_paths)} training images < data.batch_size {d['batch_size']}")
        self.steps_per_epoch = len(self.train_paths) // d["batch_size"]

    def prepare(self) -> None:
        """The teacher and its targets for every training and validation image (cached)."""
        self.teacher, self.t_emb, self.t_emb_m, self.t_val, self.t_extra_val = None, None, None, None, None
        spec = self.cfg["train"]["teacher"]
        if not spec:
            return
        from edgeface.teachers import load_teacher, teacher_embeddings
        from edgeface.teachers.base import set_cache
        from edgeface.utils.paths import cache_dir

        self.teacher = load_teacher(spec)
        # One per-path store per teacher: any run (any split, any data) reuses what was computed.
        cache = cache_dir() / "teacher_embeddings" / f"{self.teacher.name}_{self.teacher.sha256[:12]}.npz"
        beside = [f for f in (set_cache(Path(d).parent, Path(d).name) for d in self.cfg["data"]["extra"]) if f.is_file()]
        self.t_emb, self.t_emb_m = teacher_embeddings(self.teacher, self.train_paths, cache,
                                                      also_from=beside)
        say(f"teacher {self.teacher.name} ({self.teacher.dim}-d): embeddings for {len(self.train_paths)} images "
             f"cached in {cache}")
        if self.val is not None:  # the teacher_cos validation metric (never trained on)
            self.t_val, _ = teacher_embeddings(self.teacher, list(self.val.paths), cache)
        if self.extra_val_paths:  # the held-out extra faces (never trained on)
            self.t_extra_val, _ = teacher_embeddings(self.teacher, self.extra_val_paths, cache,
                                                     also_from=beside)

    # -- models -------------------------------------------------------------------------------------
    def build(self, resume: bool, out_dir: Path) -> list[Stage]:
        import tf_keras as keras

        from edgeface.losses import CenterLoss, make_head
        from edgeface.nets import get_model
        from edgeface.nets.mobilenetv2 import describe

        m, loss, tr = self.cfg["model"], self.cfg["loss"], self.cfg["train"]
        kwargs = {k: v for k, v in m.items() if k != "name"}
        try:
            self.model = get_model(m["name"], **kwargs)
        except TypeError as e:
            raise EdgefaceError(f"model {m['name']!r} does not accept these [model] options {sorted(kwargs)}: {e}") from None
        self.input_size = int(self.model.input_shape[1])
        self.dim = int(self.model.output_shape[-1])
        say(describe(self.model))
        if self.t_val is not None and self.t_val.shape[1] != self.dim:  # a projection head: no direct cosine
            if self.cfg["data"]["select"] in TEACHER_SELECTS:
                raise EdgefaceError(f"data.select = {self.cfg['data']['select']} needs the student's embedding size ({self.dim}) "
                                    f"to be the teacher's ({self.t_val.shape[1]})")
            self.t_val = None
        if self.t_extra_val is not None and self.t_extra_val.shape[1] != self.dim:
            raise EdgefaceError(f"data.extra_val_fraction needs the student's embedding size ({self.dim}) "
                                f"to be the teacher's ({self.t_extra_val.shape[1]})")
        if tr["init"] and not resume:  # another run's weights (same architecture), e.g. to continue on new data
            warm_start(self.model, tr["init"], "train.init", "[model]")
            say(f"warm start from {tr['init']}")
        if tr["freeze_bn"]:  # a non-trainable BatchNormalization runs in inference mode in TF2 Keras
            for layer in self.model.layers:
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        if self.loop.strategy != "default":
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
        variables = list(self.model.trainable_variables)
        for extra in (self.head, self.proj):
            if extra is not None:
                variables += list(extra.trainable_variables)
        self.stage = Stage("train", self.model, variables, self._epoch_dataset, self.steps_per_epoch, tr["epochs"],
                           self.cfg["optim"], max_steps=tr["max_steps"] or None)
        self.val_ds = self._val_dataset(self.val.paths) if self.val is not None else None
        self.extra_val_ds = self._val_dataset(self.extra_val_paths) if self.extra_val_paths else None
        return [self.stage]

    def trackables(self) -> dict:
        return {"model": self.model, "head": self.head, "center": self.center, "proj": self.proj}

    # -- one step -------------------------------------------------------------------------------------
    def loss(self, stage, batch, gather):
        import tensorflow as tf

        from edgeface.losses import cosine_distill_loss, similarity_distill_loss, softmax_cross_entropy

        loss_cfg = self.cfg["loss"]
        images, labels = batch["image"], batch["label"]
        zero = tf.constant(0.0)
        emb = self.model(images, training=True)
        total, cls, cen, dis, rel, acc = zero, zero, zero, zero, zero, zero
        if self.head is not None:
            logits = self.head(emb, labels, training=True)
            cls = softmax_cross_entropy(labels, logits)
            total += loss_cfg["weight"] * cls
            plain = self.head(emb, training=False)
            acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(plain, 1), labels), tf.float32))
        if self.center is not None:
            cen = self.center(emb, labels)
            total += loss_cfg["center_lambda"] * cen
        if self.teacher is not None:
            # the teacher embedding of each image as the pipeline served it (the mirror's when flipped)
            t_emb = tf.where(batch["flip_flag"][:, None], batch["t_emb_m"], batch["t_emb"])
            student = self.proj(emb) if self.proj is not None else emb
            dis = cosine_distill_loss(student, t_emb)
            total += loss_cfg["distill_weight"] * dis
            if loss_cfg["relational_weight"] > 0:  # on the exported embedding itself, not the projection
                # its pairs span the global batch (all_gather's gradient sums back to each replica's rows)
                rel = similarity_distill_loss(gather(emb), gather(t_emb))
                total += loss_cfg["relational_weight"] * rel
        metrics = {"cls_loss": cls, "center_loss": cen, "distill_loss": dis, "relational_loss": rel, "train_acc": acc}
        return total, metrics, ({"emb": emb, "labels": labels} if self.center is not None else {})

    def update(self, stage, tensors) -> None:
        if self.center is not None:  # one moving-average step of the centres per global batch
            self.center.update(tensors["emb"], tensors["labels"])

    # -- data ---------------------------------------------------------------------------------------
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

    def _val_dataset(self, paths):
        from edgeface.data.pipeline import make_dataset

        return make_dataset(paths, None, self.input_size, self.cfg["data"]["val_batch_size"],
                            training=False, flip_flag=True)

    # -- validation -----------------------------------------------------------------------------------
    def validate(self, stage) -> dict | None:
        if self.val_ds is None:
            return None
        acc, thr, cos = val_scores(self.model, self.val_ds, self.val_pairs, self.val_same, self.t_val)
        extra_cos = self._extra_val_cos()
        both = (cos + extra_cos) / 2 if cos is not None and extra_cos is not None else None
        return {"val_acc": acc, "val_threshold": thr, "val_pairs": len(self.val_same), "val_teacher_cos": cos,
                "val_extra_teacher_cos": extra_cos, "val_both_teacher_cos": both}

    def _extra_val_cos(self) -> float | None:
        """Mean cosine to the teacher on the held-out extra faces (data.extra_val_fraction), else None."""
        from edgeface.optimize.distill import mean_cosine

        if self.extra_val_ds is None:
            return None
        return mean_cosine(embed_dataset(self.model, self.extra_val_ds), self.t_extra_val)

    def before_training(self) -> None:
        if self.val_ds is not None and self.t_val is not None:
            # the ceiling that pair_acc can show: the teacher's own score on the same pairs
            self.teacher_val_acc = pair_accuracy(self.t_val, self.val_pairs, self.val_same)[0]
            say(f"teacher val acc {self.teacher_val_acc:.4f}")
        if self.val_ds is not None and self.cfg["train"]["init"]:
            # the warm start's own score on the held-out people: what training must beat
            self.init_val_acc, _, self.init_val_cos = val_scores(self.model, self.val_ds, self.val_pairs,
                                                                 self.val_same, self.t_val)
            say(f"warm start {self.cfg['train']['init']}: val acc {self.init_val_acc:.4f}"
                 + (f", teacher cos {self.init_val_cos:.4f}" if self.init_val_cos is not None else "")
                 + " before training")
        if self.extra_val_ds is not None and self.cfg["train"]["init"]:
            self.init_extra_cos = self._extra_val_cos()
            say(f"warm start: teacher cos {self.init_extra_cos:.4f} on {len(self.extra_val_paths)} held-out extra faces")

    def resumed(self, previous: dict) -> None:
        old_ids = previous.get("data", {}).get("train_identities_sha256")
        if old_ids and old_ids != self._ids_sha():
            raise EdgefaceError(f"--resume with different training identities than the run was started with "
                                f"(data was {previous['data'].get('dir')}): the class weights would not match")
        self.init_val_acc = previous.get("init_val_acc")
        self.init_val_cos = previous.get("init_val_teacher_cos")
        self.teacher_val_acc = previous.get("teacher_val_acc")
        self.init_extra_cos = previous.get("init_val_extra_teacher_cos")

    # -- the kept model and run.json ----------------------------------------------------------------
    def save(self, path: Path) -> None:
        from edgeface.nets.io import save_model

        save_model(self.model, path)

    def config_toml(self) -> str:
        return cfgmod.to_toml(self.cfg)

    def finish(self, run_dir: Path) -> dict:
        """--prune / --qat: edgeface.optimize's fine-tunes (as `convert --prune/--qat-finetune` runs
        them) on the best model, saved beside it; single-device."""
        tr = self.cfg["train"]
        if not (tr["prune"] > 0 or tr["qat"]):
            return {}
        from edgeface.data.pipeline import load_images
        from edgeface.nets.io import load_model, save_model
        from edgeface.optimize.finetune import prune_and_qat
        from edgeface.spec import normalize_pixels

        rng = np.random.default_rng(self.seed)
        pick = rng.choice(len(self.train_paths), min(tr["finetune_images"], len(self.train_paths)), replace=False)
        images = normalize_pixels(load_images([self.train_paths[i] for i in sorted(pick)], self.input_size))
        done = prune_and_qat(load_model(run_dir / "model.keras"), images, sparsity=tr["prune"],
                             prune_steps=tr["finetune_steps"], qat_steps=tr["finetune_steps"] if tr["qat"] else None,
                             seed=self.seed)
        optimized = {}
        if "prune" in done.record:
            optimized["pruned"] = {"file": "model_pruned.keras", "sparsity": tr["prune"], **done.record["prune"]}
            save_model(done.model, run_dir / "model_pruned.keras")
        if done.qat is not None:
            # .h5: TF-MOT's quantize layers do not round-trip through the .keras format.
            optimized["qat"] = {"file": "model_qat.h5", **done.record["qat"]}
            save_model(done.qat, run_dir / "model_qat.h5")
        return {"optimized": optimized}

    def _license(self) -> str:
        """What the weights inherit: the training data's terms and, when distilled, the teacher's."""
        text = "trained by edgeface; the terms of its training data (training_data) apply"
        if self.teacher is not None:
            text += f"; distilled from {self.teacher.name}, whose terms apply too: {self.teacher.license}"
        return text

    def _ids_sha(self) -> str:
        return hashlib.sha256("\n".join(self.train_ids).encode()).hexdigest()

    def record(self, best: dict) -> dict:
        from edgeface.align.transform import registered_template_for

        m = self.cfg["model"]
        return dict(
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
                  "val_pairs": int(len(self.val_same)) if self.val is not None else 0,
                  "extra_val_images": len(self.extra_val_paths)},
            steps_per_epoch=self.steps_per_epoch, total_steps_planned=self.stage.planned_steps(),
            model_file="model.keras",
            teacher=self.teacher.describe() if self.teacher is not None else None,
            license=self._license(),
            init_val_acc=self.init_val_acc,
            init_val_teacher_cos=self.init_val_cos,
            teacher_val_acc=self.teacher_val_acc,
            init_val_extra_teacher_cos=self.init_extra_cos,
        )


def train_face(data_dir, run_dir, cfg: dict, resume: bool = False) -> dict:
    """Train (or resume) a face embedder; returns the run.json dict."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise EdgefaceError(f"data folder not found: {data_dir}")
    return Trainer(FaceTask(data_dir, cfg), run_dir, resume).run()
