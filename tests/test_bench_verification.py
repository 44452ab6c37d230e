"""The LFW 10-fold protocol and the ROC metrics against hand-checked and brute-force answers."""
from __future__ import annotations

import numpy as np
import pytest

from edgeface.bench.verification import (auc, best_threshold, cosine_scores, eer, evaluate, far_threshold,
                                         kfold_accuracy, operating_points, roc_curve, tar_at_far)
from edgeface.spec import far_key


def ten_folds():
    """Folds 1-9: same {0.8, 0.6}, different {0.2, 0.4}. Fold 0: same {0.8, 0.45}, different {0.2, 0.1}."""
    scores, labels, folds = [], [], []
    for k in range(10):
        same, diff = ([0.8, 0.45], [0.2, 0.1]) if k == 0 else ([0.8, 0.6], [0.2, 0.4])
        scores += same + diff
        labels += [True, True, False, False]
        folds += [k] * 4
    return np.array(scores), np.array(labels), np.array(folds)


def test_kfold_hand_checked():
    # Test fold 0: trained on folds 1-9 only, the one perfect threshold is the midpoint 0.5, which
    # calls fold 0's same pair at 0.45 "different": 3/4. Test fold k >= 1: the training set holds
    # 0.45 (same) and 0.4 (different), so the perfect threshold is 0.425 and fold k scores 4/4.
    s, y, f = ten_folds()
    r = kfold_accuracy(s, y, f)
    assert r["thresholds"] == pytest.approx([0.5] + [0.425] * 9)
    assert r["fold_accuracies"] == pytest.approx([0.75] + [1.0] * 9)
    assert r["train_accuracies"] == pytest.approx([1.0] * 10)
    assert r["accuracy"] == pytest.approx(0.975)
    # sample std (ddof=1): sqrt((0.225^2 + 9 * 0.025^2) / 9) = sqrt(0.00625); se = std / sqrt(10)
    assert r["std"] == pytest.approx(np.sqrt(0.00625))
    assert r["se"] == pytest.approx(0.025)


def test_best_threshold_counts_every_candidate():
    # same {0.9, 0.3}, different {0.1, 0.5, 0.6}: t in (0.6, 0.9) gets 4/5 right (only 0.3 wrong),
    # t in (0.1, 0.3) gets 3/5; nothing does better than 4/5.
    thr, acc = best_threshold(np.array([0.9, 0.3, 0.1, 0.5, 0.6]), np.array([1, 1, 0, 0, 0], bool))
    assert thr == pytest.approx(0.75) and acc == pytest.approx(0.8)
    # all same -> a threshold below the lowest score; all different -> above the highest
    thr, acc = best_threshold(np.array([0.2, 0.4]), np.array([True, True]))
    assert thr < 0.2 and acc == 1.0
    thr, acc = best_threshold(np.array([0.2, 0.4]), np.array([False, False]))
    assert thr > 0.4 and acc == 1.0


def test_roc_hand_checked():
    s = np.array([0.9, 0.8, 0.6, 0.4, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0], bool)
    far, tar, thr = roc_curve(s, y)
    assert far.tolist() == [0, 0, 0, 0.25, 0.25, 0.25, 0.5, 0.75, 1.0]
    assert tar.tolist() == [0, 0.25, 0.5, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0]
    assert auc(far, tar) == pytest.approx(14 / 16)  # 14 of the 16 (same, different) pairs ordered right
    assert eer(far, tar) == pytest.approx(0.25)     # at threshold 0.6: FAR = FRR = 1/4
    assert tar_at_far(far, tar, thr, 0.0) == (0.5, 0.8)
    assert tar_at_far(far, tar, thr, 0.25) == (1.0, 0.4)


def brute_force_auc(scores, labels):
    pos, neg = scores[labels], scores[~labels]
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_pair_count_and_mann_whitney(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(600) < 0.5
    s = np.round(rng.normal(y * 0.8, 1.0), 1)  # rounding creates many ties
    far, tar, _ = roc_curve(s, y)
    a = auc(far, tar)
    assert a == pytest.approx(brute_force_auc(s, y), abs=1e-12)
    from scipy.stats import mannwhitneyu

    u = mannwhitneyu(s[y], s[~y]).statistic
    assert a == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-12)


