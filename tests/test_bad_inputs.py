"""Issue 16: no bad input may lose data, pass a broken model, or reject a good photo.

Every case runs the real CLI in a subprocess (`python -m edgeface`) on real files (LFW photos, the
shipped int8 model, damaged copies of both) and asserts the exit code, that stderr is ONE line
(no traceback, no native log lines) and that the files which must not change are byte-identical.
Only a few cases load TensorFlow; the full matrix (>= 150 cases) is benchmarks/bad_inputs.py.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bad_files import (BAD_CARDS, OTHER, PERSON, SHIPPED, appended_jpeg, changed_files, cli_env,  # noqa: E402
                       copy_model, damaged_model, exif_rotated_jpeg, huge_png, lfw_photo, nan_gallery, run_cli,
                       snapshot, truncated, zeroed_jpeg)

pytestmark = pytest.mark.skipif(not SHIPPED.exists(), reason="needs the shipped models/edgeface_face_int8.tflite")


def one_line_error(out, rc: int = 2, *needles: str) -> str:
    assert out.rc == rc, (out.rc, out.stderr, out.stdout)
    assert not out.traceback, out.stderr
    assert len(out.err_lines) == 1, out.err_lines
    line = out.err_lines[0]
    assert line.startswith("edgeface: error: "), line
    for n in needles:
        assert n in line, (n, line)
    return line


@pytest.fixture(scope="module")
def work(tmp_path_factory, lfw_root):
    """A folder with the shipped model (+ card) and real photos, some damaged."""
    d = tmp_path_factory.mktemp("bad")
    copy_model(d, "face.tflite")
    a, a2, b = lfw_photo(lfw_root, PERSON, 1), lfw_photo(lfw_root, PERSON, 2), lfw_photo(lfw_root, OTHER, 1)
    for name, src in (("a.jpg", a), ("a2.jpg", a2), ("b.jpg", b)):
        (d / name).write_bytes(src.read_bytes())
    exif_rotated_jpeg(a, d / "exif.jpg")
    appended_jpeg(a, d / "appended.jpg")
    zeroed_jpeg(a, d / "zeroed.jpg")
    truncated(a, d / "truncated.jpg")
    huge_png(d / "huge.png")
    (d / "empty.png").write_bytes(b"")
    return d


def gallery_with_one_person(work: Path, dst: Path) -> Path:
    out = run_cli(["enroll", "colin", "a.jpg", "--model", "face.tflite", "--gallery", dst], cwd=work)
    assert out.rc == 0, out.stderr
    return dst


# ---- data loss ---------------------------------------------------------------------------------
def test_convert_over_budget_keeps_existing_artifact_byte_identical(tmp_path):
    """The only TensorFlow case of this file with a real conversion (a tiny model: seconds)."""
    pytest.importorskip("tensorflow")
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    inp = keras.Input((32, 32, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(8, 3, strides=2)(inp))
    keras.Model(inp, keras.layers.Dense(16)(x)).save(tmp_path / "tiny.keras")
    out = tmp_path / "models"
    copy_model(out, "tiny_float32.tflite")  # a good artifact of that name is already there
    before = snapshot(out)
    res = run_cli(["convert", tmp_path / "tiny.keras", "--out", out, "--dtypes", "float32", "--budget", "1000"],
                  cwd=tmp_path)
    one_line_error(res, 1, "budget", "unchanged")
    assert changed_files(before, snapshot(out)) == ["tiny_float32.tflite.over-budget"]


def test_write_baseline_merges_unless_replace(work, tmp_path):
    baseline = tmp_path / "baseline.json"
    baseline.write_text((SHIPPED.parents[1] / "benchmarks" / "baseline.json").read_text())
    names = set(json.loads(baseline.read_text())["models"])
    m = copy_model(tmp_path, "edgeface_face_int8.tflite")
    out = run_cli(["bench", "--write-baseline", baseline, m], cwd=tmp_path)
    assert out.rc == 0 and not out.traceback, out.stderr
    base = json.loads(baseline.read_text())
    assert set(base["models"]) == names  # the other models' entries are kept
    entry = base["models"]["edgeface_face_int8.tflite"]
    assert entry["sha256"] and entry["ops"][0] == "QUANTIZE" and "CONV_2D" in entry["ops"]
    out = run_cli(["bench", "--write-baseline", baseline, m, "--replace"], cwd=tmp_path)
    assert out.rc == 0 and set(json.loads(baseline.read_text())["models"]) == {"edgeface_face_int8.tflite"}


def test_enroll_through_symlinked_gallery_updates_the_real_file(work, tmp_path):
    real = gallery_with_one_person(work, tmp_path / "real.npz")
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    out = run_cli(["enroll", "george", "b.jpg", "--model", "face.tflite", "--gallery", link], cwd=work)
    assert out.rc == 0, out.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    from edgeface.runtime.gallery import Gallery

    assert Gallery.load(real).names == ["colin", "george"]


@pytest.mark.parametrize("flag,target", [("--json", "dir"), ("--markdown", "dir"), ("--plots", "file"),
                                          ("--json", "under_file")])
def test_bench_output_paths_are_checked_before_the_run(work, tmp_path, flag, target):
    (tmp_path / "a_file").write_text("keep me")
    path = {"dir": tmp_path, "file": tmp_path / "a_file", "under_file": tmp_path / "a_file" / "r.json"}[target]
    before = snapshot(tmp_path)
    t0 = time.time()
    out = run_cli(["bench", work / "face.tflite", "--runs", "100000", flag, path], cwd=work)
    one_line_error(out, 2, flag)
    assert time.time() - t0 < 60  # refused up front, not after 100,000 latency runs
    assert snapshot(tmp_path) == before


# ---- a broken model never passes -------------------------------------------------------------
@pytest.fixture
def baseline_of_shipped(tmp_path):
    d = tmp_path / "m"
    m = copy_model(d, "face.tflite")
    baseline = tmp_path / "baseline.json"
    assert run_cli(["bench", "--write-baseline", baseline, m], cwd=tmp_path).rc == 0
    return m, baseline


@pytest.mark.parametrize("how", ["half", "4k", "bitflip"])
def test_check_fails_on_a_damaged_model(baseline_of_shipped, tmp_path, how):
    m, baseline = baseline_of_shipped
    damaged_model(m, how)
    out = run_cli(["bench", "--check", baseline, m], cwd=tmp_path)
    one_line_error(out, 1, "size check failed")
    assert "not a valid TFLite model" in out.stdout and "sha256 changed" in out.stdout
    before = baseline.read_bytes()
    out = run_cli(["bench", "--write-baseline", baseline, m], cwd=tmp_path)  # and is never recorded
    one_line_error(out, 2, "not a valid TFLite model")
    assert baseline.read_bytes() == before


def test_check_fails_on_shrinkage_unless_allowed(baseline_of_shipped, tmp_path):
    m, baseline = baseline_of_shipped
    base = json.loads(baseline.read_text())
    base["models"]["face.tflite"]["bytes"] = int(m.stat().st_size / 0.9)  # the file is now 10% smaller
    baseline.write_text(json.dumps(base))
    out = run_cli(["bench", "--check", baseline, m], cwd=tmp_path)
    one_line_error(out, 1, "size check failed")
    assert "shrank -10.00%" in out.stdout
    out = run_cli(["bench", "--check", baseline, m, "--allow-shrink"], cwd=tmp_path)
    assert out.rc == 0 and "size check passed" in out.stdout, out.stderr


@pytest.mark.parametrize("how", ["half", "4k", "bitflip", "empty", "text"])
@pytest.mark.parametrize("command", ["verify", "enroll", "identify", "info"])
def test_damaged_model_is_exit_2_one_line(work, tmp_path, how, command):
    m = damaged_model(tmp_path / "m.tflite", how)
    gallery = tmp_path / "g.npz"
    args = {"verify": ["verify", "a.jpg", "b.jpg", "--model", m],
            "enroll": ["enroll", "colin", "a.jpg", "--model", m, "--gallery", gallery],
            "identify": ["identify", "a.jpg", "--model", m, "--gallery", gallery],
            "info": ["info", m]}[command]
    one_line_error(run_cli(args, cwd=work), 2, "model" if how == "empty" else "not a valid TFLite model")
    assert not gallery.exists()


@pytest.mark.parametrize("case,card,field", BAD_CARDS, ids=[c[0] for c in BAD_CARDS])
@pytest.mark.parametrize("command", ["verify", "info"])
def test_bad_model_card_names_the_field(work, tmp_path, case, card, field, command):
    m = copy_model(tmp_path, "m.tflite", card=card)
    args = ["verify", "a.jpg", "b.jpg", "--model", m] if command == "verify" else ["info", m]
    one_line_error(run_cli(args, cwd=work), 2, "model card", field)


def test_nan_gallery_is_refused(work, tmp_path):
    g = nan_gallery(tmp_path / "nan.npz", work / "face.tflite")
    before = g.read_bytes()
    one_line_error(run_cli(["identify", "a.jpg", "--model", "face.tflite", "--gallery", g], cwd=work), 2,
                   "non-finite")
    one_line_error(run_cli(["enroll", "bob", "b.jpg", "--model", "face.tflite", "--gallery", g], cwd=work), 2,
                   "non-finite")
    assert g.read_bytes() == before


# ---- real photos -----------------------------------------------------------------------------
@pytest.mark.parametrize("photo", ["exif.jpg", "appended.jpg"])
def test_real_phone_photos_match(work, photo):
    out = run_cli(["verify", photo, "a2.jpg", "--model", "face.tflite", "--json"], cwd=work)
    assert out.rc == 0 and out.stderr == "", out.stderr
    assert json.loads(out.stdout)["same"] is True


def test_corrupt_jpeg_is_refused_unless_allowed(work):
    one_line_error(run_cli(["verify", "zeroed.jpg", "a2.jpg", "--model", "face.tflite"], cwd=work), 2,
                   "corrupt JPEG", "zeroed.jpg", "--allow-corrupt")
    out = run_cli(["verify", "zeroed.jpg", "a2.jpg", "--model", "face.tflite", "--allow-corrupt"], cwd=work)
    assert out.rc == 0 and out.stderr == "", out.stderr


@pytest.mark.parametrize("photo,needle", [("huge.png", "too large"), ("truncated.jpg", "truncated JPEG"),
                                          ("empty.png", "empty file"), ("missing.jpg", "not found")])
def test_unusable_photo_is_one_line(work, photo, needle):
    t0 = time.time()
    one_line_error(run_cli(["verify", photo, "a2.jpg", "--model", "face.tflite"], cwd=work), 2, needle, photo)
    assert time.time() - t0 < 30  # the 30000x30000 PNG is refused from its header, never decoded


def test_max_pixels_is_configurable(work):
    out = run_cli(["verify", "a.jpg", "a2.jpg", "--model", "face.tflite", "--max-pixels", "10000"], cwd=work)
    one_line_error(out, 2, "too large", "250x250")
    out = run_cli(["verify", "a.jpg", "a2.jpg", "--model", "face.tflite"], cwd=work, env=cli_env(EDGEFACE_MAX_PIXELS=10000))
    one_line_error(out, 2, "too large")


def test_one_bad_image_does_not_abort_enroll(work, tmp_path):
    g = tmp_path / "g.npz"
    bad = ["huge.png", "zeroed.jpg", "truncated.jpg", "empty.png"]
    out = run_cli(["enroll", "colin", "a.jpg", *bad, "a2.jpg", "--model", "face.tflite", "--gallery", g], cwd=work)
    assert out.rc == 0 and not out.traceback, out.stderr
    assert len(out.err_lines) == len(bad) and all(line.startswith("edgeface: skipped: ") for line in out.err_lines)
    assert all(b in out.stdout for b in bad)  # the summary lists them
    from edgeface.runtime.gallery import Gallery

    assert Gallery.load(g).counts() == [2]
    before = g.read_bytes()
    out = run_cli(["enroll", "colin", "a.jpg", "huge.png", "--strict", "--model", "face.tflite", "--gallery", g],
                  cwd=work)
    assert out.rc == 2 and out.err_lines[-1].startswith("edgeface: error: --strict") and g.read_bytes() == before
    out = run_cli(["enroll", "colin", *bad, "--model", "face.tflite", "--gallery", g], cwd=work)
    assert out.rc == 2 and "nothing enrolled" in out.err_lines[-1] and g.read_bytes() == before


# ---- exit codes and messages -----------------------------------------------------------------
@pytest.mark.parametrize("name,needle", [("x\x1b[2K", "control characters"), ("a" * 100_000, "characters, more than"),
                                         ("unknown", "invalid person name"), ("  ", "invalid person name")])
def test_bad_person_names(work, tmp_path, name, needle):
    g = gallery_with_one_person(work, tmp_path / "g.npz")
    before = g.read_bytes()
    line = one_line_error(run_cli(["enroll", name, "b.jpg", "--model", "face.tflite", "--gallery", g], cwd=work),
                          2, needle)
    assert "\x1b" not in line and len(line) < 300  # printed safely
    assert g.read_bytes() == before


def test_debug_anywhere(work):
    out = run_cli(["verify", "a.jpg", "b.jpg", "--debug", "--no-such-option"], cwd=work)
    one_line_error(out, 2, "--no-such-option")


def test_held_lock_times_out_with_a_message(work, tmp_path):
    g = gallery_with_one_person(work, tmp_path / "g.npz")
    before = g.read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from edgeface.runtime.gallery import locked
        with locked({str(g)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env=cli_env())
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.time()
        out = run_cli(["enroll", "george", "b.jpg", "--model", "face.tflite", "--gallery", g, "--lock-timeout", "1"],
                      cwd=work)
        assert out.rc == 2 and time.time() - t0 < 30 and not out.traceback
        assert len(out.err_lines) == 2 and "waiting" in out.err_lines[0] and "locked" in out.err_lines[1]
    finally:
        holder.kill()
        holder.wait()
    assert g.read_bytes() == before


@pytest.mark.parametrize("setting", ["train.log_every=0", "data.batch_size=1", "optim.lr=-1", "data.val_max_same=0",
                                     "train.keep_checkpoints=0", "train.epochs=abc"])
def test_train_config_refused_before_tensorflow(work, tmp_path, setting):
    data = tmp_path / "data"
    for who in (PERSON, OTHER):
        (data / who).mkdir(parents=True)
    t0 = time.time()
    out = run_cli(["train", "face", "--data", data, "--out", tmp_path / "run", "--set", setting], cwd=tmp_path)
    one_line_error(out, 2, setting.split("=")[0])
    assert time.time() - t0 < 20 and not (tmp_path / "run").exists()


@pytest.mark.parametrize("option", [["--epochs", "0"], ["--lr", "-1"], ["--lr", "nan"], ["--input-size", "3"]])
def test_expression_train_options_refused_before_tensorflow(tmp_path, expressions_root, option):
    t0 = time.time()
    out = run_cli(["train", "expression", "--data", expressions_root / "ckplus48", "--out", tmp_path / "run", *option],
                  cwd=tmp_path)
    one_line_error(out, 2)
    assert time.time() - t0 < 20 and not (tmp_path / "run").exists()


def test_zero_byte_image_in_training_data_named_before_tensorflow(work, tmp_path):
    data = tmp_path / "data"
    for who in ("p1", "p2", "p3"):
        (data / who).mkdir(parents=True)
        for k in range(3):
            (data / who / f"{k}.jpg").write_bytes((work / "a.jpg").read_bytes())
    (data / "p2" / "zero.png").write_bytes(b"")
    t0 = time.time()
    out = run_cli(["train", "face", "--data", data, "--out", tmp_path / "run"], cwd=tmp_path)
    assert out.rc == 2 and "zero.png" in out.err_lines[-1] and not out.traceback
    assert time.time() - t0 < 20 and not (tmp_path / "run").exists()  # no run.json stuck at "running"


def test_one_fold_pairs_refused_before_aligning(work, tmp_path, lfw_root):
    pairs = tmp_path / "pairs.txt"
    pairs.write_text(f"1 1\n{PERSON} 1 2\n{PERSON} 1 {OTHER} 1\n")
    before = snapshot(tmp_path)
    out = run_cli(["bench", "face.tflite", "--lfw", lfw_root, "--pairs", pairs], cwd=work,
                  env=cli_env(EDGEFACE_CACHE=tmp_path / "cache"))
    one_line_error(out, 2, "fold")
    assert snapshot(tmp_path) == before  # nothing aligned into the cache


def test_align_dst_that_is_a_file(work, tmp_path):
    (tmp_path / "src" / "p").mkdir(parents=True)
    (tmp_path / "dst").write_text("not a folder")
    out = run_cli(["align", tmp_path / "src", tmp_path / "dst"], cwd=tmp_path)
    one_line_error(out, 2, "is a file")
    assert (tmp_path / "dst").read_text() == "not a folder"


def test_tensorflow_commands_print_one_line(tmp_path):
    """convert loads TensorFlow and then fails on a bad file: the absl/cudart lines are gone."""
    pytest.importorskip("tensorflow")
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a keras file")
    out = run_cli(["convert", bad, "--out", tmp_path / "o"], cwd=tmp_path, env=cli_env(TF_CPP_MIN_LOG_LEVEL=0))
    one_line_error(out, 2)


# ---- leftovers -------------------------------------------------------------------------------
def test_killed_enroll_leaves_nothing_behind_the_next_one(work, tmp_path):
    g = gallery_with_one_person(work, tmp_path / "g.npz")
    before = g.read_bytes()
    # a real SIGKILL after the temp file is written, before the rename (what kill -9 mid-save does)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import os, signal, numpy as np
        import edgeface.utils.io as io
        from edgeface.runtime import gallery
        from edgeface.utils.io import sha256_file
        io.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
        gallery.enroll({str(g)!r}, "bob", np.ones((1, 128), np.float32), ["b"], sha256_file({str(work / 'face.tflite')!r}))
    """)], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert list(tmp_path.glob(".g.npz.*.tmp")) and g.read_bytes() == before
    out = run_cli(["enroll", "george", "b.jpg", "--model", "face.tflite", "--gallery", g], cwd=work)
    assert out.rc == 0, out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.npz"]  # no temp file, no lock file


