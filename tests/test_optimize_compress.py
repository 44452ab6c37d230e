"""fit_budget on a small MobileFaceNet-shaped net (conv -> PReLU -> depthwise -> PReLU -> conv blocks):
the int8 file it returns fits the budget, is delegated whole, and every round is recorded.

Inputs are real CelebA photos (resized): the activation statistics that pruning and equalisation
use come from real images, not noise.
"""
from __future__ import annotations

import numpy as np
import pytest


def _faces(celeba_root, n: int = 96, size: int = 48) -> np.ndarray:
    import cv2

    from edgeface.utils.images import read_image

    files = sorted(celeba_root.rglob("*.jpg"))[:n]
    return np.stack([(cv2.resize(read_image(f), (size, size)).astype(np.float32) - 127.5) / 127.5 for f in files])


def _net(size: int = 48):
    import tf_keras as keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = L.Input((size, size, 3))
    x = L.Conv2D(32, 3, strides=2, name="stem")(L.ZeroPadding2D(1)(inp))
    x = L.PReLU(shared_axes=[1, 2], alpha_initializer=keras.initializers.Constant(0.25))(x)
    for i in range(3):
        y = L.Conv2D(96, 1, name=f"b{i}_expand")(x)
        y = L.PReLU(shared_axes=[1, 2])(y)
        y = L.DepthwiseConv2D(3, padding="same", name=f"b{i}_dw")(y)
        y = L.PReLU(shared_axes=[1, 2])(y)
        y = L.Conv2D(32, 1, name=f"b{i}_proj")(y)
        x = L.Add()([x, y])
    x = L.Conv2D(64, 1, name="head")(x)
    x = L.DepthwiseConv2D(int(x.shape[1]), name="gdc")(x)
    out = L.Dense(16, name="fc")(L.Flatten()(x))
    model = keras.Model(inp, out)
    for layer in model.layers:  # PReLU slopes as a trained net has them: mixed signs, not all 0.25
        if isinstance(layer, L.PReLU):
            layer.set_weights([rng.uniform(-0.5, 1.2, layer.get_weights()[0].shape).astype(np.float32)])
    return model


@pytest.mark.slow
def test_fit_budget_reaches_the_budget_and_records_rounds(celeba_root):
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.optimize.compress import deploy_form, fit_budget, int8_bytes

    x = _faces(celeba_root)
    model = _net()
    start = len(int8_bytes(deploy_form(model, x[:32]), x[:32], per_channel=False))
    budget = int(start * 0.93)
    result = fit_budget(model, x[:64], x[64:], budget, step=0.1, max_rounds=4, finetune_steps=2, calib_count=32,
                        log=lambda *_: None)
    assert len(result.int8) <= budget
    # tensor names differ between conversions in one process (graph name scopes), so sizes by a few %
    assert abs(result.rounds[0]["bytes"] - start) < 0.03 * start and all(r["accepted"] for r in result.rounds)
    assert len(result.rounds) >= 2
    assert result.rounds[-1]["bytes"] < result.rounds[0]["bytes"]
    assert result.model.count_params() < model.count_params()
    it = Interpreter(model_content=result.int8, num_threads=1)
    it.allocate_tensors()
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert "PRELU" not in ops and ops.count("DELEGATE") == 1
    # the deploy form computes what the pruned float model computes (PReLU split is exact)
    np.testing.assert_allclose(np.asarray(result.deploy(x[64:])), np.asarray(result.model(x[64:])),
                               rtol=1e-3, atol=1e-3)


def test_faces_batch_mirrors_the_chosen_crops_and_takes_their_mirror_targets():
    from edgeface.optimize.compress import Faces

    x = np.arange(3 * 2 * 4 * 3, dtype=np.float32).reshape(3, 2, 4, 3)
    targets = np.stack([np.full((3, 5), 1.0), np.full((3, 5), -1.0)], axis=1) * np.arange(1, 4)[:, None, None]
    faces = Faces(x.astype(np.float16), targets)
    xb, yb = faces.batch(np.array([0, 2]), np.array([False, True]))
    np.testing.assert_array_equal(xb[0], x[0])
    np.testing.assert_array_equal(xb[1], x[2][:, ::-1])  # mirrored = width axis reversed
    np.testing.assert_array_equal(yb, [np.full(5, 1.0), np.full(5, -3.0)])
    fx, fy = faces.with_flips()
    assert fx.shape == (6, 2, 4, 3) and fy.shape == (6, 5) and fy[3, 0] == -1.0
    with pytest.raises(Exception, match="targets of shape"):
        Faces(x, targets[:, 0])


