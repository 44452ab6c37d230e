"""A timm-style registry: every model is built by name with uniform keyword arguments, and carries
what it expects and is (`ArchSpec`, like timm's PretrainedCfg).

    from edgeface.nets import get_model, list_models, model_spec
    model = get_model("mobilenetv2", input_size=112, alpha=0.5, embedding_dim=128)
    list_models("*micro*"), model_spec("mobilenetv2_micro").template
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from fnmatch import fnmatch
from typing import Callable

from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASKS

# Modules that register models; imported on first lookup so `import edgeface.nets` stays cheap.
MODEL_MODULES = ["edgeface.nets.mobilenetv2", "edgeface.nets.expression"]


@dataclass(frozen=True)
class ArchSpec:
    """The defaults of one registered architecture; a converted model's card records the values it used."""
    task: str                   # edgeface.spec TASKS
    input_size: int             # default square input side (the builder's input_size=)
    channels: int               # 3: RGB; 1: gray
    template: str | None        # edgeface.align.transform template of its crops; None: unaligned face boxes
    license: str                # of the weights it can start from (none: it trains from random init)
    description: str
    mean: float = PIXEL_MEAN    # input normalisation: (pixel - mean) / std
    std: float = PIXEL_STD

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")

    @property
    def color(self) -> str:
        return "GRAY" if self.channels == 1 else "RGB"


_REGISTRY: dict[str, tuple[Callable, ArchSpec]] = {}
_loaded = False


def register_model(name: str, **cfg):
    """Decorator: register `fn` as architecture `name`; cfg are the ArchSpec fields."""
    spec = ArchSpec(**cfg)

    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name][0] is not fn:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = (fn, spec)
        return fn
    return deco


def _load_modules() -> None:
    global _loaded
    if not _loaded:
        for m in MODEL_MODULES:
            importlib.import_module(m)
        _loaded = True


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching an fnmatch pattern, sorted (timm.list_models('*micro*'))."""
    _load_modules()
    return sorted(n for n in _REGISTRY if fnmatch(n, pattern))


def _entry(name: str) -> tuple[Callable, ArchSpec]:
    _load_modules()
    if name not in _REGISTRY:
        raise EdgefaceError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def model_spec(name: str) -> ArchSpec:
    """The ArchSpec of a registered model."""
    return _entry(name)[1]


def get_model(name: str, **kwargs):
    """Build a registered model by name (a flat Functional tf-keras model)."""
    return _entry(name)[0](**kwargs)
