"""PIC angle rule on hand-made unit vectors at exactly 10, 20 and 170 degrees (merge / keep / remove),
the threshold-free most-similar variant, and the autoencoder round loop."""
from __future__ import annotations

import numpy as np
import pytest

import edgeface  # noqa: F401
from edgeface.errors import EdgefaceError
from edgeface.optimize.distinctiveness import angles_deg, pair_angles, plan, plan_most_similar


def _pair(deg, dims=2, at=0, n=6):
    """Two unit activation vectors in dims (at, at+1) of an n-dim pattern space, `deg` apart."""
    a = np.zeros((n, 2))
    t = np.radians(deg)
    a[at, 0] = 1.0
    a[at, 1], a[at + 1, 1] = np.cos(t), np.sin(t)
    return a


def test_hand_made_angles_are_exact():
    for deg in (10.0, 20.0, 170.0):
        assert angles_deg(_pair(deg))[0, 1] == pytest.approx(deg, abs=1e-9)


def test_10_deg_merged_20_kept_170_removed():
    # three pairs in orthogonal planes: every cross-pair angle is 90 deg
    acts = np.concatenate([_pair(10, at=0), _pair(20, at=2), _pair(170, at=4)], axis=1)
    acts[:, 1] *= 0.5  # the weaker unit of the 10-deg pair is the one merged away
    p = plan(acts, 15.0, 165.0)
    assert [(m["keep"], m["drop"]) for m in p["merges"]] == [(0, 1)]
    assert p["merges"][0]["angle_deg"] == pytest.approx(10.0)
    assert p["merges"][0]["scale"] == pytest.approx(0.5 * np.cos(np.radians(10)))  # least-squares fit of 1 by 0
    assert [sorted(r["units"]) for r in p["removed_pairs"]] == [[4, 5]]
    assert p["removed_pairs"][0]["angle_deg"] == pytest.approx(170.0)
    assert p["keep"] == [0, 2, 3] and p["dead"] == []
    assert sorted(pair_angles(acts).round(6).tolist())[:3] == [10.0, 20.0, 90.0]


@pytest.mark.parametrize("deg, merged, removed", [(10, 1, 0), (20, 0, 0), (170, 0, 1), (164.9, 0, 0), (15.1, 0, 0)])
def test_each_angle_alone(deg, merged, removed):
    p = plan(_pair(deg), 15.0, 165.0)
    assert (len(p["merges"]), len(p["removed_pairs"])) == (merged, removed)


def test_most_similar_ignores_thresholds():
    """No pair is within 15/165 deg, yet the variant merges the closest pair (20 deg), one unit per call."""
    acts = np.concatenate([_pair(20, at=0), _pair(40, at=2), _pair(170, at=4)], axis=1)
    assert not plan(acts, 15.0, 165.0)["merges"] and plan(acts, 15.0, 165.0)["removed_pairs"]
    p = plan_most_similar(acts)
    assert len(p["merges"]) == 1 and {p["merges"][0]["keep"], p["merges"][0]["drop"]} == {0, 1}
    assert p["merges"][0]["angle_deg"] == pytest.approx(20.0) and len(p["keep"]) == 5
    acts[:, 3] = 0.0  # a dead unit goes first, on its own
    p = plan_most_similar(acts)
    assert p["dead"] == [3] and not p["merges"] and p["keep"] == [0, 1, 2, 4, 5]
    assert plan_most_similar(acts[:, :1])["keep"] == [0]


def _ae_with_code(vectors):
    """An autoencoder whose linear code layer, on identity patterns, outputs exactly `vectors` (patterns x units)."""
    from edgeface.optimize.pic import build_autoencoder
    n, units = vectors.shape
    m = build_autoencoder(n, units, activation=None)
    m.get_layer("code").set_weights([vectors.astype(np.float32), np.zeros(units, np.float32)])
    return m, np.eye(n, dtype=np.float32)


