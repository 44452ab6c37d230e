"""Cross-dataset expression accuracy: the shipped FER2013 and CK+ classifiers on JAFFE photos through
the runtime path, checked against per-image runs of the same pipeline."""
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.bench.classification import canonical_expression, cross_dataset
from edgeface.errors import EdgefaceError

ROOT = Path(__file__).resolve().parents[1]
JAFFE = ROOT.parent / "shared" / "data" / "expressions" / "jaffe"
FER = ROOT / "models" / "edgeface_expr_fer_int8.tflite"
CK = ROOT / "models" / "edgeface_expr_cnn_int8.tflite"

pytestmark = pytest.mark.skipif(not JAFFE.is_dir(), reason="needs ../shared/data/expressions/jaffe")


def test_names_match_across_data_sets():
    assert canonical_expression("angry") == canonical_expression("anger") == "anger"
    assert canonical_expression("Sadness") == canonical_expression("sad")
    assert canonical_expression("happy") == "happy"


def test_fer_model_on_jaffe_matches_per_image_runs(tmp_path):
    from edgeface.align.faces import pick_main_face
    from edgeface.runtime.expression import ExpressionPipeline

    r = cross_dataset(FER, JAFFE, limit=2, out_dir=tmp_path)
    cm = np.array(r["confusion"])
    assert r["n"] == 14 == cm.sum() and cm.shape == (7, 8)  # 7 JAFFE classes x 7 FER classes + "no face"
    assert set(r["shared_classes"]) == set(r["true_names"]) and not r["unscored_classes"]
    assert Path(r["confusion_png"]).stat().st_size > 10_000
    # independent count: the same pipeline image by image
    pipe = ExpressionPipeline(FER)
    correct = 0
    for d in sorted(p for p in JAFFE.iterdir() if p.is_dir()):
        for f in sorted(d.iterdir())[:2]:
            rgb = pipe.read(f)
            found = pipe.analyse(rgb)
            main = pick_main_face([fx.face for fx in found], rgb.shape)
            if main is not None:
                label = [fx.label for fx in found if fx.face is main][0]
                correct += canonical_expression(label) == canonical_expression(d.name)
    assert r["accuracy"] == pytest.approx(correct / 14)


def test_ck_model_scores_only_the_classes_it_knows(tmp_path):
    r = cross_dataset(CK, JAFFE, limit=1)
    assert r["unscored_classes"] == ["neutral"] and r["n"] == 6  # CK+ has no neutral
    assert "contempt" in r["model_classes_absent"]


def test_no_class_folders_is_a_clear_error(tmp_path):
    with pytest.raises(EdgefaceError, match="no class folders"):
        cross_dataset(FER, tmp_path)
