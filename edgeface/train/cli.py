"""`edgeface train TASK`: each task's command lives in its own module, imported when called."""
from __future__ import annotations

import importlib

import click

TASKS = {
    "face": ("edgeface.train.face_cli", "face", "Train a face embedder (softmax/center/ArcFace/CosFace, distillation)."),
    "expression": ("edgeface.train.expression_cli", "expression", "Train a facial-expression classifier (transfer learning)."),
}


class _TaskGroup(click.Group):
    def list_commands(self, ctx):
        return list(TASKS)

    def get_command(self, ctx, name):
        if name not in TASKS:
            return None
        module, attr, _ = TASKS[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        with formatter.section("Tasks"):
            formatter.write_dl([(k, v[2]) for k, v in TASKS.items()])


@click.group(cls=_TaskGroup)
def train():
    """Train a model for TASK (face or expression)."""