def test_stopped_training_is_marked_failed(work, tmp_path):
    """SIGTERM (a scheduler, `kill`) once run.json says "running": it must end "failed" with the reason."""
    pytest.importorskip("tensorflow")
    data = tmp_path / "data"
    for who in (PERSON, OTHER, "p3"):
        (data / who).mkdir(parents=True)
        for k in range(3):
            (data / who / f"{k}.jpg").write_bytes((work / ("a.jpg" if who != OTHER else "b.jpg")).read_bytes())
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "edgeface", "train", "face", "--data", str(data), "--out", str(run),
                          "--batch-size", "4", "--max-steps", "100000", "--model", "mobilenetv2",
                          "--set", "model.alpha=0.35"], env=cli_env(), stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not (run / "run.json").is_file() and p.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    p.terminate()
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, err
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "failed" and info["stop_reason"] == "interrupted"


def test_installed_package_caches_in_the_user_cache(tmp_path):
    """An installed edgeface (no repository around it) must not write into site-packages."""
    import shutil

    site = tmp_path / "site"
    shutil.copytree(SHIPPED.parents[1] / "edgeface", site / "edgeface",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in cli_env(XDG_CACHE_HOME=tmp_path / "xdg").items() if k != "EDGEFACE_CACHE"}
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", "from edgeface.utils.paths import cache_dir; print(cache_dir())"],
                       env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert Path(r.stdout.strip()) == tmp_path / "xdg" / "edgeface"


