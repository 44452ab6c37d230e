"""Face trainer pieces that need no data: config merging/overrides, LR schedules, optimizers,
validation pairs, checkpoint state round trip, CSV log resume."""
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401

from edgeface.errors import EdgefaceError
from edgeface.train import config as C
from edgeface.train.face import make_val_pairs, resolve_config


def test_shipped_configs_resolve(tmp_path):
    for name in ("face_mnv2", "face_micro", "face_distill"):
        cfg = resolve_config(tmp_path, name)
        assert cfg["model"]["name"].startswith("mobilenetv2_")
    cfg = resolve_config(tmp_path, "face_micro")
    assert cfg["loss"]["name"] == "cosface" and cfg["optim"]["name"] == "adamw"


RECIPE_CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"


def test_every_face_config_resolves(tmp_path):
    names = sorted(f.stem for f in C.CONFIG_DIR.glob("face_*.toml"))
    assert len(names) >= 4
    recipes = sorted(RECIPE_CONFIGS.glob("face_*.toml"))
    assert len(recipes) >= 10
    for name in names + recipes:
        assert resolve_config(tmp_path, name)["model"]["name"].startswith("mobilenetv2"), name
    # Package configs are generic: a warm start from a run folder belongs to a recipe.
    for name in names:
        assert not resolve_config(tmp_path, name)["train"]["init"], name
    # A follow-up round states only its changes; the rest comes from the round it extends.
    r3, r4 = (resolve_config(tmp_path, RECIPE_CONFIGS / f"face_edge_morphs{k}.toml") for k in (2, 3))
    assert r4["optim"]["lr"] == 0.0005 and r3["optim"]["lr"] == 0.0007
    assert r4["data"]["extra"][:-1] == r3["data"]["extra"] and r4["model"] == r3["model"]
    assert r4["train"]["epochs"] == 4 and r3["train"]["epochs"] == 5  # a key a round overrides


def test_recipe_config_replaces_the_shipped_micro_command(tmp_path):
    """The shipped micro step was a command with overrides; its recipe config resolves to the same."""
    one = resolve_config(tmp_path, RECIPE_CONFIGS / "face_edge_micro_morphs3.toml")
    cmd = resolve_config(tmp_path, RECIPE_CONFIGS / "face_edge_micro_morphs2.toml",
                         ["train.init=runs/face_edge_micro_morphs2/model.keras", "optim.lr=0.0004"],
                         {"train.epochs": 2})
    assert one == cmd


def test_extends(tmp_path):
    (tmp_path / "base.toml").write_text('[model]\nname = "mobilenetv2"\nalpha = 0.5\n'
                                        '[optim]\nlr = 0.1\nname = "sgd"\n[data]\nextra = ["a", "b"]\n')
    (tmp_path / "child.toml").write_text('extends = "base"\n[optim]\nlr = 0.01\n[data]\nextra = ["c"]\n')
    got = C.load_toml(tmp_path / "child.toml")
    assert got == {"model": {"name": "mobilenetv2", "alpha": 0.5}, "optim": {"lr": 0.01, "name": "sgd"},
                   "data": {"extra": ["c"]}}  # tables merge key by key; a list is replaced whole
    (tmp_path / "loop_a.toml").write_text('extends = "loop_b"\n')
    (tmp_path / "loop_b.toml").write_text('extends = "loop_a.toml"\n')
    (tmp_path / "orphan.toml").write_text('extends = "nowhere"\n')
    (tmp_path / "typo.toml").write_text('extends = 3\n')
    for name, msg in (("loop_a", "makes a cycle"), ("orphan", "config file not found: nowhere"),
                      ("typo", "extends must be a config name")):
        with pytest.raises(EdgefaceError, match=msg):
            C.load_toml(tmp_path / f"{name}.toml")


