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


class _QuietTensorFlowImport:
    """A meta-path finder that imports TensorFlow with fd 2 silenced, then forces its device
    discovery (the CUDA probe logs "failed call to cuInit" on CPU-only machines) while still quiet.
    TensorFlow prints those absl lines before it reads TF_CPP_MIN_LOG_LEVEL."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        import importlib.util

        sys.meta_path.remove(self)  # once: find the real spec without us
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def quiet_exec(module):
            with quiet_native_stderr():
                exec_module(module)
                with contextlib.suppress(Exception):
                    module.config.list_physical_devices()
                with contextlib.suppress(Exception):
                    import absl.logging

                    absl.logging.set_verbosity(absl.logging.ERROR)

        spec.loader.exec_module = quiet_exec
        return spec


def quiet_tensorflow_import() -> None:
    """Make the first `import tensorflow` of this process print nothing on stderr (the CLI's rule:
    one line per outcome). No-op when TensorFlow is already imported."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowImport())
