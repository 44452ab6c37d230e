"""LazyGroup for the `edgeface` CLI and its groups: `--help` stays instant, and a command's stage
(TensorFlow, for training) loads only when that command runs."""
from __future__ import annotations

import importlib

import click


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when called.

    `commands` maps name -> (module, attribute, one-line help for the listing).
    """

    def __init__(self, *args, commands: dict | None = None, section: str = "Commands", **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = commands or {}
        self.section = section

    def list_commands(self, ctx):
        return list(self.lazy_commands)

    def get_command(self, ctx, name):
        if name not in self.lazy_commands:
            return None
        module, attr, _ = self.lazy_commands[name]
        return getattr(importlib.import_module(module), attr)

    def format_commands(self, ctx, formatter):
        with formatter.section(self.section):
            formatter.write_dl([(name, help_) for name, (_, _, help_) in self.lazy_commands.items()])
