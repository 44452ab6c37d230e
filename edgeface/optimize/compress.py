"""Fit a pretrained float embedder under a byte budget: equalise, prune, recover, quantise.

    result = fit_budget(model, train_x, val_x, budget=1_000_000)
    result.model      # the pruned, recovered float model (PReLU form, exact)
    result.deploy     # the same function with PReLU split for delegated int8 (convert this)
    result.rounds     # one record per step: bytes, params, cosine to the float model

Each round removes the expansion channels that contribute least at the next 1x1 conv (activation
energy times the outgoing weight norm, the importance that kept 91% pair accuracy at 30% removed
where the seed's L2 norm kept 81%), refits that conv by least squares on the kept channels,
then recovers by self-distillation to the unpruned float model on label-free training faces. The
int8 file is converted after every round, so the loop stops on measured bytes, not an estimate.
Rounds continue while the validation distillation loss changes by no more than `threshold` (the
seed's 0.1 rule); the round that breaks it is discarded.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.distill import distill_loss, mean_cosine, predict, self_distill, with_flips
from edgeface.optimize.equalize import equalize_channels, split_prelu
from edgeface.optimize.surgery import all_groups, count_params, narrow
from edgeface.utils.progress import progress

IMPORTANCE = ("activation", "l2")


def _keras():
    import tf_keras as keras
    return keras


def _consumer_inputs(model, groups, x: np.ndarray, max_rows: int = 20000, seed: int = 0) -> dict[str, np.ndarray]:
    """For each group, rows of the tensor its consumer reads (positions x channels), sampled."""
    keras = _keras()
    probe = keras.Model(model.inputs, [model.get_layer(g.consumer).input for g in groups])
    rng = np.random.default_rng(seed)
    rows: dict[str, list[np.ndarray]] = {g.producer: [] for g in groups}
    per_batch = max(1, max_rows // max(1, len(x) // 32 + 1))
    for i in range(0, len(x), 32):
        outs = probe(x[i:i + 32], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for g, o in zip(groups, outs):
            o = np.asarray(o)
            o = o.reshape(-1, o.shape[-1])
            take = rng.choice(len(o), size=min(per_batch, len(o)), replace=False)
            rows[g.producer].append(o[take])
    return {k: np.concatenate(v) for k, v in rows.items()}


def _consumer_matrix(model, g) -> tuple[np.ndarray, np.ndarray, tuple]:
    """The consumer's kernel as (in_channels, out) plus its bias and original kernel shape."""
    w = model.get_layer(g.consumer).get_weights()
    k = np.asarray(w[0])
    bias = np.asarray(w[1]) if len(w) > 1 else np.zeros(k.shape[-1], np.float32)
    if k.ndim == 4:
        if k.shape[0] != 1 or k.shape[1] != 1:
            return None, bias, k.shape
        return k[0, 0], bias, k.shape
    return k, bias, k.shape


def channel_importance(model, groups, rows: dict[str, np.ndarray], kind: str = "activation") -> dict[str, np.ndarray]:
    """Per channel of each group: its energy at the consumer (activation) or its filter's L2 norm."""
    out = {}
    for g in groups:
        if kind == "l2":
            k = np.asarray(model.get_layer(g.producer).get_weights()[0])
            out[g.producer] = np.sqrt((k.reshape(-1, k.shape[-1]) ** 2).sum(0))
            continue
        w, _, _ = _consumer_matrix(model, g)
        z = rows[g.producer]
        energy = (z ** 2).mean(0)
        if w is not None and w.shape[0] == z.shape[1]:
            energy = energy * (w ** 2).sum(1)
        out[g.producer] = energy
    return out