def test_overrides_order_and_types(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[optim]\nlr = 0.05\n[model]\nname = "mobilenetv2"\nalpha = 0.5\n')
    cfg = C.resolve(C.FACE_DEFAULTS, f, ["optim.lr=0.01", "model.stages=[[1,16,1,1],[6,24,2,2]]",
                                         "loss.name=cosface", "optim.warmup_epochs=3"],
                    {"optim.lr": None, "train.max_steps": 20})
    assert cfg["optim"]["lr"] == 0.01                      # --set beats the file
    assert cfg["optim"]["warmup_epochs"] == 3.0 and isinstance(cfg["optim"]["warmup_epochs"], float)
    assert cfg["model"] == {"name": "mobilenetv2", "alpha": 0.5, "stages": [[1, 16, 1, 1], [6, 24, 2, 2]]}
    assert cfg["loss"]["name"] == "cosface" and cfg["train"]["max_steps"] == 20
    # The written config reads back identically.
    g = tmp_path / "back.toml"
    g.write_text(C.to_toml(cfg))
    assert C.resolve(C.FACE_DEFAULTS, g) == cfg


@pytest.mark.parametrize("sets", [["optim.lrr=0.1"], ["optim.lr=fast"], ["train.epochs=1.5"], ["nokey"],
                                  ["loss.name=triplet"], ["data.val_fraction=1.0"], ["train.qat=yes"]])
def test_bad_overrides_fail_with_one_line(tmp_path, sets):
    with pytest.raises(EdgefaceError):
        resolve_config(tmp_path, None, sets)


def test_bad_config_files(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[optim\nlr = ")
    with pytest.raises(EdgefaceError, match="not valid TOML"):
        resolve_config(tmp_path, bad)
    with pytest.raises(EdgefaceError, match="not found"):
        resolve_config(tmp_path, tmp_path / "missing.toml")
    with pytest.raises(EdgefaceError, match="nothing to resume"):
        resolve_config(tmp_path / "run", None, resume=True)


def test_schedules():
    from edgeface.train.common import WarmupCosine, WarmupStepDecay, make_optimizer, make_schedule

    s = WarmupCosine(0.1, total_steps=110, warmup_steps=10, min_lr=0.0)
    assert float(s(0)) == pytest.approx(0.01)                 # linear warm-up
    assert float(s(9)) == pytest.approx(0.1)
    assert float(s(60)) == pytest.approx(0.05, abs=1e-6)      # half-way through the cosine
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    st = WarmupStepDecay(0.1, [100, 200], gamma=0.1)
    assert [round(float(st(i)), 6) for i in (0, 99, 100, 199, 200, 500)] == [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    optim = dict(C.FACE_DEFAULTS["optim"], schedule="step", milestones=[2, 3])
    sched = make_schedule(optim, steps_per_epoch=10, total_steps=40)
    assert float(sched(25)) == pytest.approx(0.01)
    for name in ("sgd", "adam", "adamw"):
        make_optimizer(dict(optim, name=name), sched)


def test_weight_decay_skips_bn_and_bias():
    import tensorflow as tf
    import tf_keras as keras
    from edgeface.train.common import make_optimizer

    inp = keras.Input((4,))
    out = keras.layers.BatchNormalization()(keras.layers.Dense(3)(inp))
    m = keras.Model(inp, out)
    opt = make_optimizer(dict(C.FACE_DEFAULTS["optim"], name="sgd", momentum=0.0, weight_decay=0.5, lr=0.1), 0.1)
    before = [v.numpy().copy() for v in m.trainable_variables]
    opt.apply_gradients([(tf.zeros_like(v), v) for v in m.trainable_variables])
    for v, b in zip(m.trainable_variables, before):
        if "kernel" in v.name:
            np.testing.assert_allclose(v.numpy(), b * (1 - 0.1 * 0.5), rtol=1e-6)  # decayed
        else:
            np.testing.assert_allclose(v.numpy(), b)                                 # gamma, beta, bias: not


def test_val_pairs():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    pairs, same = make_val_pairs(labels, max_same=100, seed=0)
    n_same = 3 + 1 + 0 + 6
    assert same.sum() == n_same and (~same).sum() == n_same
    assert (labels[pairs[same, 0]] == labels[pairs[same, 1]]).all()
    assert (labels[pairs[~same, 0]] != labels[pairs[~same, 1]]).all()
    assert len({tuple(p) for p in pairs}) == len(pairs)      # no duplicates
    capped, s2 = make_val_pairs(labels, max_same=4, seed=0)
    assert s2.sum() == 4 and (~s2).sum() == 4
    again, _ = make_val_pairs(labels, max_same=4, seed=0)
    np.testing.assert_array_equal(capped, again)             # seeded
    with pytest.raises(EdgefaceError):
        make_val_pairs(np.array([0, 0, 0]), 10, 0)           # one identity: no different pairs


def test_checkpointer_and_log_resume(tmp_path):
    import tf_keras as keras
    from edgeface.losses import CenterLoss
    from edgeface.train.common import Checkpointer, EarlyStopping, RunLogger, read_log

    center = CenterLoss(3, 2)
    ck = Checkpointer(tmp_path / "ck", center=center)
    stop = EarlyStopping(ck, patience=2)
    assert stop.update(0.6, 1) and not stop.update(0.6, 2) and not stop.update(0.5, 3) and stop.should_stop
    center.centers.assign(np.ones((3, 2)))
    ck.set(step=7, epoch=1)
    ck.save()
    log = RunLogger(tmp_path, ["epoch", "step", "loss"])
    for step in (4, 7, 9):
        log.row({"epoch": step / 4, "step": step, "loss": 1.0 / step})
    log.scalars(9, {"loss": 0.1})
    log.close()
    assert (tmp_path / "tb").is_dir() and list((tmp_path / "tb").iterdir())

    center2 = CenterLoss(3, 2)
    ck2 = Checkpointer(tmp_path / "ck", center=center2)
    ck2.restore_latest()
    assert ck2.get("step") == 7 and ck2.get("best_metric") == pytest.approx(0.6) and ck2.get("bad_epochs") == 2
    np.testing.assert_allclose(center2.centers.numpy(), 1.0)
    log2 = RunLogger(tmp_path, ["epoch", "step", "loss"], resume_step=7)   # the row at step 9 is dropped
    log2.row({"epoch": 2, "step": 8, "loss": 0.5})
    assert [r["step"] for r in read_log(tmp_path)] == [4, 7, 8]
    with pytest.raises(EdgefaceError, match="nothing to resume"):
        Checkpointer(tmp_path / "empty", model=keras.Sequential()).restore_latest()
