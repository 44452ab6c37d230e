"""`edgeface train ... --print-config`: the resolved config as TOML, read back to the same config, TF-free."""
import subprocess
import sys
from pathlib import Path

import edgeface  # noqa: F401
from edgeface.cli import main

CONFIGS = Path(edgeface.__file__).parent / "train" / "configs"


def test_expression_print_config_round_trips(tmp_path, capsys):
    from edgeface.train.expression import load_config

    assert main(["train", "expression", "--config", str(CONFIGS / "expression_fer_full.toml"), "--epochs", "3",
                 "--lr", "0.01", "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "epochs = 3" in text.splitlines() and "backbone = \"vgg\"" in text
    (tmp_path / "printed.toml").write_text(text)
    again = load_config(tmp_path / "printed.toml", {})
    want = load_config(CONFIGS / "expression_fer_full.toml", {"epochs": 3, "lr": 0.01})
    assert again == want


def test_print_config_loads_no_tensorflow():
    code = ("import sys; from edgeface.cli import main; "
            f"rc = main(['train', 'expression', '--config', {str(CONFIGS / 'expression_cnn.toml')!r}, '--print-config']); "
            "assert rc == 0, rc; assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]


def test_training_still_needs_data_and_out(capsys):
    assert main(["train", "expression", "--config", str(CONFIGS / "expression_cnn.toml")]) == 2
    assert "Missing option '--data'" in capsys.readouterr().err


def test_face_print_config_round_trips(tmp_path, capsys):
    from edgeface.train.face import resolve_config

    recipe = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "face_edge_morphs3.toml"
    args = ["--config", str(recipe), "--set", "optim.lr=0.001", "--epochs", "2"]
    assert main(["train", "face", *args, "--print-config"]) == 0
    text = capsys.readouterr().out
    assert "[optim]" in text and "lr = 0.001" in text.splitlines() and "epochs = 2" in text.splitlines()
    (tmp_path / "printed.toml").write_text(text)
    want = resolve_config(tmp_path, recipe, ["optim.lr=0.001"], {"train.epochs": 2})
    assert resolve_config(tmp_path, tmp_path / "printed.toml") == want


def test_face_print_config_still_rejects_a_mistyped_key(capsys):
    assert main(["train", "face", "--config", "face_edge", "--set", "optim.lrr=0.1", "--print-config"]) == 2
    assert "lrr" in capsys.readouterr().err
