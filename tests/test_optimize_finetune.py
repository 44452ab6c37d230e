"""Pruning / QAT after training run in one place (edgeface.optimize.finetune.prune_and_qat), with
one default image and step count, whether started by `train face --prune/--qat` or by `convert`."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401
from edgeface.optimize.finetune import FINETUNE_IMAGES, FINETUNE_STEPS

PACKAGE = Path(edgeface.__file__).resolve().parent
CALLERS = ("train/face.py", "convert/cli.py")


def test_train_and_convert_default_to_the_same_counts():
    from edgeface.convert.cli import convert
    from edgeface.train.config import FACE_DEFAULTS

    options = {p.name: p.default for p in convert.params}
    assert options["finetune_count"] == FACE_DEFAULTS["train"]["finetune_images"] == FINETUNE_IMAGES
    assert options["prune_steps"] == FACE_DEFAULTS["train"]["finetune_steps"] == FINETUNE_STEPS


def test_both_callers_use_the_one_entry_point():
    for rel in CALLERS:
        tree = ast.parse((PACKAGE / rel).read_text(encoding="utf-8"))
        imported = {(n.module, a.name) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
        assert ("edgeface.optimize.finetune", "prune_and_qat") in imported, rel
        direct = {name for module, name in imported if module in ("edgeface.optimize.prune", "edgeface.optimize.qat")}
        assert not direct, f"{rel} runs {direct} itself"


def test_convert_prunes_through_it(tmp_path, monkeypatch, capsys):
    """convert --prune hands its training images to prune_and_qat and records what it returns."""
    import tf_keras as keras

    from edgeface.cli import main
    from edgeface.optimize import finetune
    from edgeface.utils.images import write_image

    inp = keras.Input((32, 32, 3))
    out = keras.layers.Dense(8)(keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inp)))
    keras.Model(inp, out).save(tmp_path / "m.keras")
    rng = np.random.default_rng(0)
    for i in range(12):
        write_image(tmp_path / "train" / f"id{i % 3}" / f"{i}.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    calls = []

    def spy(model, images, **kwargs):
        calls.append((len(images), kwargs))
        return finetune.Finetuned(model, None, {"prune": {"target_sparsity": kwargs["sparsity"], "spy": True}})

    monkeypatch.setattr(finetune, "prune_and_qat", spy)
    rc = main(["convert", str(tmp_path / "m.keras"), "--out", str(tmp_path / "o"), "--dtypes", "float32",
               "--calib", str(tmp_path / "train"), "--prune", "0.5"])
    assert rc == 0, capsys.readouterr().err
    assert calls == [(12, {"sparsity": 0.5, "prune_steps": FINETUNE_STEPS, "qat_steps": None,
                           "task": "face_embedding"})]
    card = json.loads((tmp_path / "o" / "m_float32.json").read_text())
    assert card["optimization"] == {"prune": {"target_sparsity": 0.5, "spy": True}}
