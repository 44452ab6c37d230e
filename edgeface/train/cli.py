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
