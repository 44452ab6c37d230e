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


def test_one_loader_resolves_extends_and_set_for_expression_configs(tmp_path):
    """The expression trainer's flat configs go through the face trainer's loader: `extends` (beside,
    or a shipped config by name), `--set KEY=VALUE`, then the CLI flags on top."""
    from edgeface.train import config as cfgmod
    from edgeface.train.expression.config import SCHEMA, load_config

    (tmp_path / "base.toml").write_text('extends = "expression_fer_full"\nepochs = 5\nlr = 0.01\n')
    (tmp_path / "child.toml").write_text('extends = "base"\nhead_units = 64\n')
    cfg = load_config(tmp_path / "child.toml", {"seed": 3}, ["lr=0.002", "filters=[[8], [16]]", "class_weight=0.25"])
    assert (cfg.backbone, cfg.label_smoothing) == ("vgg", 0.1)      # from the shipped config
    assert (cfg.epochs, cfg.head_units, cfg.seed) == (5, 64, 3)      # base, child, flag
    assert (cfg.lr, cfg.filters, cfg.class_weight) == (0.002, [[8], [16]], 0.25)  # --set beats the files
    assert SCHEMA.resolve(tmp_path / "child.toml")["epochs"] == 5
    assert cfgmod.load_toml(tmp_path / "child.toml")["head_units"] == 64  # the one TOML reader of both trainers


def test_expression_print_config_takes_set(capsys):
    assert main(["train", "expression", "--config", "expression_cnn", "--set", "lr=0.02", "--set", "epochs=7",
                 "--print-config"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "lr = 0.02" in lines and "epochs = 7" in lines and 'backbone = "cnn"' in lines


def test_mistyped_expression_keys_fail_in_one_line_before_tensorflow(tmp_path):
    """A misspelt key (in a file that extends another, or in --set) and a value of the wrong type fail
    with one line and exit 2, in training mode too, before TensorFlow is imported."""
    (tmp_path / "typo.toml").write_text('extends = "expression_cnn"\nlearning_rate = 0.1\n')
    cases = [(["--config", str(tmp_path / "typo.toml")], "learning_rate"),
             (["--config", "expression_cnn", "--set", "lrr=0.1"], "lrr"),
             (["--set", "epochs=many"], "epochs must be an integer")]
    for args, needle in cases:
        code = ("import sys; from edgeface.cli import main; "
                f"rc = main(['train', 'expression', '--data', {str(tmp_path)!r}, '--out', {str(tmp_path / 'r')!r}, "
                f"*{args!r}]); "
                "assert rc == 2, rc; assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        err = r.stderr.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("edgeface: error:") and needle in err[0], err
    assert not (tmp_path / "r").exists()
