"""The README's "Train on your own faces" commands and every command of the docs/ pages, run as
written (in order, in a fresh folder) on a few CelebA people laid out as the README says. Only the
training gets a tiny model and a few steps (`--set`), so the whole path takes minutes."""
from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.utils.paths import shared_root

REPO = Path(__file__).resolve().parents[1]
DOC_PAGES = ["align", "train", "convert", "bench", "runtime", "micro"]  # the order of docs/README.md
TRAIN_PEOPLE = 10
TEST_PEOPLE = ["carol", "dave", "erin", "frank"]  # the names the README's examples use
TINY = ["--set", "model.alpha=0.35", "--set", "model.last_channels=128",
        "--set", "model.embedding_dim=64", "--set", "data.val_fraction=0.25", "--set", "data.batch_size=8",
        "--set", "data.val_batch_size=16", "--set", "optim.warmup_epochs=0", "--max-steps", "4"]


def commands(text: str) -> list[str]:
    """The `edgeface ...` lines of a text's bash blocks (continuation lines joined)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.strip().startswith("edgeface "):
                out.append(" ".join(line.split()))
    return out


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("<!-- own-faces:start -->")[1].split("<!-- own-faces:end -->")[0]
    return commands(section)


def all_commands() -> list[str]:
    """README first, then each docs page's commands not already among them."""
    cmds = readme_commands()
    for page in DOC_PAGES:
        cmds += [c for c in commands((REPO / "docs" / f"{page}.md").read_text()) if c not in cmds]
    return cmds


def test_docs_have_a_worked_example_per_stage_and_the_readme_lists_them():
    index = (REPO / "docs" / "README.md").read_text()
    for page in DOC_PAGES:
        assert f"({page}.md)" in index and commands((REPO / "docs" / f"{page}.md").read_text()), page
    cmds = readme_commands()
    assert [c.split()[1] for c in cmds] == ["align", "train", "train", "convert", "data", "bench", "verify"]
    assert any("--teacher" in c for c in cmds) and any("--teacher" not in c for c in cmds if " train " in c)


def lay_out_people(celeba_root: Path, root: Path) -> None:
    """my_faces/{train,test}/<person>/<person>_NNNN.jpg from CelebA identities with >= 8 photos,
    the test people disjoint from the training people."""
    ids = sorted(d for d in celeba_root.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 8)
    names = [f"person{i:02d}" for i in range(TRAIN_PEOPLE)] + TEST_PEOPLE
    for k, (ident, name) in enumerate(zip(ids, names)):
        split = "train" if k < TRAIN_PEOPLE else "test"
        folder = root / "my_faces" / split / name
        folder.mkdir(parents=True)
        for i, src in enumerate(sorted(ident.glob("*.jpg"))[:8], 1):
            (folder / f"{name}_{i:04d}.jpg").symlink_to(src)


@pytest.mark.slow
def test_own_faces_commands_run_as_written(tmp_path, celeba_root):
    shared = shared_root()
    work = tmp_path / "work"
    work.mkdir()
    if shared is not None:
        (tmp_path / "shared").symlink_to(shared)  # the README's ../shared, seen from the working folder
    lay_out_people(celeba_root, work)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EDGEFACE_CACHE": str(tmp_path / "cache"),
           "EDGEFACE_NO_PROGRESS": "1"}
    env.pop("EDGEFACE_MODEL", None)

    def edgeface(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "edgeface", *args], cwd=work, env=env,
                              capture_output=True, text=True, timeout=1800)

    outputs = {}
    for cmd in all_commands():
        args = shlex.split(cmd)[1:]
        if args[:2] == ["train", "face"]:
            if "--teacher" in args and shared is None:
                continue  # no teacher on this machine; the labels-only command still runs
            args += TINY
        r = edgeface(args)
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
        outputs[cmd] = r.stdout

    card = json.loads((work / "my_models" / "mine_int8.json").read_text())
    points = card["verification"]["operating_points"]
    assert "best_accuracy" in points and points["best_accuracy"]["threshold"] == card["verification"]["threshold"]
    assert '"/' not in json.dumps(card)  # portable paths only
    assert card["source"]["run_dir"] == "runs/mine"  # relative to the working folder the user ran it in
    verify = next(out for cmd, out in outputs.items() if cmd.startswith("edgeface verify"))
    assert verify.startswith(("same person: cosine", "different people: cosine")) and "mine_int8.json" in verify
    info = next(out for cmd, out in outputs.items() if cmd.startswith("edgeface info"))
    assert len(info.splitlines()) <= 15 and "best_accuracy" in info
    assert (work / "my_models" / "mine_micro_int8_micro" / "model_data.cc").is_file()
    assert (work / "runs" / "mine" / "model.keras").is_file()
    as_json = next(out for cmd, out in outputs.items() if cmd.startswith("edgeface expression") and "--json" in cmd)
    objects = [json.loads(line) for line in as_json.splitlines()]
    assert len(objects) == 2 and all(o["faces"] for o in objects)  # one object per image, a face in each
    assert (work / "drawn.png").is_file()
