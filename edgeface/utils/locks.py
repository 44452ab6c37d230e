"""Exclusive advisory file locks that never hang silently and leave no lock file behind."""
from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from edgeface.errors import EdgefaceError

DEFAULT_LOCK_TIMEOUT = 30.0


@contextlib.contextmanager
def locked(path: str | os.PathLike, timeout: float = DEFAULT_LOCK_TIMEOUT, on_wait=None, busy: str | None = None,
           lock_path: str | os.PathLike | None = None):
    """Exclusive advisory lock on PATH.lock, or `lock_path` (released by the kernel if the holder dies).

    Waits up to `timeout` seconds (on_wait(message) is called once when it has to wait), then
    raises EdgefaceError. The lock file is removed on release; a waiter that then holds the lock
    of a removed file retries on the new one.
    """
    lock = Path(lock_path) if lock_path is not None else Path(f"{path}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout
    waited = False
    while True:
        f = open(lock, "a+")
        try:
            while True:
                try:
                    fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EdgefaceError(busy or f"{path} is locked by another process ({lock}); gave up "
                                                    f"after {timeout:g} s (--lock-timeout)") from None
                    if not waited and on_wait:
                        on_wait(f"waiting up to {timeout:g} s for the lock on {path} (held by another process)")
                    waited = True
                    time.sleep(0.05)
            try:
                same = os.fstat(f.fileno()).st_ino == os.stat(lock).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the holder removed that lock file while we waited: lock the new one
                f.close()
                continue
            try:
                yield
            finally:
                with contextlib.suppress(FileNotFoundError):
                    lock.unlink()
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            return
        finally:
            f.close()