def refit_consumer(z: np.ndarray, w: np.ndarray, bias: np.ndarray, keep: np.ndarray, ridge: float = 1e-3):
    """Least-squares (kernel, bias) on the kept channels that best reproduce z @ w + bias."""
    target = z @ w + bias
    zk = np.concatenate([z[:, keep], np.ones((len(z), 1), z.dtype)], axis=1).astype(np.float64)
    gram = zk.T @ zk
    gram[np.diag_indices_from(gram)] += ridge * np.mean(np.diag(gram))
    sol = np.linalg.solve(gram, zk.T @ target.astype(np.float64))
    return sol[:-1].astype(np.float32), sol[-1].astype(np.float32)


def plan_removal(groups, importance: dict[str, np.ndarray], count: int, max_fraction: float = 0.5,
                 min_keep: int = 16) -> dict[str, np.ndarray]:
    """Remove `count` channels in all, the globally least important relative to their group's mean."""
    cand = []
    for g in groups:
        imp = importance[g.producer]
        rel = imp / max(float(np.mean(imp)), 1e-12)
        for j in np.argsort(rel, kind="stable")[: max(0, min(int(g.units * max_fraction), g.units - min_keep))]:
            cand.append((float(rel[j]), g.producer, int(j)))
    cand.sort()
    drop: dict[str, list[int]] = {}
    for _, name, j in cand[:count]:
        drop.setdefault(name, []).append(j)
    keeps = {}
    for g in groups:
        if g.producer in drop:
            keeps[g.producer] = np.setdiff1d(np.arange(g.units), drop[g.producer])
    return keeps


def prune_channels(model, x: np.ndarray, count: int, kind: str = "activation", refit: bool = True,
                   seed: int = 0):
    """(narrower model, keeps): `count` channels removed, consumers refit by least squares."""
    if kind not in IMPORTANCE:
        raise EdgefaceError(f"unknown importance {kind!r}; choose from {', '.join(IMPORTANCE)}")
    groups = all_groups(model)
    if not groups:
        raise EdgefaceError("the model has no prunable channel groups (conv -> per-channel layers -> conv)")
    rows = _consumer_inputs(model, groups, x, seed=seed)
    keeps = plan_removal(groups, channel_importance(model, groups, rows, kind), count)
    weights, biases = {}, {}
    if refit:
        for g in groups:
            if g.producer not in keeps:
                continue
            w, bias, shape = _consumer_matrix(model, g)
            z = rows[g.producer]
            if w is None or w.shape[0] != z.shape[1]:
                continue
            kernel, b = refit_consumer(z, w, bias, keeps[g.producer])
            full = np.zeros_like(w)
            full[keeps[g.producer]] = kernel  # narrow() slices the kept rows back out
            weights[g.consumer] = [full.reshape(shape)] + ([b] if len(model.get_layer(g.consumer).get_weights()) > 1 else [])
            if len(model.get_layer(g.consumer).get_weights()) == 1:
                biases[g.consumer] = b
    return narrow(model, keeps, consumer_weights=weights, consumer_bias=biases), keeps


@dataclass
class Result:
    model: object
    deploy: object
    int8: bytes
    rounds: list[dict] = field(default_factory=list)


def int8_bytes(model, reps: np.ndarray, per_channel: bool) -> bytes:
    from edgeface.convert.tflite import convert_bytes
    return convert_bytes(model, "int8", reps, per_channel=per_channel)


def deploy_form(model, calib: np.ndarray):
    """Equalised copy with PReLU split: what goes to the int8 converter."""
    from edgeface.optimize.distill import clone_with_weights
    eq = clone_with_weights(model)
    equalize_channels(eq, calib)
    return split_prelu(eq)


