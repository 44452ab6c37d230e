"""`edgeface import` on the shared insightface MobileFaceNet (ncnn), and the exact int8 rewrites.

Real faces (CelebA, aligned by the real MTCNN pipeline), the real ncnn runtime, the real TFLite
interpreter; every numeric claim is checked against an independent numpy computation.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from edgeface.cli import main
from conftest import aligned_celeba_subset

N_IDS, PER_ID = 3, 4


@pytest.fixture(scope="module")
def aligned(tmp_path_factory, celeba_root):
    return aligned_celeba_subset(tmp_path_factory, celeba_root, N_IDS, PER_ID)


@pytest.fixture(scope="module")
def teacher_dir(teachers_root):
    p = teachers_root / "mobilefacenet-ncnn"
    if not (p / "mobilefacenet.param").is_file():
        pytest.skip("ncnn MobileFaceNet not found")
    return p


@pytest.fixture(scope="module")
def imported(tmp_path_factory, teacher_dir, aligned):
    run = tmp_path_factory.mktemp("imp") / "run"
    assert main(["import", str(teacher_dir), "--out", str(run), "--faces", str(aligned), "--count", "12"]) == 0
    return run


def _crops(aligned):
    from edgeface.utils.images import read_image
    return np.stack([read_image(p) for p in sorted(aligned.glob("*/*.png"))])


def _unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_import_matches_ncnn_on_real_faces(imported, teacher_dir, aligned):
    from edgeface.nets import load_model
    from edgeface.teachers import load_teacher

    run = json.loads((imported / "run.json").read_text())
    assert run["kind"] == "imported" and run["verification"]["min_cosine"] >= 0.999
    assert run["model"]["params"] == 993_344  # BN folded: the figure insightface publishes for MobileFaceNet
    crops = _crops(aligned)
    ref = load_teacher(teacher_dir).embed(crops)
    got = _unit(load_model(imported / "model.keras")((crops.astype(np.float32) - 127.5) / 127.5))
    assert np.min(np.sum(ref * got, axis=1)) > 0.9999


def test_unsupported_layer_is_named(tmp_path, teacher_dir, aligned, capsys):
    text = (teacher_dir / "mobilefacenet.param").read_text().replace("PReLU            conv_1_relu",
                                                                      "Pooling          conv_1_relu", 1)
    (tmp_path / "m.param").write_text(text)
    shutil.copy(teacher_dir / "mobilefacenet.bin", tmp_path / "m.bin")
    assert main(["import", str(tmp_path / "m.param"), "--out", str(tmp_path / "run"), "--faces", str(aligned)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unsupported ncnn layer type 'Pooling'" in err[0]
    assert not (tmp_path / "run").exists()


def test_truncated_weights_refused(tmp_path, teacher_dir, aligned, capsys):
    shutil.copy(teacher_dir / "mobilefacenet.param", tmp_path / "m.param")
    (tmp_path / "m.bin").write_bytes((teacher_dir / "mobilefacenet.bin").read_bytes()[:1_000_000])
    assert main(["import", str(tmp_path / "m.param"), "--out", str(tmp_path / "run"), "--faces", str(aligned)]) == 2
    assert "weights end early" in capsys.readouterr().err


@pytest.fixture(scope="module")
def equalized_split(imported, aligned):
    """The imported model on the real crops before and after equalize_channels, and its PReLU
    split converted once to per-tensor int8: the equalisation test checks that file's ops, the
    residual-ReLU test measures its size (the split's bytes depend on the graph's structure, which
    equalisation does not change: the same tensors, shapes and one scale per tensor)."""
    from edgeface.nets import load_model
    from edgeface.optimize.equalize import activation_ranges, equalize_channels, split_prelu
    from edgeface.optimize.tflite_bytes import convert_bytes

    model = load_model(imported / "model.keras")
    x = (_crops(aligned).astype(np.float32) - 127.5) / 127.5
    before = np.asarray(model(x))
    src = "conv_6sep_conv2d"  # the layer whose one channel reaches 36 in the original
    spread_before = activation_ranges(model, [src], x)[src]
    equalize_channels(model, x)
    spread_after = activation_ranges(model, [src], x)[src]
    split = split_prelu(model)
    return SimpleNamespace(x=x, before=before, spread_before=spread_before, spread_after=spread_after,
                           model=model, split=split, int8=convert_bytes(split, "int8", x, per_channel=False))


def test_equalize_and_split_are_exact_and_delegated(equalized_split):
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.optimize.equalize import scale_points

    e = equalized_split
    np.testing.assert_allclose(np.asarray(e.model(e.x)), e.before, rtol=1e-3, atol=1e-4)
    assert e.spread_after.max() / np.median(e.spread_after) < e.spread_before.max() / np.median(e.spread_before)
    assert len(scale_points(e.model)) == 34

    np.testing.assert_allclose(np.asarray(e.split(e.x)), e.before, rtol=1e-3, atol=1e-4)
    it = Interpreter(model_content=e.int8, num_threads=1)
    it.allocate_tensors()
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert "PRELU" not in ops and ops.count("DELEGATE") == 1  # XNNPACK runs the whole graph


def test_least_squares_refit_matches_numpy():
    from edgeface.optimize.compress import refit_consumer

    rng = np.random.default_rng(0)
    z = rng.normal(size=(500, 12)).astype(np.float32)
    w = rng.normal(size=(12, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    keep = np.array([0, 2, 3, 5, 7, 8, 11])
    kernel, bias = refit_consumer(z, w, b, keep, ridge=0.0)
    design = np.concatenate([z[:, keep], np.ones((500, 1))], axis=1)
    sol, *_ = np.linalg.lstsq(design, z @ w + b, rcond=None)
    np.testing.assert_allclose(kernel, sol[:-1], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bias, sol[-1], rtol=1e-4, atol=1e-4)


def test_activation_pruning_with_refit_beats_no_refit(imported, aligned):
    from edgeface.nets import load_model
    from edgeface.optimize.compress import prune_channels
    from edgeface.optimize.surgery import all_groups

    model = load_model(imported / "model.keras")
    x = (_crops(aligned).astype(np.float32) - 127.5) / 127.5
    ref = _unit(model(x))
    total = sum(g.units for g in all_groups(model))
    cos = {}
    for refit in (True, False):
        pruned, keeps = prune_channels(model, x, int(0.08 * total), refit=refit)
        cos[refit] = float(np.mean(np.sum(_unit(pruned(x)) * ref, axis=1)))
        assert sum(g.units for g in all_groups(pruned)) == total - int(0.08 * total)
    assert cos[True] > cos[False] and cos[True] > 0.9


def test_convert_fit_checks_its_recovery_faces_and_teacher_first(imported, aligned, tmp_path, capsys):
    """--fit-faces must exist; --fit-teacher must compute the run's float model (its outputs become
    the recovery targets): another embedder is refused with a one-line error, nothing written."""
    out = tmp_path / "models"
    base = ["convert", str(imported), "--out", str(out), "--budget", str(10 ** 9), "--calib", str(aligned),
            "--dtypes", "int8", "--fit-images", "16"]
    assert main(base + ["--fit-faces", str(tmp_path / "nope")]) == 2
    assert "face folder not found" in capsys.readouterr().err
    other = Path(__file__).resolve().parents[1] / "models" / "edgeface_face_mnv2_float32.tflite"
    assert main(base + ["--fit-faces", str(aligned), "--fit-teacher", str(other)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "does not compute the run's float model" in err[-1] and len(err[-1]) < 300
    assert not out.exists() or not list(out.glob("*.tflite"))


def test_residual_relu_form_is_exact_smaller_and_delegated(imported, aligned, equalized_split):
    """x + relu((a - 1) x) after flipping slopes above 1 is the same function as PReLU, in fewer
    int8 bytes than the four-op split, and XNNPACK still runs the whole graph."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.nets import load_model
    from edgeface.optimize.equalize import flip_steep_slopes, residual_relu_prelu
    from edgeface.optimize.tflite_bytes import convert_bytes

    model = load_model(imported / "model.keras")
    x = (_crops(aligned).astype(np.float32) - 127.5) / 127.5
    before = np.asarray(model(x))
    slopes = np.concatenate([l.get_weights()[0].reshape(-1) for l in model.layers if type(l).__name__ == "PReLU"])
    steep = int((slopes > 1).sum())
    assert steep > 0  # insightface's slopes reach 2.4: the flip is exercised
    split_bytes = len(equalized_split.int8)  # this network's four-op split, per-tensor int8
    assert flip_steep_slopes(model) == steep
    np.testing.assert_allclose(np.asarray(model(x)), before, rtol=1e-3, atol=1e-4)
    assert max(l.get_weights()[0].max() for l in model.layers if type(l).__name__ == "PReLU") <= 1.0
    res = residual_relu_prelu(model)
    assert not any(type(l).__name__ in ("PReLU", "LeakyReLU") for l in res.layers)
    np.testing.assert_allclose(np.asarray(res(x)), before, rtol=1e-3, atol=1e-4)
    data = convert_bytes(res, "int8", x, per_channel=False)
    assert len(data) < split_bytes - 20_000  # two ops per activation instead of four
    it = Interpreter(model_content=data, num_threads=1)
    it.allocate_tensors()
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert "PRELU" not in ops and ops.count("DELEGATE") == 1
