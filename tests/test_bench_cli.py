"""`edgeface bench` end to end on real LFW photos with tiny real .tflite embedders, and `--check`.

The embedders are a small random-weight tf-keras conv net converted here to float32 / float16 /
int8 TFLite (same card `source`, so the agreement block is exercised). The bench's accuracy is
checked against an independent computation from the Keras model itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeface.cli import main

REPO = Path(__file__).resolve().parents[1]

# 2 folds x (2 same + 2 different) over 11 real LFW images.
PAIRS = """2\t2
Aaron_Peirsol\t1\t2
Al_Gore\t1\t2
Aaron_Peirsol\t3\tAbdullah_Gul\t1
Adrien_Brody\t1\tAlan_Greenspan\t1
Abdullah_Gul\t1\t2
Adrien_Brody\t1\t2
Al_Gore\t1\tAmelie_Mauresmo\t1
Alan_Greenspan\t1\tAbdullah_Gul\t2
"""
IMAGES = {"Aaron_Peirsol": 3, "Al_Gore": 3, "Abdullah_Gul": 2, "Adrien_Brody": 2, "Alan_Greenspan": 1,
          "Amelie_Mauresmo": 1}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(models dir, keras model): tiny_{float32,float16,int8}.tflite + cards from one Keras net."""
    import edgeface  # noqa: F401
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((112, 112, 3))
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, strides=2, activation="relu")(x)
    x = keras.layers.Conv2D(16, 1)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(16)(x))
    # non-zero biases: the converter would share / drop identical all-zero constants
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in model.get_weights()])

    out = tmp_path_factory.mktemp("models")
    for dtype in ("float32", "float16", "int8"):
        conv = tf.lite.TFLiteConverter.from_keras_model(model)
        if dtype == "float16":
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.target_spec.supported_types = [tf.float16]
        elif dtype == "int8":
            def representative():
                r = np.random.default_rng(1)
                for _ in range(16):
                    yield [r.uniform(-1, 1, (1, 112, 112, 3)).astype(np.float32)]
            conv.optimizations = [tf.lite.Optimize.DEFAULT]
            conv.representative_dataset = representative
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            conv.inference_input_type = conv.inference_output_type = tf.int8
        path = out / f"tiny_{dtype}.tflite"
        path.write_bytes(conv.convert())
        card = {"name": path.stem, "task": "face_embedding", "file": path.name, "bytes": path.stat().st_size,
                "dtype": dtype, "input": {"shape": [1, 112, 112, 3], "color": "RGB", "alignment": "arcface112",
                                          "normalization": {"mean": 127.5, "std": 127.5}},
                "source": {"checkpoint": "tiny-test"}, "budget_bytes": 100_000}
        path.with_suffix(".json").write_text(json.dumps(card))
    return out, model


@pytest.fixture(scope="module")
def tiny_lfw(tmp_path_factory, lfw_root):
    """A raw LFW-layout root of 11 real photos (symlinks) with pairs.txt beside it."""
    root = tmp_path_factory.mktemp("lfw")
    for name, n in IMAGES.items():
        (root / "raw" / name).mkdir(parents=True)
        for i in range(1, n + 1):
            f = f"{name}_{i:04d}.jpg"
            (root / "raw" / name / f).symlink_to(lfw_root / name / f)
    (root / "pairs.txt").write_text(PAIRS)
    return root


def run(args, capsys):
    code = main(list(map(str, args)))
    out, err = capsys.readouterr()
    return code, out, err


def test_params_from_flatbuffer_match_keras(tiny):
    from edgeface.bench.size import count_params, size_report

    models, keras_model = tiny
    for dtype in ("float32", "float16", "int8"):
        p = models / f"tiny_{dtype}.tflite"
        assert count_params(p.read_bytes()) == keras_model.count_params() == 720
        rep = size_report(p)
        assert rep["bytes"] == p.stat().st_size and 0 < rep["gzip_bytes"] < rep["bytes"]
        assert rep["budget"] == 100_000 and rep["budget_ok"] is True


