"""Face verification metrics: the LFW View 2 protocol plus ROC-based numbers. numpy only.

Protocol (Huang et al., LFW technical report, "View 2"): the pairs come in 10 folds; for each
fold, the decision threshold is chosen on the other 9 folds (the one maximising their accuracy)
and applied to the held-out fold. Reported: the mean of the 10 fold accuracies, their sample
standard deviation (ddof=1) and the standard error std/sqrt(10), exactly as the LFW README
defines them (insightface prints ddof=0 std, about 5% smaller).
AUC, EER and TAR@FAR are computed once over all pairs pooled (they need no threshold training).

Scores are cosine similarities; a pair is called "same" when score > threshold.
"""
from __future__ import annotations

import numpy as np

from edgeface.runtime.interpreter import l2_normalize
from edgeface.spec import far_key


def cosine_scores(embeddings: np.ndarray, pair_index: np.ndarray) -> np.ndarray:
    """Cosine similarity of each (a, b) row of pair_index, after host-side L2 normalisation."""
    e = l2_normalize(np.asarray(embeddings, dtype=np.float64))
    a, b = pair_index[:, 0], pair_index[:, 1]
    return np.einsum("ij,ij->i", e[a], e[b])


def threshold_candidates(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every distinct decision the data allows: (thresholds ascending, number of correct calls each).

    A threshold between two consecutive distinct scores is their midpoint; one below the lowest
    and one above the highest score cover "all same" and "all different".
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    uniq, inv = np.unique(scores, return_inverse=True)
    same_at = np.bincount(inv, weights=labels, minlength=len(uniq))
    diff_at = np.bincount(inv, weights=~labels, minlength=len(uniq))
    # Threshold j sits just above uniq[j-1] (j = 0: below everything): "same" iff score >= uniq[j].
    same_le = np.concatenate([[0.0], np.cumsum(same_at)])  # same pairs with score < threshold j
    diff_le = np.concatenate([[0.0], np.cumsum(diff_at)])
    correct = (labels.sum() - same_le) + diff_le
    gap = 1e-6 if len(uniq) < 2 else max(1e-6, float(np.min(np.diff(uniq))) / 2)
    thresholds = np.concatenate([[uniq[0] - gap], (uniq[:-1] + uniq[1:]) / 2, [uniq[-1] + gap]])
    return thresholds, correct


def best_threshold(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs. Ties: the median tied candidate,
    so the choice sits inside the best plateau, not at its edge."""
    thresholds, correct = threshold_candidates(scores, labels)
    best = np.flatnonzero(correct == correct.max())
    j = best[len(best) // 2]
    return float(thresholds[j]), float(correct[j] / len(scores))


def accuracy_at(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean((np.asarray(scores) > threshold) == np.asarray(labels, dtype=bool)))


def kfold_accuracy(scores: np.ndarray, labels: np.ndarray, fold_ids: np.ndarray) -> dict:
    """Train the threshold on all folds but one, test on that one, for every fold."""
    scores, labels, fold_ids = np.asarray(scores, np.float64), np.asarray(labels, bool), np.asarray(fold_ids)
    folds = np.unique(fold_ids)
    if len(folds) < 2:
        raise ValueError("k-fold evaluation needs at least 2 folds")
    accs, thresholds, train_accs = [], [], []
    for k in folds:
        test = fold_ids == k
        thr, train_acc = best_threshold(scores[~test], labels[~test])
        thresholds.append(thr)
        train_accs.append(train_acc)
        accs.append(accuracy_at(scores[test], labels[test], thr))
    accs = np.array(accs)
    std = float(accs.std(ddof=1))
    return {"accuracy": float(accs.mean()), "std": std, "se": std / np.sqrt(len(accs)),
            "fold_accuracies": accs.tolist(), "thresholds": thresholds, "train_accuracies": train_accs}


def roc_curve(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(FAR, TAR, threshold) at every distinct score, "same" iff score >= threshold; starts at (0, 0)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError("ROC needs both same and different pairs")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last_of_group = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # tied scores move together
    tp = np.cumsum(y)[last_of_group]
    fp = np.cumsum(~y)[last_of_group]
    far = np.r_[0.0, fp / n_neg]
    tar = np.r_[0.0, tp / n_pos]
    thr = np.r_[np.inf, s[last_of_group]]
    return far, tar, thr


def auc(far: np.ndarray, tar: np.ndarray) -> float:
    """Area under the ROC by trapezoids (equals the Mann-Whitney U / (P*N), ties counting 1/2)."""
    return float(np.sum(np.diff(far) * (tar[1:] + tar[:-1]) / 2.0))


def eer(far: np.ndarray, tar: np.ndarray) -> float:
    """Equal error rate: where FAR = FRR (1 - TAR), linearly interpolated between ROC points."""
    frr = 1.0 - tar
    d = far - frr  # rises from -1 (threshold above all scores) to +1
    j = int(np.argmax(d >= 0))
    if j == 0:
        return float(far[0])
    d0, d1 = d[j - 1], d[j]
    t = 0.0 if d1 == d0 else -d0 / (d1 - d0)
    return float(far[j - 1] + t * (far[j] - far[j - 1]))


def tar_at_far(far: np.ndarray, tar: np.ndarray, thr: np.ndarray, target: float) -> tuple[float, float]:
    """(TAR, threshold) at the operating point with the highest TAR whose FAR <= target (no interpolation)."""
    ok = np.flatnonzero(far <= target + 1e-12)
    j = ok[np.argmax(tar[ok])]
    return float(tar[j]), float(thr[j])


# The operating points a model card records besides best accuracy: FAR targets (false accepts per
# impostor pair). A FAR point is kept only where each fold's training pairs hold enough impostors
# for one false accept at that rate, i.e. the protocol can actually resolve it.
OPERATING_FARS = (1e-2, 1e-3, 1e-4)


def far_threshold(scores: np.ndarray, labels: np.ndarray, target: float) -> float:
    """The threshold with the highest TAR whose FAR <= target on these pairs, placed midway
    between the lowest accepted score and the next lower one (so > and >= decide alike)."""
    far, tar, thr = roc_curve(scores, labels)
    ok = np.flatnonzero(far <= target + 1e-12)
    j = ok[np.argmax(tar[ok])]
    if j == 0:  # nothing may be accepted: just above the highest score
        return float(thr[1] + 1e-6)
    below = thr[j + 1] if j + 1 < len(thr) else thr[j] - 2e-6
    return float((thr[j] + below) / 2)


def kfold_rates(scores, labels, fold_ids, choose) -> dict:
    """The 10-fold protocol for any threshold rule: choose(train_scores, train_labels) -> threshold on
    all folds but one, measured on that one. Returns the mean threshold and the mean held-out
    accuracy, TAR and FAR ("same" iff score > threshold)."""
    scores, labels, fold_ids = np.asarray(scores, np.float64), np.asarray(labels, bool), np.asarray(fold_ids)
    thresholds, accs, tars, fars = [], [], [], []
    for k in np.unique(fold_ids):
        test = fold_ids == k
        t = choose(scores[~test], labels[~test])
        said = scores[test] > t
        y = labels[test]
        thresholds.append(t)
        accs.append(np.mean(said == y))
        tars.append(np.mean(said[y]) if y.any() else np.nan)
        fars.append(np.mean(said[~y]) if (~y).any() else np.nan)
    return {"threshold": float(np.mean(thresholds)), "accuracy": float(np.mean(accs)),
            "tar": float(np.nanmean(tars)), "far": float(np.nanmean(fars))}


def operating_points(scores, labels, fold_ids, fars=OPERATING_FARS) -> dict:
    """{"best_accuracy": {threshold, accuracy, tar, far}, "far_1e-2": {threshold, tar, far}, ...}: each
    threshold chosen by the 10-fold protocol; FAR points only where the impostor pairs allow."""
    labels, fold_ids = np.asarray(labels, bool), np.asarray(fold_ids)
    points = {"best_accuracy": kfold_rates(scores, labels, fold_ids, lambda s, y: best_threshold(s, y)[0])}
    fewest_impostors = min(int(np.sum(~labels[fold_ids != k])) for k in np.unique(fold_ids))
    for target in fars:
        if fewest_impostors * target >= 1:
            point = kfold_rates(scores, labels, fold_ids, lambda s, y, t=target: far_threshold(s, y, t))
            point.pop("accuracy")
            points[far_key(target)] = point
    return points


def downsample_roc(far, tar, thr, max_points: int = 200) -> dict:
    """A light ROC for JSON: the points nearest to log-spaced FARs, plus the ends."""
    targets = np.r_[0.0, np.logspace(-4, 0, max_points - 1)]
    idx = np.unique(np.clip(np.searchsorted(far, targets, side="right") - 1, 0, len(far) - 1))
    idx = np.unique(np.r_[idx, len(far) - 1])
    return {"far": far[idx].round(6).tolist(), "tar": tar[idx].round(6).tolist(),
            "threshold": [None if not np.isfinite(t) else round(float(t), 6) for t in thr[idx]]}


def evaluate(scores: np.ndarray, labels: np.ndarray, fold_ids: np.ndarray) -> dict:
    """Everything the bench reports for one model's scores (rates are fractions 0-1)."""
    res = kfold_accuracy(scores, labels, fold_ids)
    far, tar, thr = roc_curve(scores, labels)
    tar3, thr3 = tar_at_far(far, tar, thr, 1e-3)
    res.update({"auc": auc(far, tar), "eer": eer(far, tar), "tar_at_far_1e-3": tar3,
                "threshold_at_far_1e-3": thr3, "n_pairs": int(len(scores)),
                "n_folds": int(len(np.unique(fold_ids))),
                "operating_points": operating_points(scores, labels, fold_ids)})
    res["_roc"] = (far, tar, thr)  # full curve for plots; the CLI stores a downsampled copy in JSON
    return res
