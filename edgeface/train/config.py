"""Training configs, one loader for every task: defaults <- TOML file (`extends` another) <- `--set`
<- explicit CLI flags.

A task's `Schema` holds its defaults: sectioned (the face trainer: `[optim] lr = ...`, `--set
optim.lr=0.05`) or flat (the expression trainer: `lr = ...`, `--set lr=0.05`). Every leaf of the
defaults can be overridden; unknown keys are an error (a typo must not be silently ignored), except
in "open" sections such as [model], whose extra keys are passed as keyword arguments to the model
factory. Values given on the command line are parsed as TOML literals (`--set optim.lr=0.05`,
`--set model.stages=[[1,16,1,1]]`, `--set loss.name=cosface`); a bare word that is not valid TOML
is taken as a string. Nothing here imports TensorFlow: a bad key fails in a fraction of a second.
"""
from __future__ import annotations

import copy
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from edgeface.errors import EdgefaceError
from edgeface.optimize.finetune import FINETUNE_IMAGES, FINETUNE_STEPS

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# The face trainer's defaults. Comments here are the reference for every key.
FACE_DEFAULTS: dict[str, dict[str, Any]] = {
    "model": {
        "name": "mobilenetv2_face",   # any registered model; other keys in [model] are its kwargs
    },
    "data": {
        "val_fraction": 0.1,          # held-out IDENTITIES for early stopping (0 = no validation)
        "min_images": 2,              # drop identities with fewer images
        "batch_size": 64,
        "augment": True,              # flip, +-10 deg rotation, scale/shift jitter (edgeface.data.pipeline)
        "rotate_deg": 10.0,           # geometric jitter (0 = off, e.g. for pre-augmented views)
        "scale": 0.1,
        "shift": 0.05,
        "brightness": 0.0,            # extra photometric jitter (0 = off)
        "contrast": 0.0,
        "val_max_same": 3000,         # cap on same-identity validation pairs (as many different pairs)
        "val_batch_size": 128,
        "val_identities": [],         # these identity folders are the validation set (overrides val_fraction),
                                      # e.g. to keep a warm-started model's held-out people held out
        "exclude_identities": [],     # identity folders left out entirely, e.g. the CelebA people who are
                                      # LFW people (edgeface.data.hygiene.LFW_PEOPLE_IN_CELEBA)
        "extra": [],                  # label-free face folders for distillation only (edgeface.data.distill_sets)
        "extra_val_fraction": 0.0,    # hold this share of every extra folder out of training (chosen by a hash
                                      # of each face's folder and file name: the same faces in every run) and
                                      # report val_extra_teacher_cos on them: a label-free validation beyond
                                      # the identity folders' own photography (needs a teacher)
        "use_fallbacks": False,       # also train on align's centre-crop fallbacks (manifest status not ok)
        "select": "pair_acc",         # the validation metric that picks the kept epoch: pair_acc (best-threshold
                                      # pair accuracy) or teacher_cos (mean cosine to the teacher on the
                                      # validation images; label-free, and it does not saturate at the teacher's
                                      # own pair accuracy as pair_acc does for a near-teacher student) or
                                      # teacher_cos_both (its mean with the same cosine on the held-out extra
                                      # faces; needs extra_val_fraction > 0)
    },
    "loss": {
        "name": "arcface",            # softmax | center | arcface | cosface
        "weight": 1.0,                # classification-loss weight (0 = pure distillation)
        "scale": 32.0,                # s of ArcFace / CosFace
        "arcface_margin": 0.5,
        "cosface_margin": 0.35,
        "easy_margin": False,
        "center_lambda": 0.003,       # joint loss: softmax + lambda * center
        "center_alpha": 0.5,          # centre moving-average rate
        "distill_weight": 1.0,        # weight of 1 - cos(student, teacher) when a teacher is given
        "relational_weight": 0.0,     # weight of the pairwise-similarity term (needs a teacher): mean squared
                                      # difference of the student's and teacher's in-batch cosine matrices
    },
    "optim": {
        "name": "sgd",                # sgd (momentum, Nesterov) | adam | adamw
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": True,
        "weight_decay": 5e-4,         # decoupled; BN and bias parameters excluded
        "schedule": "cosine",         # cosine (with linear warm-up) | step (x gamma at each milestone)
        "warmup_epochs": 1.0,
        "min_lr": 0.0,                # cosine floor
        "milestones": [20, 30],       # step schedule: epochs at which lr *= gamma
        "gamma": 0.1,
        "clipnorm": 0.0,              # global gradient-norm clip (0 = off)
    },
    "train": {
        "epochs": 40,
        "max_steps": 0,               # stop after this many optimizer steps in total (0 = no cap)
        "patience": 8,                # early stopping: epochs without val improvement (0 = off)
        "seed": 0,
        "teacher": "",                # distillation teacher spec (edgeface.teachers.load_teacher)
        "init": "",                   # warm start: weights of this model.keras (same architecture)
        "freeze_bn": False,           # BatchNorm in inference mode with its statistics fixed (fine-tuning a
                                      # converged or recovered model on a new mixture)
        "prune": 0.0,                 # after training: magnitude-prune to this sparsity (edgeface.optimize.prune)
        "qat": False,                 # after training (and pruning): quantisation-aware fine-tune
        "finetune_steps": FINETUNE_STEPS,    # steps of each of those fine-tunes
        "finetune_images": FINETUNE_IMAGES,  # training images they use (convert's --finetune-count default too)
        "keep_checkpoints": 3,
        "checkpoint_every": 500,      # also checkpoint every N steps inside an epoch (0 = epoch ends only):
                                      # a run cut mid-epoch resumes there, not at the epoch's start
        "log_every": 10,              # TensorBoard scalars every N steps
        "time_limit_min": 0.0,        # stop training after this many minutes (0 = no limit); the best epoch is kept
        "strategy": "default",        # tf.distribute: default (one device) | mirrored (this machine's GPUs, else
                                      # its CPU devices) | multiworker (several hosts, from TF_CONFIG); the
                                      # batch size is the global batch (docs/distributed.md)
    },
}
OPEN_SECTIONS = {"model"}