def test_bench_end_to_end(tiny, tiny_lfw, tmp_path, capsys, monkeypatch):
    from edgeface.bench.verification import cosine_scores, evaluate
    from edgeface.data.pairs import read_pairs

    monkeypatch.setenv("EDGEFACE_CACHE", str(tmp_path / "cache"))
    models, keras_model = tiny
    paths = [models / f"tiny_{d}.tflite" for d in ("float32", "float16", "int8")]
    out = tmp_path / "out"
    args = ["bench", *paths, "--lfw", tiny_lfw / "raw", "--runs", 5, "--warmup", 1, "--e2e-images", 3,
            "--json", out / "bench.json", "--markdown", out / "bench.md", "--plots", out, "--update-cards"]
    code, stdout, err = run(args, capsys)
    assert code == 0, err
    assert "aligning" in err  # first run aligns the raw root into the cache
    assert "tiny_float32.tflite" in stdout and "LFW acc" in stdout
    assert "int8 dot product:" in stdout and "middle of 3 alternating rounds" in stdout

    res = json.loads((out / "bench.json").read_text())
    assert [Path(m["path"]).name for m in res["models"]] == [p.name for p in paths]
    assert res["repeats"] == 3 and set(res["machine"]["cpu"]) == {"model", "int8_dot_product", "int8_features"}
    assert all(len(m["latency_ms"]["per_thread"]["1"]["round_medians"]) == 3 for m in res["models"])
    aligned = Path(res["lfw_setup"]["aligned_root"])
    assert aligned.parent == tmp_path / "cache" / "aligned" / "arcface112" and aligned.name.startswith("raw-")
    assert res["lfw_setup"]["n_images"] == 11 and res["lfw_setup"]["n_pairs"] == 8
    # only the images the pairs name are aligned (Al_Gore_0003 is in the raw tree, in no pair)
    assert len((aligned / "manifest.jsonl").read_text().splitlines()) == 11
    assert not list(aligned.rglob("Al_Gore_0003*")) and "the 11 images the pairs name" in err

    # Independent check: the Keras model on the same aligned crops, flip TTA, same protocol.
    pairs = read_pairs(tiny_lfw / "pairs.txt", aligned)
    images, index = pairs.index_pairs()
    from edgeface.utils.images import read_image

    x = (np.stack([read_image(p) for p in images]).astype(np.float32) - 127.5) / 127.5
    emb = keras_model.predict(x, verbose=0) + keras_model.predict(x[:, :, ::-1], verbose=0)
    ref = evaluate(cosine_scores(emb, index), pairs.labels, pairs.fold_ids)

    f32, f16, i8 = res["models"]
    for m in res["models"]:
        assert m["bytes"] == Path(m["path"]).stat().st_size and m["params"] == 720 and m["budget"] == 100_000
        lat = m["latency_ms"]
        assert lat["threads"] == 1 and set(lat["per_thread"]) == {"1", "2"} and 0 < lat["median"] <= lat["p90"]
        e2e = m["end_to_end_ms"]
        assert e2e["images"] == 3 and e2e["median"] > 0 and e2e["detector"]
        v = m["lfw"]
        assert len(v["thresholds"]) == 2 and 0 <= v["accuracy"] <= 1 and 0 <= v["auc"] <= 1
        assert set(v) >= {"accuracy", "std", "se", "auc", "eer", "tar_at_far_1e-3", "thresholds"}
    assert f32["lfw"]["accuracy"] == pytest.approx(ref["accuracy"])
    assert f32["lfw"]["auc"] == pytest.approx(ref["auc"])
    assert f32["lfw"]["thresholds"] == pytest.approx(ref["thresholds"], abs=1e-4)

    assert f32["agreement"]["role"] == "reference"
    assert f16["agreement"]["reference"] == "tiny_float32.tflite" and f16["agreement"]["min_cosine"] > 0.999
    assert 0.9 < i8["agreement"]["mean_cosine"] <= 1.0 + 1e-6 and i8["agreement"]["images"] == 11
    assert i8["agreement"]["accuracy_delta"] == pytest.approx(i8["lfw"]["accuracy"] - f32["lfw"]["accuracy"])

    for png in ("roc.png", "size_vs_accuracy.png", "latency.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "bench.md").read_text()
    assert "| tiny_int8.tflite |" in md and "![roc](roc.png)" in md

    card = json.loads(paths[0].with_suffix(".json").read_text())
    ver = card["verification"]
    assert ver["threshold"] == pytest.approx(np.mean(f32["lfw"]["thresholds"]), abs=1e-6)
    assert ver["lfw_accuracy"] == pytest.approx(f32["lfw"]["accuracy"]) and ver["command"].startswith("edgeface bench")
    assert card["budget_bytes"] == 100_000  # the rest of the card is kept
    # 2 impostor pairs per training fold resolve no FAR target: best accuracy only, the same threshold
    assert list(ver["operating_points"]) == ["best_accuracy"]
    assert ver["operating_points"]["best_accuracy"]["threshold"] == ver["threshold"]
    assert ver["operating_points"]["best_accuracy"]["accuracy"] == pytest.approx(ver["lfw_accuracy"], abs=1e-6)
    assert '"/' not in json.dumps(card) and ver["pairs"] == "pairs.txt"  # no path of this machine

    # Second run: the aligned cache is reused (no new alignment), results identical.
    code, _, err = run(["bench", paths[0], "--lfw", tiny_lfw / "raw", "--runs", 2, "--e2e-images", 0,
                        "--json", out / "again.json"], capsys)
    assert code == 0 and "aligning" not in err
    again = json.loads((out / "again.json").read_text())["models"][0]["lfw"]
    assert again["accuracy"] == f32["lfw"]["accuracy"] and again["thresholds"] == f32["lfw"]["thresholds"]


def test_bench_bad_inputs(tiny, tiny_lfw, tmp_path, capsys):
    models, _ = tiny
    f32 = models / "tiny_float32.tflite"
    code, _, err = run(["bench", f32, "--lfw", tiny_lfw / "raw", "--pairs", tmp_path / "nope.txt"], capsys)
    assert code == 2 and "pairs file not found" in err
    bad = tmp_path / "bad_pairs.txt"
    bad.write_text(PAIRS.replace("Al_Gore\t1\t2", "Al_Gore\t1\t9"))
    code, _, err = run(["bench", f32, "--lfw", tiny_lfw / "raw", "--pairs", bad], capsys)
    assert code == 2 and "line 3: image not found" in err and "Al_Gore_0009.jpg" in err
    code, _, err = run(["bench", tmp_path / "missing.tflite"], capsys)
    assert code == 2 and "model not found" in err
    code, _, err = run(["bench", str(tmp_path / "*.tflite")], capsys)
    assert code == 2 and "no file matches" in err
    expr = tmp_path / "expr.tflite"
    expr.write_bytes(f32.read_bytes())
    expr.with_suffix(".json").write_text(json.dumps({"task": "expression_classification", "dtype": "float32"}))
    code, _, err = run(["bench", expr, "--runs", 2], capsys)
    assert code == 2 and "expression classifier: pass --expr-data" in err


def test_expression_model_dispatched_to_classification(tmp_path, expressions_root, capsys):
    import edgeface  # noqa: F401
    import tensorflow as tf
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((48, 48, 1))
    x = keras.layers.Conv2D(4, 3, strides=2, activation="relu")(inp)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(7, activation="softmax")(x))
    path = tmp_path / "expr.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    path.with_suffix(".json").write_text(json.dumps({
        "task": "expression_classification", "dtype": "float32",
        "input": {"shape": [1, 48, 48, 1], "color": "GRAY", "normalization": {"mean": 127.5, "std": 127.5}}}))
    out = tmp_path / "out"
    code, stdout, err = run(["bench", path, "--expr-data", expressions_root / "ckplus48", "--runs", 3,
                             "--json", out / "r.json", "--plots", out], capsys)
    assert code == 0, err
    m = json.loads((out / "r.json").read_text())["models"][0]
    e = m["expression"]
    assert e["n"] > 50 and 0 <= e["accuracy"] <= 1 and len(e["class_names"]) == 7
    assert Path(e["confusion_png"]).is_file() and m["lfw"] is None and m["latency_ms"]["median"] > 0
    assert f"{e['accuracy'] * 100:.2f}" in stdout