def test_trainer_skips_fallbacks_and_trains_without_validation_when_ids_are_few(tmp_path, capsys):
    """TF-free part of the trainer: align's fallback crops are not training faces, and 3 people are
    too few to hold some out (a warning, not an error)."""
    from edgeface.train import config as cfgmod
    from edgeface.train.face import FaceTask

    rgb = np.full((112, 112, 3), 128, np.uint8)
    import cv2

    lines = []
    for who in ("p1", "p2", "p3"):
        (tmp_path / "data" / who).mkdir(parents=True)
        for k in range(4):
            out = f"{who}/{k}.png"
            cv2.imwrite(str(tmp_path / "data" / out), rgb)
            lines.append({"source": f"{who}/{k}.jpg", "output": out, "status": "fallback" if k == 0 else "ok"})
    (tmp_path / "data" / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    cfg = cfgmod.resolve(cfgmod.FACE_DEFAULTS, sets=["data.batch_size=2", "data.val_fraction=0.3"])
    t = FaceTask(tmp_path / "data", cfg)
    t.load_data()
    err = capsys.readouterr().err
    assert len(t.train_paths) == 9 and not any(p.endswith("/0.png") for p in t.train_paths)
    assert t.val is None and "training without validation" in err and "skipping 3 fallback" in err
    cfg = cfgmod.resolve(cfgmod.FACE_DEFAULTS, sets=["data.batch_size=2", "data.val_fraction=0",
                                                     "data.use_fallbacks=true"])
    t = FaceTask(tmp_path / "data", cfg)
    t.load_data()
    assert len(t.train_paths) == 12


# ---- the card schema itself ------------------------------------------------------------------
def test_every_shipped_card_and_the_operating_points_form_validate():
    from edgeface.spec import ModelCard, load_card_file

    cards = sorted(SHIPPED.parent.glob("*.json"))
    assert cards
    for p in cards:
        load_card_file(p)
    card = json.loads(SHIPPED.with_suffix(".json").read_text())
    card["verification"]["operating_points"] = {
        "best_accuracy": {"threshold": 0.25, "accuracy": 0.95},
        "far_1e-3": {"threshold": 0.41, "tar": 0.67, "far": 0.001}}
    card["something_new"] = {"any": "thing"}  # unknown extra fields are allowed
    assert ModelCard.from_dict(card, "x.json").to_dict() == card