def test_eer_against_brute_force_threshold_sweep():
    rng = np.random.default_rng(3)
    y = rng.random(2000) < 0.5
    s = rng.normal(y * 2.0, 1.0)
    far, tar, _ = roc_curve(s, y)
    # brute force: sweep thresholds, take the one where |FAR - FRR| is smallest
    ts = np.sort(s)
    fars = np.array([(s[~y] >= t).mean() for t in ts])
    frrs = np.array([(s[y] < t).mean() for t in ts])
    k = np.argmin(np.abs(fars - frrs))
    assert eer(far, tar) == pytest.approx((fars[k] + frrs[k]) / 2, abs=2e-3)
    # the normal model: EER = Phi(-d'/2) with d' = 2  -> 0.1587
    assert eer(far, tar) == pytest.approx(0.1587, abs=0.02)


def test_perfect_separation_and_cosine():
    emb = np.array([[1, 0], [2, 0.1], [0, 1], [0, 3], [1, 1]], dtype=np.float32)
    idx = np.array([[0, 1], [2, 3], [0, 2], [1, 3], [0, 4]])
    s = cosine_scores(emb, idx)
    assert s[1] == pytest.approx(1.0) and s[2] == pytest.approx(0.0) and s[4] == pytest.approx(np.sqrt(0.5))
    y = np.array([1, 1, 0, 0, 0], bool)
    scores = np.tile(np.array([0.9, 0.8, 0.1, 0.2, 0.3]), 2)
    r = evaluate(scores, np.tile(y, 2), np.repeat([0, 1], 5))
    assert (r["accuracy"], r["auc"], r["eer"], r["tar_at_far_1e-3"], r["std"]) == (1.0, 1.0, 0.0, 1.0, 0.0)
    assert r["n_folds"] == 2 and r["n_pairs"] == 10


def test_far_key_names():
    assert [far_key(f) for f in (1e-2, 1e-3, 1e-4)] == ["far_1e-2", "far_1e-3", "far_1e-4"]


def test_far_threshold_hand_checked():
    # same {0.9, 0.8, 0.6}, different {0.7, 0.3, 0.2, 0.1}: FAR 0 allows accepting 0.9 and 0.8 only,
    # so the threshold sits midway between 0.8 and the next score 0.7; FAR 1/4 also takes 0.7 and 0.6.
    s = np.array([0.9, 0.8, 0.6, 0.7, 0.3, 0.2, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0, 0], bool)
    assert far_threshold(s, y, 0.0) == pytest.approx(0.75)
    assert far_threshold(s, y, 0.25) == pytest.approx(0.45)
    assert far_threshold(np.array([0.5, 0.9]), np.array([True, False]), 0.0) > 0.9  # accept nothing


def test_operating_points_follow_the_protocol_and_the_impostor_count():
    # 10 folds of 30 same + 30 different pairs: training folds hold 270 impostors, which resolve
    # FAR 1e-2 (2.7 false accepts) but not 1e-3 or 1e-4.
    rng = np.random.default_rng(5)
    y = np.tile(np.r_[np.ones(30, bool), np.zeros(30, bool)], 10)
    f = np.repeat(np.arange(10), 60)
    s = rng.normal(y * 2.0, 1.0)
    pts = operating_points(s, y, f)
    assert list(pts) == ["best_accuracy", "far_1e-2"]
    best = pts["best_accuracy"]
    k = kfold_accuracy(s, y, f)
    assert best["accuracy"] == pytest.approx(k["accuracy"], abs=1e-12)
    assert best["threshold"] == pytest.approx(np.mean(k["thresholds"]), abs=1e-12)
    # held-out TAR and FAR at each fold's own threshold, by brute force
    tars, fars = [], []
    for fold, t in zip(range(10), k["thresholds"]):
        m = f == fold
        tars.append(np.mean(s[m & y] > t))
        fars.append(np.mean(s[m & ~y] > t))
    assert best["tar"] == pytest.approx(np.mean(tars)) and best["far"] == pytest.approx(np.mean(fars))
    strict = pts["far_1e-2"]
    assert set(strict) == {"threshold", "tar", "far"}
    # a stricter point: a higher threshold, fewer false accepts, fewer true accepts
    assert strict["threshold"] > best["threshold"] and strict["far"] < best["far"] and strict["tar"] < best["tar"]
    assert strict["far"] <= 0.05  # about 1e-2 held out (1 false accept in 30 is 0.033)
    # 3,000 impostors (LFW's count) per training set resolve 1e-3 but still not 1e-4
    y2 = np.tile(np.r_[np.ones(300, bool), np.zeros(300, bool)], 10)
    s2 = rng.normal(y2 * 2.0, 1.0)
    assert list(operating_points(s2, y2, np.repeat(np.arange(10), 600))) == ["best_accuracy", "far_1e-2", "far_1e-3"]