# ------------------------------------------------------------------ size-regression check

@pytest.fixture
def shipped(tiny, tmp_path):
    """A models/ folder with one artifact + card (budget = its size) and a baseline recorded from it."""
    models, _ = tiny
    d = tmp_path / "models"
    d.mkdir()
    art = d / "face.tflite"
    art.write_bytes((models / "tiny_int8.tflite").read_bytes())
    card = json.loads((models / "tiny_int8.json").read_text())
    card["budget_bytes"] = art.stat().st_size
    art.with_suffix(".json").write_text(json.dumps(card))
    baseline = tmp_path / "baseline.json"
    code = main(["bench", "--write-baseline", str(baseline), str(art)])
    assert code == 0
    return art, baseline


def test_check_passes_on_unchanged(shipped, capsys):
    art, baseline = shipped
    capsys.readouterr()
    code, out, _ = run(["bench", "--check", baseline, art], capsys)
    assert code == 0 and "size check passed" in out and "face.tflite" in out
    base = json.loads(baseline.read_text())
    assert base["tolerance"] == 0.02 and base["models"]["face.tflite"]["bytes"] == art.stat().st_size


def test_check_fails_one_byte_over_budget(shipped, capsys):
    art, baseline = shipped
    art.write_bytes(art.read_bytes() + b"\0")  # still loads; one byte over the card's budget
    code, out, err = run(["bench", "--check", baseline, art], capsys)
    assert code == 1 and "over budget by 1 B" in out and "size check failed for face.tflite" in err


