"""Train a tiny expression model on real CK+ images, convert it to float32/float16/int8 and check the
TFLite interpreter agrees with Keras; evaluate() on a tiny set; a frozen base stays frozen."""
from __future__ import annotations

import json

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.bench.classification import evaluate
from edgeface.cli import main as cli_main
from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLiteModel
from edgeface.train import expression as tr
from edgeface.train.expression.prune_head import split_images
from edgeface.train.expression.task import class_weights


@pytest.fixture(scope="module")
def cnn_run(expressions_root, tmp_path_factory):
    run = tmp_path_factory.mktemp("expr") / "cnn"
    cfg = tr.load_config(None, {"backbone": "cnn", "epochs": 4, "max_steps": 80, "seed": 0})
    info = tr.train_expression(expressions_root / "ckplus48", run, cfg)
    return run, info


def test_run_dir_holds_the_agreed_files(cnn_run):
    run, info = cnn_run
    for name in ("run.json", "model.keras", "log.csv", "curves.png"):
        assert (run / name).is_file()
    assert (run / "checkpoints" / "checkpoint").is_file() and (run / "config.toml").is_file()
    saved = json.loads((run / "run.json").read_text())
    assert saved["task"] == "expression_classification"
    assert saved["class_names"] == ["anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise"]
    assert saved["model"]["name"] == "expr_cnn" and saved["model"]["kwargs"]["num_classes"] == 7
    assert saved["data"]["counts"] == {"train": 783, "val": 99, "test": 99}
    assert saved["wall_time_s"] > 0 and saved["stages"][0]["steps"] <= 80
    # 80 steps of a LeNet on CK+ already beats the majority class (surprise: 25% of val)
    assert saved["best_val_accuracy"] > 0.35
    rows = (run / "log.csv").read_text().splitlines()
    assert rows[0].startswith("stage,epoch,step") and len(rows) >= 2


def test_tflite_float32_float16_int8_agree_with_keras(cnn_run, expressions_root):
    run, info = cnn_run
    _, model = tr.load_run(run)
    cards = tr.convert_run(run, ["float32", "float16", "int8"])
    assert [c["dtype"] for c in cards] == ["float32", "float16", "int8"]
    data = xdata.load_dataset(expressions_root / "ckplus48")
    x, y = xdata.load_images(data.splits["test"], 48, 1)
    keras_probs = tr.predict_images(model, x)
    sizes = {}
    for card in cards:
        assert card["task"] == "expression_classification"
        assert card["output"]["class_names"] == info["class_names"]
        assert card["notes"]["data_split"]["kind"] == "ckplus48"
        m = TFLiteModel(run / "tflite" / card["file"])
        probs = m.run(xdata.normalize(x))
        agree = (probs.argmax(1) == keras_probs.argmax(1)).mean()
        sizes[card["dtype"]] = card["bytes"]
        if card["dtype"] == "float32":
            np.testing.assert_allclose(probs, keras_probs, atol=1e-4)
        assert agree >= (0.97 if card["dtype"] != "int8" else 0.85), (card["dtype"], agree)
    assert cards[2]["calibration"]["split"] == "train"
    assert sizes["int8"] < sizes["float16"] < sizes["float32"]


def test_evaluate_on_a_tiny_set(cnn_run, expressions_root, tmp_path):
    run, _ = cnn_run
    path = run / "tflite" / "edgeface_expr_cnn_int8.tflite"
    if not path.exists():
        tr.convert_run(run, ["int8"])
    r = evaluate(path, expressions_root / "ckplus48", split="test", limit=3, out_dir=tmp_path, latency_runs=5)
    assert r["n"] == 21 and len(r["confusion"]) == 7
    cm = np.array(r["confusion"])
    assert cm.sum() == 21 and (cm.sum(1) == 3).all()
    assert r["accuracy"] == pytest.approx(np.trace(cm) / 21)
    # the same numbers by hand through the interpreter
    data = xdata.load_dataset(expressions_root / "ckplus48")
    picked = [s for c in range(7) for s in [t for t in data.splits["test"] if t.label == c][:3]]
    x, y = xdata.load_images(picked, 48, 1)
    pred = TFLiteModel(path).run(xdata.normalize(x)).argmax(1)
    assert r["accuracy"] == pytest.approx((pred == y).mean())
    assert r["latency_ms_median"] > 0
    assert (tmp_path / "edgeface_expr_cnn_int8_test_confusion.png").stat().st_size > 1000


