"""What C libraries (libjpeg, libpng, LiteRT) write straight to file descriptor 2.

Their log lines bypass Python's sys.stderr, so they would break the CLI's one-line-per-outcome
output; and libjpeg reports corrupt data only there (as a warning, while still returning pixels).
Only the descriptor is swapped, so Python-level errors still surface as exceptions.
"""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from typing import Iterator


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Yield a list that holds, after the block, the text written to fd 2 inside it."""
    out: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real fd 2 (embedded interpreters): nothing to capture
        yield out
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Drop whatever C code writes to fd 2 inside the block (e.g. LiteRT's XNNPACK INFO line)."""
    with captured_native_stderr():
        yield
