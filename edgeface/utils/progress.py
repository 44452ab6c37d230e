"""One progress bar for every long loop: counts, rate and ETA on stderr."""
from __future__ import annotations

import os
import sys

from tqdm import tqdm


def progress(iterable=None, total: int | None = None, desc: str = "", unit: str = "img", disable: bool | None = None):
    if disable is None:
        disable = os.environ.get("EDGEFACE_NO_PROGRESS") == "1"
    # In CI logs (no tty) refresh rarely so the log stays readable.
    mininterval = 0.2 if sys.stderr.isatty() else 10.0
    return tqdm(iterable, total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=mininterval, disable=disable, smoothing=0.1)
