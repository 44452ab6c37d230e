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


# An absolute POSIX path inside a string: a "/" that does not follow a word character, ":", "/" or
# "." (so "float32/float16", "https://x" and "./x" stay), then path characters.
_ABS_PATH = re.compile(r"(?<![\w:/.])/(?:[\w.+@-]+/)*[\w.+@-]+")


def _project_root(path: Path) -> Path | None:
    """The nearest ancestor of `path` that is a project checkout (holds .git or pyproject.toml)."""
    for parent in path.parents:
        if (parent / ".git").exists() or (parent / "pyproject.toml").is_file():
            return parent
    return None


def portable_path(path: str | os.PathLike) -> str:
    """A path as a card may record it, with nothing of the machine that wrote it: relative to the
    project checkout holding it (this repo or another clone), `../shared/...` for the shared data
    (where it sits beside a checkout), else relative to the current folder when inside it (a user's
    own working folder), else just the file name. Relative paths stay as they are."""
    p = Path(path)
    if not p.is_absolute():
        return str(path)
    shared = shared_root()
    if shared is not None and p.is_relative_to(shared):
        return str(Path("..", "shared", p.relative_to(shared)))
    for root in (REPO_ROOT, _project_root(p), Path.cwd()):
        if root is not None and p.is_relative_to(root) and p != root:
            return str(p.relative_to(root))
    return p.name


def portable(obj):
    """`obj` (a card, or any JSON-ready value) with every absolute path in its strings made portable."""
    if isinstance(obj, dict):
        return {k: portable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [portable(v) for v in obj]
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)
    if isinstance(obj, str) and "/" in obj:
        return _ABS_PATH.sub(lambda m: portable_path(m.group(0)), obj)
    return obj


def output_path(ctx, param, value):
    """click callback for an option that names a file or folder to write: refuse a value that looks
    like an option (`--json --markdown` would otherwise write a file called "--markdown")."""
    if value is not None and str(value).startswith("--"):
        import click

        raise click.BadParameter(f"{str(value)!r} is an option, not a path: {param.opts[0]} takes a PATH",
                                 ctx=ctx, param=param)
    return value
