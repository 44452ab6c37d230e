"""recipes/: every shipped model has a recipe, each parses, and every config it trains resolves."""
import re
import subprocess
from pathlib import Path

import pytest

import edgeface  # noqa: F401
from edgeface.train.face import resolve_config

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
STAMP = ".venv/.edgeface-installed"  # a test never (re)builds the venv
SCRIPTS = sorted(p for p in RECIPES.glob("*.sh") if p.name != "lib.sh")


def shipped_models() -> set[str]:
    """models/NAME_{float32,float16,int8}.tflite -> NAME."""
    return {re.sub(r"_(float32|float16|int8)$", "", p.stem) for p in (ROOT / "models").glob("*.tflite")}


def test_every_shipped_model_has_a_recipe():
    names = {p.stem for p in SCRIPTS}
    assert shipped_models() <= names, shipped_models() - names


@pytest.mark.parametrize("script", SCRIPTS + [RECIPES / "lib.sh"], ids=lambda p: p.name)
def test_recipe_parses(script):
    subprocess.run(["bash", "-n", str(script)], check=True)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_recipe_configs_resolve(script, tmp_path):
    """Each `train_run NAME` trains runs/NAME with recipes/configs/NAME.toml or the package config NAME."""
    for name in re.findall(r"^train_run (\w+)", script.read_text(), flags=re.M):
        file = RECIPES / "configs" / f"{name}.toml"
        cfg = resolve_config(tmp_path, file if file.is_file() else name)
        init = cfg["train"]["init"]
        # a warm start names an earlier run of a recipe, so that run must be trained first somewhere
        assert not init or re.fullmatch(r"runs/\w+/model\.keras", init), (name, init)


def test_make_recipe_lists_and_refuses_unknown():
    out = subprocess.run(["make", "-s", "-o", STAMP, "recipe"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert set(out.split()) == {p.stem for p in SCRIPTS}
    bad = subprocess.run(["make", "-s", "-o", STAMP, "recipe", "NAME=no_such_model"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode != 0 and "no recipe no_such_model" in bad.stderr


IN_PLACE = re.compile(r'"\$EF" data (views|morphs|faces)\b')  # builders that write into DST as they go


@pytest.mark.parametrize("script", SCRIPTS + [RECIPES / "lib.sh", ROOT / "benchmarks" / "train_face_round6.sh"],
                         ids=lambda p: p.name)
def test_in_place_builders_are_skipped_only_when_complete(script):
    """`data views|morphs|faces` fill DST file by file and write manifest.jsonl last: a guard on the
    folder alone would take a stopped run's half-written set as done (found by stopping a recipe)."""
    lines = script.read_text().splitlines()
    for i, line in enumerate(lines):
        if IN_PLACE.search(line):
            guard = line if "||" in line.split('"$EF"')[0] else lines[i - 1]
            assert re.search(r"-f \S*manifest\.jsonl\"? \]", guard), f"{script.name}:{i + 1}: {guard.strip()}"


def _has_checkpoint(run: Path) -> bool:
    cmd = f'source recipes/lib.sh && has_checkpoint "{run}"'
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, capture_output=True).returncode == 0


def test_resume_needs_a_checkpoint_not_a_config(tmp_path):
    """A run cut before its first checkpoint has config.toml and run.json only; `train --resume` refuses it
    ("nothing to resume"), so recipes start it again (found when a session ended minutes into a run)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.toml").write_text("[train]\n")
    assert not _has_checkpoint(run)
    (run / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-500"\n')
    assert _has_checkpoint(run)
    scripts = SCRIPTS + [RECIPES / "lib.sh", *(ROOT / "benchmarks").glob("*.sh")]
    stale = [p.name for p in scripts if re.search(r'config\.toml"? \]\s*(&&|;\s*then)\s*resume', p.read_text())]
    assert not stale, stale