@dataclass(frozen=True)
class Schema:
    """What one task's config may hold. A default's type is its key's type; `kinds` gives the type
    where the default does not say (a None default): an example value, or None for a key that takes
    several types (the task's own check tests those)."""
    defaults: Mapping[str, Any]
    open_sections: frozenset = frozenset()
    kinds: Mapping[str, Any] = field(default_factory=dict)

    @property
    def sectioned(self) -> bool:
        return all(isinstance(v, Mapping) for v in self.defaults.values())

    def resolve(self, config_file=None, sets: Iterable[str] = (), flags: Mapping | None = None,
                base: Mapping | None = None) -> dict:
        return resolve(self.defaults, config_file, sets, flags, base, self.open_sections, self.kinds,
                       sectioned=self.sectioned)


FACE = Schema(FACE_DEFAULTS, frozenset(OPEN_SECTIONS))


def saved_config(run_dir: str | os.PathLike) -> dict:
    """--resume: the run folder's config.toml (the base its new flags lay over)."""
    saved = Path(run_dir) / "config.toml"
    if not saved.is_file():
        raise EdgefaceError(f"nothing to resume: {saved} not found")
    return load_toml(saved)


def parse_value(text: str) -> Any:
    """A TOML literal (number, bool, string, array, inline table); else the raw text as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def parse_sets(items: Iterable[str], sectioned: bool = True) -> dict:
    """["a.b=1", "a.c=x"] -> {"a": {"b": 1, "c": "x"}}; a flat schema's ["lr=1"] -> {"lr": 1}."""
    out: dict = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key or (sectioned and "." not in key):
            form = "SECTION.KEY=VALUE (e.g. optim.lr=0.05)" if sectioned else "KEY=VALUE (e.g. lr=0.05)"
            raise EdgefaceError(f"--set expects {form}, got {item!r}")
        try:
            _set_dotted(out, key, parse_value(text.strip()))
        except EdgefaceError:
            raise EdgefaceError(f"--set {item!r} conflicts with another --set") from None
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    """tree["a"]["b"] = value for "a.b" (tables made on the way)."""
    *parents, leaf = dotted.split(".")
    for p in parents:
        tree = tree.setdefault(p, {})
        if not isinstance(tree, dict):
            raise EdgefaceError(f"{dotted!r} runs through a value, not a table")
    tree[leaf] = value


