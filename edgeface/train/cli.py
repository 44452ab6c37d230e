"""`edgeface train TASK`: each task's command lives in its own module, imported when called."""
from __future__ import annotations

import click

from edgeface.utils.lazy_group import LazyGroup

TASKS = {
    "face": ("edgeface.train.face_cli", "face", "Train a face embedder (softmax/center/ArcFace/CosFace, distillation)."),
    "expression": ("edgeface.train.expression_cli", "expression", "Train a facial-expression classifier (transfer learning)."),
}


@click.group(cls=LazyGroup, commands=TASKS, section="Tasks")
def train():
    """Train a model for TASK (face or expression)."""


def require_options(data_dir, run_dir) -> None:
    """--data and --out, optional only for --print-config: a one-line usage error when missing."""
    for value, flag in ((data_dir, "--data"), (run_dir, "--out")):
        if value is None:
            raise click.UsageError(f"Missing option '{flag}'.")
