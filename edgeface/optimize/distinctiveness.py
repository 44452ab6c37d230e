"""Distinctiveness pruning of hidden units (Gedeon & Harris): the seed's method, made to shrink the file.

Each unit of a Dense (or 1x1 Conv2D used as a dense layer) is described by its output vector over a
pattern set: what the next layer actually receives (after BN / activation / pooling / dropout) for
every pattern (and every spatial position). Two units whose vectors are within `merge_deg`
(15 deg) do the same job: one is removed and its outgoing weights are added to the other's. Two
units more than `remove_deg` (165 deg) apart cancel out: both are removed. Units that never fire
(an all-zero vector has no angle) are removed too.

Two refinements over the seed's plain rules, both exact where the seed's rule is exact:
- merge adds the outgoing weights scaled by s = <a_i, a_j> / <a_i, a_i> (the least-squares fit of
  unit j by unit i); for identical units s = 1, the seed's plain addition.
- a removed unit's mean contribution, w_j * mean(a_j), is folded into the next layer's bias, so
  a complementary pair (a_j = c - a_i) is removed without shifting the output.

`rule="most_similar"` is the PIC study's variant that ignores the thresholds: each call removes
one unit, merging the pair with the smallest angle (dead units go first); repeated with
fine-tuning in between by edgeface.optimize.pic.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.surgery import count_params, find_group, narrow

DEAD_NORM = 1e-6


def unit_vectors(model, layer_name: str, patterns: np.ndarray, batch_size: int = 64):
    """(activation matrix (samples, units) as the consumer sees it, the channel group)."""
    import tf_keras as keras

    group = find_group(model, layer_name)
    if group is None:
        raise EdgefaceError(f"layer {layer_name!r} is not a Dense/1x1-Conv whose units reach one Dense/Conv "
                            "through per-channel layers (an output layer has no outgoing weights to merge into)")
    if group.chain and type(model.get_layer(group.chain[-1])).__name__ == "Flatten":
        raise EdgefaceError(f"{layer_name!r} reaches {group.consumer!r} through a Flatten of a spatial map: "
                            "its units are not single inputs of the next layer")
    last = group.chain[-1] if group.chain else group.producer
    probe = keras.Model(model.inputs, model.get_layer(last).output)
    patterns = np.asarray(patterns, np.float32)
    acts = np.concatenate([np.asarray(probe(patterns[i:i + batch_size], training=False))
                           for i in range(0, len(patterns), batch_size)], axis=0)
    return acts.reshape(-1, acts.shape[-1]).astype(np.float64), group


def angles_deg(acts: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(acts, axis=0)
    safe = np.where(norms > DEAD_NORM, norms, 1.0)
    cos = (acts.T @ acts) / np.outer(safe, safe)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _consumer_rows(kernel: np.ndarray) -> np.ndarray:
    """The consumer kernel as (input units, outputs): Dense (in, out) or Conv2D (kh, kw, in, out)."""
    if kernel.ndim == 2:
        return kernel
    if kernel.shape[:2] != (1, 1):
        raise EdgefaceError("the consumer conv must be 1x1 (a dense layer over channels) to merge units")
    return kernel[0, 0]


def _merge(acts: np.ndarray, norms: np.ndarray, i: int, j: int, angle: float) -> dict:
    """Merge the weaker of units i, j into the stronger, scaled by the least-squares fit."""
    keep, drop = (i, j) if norms[i] >= norms[j] else (j, i)
    scale = float(acts[:, keep] @ acts[:, drop] / (acts[:, keep] @ acts[:, keep]))
    return {"keep": keep, "drop": drop, "angle_deg": round(angle, 3), "scale": scale}


def pair_angles(acts: np.ndarray) -> np.ndarray:
    """Angles (deg) of every pair of live units (dead units, with no angle, are left out)."""
    live = np.flatnonzero(np.linalg.norm(acts, axis=0) > DEAD_NORM)
    if len(live) < 2:
        return np.zeros(0)
    ang = angles_deg(acts[:, live])
    return ang[np.triu_indices(len(live), 1)]


def plan_most_similar(acts: np.ndarray) -> dict:
    """The threshold-free variant: remove dead units if any, else merge the single most similar pair."""
    norms = np.linalg.norm(acts, axis=0)
    n = acts.shape[1]
    dead = [int(j) for j in np.flatnonzero(norms <= DEAD_NORM)]
    merges = []
    if not dead:
        if n < 2:
            return {"dead": [], "merges": [], "removed_pairs": [], "keep": list(range(n))}
        ang = angles_deg(acts)
        iu = np.triu_indices(n, 1)
        k = int(np.argmin(ang[iu]))
        i, j = int(iu[0][k]), int(iu[1][k])
        merges.append(_merge(acts, norms, i, j, float(ang[i, j])))
    gone = set(dead) | {m["drop"] for m in merges}
    return {"dead": dead, "merges": merges, "removed_pairs": [], "keep": [u for u in range(n) if u not in gone]}


def plan(acts: np.ndarray, merge_deg: float, remove_deg: float) -> dict:
    """Which units to merge into which, which pairs to remove, which are dead."""
    norms = np.linalg.norm(acts, axis=0)
    dead = [int(j) for j in np.flatnonzero(norms <= DEAD_NORM)]
    ang = angles_deg(acts)
    n = acts.shape[1]
    iu = np.triu_indices(n, 1)
    cand = [(float(ang[i, j]), int(i), int(j)) for i, j in zip(*iu)
            if i not in dead and j not in dead and (ang[i, j] < merge_deg or ang[i, j] > remove_deg)]
    cand.sort(key=lambda t: min(t[0], 180.0 - t[0]))  # most clear-cut pairs first
    gone, merges, removals = set(dead), [], []
    for a, i, j in cand:
        if i in gone or j in gone:
            continue
        if a < merge_deg:
            merges.append(_merge(acts, norms, i, j, a))
            gone.add(merges[-1]["drop"])
        else:
            removals.append({"units": [i, j], "angle_deg": round(a, 3)})
            gone.update((i, j))
    return {"dead": dead, "merges": merges, "removed_pairs": removals, "keep": [u for u in range(n) if u not in gone]}


def prune_dense_by_distinctiveness(model, layer_name: str, patterns: np.ndarray, merge_deg: float = 15.0,
                                   remove_deg: float = 165.0, max_passes: int = 10, rule: str = "thresholds"):
    """Merge near-duplicate units and remove complementary pairs of `layer_name`; returns (new_model, report).

    Passes repeat on the remaining units (a unit can absorb several others over passes) until no
    pair is within the thresholds. `patterns`: model inputs (training images) the angles are measured on.
    rule="most_similar": one pass that removes exactly one unit (the thresholds are ignored).
    """
    if rule not in ("thresholds", "most_similar"):
        raise EdgefaceError(f"rule must be 'thresholds' or 'most_similar', got {rule!r}")
    if rule == "most_similar":
        max_passes = 1
    elif not 0 <= merge_deg < 90 < remove_deg <= 180:
        raise EdgefaceError(f"need 0 <= merge_deg < 90 < remove_deg <= 180, got {merge_deg}, {remove_deg}")
    acts, group = unit_vectors(model, layer_name, patterns)
    consumer = model.get_layer(group.consumer)
    cw = [np.asarray(w, np.float64) for w in consumer.get_weights()]
    rows = _consumer_rows(cw[0]).copy()
    bias_add = np.zeros(rows.shape[1])
    mean = acts.mean(axis=0)
    alive = np.arange(acts.shape[1])
    merges, removals, dead = [], [], []
    for _ in range(max_passes):
        p = (plan(acts[:, alive], merge_deg, remove_deg) if rule == "thresholds"
             else plan_most_similar(acts[:, alive]))
        if not (p["merges"] or p["removed_pairs"] or p["dead"]):
            break
        for m in p["merges"]:  # indices are positions in `alive`: map back to original units
            k, d = alive[m["keep"]], alive[m["drop"]]
            rows[k] += m["scale"] * rows[d]
            # what the scaled copy does not explain is a constant at best: fold its mean
            bias_add += (mean[d] - m["scale"] * mean[k]) * rows[d]
            merges.append({**m, "keep": int(k), "drop": int(d)})
        for r in p["removed_pairs"]:
            units = [int(alive[u]) for u in r["units"]]
            for u in units:
                bias_add += mean[u] * rows[u]
            removals.append({**r, "units": units})
        dead += [int(alive[u]) for u in p["dead"]]
        alive = alive[p["keep"]]
    if len(alive) == acts.shape[1]:
        report = _report(model, model, layer_name, group, merges, removals, dead, merge_deg, remove_deg, len(patterns))
        return model, {**report, "rule": rule}
    if len(alive) == 0:
        raise EdgefaceError(f"distinctiveness would remove every unit of {layer_name!r}")
    new_kernel = rows.reshape(cw[0].shape) if cw[0].ndim == 2 else rows[None, None]
    consumer_weights = [new_kernel.astype(np.float32)] + [w.astype(np.float32) for w in cw[1:]]
    new = narrow(model, {layer_name: alive}, consumer_weights={group.consumer: consumer_weights},
                 consumer_bias={group.consumer: bias_add.astype(np.float32)} if np.any(bias_add) else None)
    return new, {**_report(model, new, layer_name, group, merges, removals, dead, merge_deg, remove_deg, len(patterns)),
                 "rule": rule}


def _report(old, new, layer_name, group, merges, removals, dead, merge_deg, remove_deg, n_patterns) -> dict:
    units_after = new.get_layer(layer_name).get_weights()[0].shape[-1]
    return {"layer": layer_name, "consumer": group.consumer, "chain": group.chain, "patterns": int(n_patterns),
            "merge_deg": merge_deg, "remove_deg": remove_deg,
            "units_before": group.units, "units_after": int(units_after),
            "merged": merges, "removed_pairs": removals, "dead": dead,
            "params_before": count_params(old), "params_after": count_params(new)}