def test_evaluate_refuses_a_dataset_with_other_classes(cnn_run, expressions_root):
    from edgeface.errors import EdgefaceError
    run, _ = cnn_run
    with pytest.raises(EdgefaceError, match="classes"):
        evaluate(run / "tflite" / "edgeface_expr_cnn_float32.tflite", expressions_root / "jaffe", latency_runs=0)


def test_frozen_face_base_stays_frozen_while_the_head_learns(expressions_root, tmp_path):
    from edgeface.nets import get_model
    face = get_model("mobilenetv2", input_size=48, alpha=0.35, embedding_dim=32, last_channels=64)
    face.save(tmp_path / "face.keras")
    cfg = tr.load_config(None, {"backbone": "mobilenetv2", "weights": str(tmp_path / "face.keras"), "epochs": 2,
                                "max_steps": 30, "augment_copies": 1})
    info = tr.train_expression(expressions_root / "ckplus48", tmp_path / "run", cfg)
    _, model = tr.load_run(tmp_path / "run")
    for name in ("stem_conv", "block8_expand", "last_conv"):
        np.testing.assert_array_equal(model.get_layer(name).get_weights()[0], face.get_layer(name).get_weights()[0])
    assert info["stages"][0]["stage"] == "head" and str(tmp_path / "face.keras") in info["transfer"]


def test_time_limit_ends_each_stage(expressions_root, tmp_path):
    """A 6 ms budget: the head stage and then the fine-tuning stage each stop after their first step
    (an epoch cut short, validated and logged), and the kept model is the full classifier."""
    from edgeface.nets import get_model, load_model
    face = get_model("mobilenetv2", input_size=48, alpha=0.35, embedding_dim=32, last_channels=64)
    face.save(tmp_path / "face.keras")
    cfg = tr.load_config(None, {"backbone": "mobilenetv2", "weights": str(tmp_path / "face.keras"), "epochs": 2,
                                "augment_copies": 0, "fine_tune_blocks": 1, "fine_tune_epochs": 2,
                                "time_limit_min": 1e-4, "evaluate_test": False})
    info = tr.train_expression(expressions_root / "ckplus48", tmp_path / "run", cfg)
    assert [(s["stage"], s["steps"], s["stop_reason"]) for s in info["stages"]] == [
        ("head", 1, "time_limit"), ("finetune", 1, "time_limit")]
    rows = (tmp_path / "run" / "log.csv").read_text().splitlines()[1:]
    assert [r.split(",")[:3] for r in rows] == [["head", f"{1 / 24:.6g}", "1"], ["finetune", f"{1 / 24:.6g}", "2"]]
    kept = load_model(tmp_path / "run" / "model.keras")
    assert info["best"]["stage"] in ("head", "finetune") and kept.count_params() == info["model"]["params"]


