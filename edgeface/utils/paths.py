"""Where the shared (read-only) data lives: $EDGEFACE_DATA, else ../shared/data beside the repo."""
from __future__ import annotations

import os
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


def cache_dir() -> Path:
    """Derived data (aligned crops, teacher embeddings): $EDGEFACE_CACHE or ./cache (git-ignored)."""
    return Path(os.environ.get("EDGEFACE_CACHE", REPO_ROOT / "cache"))
