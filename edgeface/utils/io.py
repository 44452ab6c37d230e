"""Atomic file writes: an interrupted run never leaves a half-written artifact in place."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    A symlink is resolved first: the file it points to is replaced, the link stays a link.
    keep_suffix: the temporary name ends in path's suffix too (writers that pick the format from it)."""
    path = Path(os.path.realpath(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".tmp" + (path.suffix if keep_suffix else "")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600 files; give the artifact the permissions a plain open() would.
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    return write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o):
    # numpy scalars and arrays, Paths: the common things results contain.
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, os.PathLike):
        return os.fspath(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def read_input_file(path: str | os.PathLike, what: str = "file", error=None) -> bytes:
    """Read a file the user named, or raise `error` (EdgefaceError) with one clear line."""
    from edgeface.errors import EdgefaceError

    error = error or EdgefaceError
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise error(f"{what} not found: {path}") from None
    except IsADirectoryError:
        article = "an" if what[:1].lower() in "aeiou" else "a"
        raise error(f"expected {article} {what}, got a directory: {path}") from None
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror}") from None


def read_json(path: str | os.PathLike, what: str = "JSON file") -> dict:
    """Read a JSON file or raise a one-line EdgefaceError naming the file."""
    from edgeface.errors import EdgefaceError

    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise EdgefaceError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EdgefaceError(f"{what} {path} is not valid JSON: {e}") from None


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_path(path: str | os.PathLike, what: str = "output", folder: bool = False) -> Path:
    """Refuse an output path that cannot be written, before any work starts (one line, exit 2).

    folder: the path is a folder to create or reuse (else a file to create or replace).
    """
    from edgeface.errors import EdgefaceError

    path = Path(path)
    if path.exists():
        if folder and not path.is_dir():
            raise EdgefaceError(f"{what} {path} is a file, not a folder")
        if not folder and path.is_dir():
            raise EdgefaceError(f"{what} {path} is a folder, not a file")
    base = _nearest_existing(path.parent if not path.exists() or not folder else path)
    if base.exists() and not base.is_dir():
        raise EdgefaceError(f"cannot write {what} {path}: {base} is a file, not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise EdgefaceError(f"cannot write {what} {path}: {base} is not writable")
    return path