def load_toml(path: str | os.PathLike, _seen: tuple = ()) -> dict:
    """A config file's tables. `extends = "NAME"` at the top starts from another config (found beside
    this one, else as --config finds it) and overrides it table by table, so a follow-up round states
    only what it changes."""
    path = Path(path)
    if not path.is_file():
        # A bare name finds a shipped config: --config face_micro
        shipped = CONFIG_DIR / (path.name if path.suffix == ".toml" else f"{path.name}.toml")
        if path.parent == Path(".") and shipped.is_file():
            path = shipped
        else:
            raise EdgefaceError(f"config file not found: {path}")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise EdgefaceError(f"config {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise EdgefaceError(f"config {path} is not UTF-8 text") from None
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str) or not parent:
        raise EdgefaceError(f"config {path}: extends must be a config name or path, got {parent!r}")
    seen = (*_seen, path.resolve())
    beside = path.parent / (parent if parent.endswith(".toml") else f"{parent}.toml")
    parent_path = beside if beside.is_file() else Path(parent)
    if parent_path.is_file() and parent_path.resolve() in seen:
        raise EdgefaceError(f"config {path}: extends {parent!r} makes a cycle")
    return _overlay(load_toml(parent_path, seen), data)


def _overlay(base: dict, over: Mapping) -> dict:
    """`base` with `over` laid on top: tables merge key by key, any other value replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _coerce(value: Any, default: Any, where: str) -> Any:
    """Check `value` against the default's type (ints are fine where floats are expected)."""
    if default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise EdgefaceError(f"config {where} must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise EdgefaceError(f"config {where} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise EdgefaceError(f"config {where} must be a number, got {value!r}")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise EdgefaceError(f"config {where} must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise EdgefaceError(f"config {where} must be a list, got {value!r}")
        return value
    return value


def merge(base: Mapping, override: Mapping, where: str = "", open_sections=OPEN_SECTIONS,
          kinds: Mapping | None = None) -> dict:
    """A copy of `base` with `override` applied; unknown keys raise (outside open sections)."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        path = f"{where}.{key}" if where else key
        if key not in out:
            if where in open_sections:
                out[key] = copy.deepcopy(value)
                continue
            known = ", ".join(sorted(out))
            raise EdgefaceError(f"unknown config key {path!r} (known here: {known})")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise EdgefaceError(f"config {path} must be a table/section, got {value!r}")
            out[key] = merge(out[key], value, path, open_sections, kinds)
        elif where in open_sections:
            out[key] = copy.deepcopy(value)
        else:
            out[key] = _coerce(value, (kinds or {}).get(path, out[key]), path)
    return out


def resolve(defaults: Mapping, config_file=None, sets: Iterable[str] = (), flags: Mapping | None = None,
            base: Mapping | None = None, open_sections=OPEN_SECTIONS, kinds: Mapping | None = None,
            sectioned: bool = True) -> dict:
    """defaults (or a saved `base`) <- config file <- --set items <- explicit flags {"section.key": value}
    ({"key": value} for a flat schema). Flags whose value is None were not given and change nothing.
    """
    def apply(cfg, over):
        return merge(cfg, over, open_sections=open_sections, kinds=kinds)

    cfg = apply(defaults, base) if base is not None else copy.deepcopy(dict(defaults))
    if config_file:
        cfg = apply(cfg, load_toml(config_file))
    cfg = apply(cfg, parse_sets(sets, sectioned))
    for dotted, value in (flags or {}).items():
        if value is None:
            continue
        over: dict = {}
        _set_dotted(over, dotted, value)
        cfg = apply(cfg, over)
    return cfg


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if v is None:
        raise EdgefaceError("TOML has no null: leave the key out instead")
    raise EdgefaceError(f"cannot write {type(v).__name__} to TOML")


def toml_line(key: str, value: Any) -> str:
    return f"{key} = {_toml_value(value)}"


def to_toml(cfg: Mapping) -> str:
    """Write a flat or two-level config back as TOML (what `--config` reads), so a run can be
    repeated. None means "not set" (TOML has no null): such keys are left out."""
    lines = [toml_line(k, v) for k, v in cfg.items() if not isinstance(v, Mapping) and v is not None]
    if lines:
        lines.append("")
    for section, table in cfg.items():
        if isinstance(table, Mapping):
            lines.append(f"[{section}]")
            lines += [toml_line(k, v) for k, v in table.items() if v is not None]
            lines.append("")
    return "\n".join(lines)