def fit_budget(model, train_x: np.ndarray, val_x: np.ndarray, budget: int, per_channel: bool = False,
               step: float = 0.04, max_rounds: int = 8, finetune_steps: int = 300, batch_size: int = 32,
               lr: float = 5e-5, threshold: float = 0.1, importance: str = "activation", calib_count: int = 300,
               log=print) -> Result:
    """Prune `step` of the prunable channels per round until the int8 file fits `budget`."""
    x = with_flips(train_x)
    targets = predict(model, x)  # the unpruned float model is the teacher of every round
    val_targets = predict(model, val_x)
    calib = train_x[:calib_count]
    total = sum(g.units for g in all_groups(model))
    current = model
    prev_loss = distill_loss(current, val_targets, val_x, "face_embedding")
    deploy = deploy_form(current, calib)
    data = int8_bytes(deploy, calib, per_channel)
    rounds = [{"round": 0, "bytes": len(data), "params": count_params(current), "channels": total,
               "val_cosine": mean_cosine(predict(current, val_x), val_targets), "val_loss": prev_loss,
               "accepted": True}]
    log(f"round 0: int8 {len(data):,} B, {count_params(current):,} params")
    for r in progress(range(1, max_rounds + 1), total=max_rounds, desc="fit budget", unit="round"):
        if len(data) <= budget:
            break
        count = max(1, int(round(step * total)))
        candidate, keeps = prune_channels(current, train_x[:256], count, kind=importance, seed=r)
        pruned_cos = mean_cosine(predict(candidate, val_x), val_targets)
        self_distill(candidate, x, targets, finetune_steps, "face_embedding", batch_size, lr, seed=r, desc=f"recover {r}")
        loss = distill_loss(candidate, val_targets, val_x, "face_embedding")
        cand_deploy = deploy_form(candidate, calib)
        cand_data = int8_bytes(cand_deploy, calib, per_channel)
        row = {"round": r, "removed": count, "bytes": len(cand_data), "params": count_params(candidate),
               "channels": sum(g.units for g in all_groups(candidate)), "val_cosine_pruned": pruned_cos,
               "val_cosine": mean_cosine(predict(candidate, val_x), val_targets), "val_loss": loss,
               "loss_change": loss - prev_loss}
        if abs(loss - prev_loss) > threshold:
            rounds.append({**row, "accepted": False, "reason": f"validation loss changed by {loss - prev_loss:+.4f}"})
            log(f"round {r}: rejected ({rounds[-1]['reason']})")
            break
        rounds.append({**row, "accepted": True})
        log(f"round {r}: -{count} channels, int8 {len(cand_data):,} B, val cosine {row['val_cosine_pruned']:.4f} "
            f"pruned -> {row['val_cosine']:.4f} recovered")
        current, deploy, data, prev_loss = candidate, cand_deploy, cand_data, loss
    return Result(current, deploy, data, rounds)


def load_faces_split(root, input_shape, mean: float, std: float, val_fraction: float = 0.2, seed: int = 0,
                     max_train: int | None = None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, val, info): normalised aligned faces of `root`/<identity>/, split by identity.

    Recovery fine-tunes on train; the pruning rule and the choices are made on val: people the
    fine-tune never saw (never LFW).
    """
    from edgeface.convert.calibration import refuse_lfw
    from edgeface.data.folders import scan_folder, split_by_identity
    from edgeface.utils.images import read_image

    refuse_lfw(root)
    train, val = split_by_identity(scan_folder(root), val_fraction, seed)
    h, w, _ = input_shape

    def load(paths):
        out = []
        for p in progress(paths, total=len(paths), desc="load faces", unit="img"):
            img = read_image(p)
            if img.shape[:2] != (h, w):
                raise EdgefaceError(f"{p}: {img.shape[1]}x{img.shape[0]}, expected aligned {w}x{h} crops (edgeface align)")
            out.append((img.astype(np.float32) - mean) / std)
        return np.stack(out)
    paths = list(train.paths)
    if max_train and len(paths) > max_train:
        paths = [paths[i] for i in np.sort(np.random.default_rng(seed).permutation(len(paths))[:max_train])]
    info = {"dir": str(root), "split": "by identity", "val_fraction": val_fraction, "seed": seed,
            "train_images": len(paths), "val_images": len(val.paths), "val_identities": val.num_classes}
    return load(paths), load(val.paths), info
