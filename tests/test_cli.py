"""The one CLI: every subcommand is listed and answers --help; usage errors exit 2 on one line."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edgeface.cli import COMMANDS, main
from edgeface.train.cli import TASKS


def test_help_lists_every_subcommand(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ["align", "train", "convert", "bench", "verify", "enroll", "identify", "info"]:
        assert f"  {name} " in out, name


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_subcommand_has_help(name, capsys):
    assert main([name, "--help"]) == 0
    assert "Usage: edgeface" in capsys.readouterr().out


@pytest.mark.parametrize("task", list(TASKS))
def test_each_train_task_has_help(task, capsys):
    assert main(["train", task, "--help"]) == 0
    assert f"edgeface train {task}" in capsys.readouterr().out


def test_unknown_command_is_one_line_exit_2(capsys):
    assert main(["no-such-command"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeface: error:") and "\n" not in err


def test_help_and_runtime_commands_do_not_import_tensorflow():
    # --help must be instant, and the on-device commands must work where TF is not installed.
    code = ("import sys; from edgeface.cli import main; main(['--help']); main(['verify', '--help']); "
            "main(['identify', '--help']); sys.exit(1 if 'tensorflow' in sys.modules else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, "tensorflow was imported by --help / runtime commands"