def test_keras_surgery_on_exact_angles():
    from edgeface.optimize.distinctiveness import prune_dense_by_distinctiveness
    from edgeface.optimize.pic import angle_stats, hidden_units
    acts = np.concatenate([_pair(10, at=0), _pair(20, at=2), _pair(170, at=4)], axis=1)
    m, eye = _ae_with_code(acts)
    st = angle_stats(m, eye)
    assert st["min_angle_deg"] == pytest.approx(10, abs=1e-3) and st["max_angle_deg"] == pytest.approx(170, abs=1e-3)
    new, rep = prune_dense_by_distinctiveness(m, "code", eye)
    assert hidden_units(new) == 3 and len(rep["merged"]) == 1 and len(rep["removed_pairs"]) == 1
    new2, rep2 = prune_dense_by_distinctiveness(m, "code", eye, rule="most_similar")
    assert hidden_units(new2) == 5 and rep2["rule"] == "most_similar"
    assert rep2["merged"][0]["angle_deg"] == pytest.approx(10, abs=1e-3)
    # a merge of exact copies keeps the reconstruction exactly
    dup = np.concatenate([_pair(20, at=0), _pair(0, at=2)], axis=1)  # units 2, 3 identical
    m, eye = _ae_with_code(dup)
    new, rep = prune_dense_by_distinctiveness(m, "code", eye)
    assert hidden_units(new) == 3
    np.testing.assert_allclose(new.predict(eye, verbose=0), m.predict(eye, verbose=0), atol=1e-5)
    with pytest.raises(EdgefaceError, match="rule"):
        prune_dense_by_distinctiveness(m, "code", eye, rule="closest")


def test_pic_rounds_shrink_the_code_and_stop():
    """Data with 3 real dimensions, an 8-unit code: the most-similar variant goes down to min_units one
    unit per round, the threshold rule stops when no pair is within 15/165 deg."""
    from edgeface.optimize.pic import build_autoencoder, fit, pic_prune
    rng = np.random.default_rng(0)
    z = rng.normal(size=(400, 3))
    x = np.tanh(z @ rng.normal(size=(3, 12))).astype(np.float32)
    x = (x - x.mean(0)) / x.std(0)
    m = build_autoencoder(12, 8, seed=0)
    fit(m, x[:300], x[300:], epochs=30, lr=3e-3)
    calls = []
    _, rows = pic_prune(m, x[:300], x[300:], rule="most_similar", finetune_epochs=2, min_units=3,
                        evaluate=lambda mm: calls.append(1) or {"acc": 1.0})
    assert [r["units"] for r in rows] == [8, 7, 6, 5, 4, 3]
    assert len(calls) == len(rows) and all(r["acc"] == 1.0 for r in rows)
    assert all(r["min_angle_deg"] is not None for r in rows) and rows[1]["merged"] == 1
    final, rows_t = pic_prune(m, x[:300], x[300:], rule="thresholds", finetune_epochs=2, max_rounds=5)
    assert rows_t[0]["units"] == 8 and all(a["units"] >= b["units"] for a, b in zip(rows_t, rows_t[1:]))
    last = rows_t[-1]
    if len(rows_t) < 6:  # stopped because no pair is left within the thresholds
        assert last["min_angle_deg"] >= 15.0 - 1e-6 or last["units"] == 1
    with pytest.raises(EdgefaceError, match="rule"):
        pic_prune(m, x, x, rule="x")


def test_numpy_measurements_match_keras():
    import tf_keras as keras
    from edgeface.optimize.pic import build_autoencoder, encode, recon_loss
    rng = np.random.default_rng(1)
    x = rng.normal(size=(50, 7)).astype(np.float32)
    m = build_autoencoder(7, 4, seed=1)
    probe = keras.Model(m.inputs, m.get_layer("code").output)
    np.testing.assert_allclose(encode(m, x), probe.predict(x, verbose=0), atol=1e-5)
    assert recon_loss(m, x) == pytest.approx(float(np.mean((m.predict(x, verbose=0) - x) ** 2)), rel=1e-5)
