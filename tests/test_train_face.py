"""End-to-end face training on a tiny real aligned set: loss goes down, checkpoints, resume, seeding.

The set: 10 CelebA identities x 4 images, aligned with the real MTCNN pipeline (align_folder) once
per session. A small net (alpha 0.35, 96 px input) keeps the whole module well under a minute of CPU.
"""
import json
from pathlib import Path

import pytest

import edgeface  # noqa: F401

from edgeface.cli import main
from conftest import aligned_celeba_subset
from edgeface.train.common import read_log

N_IDS, PER_ID = 10, 4
SMALL = ["--set", "model.name=mobilenetv2", "--set", "model.alpha=0.35", "--set", "model.input_size=96",
         "--set", "model.last_channels=128", "--set", "model.embedding_dim=64",
         "--set", "data.val_fraction=0.2", "--set", "optim.name=adam", "--set", "optim.lr=3e-3",
         "--set", "optim.warmup_epochs=0", "--set", "optim.schedule=step", "--set", "optim.milestones=[100]",
         "--set", "data.val_batch_size=16", "--set", "train.log_every=5",
         "--set", "data.augment=false"]  # so that 20 steps visibly fit the 32 images (loss must drop)


@pytest.fixture(scope="session")
def tiny_aligned(tmp_path_factory, celeba_root):
    return aligned_celeba_subset(tmp_path_factory, celeba_root, N_IDS, PER_ID)


def _train(data, out, *args):
    return main(["train", "face", "--data", str(data), "--out", str(out), *SMALL, *args])


def test_train_resume_and_seed(tiny_aligned, tmp_path, capsys):
    run = tmp_path / "run"
    # 32 training images (8 identities), batch 8: 4 steps per epoch.
    assert _train(tiny_aligned, run, "--loss", "softmax", "--batch-size", "8", "--max-steps", "20", "--seed", "3") == 0
    for name in ("run.json", "model.keras", "log.csv", "curves.png", "config.toml", "checkpoints/checkpoint"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir())
    rows = read_log(run)
    assert [r["step"] for r in rows] == [4, 8, 12, 16, 20]
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"], [r["loss"] for r in rows]
    assert all(0.0 <= r["val_acc"] <= 1.0 and r["val_pairs"] > 0 for r in rows)
    info = json.loads((run / "run.json").read_text())
    assert info["task"] == "face_embedding" and info["steps"] == 20 and info["stop_reason"] == "max_steps"
    assert info["data"]["train_identities"] == 8 and info["data"]["val_identities"] == 2
    assert info["model"]["name"] == "mobilenetv2" and info["model"]["kwargs"]["alpha"] == 0.35
    # the contract convert copies: 112-px crops resized to 96 are no registered template any more
    assert info["alignment"] is None and info["input"] == {"size": 96, "color": "RGB",
                                                           "normalization": {"mean": 127.5, "std": 127.5}}

    from edgeface.nets import load_model
    m = load_model(run / "model.keras")
    assert m.output_shape == (None, 64) and m.input_shape == (None, 96, 96, 3)

    # Without --resume an existing run is refused; --resume continues the step counter.
    capsys.readouterr()
    assert _train(tiny_aligned, run, "--max-steps", "26") == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "face", "--data", str(tiny_aligned), "--out", str(run), "--resume", "--max-steps", "26"]) == 0
    rows2 = read_log(run)
    assert [r["step"] for r in rows2] == [4, 8, 12, 16, 20, 24, 26]   # continued, not restarted
    assert rows2[:5] == rows
    assert rows2[-1]["epoch"] == pytest.approx(6.5)
    assert (run / "checkpoints" / "ckpt-26.index").is_file()
    assert json.loads((run / "run.json").read_text())["steps"] == 26

    # Checkpoints inside an epoch (every 3 steps, 4 steps an epoch), so a run killed mid-epoch loses
    # at most 3 steps; the epoch ends and the last step checkpoint as before.
    mid = tmp_path / "mid"
    assert _train(tiny_aligned, mid, "--batch-size", "8", "--max-steps", "10", "--set", "train.checkpoint_every=3",
                  "--set", "train.keep_checkpoints=10") == 0
    saved = sorted(int(f.name[5:-6]) for f in (mid / "checkpoints").glob("ckpt-*.index"))
    assert saved == [3, 4, 6, 8, 9, 10]

    # Same seed, fresh run: the first epoch is bit-identical.
    again = tmp_path / "again"
    assert _train(tiny_aligned, again, "--loss", "softmax", "--batch-size", "8", "--max-steps", "4", "--seed", "3") == 0
    assert read_log(again)[0]["loss"] == rows[0]["loss"]


