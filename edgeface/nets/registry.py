"""A timm-style registry: every model is built by name with uniform keyword arguments.

    from edgeface.nets import get_model, list_models
    model = get_model("mobilenetv2", input_size=112, alpha=0.5, embedding_dim=128)
"""
from __future__ import annotations

import importlib
from typing import Callable

from edgeface.errors import EdgefaceError

# Modules that register models; imported on first lookup so `import edgeface.nets` stays cheap.
MODEL_MODULES = ["edgeface.nets.mobilenetv2", "edgeface.nets.expression"]

_REGISTRY: dict[str, Callable] = {}
_loaded = False


def register_model(name: str):
    def deco(fn: Callable) -> Callable:
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = fn
        return fn
    return deco


def _load_modules() -> None:
    global _loaded
    if not _loaded:
        for m in MODEL_MODULES:
            importlib.import_module(m)
        _loaded = True


def list_models() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs):
    """Build a registered model by name (a flat Functional tf-keras model)."""
    _load_modules()
    if name not in _REGISTRY:
        raise EdgefaceError(f"unknown model {name!r}; available: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)
