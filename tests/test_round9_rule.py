"""benchmarks/round9_rule.py: issue 15's round-9 shipping rule, checked at each of its three edges."""
import importlib.util
import json
from pathlib import Path

import pytest

RULE = Path(__file__).parents[1] / "benchmarks" / "round9_rule.py"
spec = importlib.util.spec_from_file_location("round9_rule", RULE)
rule = importlib.util.module_from_spec(spec)
spec.loader.exec_module(rule)

SHIPPED, CANDIDATE = "models/x_int8.tflite", "runs/round9/t/models/x_int8.tflite"


def tables(real_gain: float, celeba_cos_gain: float, acc_change: float):
    """domain_gap.py and select_face_model.py tables: three real-face sets and the CelebA row."""
    rows = [{"source": s, "faces": 100, SHIPPED: base, CANDIDATE: base + real_gain}
            for s, base in (("utkface", 0.55), ("all_age_faces", 0.50), ("scut_fbp5500", 0.60))]
    rows.append({"source": "celeba_13_held_out", "faces": 313, SHIPPED: 0.79, CANDIDATE: 0.79 + celeba_cos_gain})
    rows.append({"source": "mean over sources", "faces": 613,
                 **{k: sum(r[k] for r in rows) / len(rows) for k in (SHIPPED, CANDIDATE)}})
    gap = {"held_out": 0.08, "rows": rows}
    sel = {"rows": [{"model": "teacher", "val_pair_accuracy": 0.98},
                    {"model": SHIPPED, "val_pair_accuracy": 0.9500},
                    {"model": CANDIDATE, "val_pair_accuracy": 0.95 + acc_change}]}
    return gap, sel


@pytest.mark.parametrize("real, celeba_cos, acc, ships", [
    (0.05, -0.02, -0.005, True),     # real faces gain, CelebA pays a little: ships
    (0.019, 0.0, 0.0, False),        # rule 1: real-face gain under 0.02
    (0.03, -0.10, 0.0, False),       # rule 2: the four-source mean falls (3 x 0.03 < 0.10)
    (0.05, 0.0, -0.011, False),      # rule 3: CelebA pairs lose more than a point
    (0.05, 0.0, -0.0099, True),      # rule 3 at its edge
])
def test_verdict(real, celeba_cos, acc, ships):
    out = rule.verdict(*tables(real, celeba_cos, acc), SHIPPED, CANDIDATE)
    assert out["ships"] is ships
    assert out["real_faces_cos_gain"] == pytest.approx(real, abs=1e-9)
    assert out["all_sources_cos_gain"] == pytest.approx((3 * real + celeba_cos) / 4, abs=1e-9)
    assert out["celeba_pair_acc_change"] == pytest.approx(acc, abs=1e-9)


def test_bad_tables(tmp_path, capsys):
    gap, sel = tables(0.05, 0.0, 0.0)
    with pytest.raises(rule.EdgefaceError, match="--held-out"):
        rule.verdict({**gap, "held_out": None}, sel, SHIPPED, CANDIDATE)
    with pytest.raises(rule.EdgefaceError, match="not a column"):
        rule.verdict(gap, sel, SHIPPED, "other.tflite")
    (tmp_path / "gap.json").write_text(json.dumps(gap))
    (tmp_path / "sel.json").write_text("{not json")
    assert rule.run_main(rule.main, [str(tmp_path / "gap.json"), str(tmp_path / "sel.json"), "--shipped", SHIPPED,
                                       "--candidate", CANDIDATE]) == 2
    err = capsys.readouterr().err
    assert "cannot read" in err and "Traceback" not in err