def test_center_loss_with_distillation(tiny_aligned, tmp_path, teachers_root, monkeypatch):
    """Joint softmax + center + 1 - cos(teacher) through a training-only 64->128 projection, plus
    the relational term on the 64-d embedding itself."""
    monkeypatch.setenv("EDGEFACE_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "center"
    assert _train(tiny_aligned, run, "--loss", "center", "--batch-size", "16", "--max-steps", "2",
                  "--teacher", str(teachers_root / "mobilefacenet-ncnn"), "--set", "loss.relational_weight=2") == 0
    rows = read_log(run)
    assert rows[-1]["center_loss"] > 0 and rows[-1]["cls_loss"] > 0 and 0 < rows[-1]["distill_loss"] <= 2
    assert 0 < rows[-1]["relational_loss"] <= 4  # squared cosine differences
    info = json.loads((run / "run.json").read_text())
    assert info["teacher"]["dim"] == 128 and info["teacher"]["license"]
    assert info["teacher"]["license"] in info["license"]  # the weights inherit the teacher's terms
    assert list((tmp_path / "cache" / "teacher_embeddings").glob("*.npz"))
    # The projection is training-only: the saved model still outputs the 64-d raw embedding.
    from edgeface.nets import load_model
    assert load_model(run / "model.keras").output_shape == (None, 64)


def test_bad_inputs_one_line(tmp_path, capsys):
    assert main(["train", "face", "--data", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["train", "face", "--data", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "optim.lr=x"]) == 2
    assert main(["train", "face", "--data", str(tmp_path), "--out", str(tmp_path / "r2"), "--resume"]) == 2


def test_extra_unlabelled_faces_and_warm_start(tiny_aligned, tmp_path, teachers_root, monkeypatch, capsys):
    """data.extra: morphs of the training faces join the distillation term (held-out identities
    dropped); train.init starts from another run's weights."""
    from edgeface.data.distill_sets import make_morphs
    from edgeface.nets import load_model
    import numpy as np

    monkeypatch.setenv("EDGEFACE_CACHE", str(tmp_path / "cache"))
    morphs = tmp_path / "morphs"
    make_morphs(tiny_aligned, morphs, count=24)
    teacher = ["--teacher", str(teachers_root / "mobilefacenet-ncnn"), "--set", "loss.weight=0"]
    extra = ["--set", f"data.extra=['{morphs}']"]
    first = tmp_path / "first"
    assert _train(tiny_aligned, first, *teacher, *extra, "--batch-size", "8", "--max-steps", "3") == 0
    info = json.loads((first / "run.json").read_text())
    counts = info["data"]["extra"][str(morphs)]
    assert counts["dropped"] > 0 and counts["images"] + counts["dropped"] == 24
    assert info["data"]["train_images"] == 32 + counts["images"]
    assert info["steps_per_epoch"] == (32 + counts["images"]) // 8
    from edgeface.convert.source import load_source
    assert str(morphs) in load_source(first).training_data()  # the model card names the extra faces

    # Warm start with a negligible learning rate: the convolution kernels are the source's.
    warm = tmp_path / "warm"
    assert _train(tiny_aligned, warm, *teacher, "--set", f"train.init={first / 'model.keras'}",
                  "--lr", "1e-9", "--set", "optim.weight_decay=0", "--batch-size", "8", "--max-steps", "1") == 0
    src, got = load_model(first / "model.keras"), load_model(warm / "model.keras")
    kernels = [i for i, w in enumerate(src.weights) if "kernel" in w.name]
    assert kernels and all(np.allclose(src.get_weights()[i], got.get_weights()[i], atol=1e-6) for i in kernels)

    # train.freeze_bn: the BatchNorm statistics and affine weights stay the source's, the kernels move.
    frozen = tmp_path / "frozen"
    assert _train(tiny_aligned, frozen, *teacher, "--set", f"train.init={first / 'model.keras'}",
                  "--set", "train.freeze_bn=true", "--batch-size", "8", "--max-steps", "2") == 0
    got = load_model(frozen / "model.keras")
    bn = [i for i, w in enumerate(src.weights) if w.name.split("/")[0].endswith("bn") or "batch_normalization" in w.name]
    assert bn and all(np.array_equal(src.get_weights()[i], got.get_weights()[i]) for i in bn)
    assert not all(np.allclose(src.get_weights()[i], got.get_weights()[i]) for i in kernels)

    # data.select = teacher_cos: the kept epoch is chosen by the mean cosine to the teacher on the
    # validation images, recorded beside the pair accuracy (checked against numpy on the saved model).
    sel = tmp_path / "select"
    assert _train(tiny_aligned, sel, *teacher, "--set", "model.embedding_dim=128", "--set", "data.select=teacher_cos",
                  "--batch-size", "8", "--max-steps", "2") == 0
    info = json.loads((sel / "run.json").read_text())
    assert info["best"]["metric"] == "val_teacher_cosine" and 0.5 <= info["teacher_val_acc"] <= 1.0
    row = read_log(sel)[-1]
    assert -1.0 <= row["val_teacher_cos"] <= 1.0 and row["val_teacher_cos"] == pytest.approx(info["best"]["value"], rel=1e-5, abs=1e-6)  # log.csv keeps 6 digits
    from edgeface.data.pipeline import load_images
    from edgeface.spec import normalize_pixels
    from edgeface.teachers import load_teacher
    from edgeface.train.face import FaceTask
    held = FaceTask(tiny_aligned, info["config"])
    held.load_data()  # the same seeded identity split as the run
    student = load_model(sel / "model.keras")(normalize_pixels(load_images(held.val.paths, 96)), training=False).numpy()
    teacher_emb = load_teacher(teachers_root / "mobilefacenet-ncnn").embed(load_images(held.val.paths, 112))
    student /= np.linalg.norm(student, axis=1, keepdims=True)
    assert np.mean(np.sum(student * teacher_emb, axis=1)) == pytest.approx(row["val_teacher_cos"], abs=1e-2)
    capsys.readouterr()
    assert _train(tiny_aligned, tmp_path / "bad0", *teacher, "--set", "data.select=teacher_cos", "--batch-size", "8", "--max-steps", "1") == 2
    assert "embedding size" in capsys.readouterr().err

    # Unlabelled faces cannot feed a classification loss; a different architecture cannot warm-start.
    capsys.readouterr()
    assert _train(tiny_aligned, tmp_path / "bad", "--teacher", str(teachers_root / "mobilefacenet-ncnn"),
                  *extra, "--max-steps", "1") == 2
    assert "pure distillation" in capsys.readouterr().err
    assert _train(tiny_aligned, tmp_path / "bad2", *teacher, "--set", f"train.init={first / 'model.keras'}",
                  "--set", "model.alpha=0.5", "--batch-size", "8", "--max-steps", "1") == 2
    assert "architecture differs" in capsys.readouterr().err
    assert _train(tiny_aligned, tmp_path / "bad3", "--set", "loss.relational_weight=1", "--max-steps", "1") == 2
    assert "needs a --teacher" in capsys.readouterr().err


def test_extra_val_fraction_holds_faces_out_and_scores_them(tiny_aligned, tmp_path, teachers_root, monkeypatch):
    """data.extra_val_fraction: a name-hashed share of the extra faces leaves training and is scored by
    the mean cosine to the teacher (checked against numpy on the saved model and the real teacher)."""
    import hashlib

    import numpy as np

    from edgeface.data.distill_sets import extra_images, make_morphs, split_extra_held_out
    from edgeface.data.pipeline import load_images
    from edgeface.nets import load_model
    from edgeface.spec import normalize_pixels
    from edgeface.teachers import load_teacher

    monkeypatch.setenv("EDGEFACE_CACHE", str(tmp_path / "cache"))
    morphs = tmp_path / "morphs"
    make_morphs(tiny_aligned, morphs, count=24)
    teacher = ["--teacher", str(teachers_root / "mobilefacenet-ncnn"), "--set", "loss.weight=0",
               "--set", "model.embedding_dim=128", "--set", f"data.extra=['{morphs}']"]
    run = tmp_path / "xval"
    assert _train(tiny_aligned, run, *teacher, "--set", "data.extra_val_fraction=0.4", "--batch-size", "8",
                  "--set", "data.select=teacher_cos_both", "--max-steps", "2") == 0
    info = json.loads((run / "run.json").read_text())
    counts = info["data"]["extra"][str(morphs)]
    held_n = info["data"]["extra_val_images"]
    assert held_n == counts["validation"] > 0 and counts["images"] > 0
    assert counts["images"] + counts["validation"] + counts["dropped"] == 24
    assert info["data"]["train_images"] == 32 + counts["images"]

    # The held-out faces are exactly those whose "<folder>/<path inside it>" hash is under the fraction.
    from edgeface.train.face import FaceTask
    task = FaceTask(tiny_aligned, info["config"])
    task.load_data()  # the run's own split
    held = task.extra_val_paths
    trained = [p for p in task.train_paths if p.startswith(str(morphs))]

    def under(p):
        key = f"morphs/{Path(p).relative_to(morphs).as_posix()}"
        return int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) < 0.4 * 16 ** 8

    assert len(held) == held_n and all(map(under, held)) and not any(map(under, trained))
    paths, _ = extra_images([morphs], [])
    assert sorted(split_extra_held_out([morphs], paths[::-1], 0.4)[1]) == sorted(split_extra_held_out([morphs], paths, 0.4)[1])

    student = load_model(run / "model.keras")(normalize_pixels(load_images(held, 96)), training=False).numpy()
    target = load_teacher(teachers_root / "mobilefacenet-ncnn").embed(load_images(held, 112))
    student /= np.linalg.norm(student, axis=1, keepdims=True)
    target /= np.linalg.norm(target, axis=1, keepdims=True)
    row = read_log(run)[-1]
    assert row["val_extra_teacher_cos"] == pytest.approx(np.mean(np.sum(student * target, axis=1)), abs=1e-2)
    # data.select = teacher_cos_both keeps the epoch by the mean of the two validation cosines
    both = (row["val_teacher_cos"] + row["val_extra_teacher_cos"]) / 2
    assert row["val_both_teacher_cos"] == pytest.approx(both, abs=2e-6)  # log.csv keeps 6 digits
    assert info["best"]["metric"] == "val_both_teacher_cosine"
    assert info["best"]["value"] == pytest.approx(both, abs=2e-6)

    assert _train(tiny_aligned, tmp_path / "bad1", *teacher, "--set", "data.extra_val_fraction=1.0", "--max-steps", "1") == 2
    assert _train(tiny_aligned, tmp_path / "bad2", "--set", "data.extra_val_fraction=0.2", "--max-steps", "1") == 2
    assert _train(tiny_aligned, tmp_path / "bad3", *teacher, "--set", "data.select=teacher_cos_both", "--max-steps", "1") == 2


def test_card_licence_of_distilled_runs(tmp_path):
    """A run without its own licence note still tells the card what the teacher's terms are."""
    from edgeface.convert.source import Source

    teacher = {"name": "t", "license": "research use only"}
    assert "research use only" in Source(None, tmp_path, tmp_path, {"teacher": teacher}).license()
    assert Source(None, tmp_path, tmp_path, {"license": "mine", "teacher": teacher}).license() == "mine"
    assert Source(None, tmp_path, tmp_path, {}).license() is None
    src = Source(None, tmp_path, tmp_path, {"data": {"dir": "/d", "extra": {"/m": {"images": 3}}}})
    assert src.training_data() == "/d + label-free distillation faces: /m"
