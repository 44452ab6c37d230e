"""The model contract: every shipped card validates and round-trips exactly through ModelCard, a
bad card is one line naming the field (exit 2 at the CLI), and convert's build_card writes a card
that validates."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from edgeface.spec import (SCHEMA_VERSION, TASK_CLASSIFICATION, TASK_EMBEDDING, CardError, ModelCard, Verification,
                           load_card, load_card_file)

REPO = Path(__file__).resolve().parents[1]
CARDS = sorted((REPO / "models").glob("*.json"))
FACE_CARD = REPO / "models" / "edgeface_face_int8.json"


def shipped(path: Path = FACE_CARD) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CARDS, ids=[c.stem for c in CARDS])
def test_every_shipped_card_validates_and_round_trips_exactly(path):
    text = path.read_text()
    card = ModelCard.from_dict(json.loads(text), path.name)
    assert card.to_dict() == json.loads(text)
    assert json.dumps(card.to_dict(), indent=2) + "\n" == text  # the same file, key order included
    assert card.schema_version == 1 and card.to_dict().get("schema_version", 1) == 1  # missing means 1
    assert card.task in (TASK_EMBEDDING, TASK_CLASSIFICATION)


def test_typed_accessors_of_the_shipped_cards():
    face = load_card(REPO / "models" / "edgeface_face_int8.tflite")
    assert face.task == TASK_EMBEDDING and face.input.size == (112, 112) and face.input.alignment == "arcface112"
    assert (face.input.mean, face.input.std) == (127.5, 127.5) and face.output.embedding_dim == 128
    ver = shipped()["verification"]
    assert face.threshold == ver["threshold"]
    assert face.operating_points["far_1e-3"].threshold == ver["operating_points"]["far_1e-3"]["threshold"]
    assert face.class_names is None and "non-commercial" in face.license
    expr = load_card(REPO / "models" / "edgeface_expr_cnn_int8.tflite")
    assert expr.task == TASK_CLASSIFICATION and expr.input.size == (48, 48) and expr.input.color == "GRAY"
    assert expr.class_names[0] == "anger" and expr.threshold is None and expr.input.alignment is None
    split, pre = expr.split_and_preprocessing()
    assert split["kind"] == "ckplus48" and pre["grayscale"] is True
    assert load_card(REPO / "models" / "no_such_model.tflite") is None


def test_unknown_fields_are_kept_and_changes_land_where_they_belong():
    d = shipped()
    d["something_new"] = {"any": "thing"}
    d["input"]["future"] = [1, 2]
    d["verification"]["operating_points"]["far_1e-3"]["note"] = "x"
    card = ModelCard.from_dict(d, "x.json")
    assert card.to_dict() == d and card.extra["something_new"] == {"any": "thing"}
    out = replace(card, budget_bytes=5).to_dict()
    assert out["budget_bytes"] == 5 and list(out) == list(d)  # same layout, one value changed
    # a minimal foreign card stays minimal; a verification added later is appended
    small = {"task": TASK_EMBEDDING, "dtype": "float32"}
    card = ModelCard.from_dict(small, "s.json")
    assert card.to_dict() == small and card.input.size is None and card.threshold is None
    measured = replace(card, verification=Verification.from_dict({"threshold": 0.3, "pairs": "pairs.txt"}))
    assert measured.to_dict() == {**small, "verification": {"threshold": 0.3, "pairs": "pairs.txt"}}
    assert measured.threshold == 0.3


def card_with(path: str, value) -> dict:
    """The shipped face card with one dotted field set to `value` (or deleted if value is ...)."""
    card = shipped()
    *parents, last = path.split(".")
    node = card
    for p in parents:
        node = node.setdefault(p, {})  # a card not yet benched has no verification section
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return card


BAD = [  # (id, card, text the one-line error must hold)
    ("not_an_object", [1, 2], "must be a JSON object"),
    ("bytes_text", card_with("bytes", "big"), "field 'bytes'"),
    ("shape_type", card_with("input.shape", "112x112"), "field 'input.shape'"),
    ("license_number", card_with("license", 3), "field 'license'"),
    ("task_missing", card_with("task", ...), "field 'task' is missing"),
    ("task_unknown", card_with("task", "cat_detector"), "field 'task'"),
    ("threshold_text", card_with("verification.threshold", "abc"), "field 'verification.threshold'"),
    ("threshold_inf", card_with("verification.threshold", float("inf")), "field 'verification.threshold'"),
    ("point_threshold", card_with("verification.operating_points.far_1e-3.threshold", None),
     "field 'verification.operating_points.far_1e-3.threshold'"),
    ("mean_text", card_with("input.normalization.mean", "x"), "field 'input.normalization.mean'"),
    ("std_zero", card_with("input.normalization.std", [1.0, 0.0, 1.0]), "field 'input.normalization.std'"),
    ("normalization_list", card_with("input.normalization", [127.5]), "field 'input.normalization'"),
    ("class_names_text", card_with("output.class_names", "anger"), "field 'output.class_names'"),
    ("schema_from_the_future", {**shipped(), "schema_version": SCHEMA_VERSION + 1}, "field 'schema_version'"),
]


@pytest.mark.parametrize("case,card,needle", BAD, ids=[b[0] for b in BAD])
def test_bad_card_is_one_line_naming_the_field(case, card, needle):
    with pytest.raises(CardError) as e:
        ModelCard.from_dict(card, "bad.json")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("model card bad.json") and needle in msg, msg


def test_bad_card_exits_2_at_the_cli(tmp_path, capsys):
    from edgeface.cli import main

    shutil.copy(REPO / "models" / "edgeface_face_micro_int8.tflite", tmp_path / "m.tflite")
    (tmp_path / "m.json").write_text(json.dumps(card_with("input.normalization.std", 0)))
    assert main(["models", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "m.json" in err[0] and "input.normalization.std" in err[0], err
    with pytest.raises(CardError, match="m.json"):
        load_card_file(tmp_path / "m.json")


def test_build_card_writes_a_card_that_validates(tmp_path):
    from edgeface.convert.tflite import build_card

    art = tmp_path / "tmp.tflite"
    art.write_bytes(b"1234TFL3" + bytes(64))
    details = {"input": {"shape": [1, 112, 112, 3], "dtype": "float32", "quantization": None},
               "output": {"shape": [1, 128], "dtype": "float32", "quantization": None},
               "ops": ["CONV_2D"], "interpreter": "ai_edge_litert"}
    extra = {"task": TASK_EMBEDDING, "alignment": "arcface112", "normalization": {"mean": 127.5, "std": 127.5},
             "source": {"run_dir": str(tmp_path / "run")}, "license": "test", "notes": {"why": "a test"}}
    card = build_card("face_int8", "face_int8.tflite", "int8", art, details, extra, 1_000_000)
    d = card.to_dict()
    assert ModelCard.from_dict(d, "face_int8.json").to_dict() == d
    assert list(d)[:3] == ["schema_version", "name", "task"] and d["schema_version"] == SCHEMA_VERSION
    assert d["file"] == "face_int8.tflite" and d["bytes"] == 72 and d["budget_bytes"] == 1_000_000
    assert d["input"] == {**details["input"], "color": "RGB", "normalization": {"mean": 127.5, "std": 127.5},
                          "alignment": "arcface112"}
    assert d["output"] == {**details["output"], "embedding_dim": 128, "l2_normalized": False}
    assert d["notes"] == {"why": "a test"} and "verification" not in d and '"/' not in json.dumps(d)
    expr = build_card("e_float32", "e_float32.tflite", "float32", art,
                      {**details, "input": {**details["input"], "shape": [1, 48, 48, 1]},
                       "output": {**details["output"], "shape": [1, 2]}},
                      {"task": TASK_CLASSIFICATION, "class_names": ["a", "b"]}, None)
    assert expr.input.color == "GRAY" and expr.class_names == ["a", "b"] and expr.input.alignment is None
    assert ModelCard.from_dict(expr.to_dict()).to_dict() == expr.to_dict()


def test_no_module_outside_the_contract_writes_task_names_or_the_pixel_normalisation():
    """Task strings and the (x - 127.5) / 127.5 constants live in edgeface/spec.py only; MTCNN's own
    input convention (127.5 / 128, a detector contract, not a model card's) is the one exception."""
    import ast

    from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASKS

    exempt = {"spec.py", "runtime/detector.py", "runtime/build_detector.py"}
    found = []
    for path in sorted((REPO / "edgeface").rglob("*.py")):
        rel = path.relative_to(REPO / "edgeface").as_posix()
        if rel in exempt:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and (node.value in TASKS or (
                    isinstance(node.value, float) and node.value in (PIXEL_MEAN, PIXEL_STD))):
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    assert not found, "write these through edgeface.spec: " + ", ".join(found)