def test_cli_bad_input_is_one_line(tmp_path, capsys, expressions_root):
    rc = cli_main(["train", "expression", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("edgeface: error:") and "not found" in err[0]
    rc = cli_main(["train", "expression", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--convert", "int4"])
    assert rc == 2
    capsys.readouterr()
    for backbone in ("cnn", "mobilenetv2"):
        rc = cli_main(["train", "expression", "--data", str(expressions_root / "ckplus48"), "--out", str(tmp_path / "r"),
                       "--backbone", backbone, "--weights", str(tmp_path / "missing.keras")])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "not found" in err[0], err
        assert not (tmp_path / "r").exists()  # nothing half-made on bad input


def test_prune_head_by_distinctiveness_keeps_accuracy(cnn_run):
    run, _ = cnn_run
    r = tr.prune_run_head(run)
    d = r["distinctiveness"]
    assert r["units_before"] == 100
    assert r["units_after"] == 100 - len(d["merged"]) - 2 * len(d["removed_pairs"]) - len(d["dead"])
    assert r["params_after"] <= r["params_before"]
    assert abs(r["val_accuracy_after"] - r["val_accuracy_before"]) <= 0.05
    info, pruned = tr.load_run(run / "pruned")
    assert pruned.get_layer("head_dense").units == r["units_after"] == info["model"]["kwargs"]["head_units"]
    _, model = tr.load_run(run)
    x, _ = split_images(info, "val", 48, 1)
    same = (tr.predict_images(pruned, x).argmax(1) == tr.predict_images(model, x).argmax(1)).mean()
    assert same >= 0.9


def test_convert_cli_calibrates_expression_runs_on_their_train_split(cnn_run, tmp_path, capsys):
    # The data folder holds val/test images too: int8 ranges must come from the train split only.
    from edgeface.cli import main

    run, _ = cnn_run
    rc = main(["convert", str(run), "--out", str(tmp_path), "--name", "x", "--dtypes", "int8",
               "--calib-count", "16", "--tta", "ten"])
    assert rc == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "x_int8.json").read_text())
    assert card["calibration"]["split"] == "train" and card["calibration"]["count"] == 16
    # --tta: the card's recommendation, which the runtime classifier takes as its default
    assert card["notes"]["preprocessing"]["tta"] == "ten" and card["notes"]["preprocessing"]["clahe"]
    from edgeface.runtime.expression import ExpressionClassifier
    assert ExpressionClassifier(tmp_path / "x_int8.tflite").tta == "ten"


def test_vgg_with_cosine_label_smoothing_and_class_weights_resumed(expressions_root, tmp_path):
    """The FER recipes' options on a few CK+ steps: sqrt class weights, smoothing, cosine, random erasing,
    mixup, no test eval; stopped after 14 steps and resumed through the CLI to 30."""
    options = {"backbone": "vgg", "filters": [[8], [16], [32]], "head_units": 16, "epochs": 2, "max_steps": 14,
               "lr_schedule": "cosine", "warmup_epochs": 0.5, "label_smoothing": 0.1, "class_weight": 0.5,
               "evaluate_test": False, "seed": 0, "erase": 0.5, "mixup": 0.2}
    run = tmp_path / "vgg"
    first = tr.train_expression(expressions_root / "ckplus48", run, tr.load_config(None, options))
    assert first["steps"] == 14 and first["stop_reason"] == "max_steps"
    assert cli_main(["train", "expression", "--data", str(expressions_root / "ckplus48"), "--out", str(run),
                     "--resume", "--max-steps", "30"]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["name"] == "expr_vgg" and info["model"]["kwargs"]["filters"] == [[8], [16], [32]]
    assert info["test_accuracy_float_keras"] is None  # the test split was not touched
    assert info["stages"][0]["lr_schedule"] == "cosine" and info["stages"][0]["steps"] == info["steps"] == 30
    rows = (run / "log.csv").read_text().splitlines()
    assert [r.split(",")[2] for r in rows[1:]] == ["14", "24", "30"]  # (24 steps an epoch) continued
    lrs = [float(r.split(",")[7]) for r in rows[1:]]
    assert lrs and lrs[-1] < 1e-3  # decayed from lr 1e-3
    w = class_weights(np.array([0] * 90 + [1] * 10), 2, 0.5)
    assert w[1] / w[0] == pytest.approx(3.0) and 90 * w[0] + 10 * w[1] == pytest.approx(100)
    with pytest.raises(Exception):
        tr.load_config(None, {"lr_schedule": "step"})
    for bad, msg in (({"erase": 1.5}, "probability"), ({"mixup": -1.0}, "Beta alpha"),
                     ({"mixup": 0.2, "backbone": "mobilenetv2", "weights": "imagenet"}, "from-scratch")):
        with pytest.raises(EdgefaceError, match=msg):
            tr.load_config(None, bad)
    with pytest.raises(Exception):
        tr.load_config(None, {"backbone": "cnn", "filters": [[8]]})


def test_teacher_targets_enter_the_loss_as_written(expressions_root, cnn_run, tmp_path):
    """Self-distillation: (1 - w) x the class-weighted smoothed cross-entropy to the label + w x the
    class-weighted cross-entropy to the teacher's probabilities, checked against numpy; the run
    records its teacher and the targets are the mean of each image's and its mirror's probabilities."""
    import tensorflow as tf

    from edgeface.nets.io import load_model
    from edgeface.train.expression.task import ExpressionTask

    teacher_run, _ = cnn_run
    options = {"backbone": "vgg", "filters": [[8], [16], [32]], "head_units": 16, "epochs": 1, "max_steps": 6,
               "label_smoothing": 0.1, "class_weight": 0.5, "evaluate_test": False, "seed": 0, "mixup": 0.2,
               "teacher": str(teacher_run), "teacher_weight": 0.3}
    run = tmp_path / "kd"
    info = tr.train_expression(expressions_root / "ckplus48", run, tr.load_config(None, options))
    assert info["teacher"]["name"] == teacher_run.name and info["teacher"]["weight"] == 0.3
    assert 0.0 < info["teacher"]["train_label_agreement"] <= 1.0

    task = ExpressionTask(expressions_root / "ckplus48", tr.load_config(None, options))
    task.load_data()
    task.build(False, tmp_path / "kd2")
    teacher = load_model(teacher_run / "model.keras")
    x = task.x_tr[:5]
    expect_t = (np.asarray(teacher(xdata.normalize(x))) + np.asarray(teacher(xdata.normalize(x[:, :, ::-1])))) / 2
    assert np.allclose(task.t_tr[:5], expect_t, atol=1e-5)

    n, k, w = 5, task.num_classes, 0.3
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(k), n).astype(np.float32)
    labels = np.array([0, 1, 2, 3, 0])
    batch = {"label": tf.constant(labels), "target": tf.constant(task.t_tr[:5])}
    got = task._image_loss(batch, "", tf.constant(probs)).numpy()
    smooth = np.eye(k)[labels] * 0.9 + 0.1 / k
    cw = task.class_weight.numpy()[labels]
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    expect = cw * ((1 - w) * -(smooth * np.log(p)).sum(1) + w * -(task.t_tr[:5] * np.log(p)).sum(1))
    assert np.allclose(got, expect, rtol=1e-4, atol=1e-5)

    # an ensemble teacher: the targets are the mean of each member's flip-averaged probabilities
    ensemble = ExpressionTask(expressions_root / "ckplus48", tr.load_config(None, {**options, "teacher": [str(teacher_run), str(run)]}))
    ensemble.load_data()
    ensemble.build(False, tmp_path / "kd3")
    second = load_model(run / "model.keras")
    expect_2 = (np.asarray(second(xdata.normalize(x))) + np.asarray(second(xdata.normalize(x[:, :, ::-1])))) / 2
    assert np.allclose(ensemble.t_tr[:5], (expect_t + expect_2) / 2, atol=1e-5)
    assert not np.allclose(expect_t, expect_2, atol=1e-3)  # two different teachers, so the mean is a real check
    assert [m["name"] for m in ensemble.teacher_record["members"]] == [teacher_run.name, run.name]

    for bad, msg in (({"teacher": str(tmp_path / "nothing")}, "no model.keras"), ({"teacher_weight": 1.5}, "share"),
                     ({"teacher": []}, "non-empty list"), ({"teacher": [str(teacher_run), str(tmp_path / "no")]}, "no model.keras"),
                     ({"teacher": str(teacher_run), "backbone": "mobilenetv2", "weights": "imagenet"}, "from-scratch")):
        with pytest.raises(EdgefaceError, match=msg):
            tr.load_config(None, {**options, **bad})