def test_check_growth_tolerance(shipped, capsys):
    art, baseline = shipped
    card = json.loads(art.with_suffix(".json").read_text())
    card["budget_bytes"] = 10 * art.stat().st_size  # budget is not the issue here
    art.with_suffix(".json").write_text(json.dumps(card))
    size = art.stat().st_size
    base = json.loads(baseline.read_text())
    base["models"]["face.tflite"]["bytes"] = int(size / 1.03)  # the artifact grew 3% > 2%
    baseline.write_text(json.dumps(base))
    code, out, _ = run(["bench", "--check", baseline, art], capsys)
    assert code == 1 and "> 2.0% tolerance" in out
    base["models"]["face.tflite"]["bytes"] = int(size / 1.01) + 1  # 1% growth: within tolerance
    baseline.write_text(json.dumps(base))
    code, out, _ = run(["bench", "--check", baseline, art], capsys)
    assert code == 0


def test_check_missing_baseline_model_or_entry(shipped, tmp_path, capsys):
    art, baseline = shipped
    code, _, err = run(["bench", "--check", tmp_path / "none.json", art], capsys)
    assert code == 2 and "baseline not found" in err and "--write-baseline" in err
    code, _, err = run(["bench", "--check", baseline, tmp_path / "gone.tflite"], capsys)
    assert code == 2 and "model not found" in err
    other = tmp_path / "models" / "new.tflite"
    other.write_bytes(art.read_bytes())
    code, out, _ = run(["bench", "--check", baseline, art, other], capsys)
    assert code == 1 and "new.tflite" in out and "no baseline entry" in out
    baseline.write_text("{not json")
    code, _, err = run(["bench", "--check", baseline, art], capsys)
    assert code == 2 and "not valid JSON" in err


def test_check_needs_no_tensorflow(shipped):
    art, baseline = shipped
    code = ("import sys; from edgeface.cli import main; rc = main(['bench', '--check', sys.argv[1], sys.argv[2]]); "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'; sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code, str(baseline), str(art)], capture_output=True, text=True,
                       cwd=REPO, env={**os.environ, "EDGEFACE_NO_PROGRESS": "1"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "size check passed" in r.stdout


def test_output_option_given_another_option_is_refused(tiny, tmp_path, capsys, monkeypatch):
    """`--json --markdown` (the grammar typed literally) must not write a file called --markdown."""
    models, _ = tiny
    monkeypatch.chdir(tmp_path)
    for args in (["--json", "--markdown", "x.md"], ["--plots", "--update-cards"]):
        code, _, err = run(["bench", models / "tiny_float32.tflite", *args], capsys)
        assert code == 2 and "is an option, not a path" in err and len(err.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
