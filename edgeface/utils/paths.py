"""Where the shared (read-only) data lives: $EDGEFACE_DATA, else ../shared/data beside the repo."""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_data() -> Path | None:
    """The shared data root, or None when this machine does not have it."""
    env = os.environ.get("EDGEFACE_DATA")
    candidates = [Path(env)] if env else []
    candidates += [REPO_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def shared_root() -> Path | None:
    """The shared/ folder (data/ and teachers/), or None."""
    d = shared_data()
    return d.parent if d is not None else None


def is_source_checkout() -> bool:
    """True when edgeface runs from its repository (a dev or editable install), not from site-packages."""
    return (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "edgeface").is_dir()


def cache_dir() -> Path:
    """Derived data (aligned crops, teacher embeddings): $EDGEFACE_CACHE, else the checkout's cache/
    (git-ignored) when running from the repository, else the user cache ($XDG_CACHE_HOME/edgeface or
    ~/.cache/edgeface): an installed package never writes into its own install folder."""
    env = os.environ.get("EDGEFACE_CACHE")
    if env:
        return Path(env)
    if is_source_checkout():
        return REPO_ROOT / "cache"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeface"