@pytest.mark.slow
def test_fit_budget_final_recovery_keeps_the_best_and_resumes(celeba_root, tmp_path):
    from edgeface.optimize.compress import Faces, fit_budget, recover

    x = _faces(celeba_root)
    model = _net()
    train, val = Faces.from_model(model, x[:64]), Faces.from_model(model, x[64:])
    student = _net()
    student.set_weights([w + np.random.default_rng(2).normal(0, 0.05, w.shape).astype(np.float32)
                         for w in model.get_weights()])
    losses = recover(student, train, 30, batch_size=16, lr=1e-3)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])  # distilling towards the teacher lowers the loss

    logs = []
    kw = dict(step=0.1, max_rounds=1, finetune_steps=2, calib_count=32, final_steps=4, eval_every=2,
              work_dir=tmp_path / "fit", log=logs.append)
    first = fit_budget(model, train, val, 10 ** 9, **kw)
    final = first.rounds[-1]
    assert final["round"] == "final" and [c["step"] for c in final["curve"]] == [2, 4]
    best = min([first.rounds[0]["val_loss"]] + [c["val_loss"] for c in final["curve"]])
    assert final["best_val_loss"] == pytest.approx(best, abs=1e-5)
    assert (tmp_path / "fit" / "state.json").exists() and (tmp_path / "fit" / "round_0.keras").exists()
    logs.clear()
    again = fit_budget(model, train, val, 10 ** 9, **kw)  # same settings: nothing recomputed
    assert any("resuming" in line for line in logs)
    assert again.rounds[-1]["curve"] == final["curve"]


@pytest.mark.slow
def test_fit_budget_anneals_prelu_to_relu_in_the_final_recovery(celeba_root, tmp_path):
    import tf_keras as keras

    from edgeface.errors import EdgefaceError
    from edgeface.optimize.compress import Faces, fit_budget

    x = _faces(celeba_root)
    model = _net()
    train, val = Faces.from_model(model, x[:64]), Faces.from_model(model, x[64:])
    kw = dict(step=0.1, max_rounds=1, finetune_steps=2, calib_count=32, final_steps=6, eval_every=2,
              anneal_relu=3, work_dir=tmp_path / "fit", log=lambda _: None)
    with pytest.raises(EdgefaceError, match="more final steps"):
        fit_budget(model, train, val, 10 ** 9, **{**kw, "final_steps": 3})
    result = fit_budget(model, train, val, 10 ** 9, **kw)
    final = result.rounds[-1]
    assert [c["step"] for c in final["curve"]] == [2, 4, 6]
    # step 2 still has slopes: never the best, whatever its loss; the best is one of the ReLU checks
    relu_losses = {c["step"]: c["val_loss"] for c in final["curve"] if c["step"] > 3}
    assert final["best_step"] in relu_losses
    assert final["best_val_loss"] == pytest.approx(min(relu_losses.values()), abs=1e-5)
    for net in (result.model, result.deploy):
        assert not any(isinstance(l, keras.layers.PReLU) for l in net.layers)
        assert any(isinstance(l, keras.layers.ReLU) for l in net.layers)
    from edgeface.optimize.distill import distill_loss
    from edgeface.spec import TASK_EMBEDDING
    vx, vt = val.with_flips()
    assert distill_loss(result.model, vt, vx, TASK_EMBEDDING) == pytest.approx(final["best_val_loss"], abs=1e-4)
    again = fit_budget(model, train, val, 10 ** 9, **kw)  # resumed from the saved state: the same ReLU net
    np.testing.assert_allclose(np.asarray(again.model(vx[:8])), np.asarray(result.model(vx[:8])), atol=1e-5)


def test_load_faces_split_leaves_excluded_identities_out(celeba_root):
    from edgeface.optimize.compress import load_faces_split

    people = sorted(p.name for p in celeba_root.iterdir() if p.is_dir())[:2]
    n_images = sum(1 for p in (celeba_root / people[0]).rglob("*.jpg"))
    train, val, info = load_faces_split(celeba_root, (112, 112, 3), 127.5, 127.5, exclude=(people[0], "no-such-id"),
                                        as_paths=True)
    assert info["excluded_images"] == n_images > 0
    assert not any(f"/{people[0]}/" in p for p in train + val)
    assert any(f"/{people[1]}/" in p for p in train + val)


def test_a_changed_final_setting_keeps_the_pruning_rounds(tmp_path):
    from edgeface.optimize.compress import _Stages

    cfg = {"budget": 300000, "step": 0.1, "final_steps": 6000, "final_lr": 1e-4}
    first = _Stages(tmp_path, cfg)
    first.state.update(rounds=[{"round": 0}, {"round": 1}], model="round_1.keras", final={"done": 500})
    first.save()
    again = _Stages(tmp_path, dict(cfg))
    assert again.state["final"] == {"done": 500} and len(again.state["rounds"]) == 2
    longer = _Stages(tmp_path, {**cfg, "final_steps": 12000, "final_lr": 1e-3})
    assert longer.state["model"] == "round_1.keras" and len(longer.state["rounds"]) == 2
    assert longer.state["final"] is None and longer.state["config"]["final_lr"] == 1e-3
    other = _Stages(tmp_path, {**cfg, "step": 0.05})  # a pruning setting: everything starts afresh
    assert other.state["rounds"] == [] and other.state["model"] is None
