"""Fit a pretrained float embedder under a byte budget: swap, equalise, prune, recover, quantise.

    result = fit_budget(model, train, val, budget=1_000_000, activation="leaky", final_steps=4000)
    result.model      # the pruned, recovered float model
    result.deploy     # the same function, equalised, PReLU rewritten if kept (convert this to int8)
    result.rounds     # one record per step: bytes, params, cosine to the float model

`train` and `val` are `Faces`: normalised crops with the unpruned model's outputs for each crop
and its mirror, so thousands of label-free faces stream through recovery without holding the
mirrored copies. Optionally every PReLU is first swapped for one LeakyReLU (or ReLU) per layer
(`activation.py`: int8 XNNPACK runs it in one op, about 1.8x faster than the exact PReLU split).
Each round removes the expansion channels that contribute least at the next 1x1 conv (activation
energy times the outgoing weight norm, the importance that kept 91% pair accuracy at 30% removed
where the seed's L2 norm kept 81%), refits that conv by least squares on the kept channels,
then recovers by self-distillation to the unpruned float model. The int8 file is converted after
every round, so the loop stops on measured bytes, not an estimate. Rounds continue while the
validation distillation loss changes by no more than `threshold` (the seed's 0.1 rule); the round
that breaks it is discarded. A final recovery keeps the best-validation weights. With `work_dir`
every finished stage is saved, and a rerun with the same settings resumes from the last one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.cost import channel_costs, model_cost
from edgeface.optimize.distill import clone_with_weights, cosine_loss, distill_loss, mean_cosine, predict
from edgeface.optimize.equalize import (equalize_channels, flip_steep_slopes, rebuild, residual_relu_prelu,
                                       split_prelu)
from edgeface.optimize.surgery import all_groups, count_params, narrow
from edgeface.spec import TASK_EMBEDDING
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
                 min_keep: int = 16, cost: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Remove `count` channels in all, the globally least important relative to their group's mean.
    cost (per group, what one channel costs; `cost.channel_costs`): rank by importance per unit of
    cost instead, so channels that are slow and contribute little go first."""
    mean_cost = float(np.mean(list(cost.values()))) if cost else 1.0
    cand = []
    for g in groups:
        imp = importance[g.producer]
        rel = imp / max(float(np.mean(imp)), 1e-12)
        if cost:
            rel = rel / (cost[g.producer] / mean_cost)
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


RANKS = ("importance", "time")


def prune_channels(model, x: np.ndarray, count: int, kind: str = "activation", refit: bool = True,
                   seed: int = 0, rank: str = "importance"):
    """(narrower model, keeps): `count` channels removed, consumers refit by least squares.
    rank "time": importance per unit of estimated int8 time (`cost.py`), for pruning to a speed."""

    if rank not in RANKS:
        raise EdgefaceError(f"unknown pruning rank {rank!r}; choose from {', '.join(RANKS)}")
    if kind not in IMPORTANCE:
        raise EdgefaceError(f"unknown importance {kind!r}; choose from {', '.join(IMPORTANCE)}")
    groups = all_groups(model)
    if not groups:
        raise EdgefaceError("the model has no prunable channel groups (conv -> per-channel layers -> conv)")
    rows = _consumer_inputs(model, groups, x, seed=seed)
    keeps = plan_removal(groups, channel_importance(model, groups, rows, kind), count,
                         cost=channel_costs(model, groups) if rank == "time" else None)
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
class Faces:
    """Normalised crops (N, H, W, C) and the teacher's outputs for each crop and its mirror (N, 2, D)."""
    x: np.ndarray
    targets: np.ndarray

    def __post_init__(self):
        if len(self.x) != len(self.targets) or self.targets.ndim != 3 or self.targets.shape[1] != 2:
            raise EdgefaceError(f"Faces: {len(self.x)} crops need targets of shape (N, 2, D), got {self.targets.shape}")

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def from_model(cls, model, x: np.ndarray) -> "Faces":
        x = np.asarray(x, np.float32)
        return cls(x, np.stack([predict(model, x), predict(model, x[:, :, ::-1])], axis=1))

    def with_flips(self) -> tuple[np.ndarray, np.ndarray]:
        """(crops then their mirrors, the matching targets) as float32: for evaluation."""
        x = np.asarray(self.x, np.float32)
        return np.concatenate([x, x[:, :, ::-1]]), np.concatenate([self.targets[:, 0], self.targets[:, 1]])

    def batch(self, idx: np.ndarray, flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(self.x[idx], np.float32)
        x[flip] = x[flip][:, :, ::-1]
        return x, self.targets[idx, flip.astype(np.int64)]


def recover(student, faces: Faces, steps: int, batch_size: int = 32, lr: float = 1e-4, seed: int = 0,
            start: int = 0, total: int | None = None, val: tuple[np.ndarray, np.ndarray] | None = None,
            eval_every: int = 0, on_eval=None, on_step=None, desc: str = "recover") -> list[float]:
    """Self-distil `student` to `faces.targets` for steps [start, steps) of a cosine-decayed schedule
    of `total` steps (random mirror per crop). val: (inputs, targets), e.g. `Faces.with_flips()`;
    every `eval_every` steps (and at the end) calls on_eval(step, val_loss). on_step(step) runs after
    each step's update (e.g. activation.SlopeAnneal). Returns the per-step losses."""
    import tensorflow as tf

    keras = _keras()
    total = total or steps
    if steps <= start:
        return []
    opt = keras.optimizers.Adam(lr)
    variables = student.trainable_variables

    @tf.function
    def train_step(xb, yb):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(cosine_loss(yb, student(xb, training=True)))
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    rng = np.random.default_rng(seed * 1_000_003 + start)
    order, pos, losses = rng.permutation(len(faces)), 0, []
    bar = progress(range(start, steps), total=steps - start, desc=desc, unit="step")
    for step in bar:
        if pos + batch_size > len(order):
            order, pos = rng.permutation(len(faces)), 0
        idx = np.sort(order[pos:pos + batch_size])
        pos += batch_size
        opt.learning_rate.assign(lr * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * step / total))))
        xb, yb = faces.batch(idx, rng.random(len(idx)) < 0.5)
        losses.append(float(train_step(tf.constant(xb), tf.constant(yb, tf.float32))))
        if on_step is not None:
            on_step(step)
        if len(losses) % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}", refresh=False)
        done = step + 1
        if on_eval is not None and val is not None and ((eval_every and done % eval_every == 0) or done == steps):
            on_eval(done, distill_loss(student, val[1], val[0], TASK_EMBEDDING))
    return losses


@dataclass
class Result:
    model: object
    deploy: object
    int8: bytes
    rounds: list[dict] = field(default_factory=list)


def int8_bytes(model, reps: np.ndarray, per_channel: bool, strip: bool = False) -> bytes:
    from edgeface.optimize.tflite_bytes import convert_bytes, strip_strings
    data = convert_bytes(model, "int8", reps, per_channel=per_channel)
    return strip_strings(data) if strip else data


# How a PReLU reaches int8 (both exact and delegated whole): "residual" x + relu((a - 1) * x) in two
# ops, after flipping slopes above 1; "split" c1*x + c2*|x| in four (the files shipped before session 10).
PRELU_FORMS = ("residual", "split")


def deploy_form(model, calib: np.ndarray, prelu_form: str = "residual"):
    """Equalised copy, PReLU rewritten if any, short layer names: what goes to the int8 converter."""
    if prelu_form not in PRELU_FORMS:
        raise EdgefaceError(f"unknown PReLU form {prelu_form!r}; choose from {', '.join(PRELU_FORMS)}")
    eq = clone_with_weights(model)
    equalize_channels(eq, calib)
    if not any(isinstance(l, _keras().layers.PReLU) for l in eq.layers):
        return rebuild(eq)
    if prelu_form == "split":
        return split_prelu(eq)
    flip_steep_slopes(eq)
    return residual_relu_prelu(eq)


FINAL_SETTINGS = ("final_steps", "final_lr", "anneal_relu")


def check_anneal(activation: str, final_steps: int, anneal_relu: int) -> None:
    """The slope anneal runs inside the final recovery, on the PReLU network, and must end before it."""
    if anneal_relu and (activation != "prelu" or final_steps <= anneal_relu):
        raise EdgefaceError(f"annealing PReLU to ReLU over {anneal_relu} steps needs activation 'prelu' (got "
                            f"{activation!r}) and more final steps than anneal steps (got {final_steps})")


def _without_final(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in FINAL_SETTINGS}


class _Stages:
    """Saved stages of one fit_budget run in work_dir (state.json + one .keras per stage)."""

    def __init__(self, work_dir, config: dict):
        self.dir = Path(work_dir) if work_dir else None
        self.state = {"config": config, "rounds": [], "model": None, "final": None}
        if self.dir and (self.dir / "state.json").exists():
            from edgeface.utils.io import read_json
            old = read_json(self.dir / "state.json", "fit state")
            if old.get("config") == config:
                self.state = old
            elif _without_final(old.get("config") or {}) == _without_final(config):
                # only the final recovery's settings changed: keep the pruning rounds, redo the final
                self.state = {**old, "config": config, "final": None}

    def load(self, name: str | None):
        if not (self.dir and name and (self.dir / name).exists()):
            return None
        from edgeface.nets import load_model
        return load_model(self.dir / name)

    def save(self, model=None, name: str | None = None) -> None:
        if not self.dir:
            return
        from edgeface.nets.io import save_model
        from edgeface.utils.io import write_json_atomic
        self.dir.mkdir(parents=True, exist_ok=True)
        if model is not None:
            save_model(model, self.dir / name)
        write_json_atomic(self.dir / "state.json", self.state)


def fit_budget(model, train, val, budget: int, per_channel: bool = False,
               step: float = 0.04, max_rounds: int = 8, finetune_steps: int = 300, batch_size: int = 32,
               lr: float = 5e-5, threshold: float = 0.1, importance: str = "activation", calib_count: int = 300,
               activation: str = "prelu", final_steps: int = 0, final_lr: float = 1e-4, eval_every: int = 500,
               strip: bool = False, prelu_form: str = "residual", anneal_relu: int = 0, rank: str = "importance",
               max_cost: float | None = None, work_dir=None, log=print) -> Result:
    """Prune `step` of the prunable channels per round until the int8 file fits `budget`.

    train / val: `Faces`, or arrays of normalised crops (the model's own outputs become the targets).
    activation: "prelu" keeps the exact function; "leaky"/"relu" swap it first (then recover).
    final_steps: one more recovery after the last round, keeping the best-validation weights.
    strip: measure (and return) the int8 file without its strings (convert --strip-strings).
    prelu_form: how the int8 file writes PReLU (PRELU_FORMS); it changes bytes, not the float function,
    so saved rounds of either form resume.
    anneal_relu: the final recovery shrinks every PReLU slope to 0 over its first N steps
    (activation.SlopeAnneal) and returns the ReLU network (int8 about 1.5x faster than the PReLU form).
    rank: "time" removes the channels with the least importance per unit of estimated int8 time.
    max_cost: also prune until the estimated time (`cost.model_cost`) is at most this fraction of
    `model`'s: a speed budget beside the byte budget.
    """
    from edgeface.optimize.activation import swap_prelu

    check_anneal(activation, final_steps, anneal_relu)
    train = train if isinstance(train, Faces) else Faces.from_model(model, train)
    val = val if isinstance(val, Faces) else Faces.from_model(model, val)
    calib = np.asarray(train.x[:calib_count], np.float32)
    val_x, val_targets = val.with_flips()
    stages = _Stages(work_dir, {"budget": budget, "per_channel": per_channel, "step": step, "max_rounds": max_rounds,
                                "finetune_steps": finetune_steps, "batch_size": batch_size, "lr": lr,
                                "threshold": threshold, "importance": importance, "activation": activation,
                                "final_steps": final_steps, "final_lr": final_lr, "train": len(train), "val": len(val),
                                # only when set: a state saved before the key existed still matches
                                **({"anneal_relu": anneal_relu} if anneal_relu else {}),
                                **({"rank": rank} if rank != "importance" else {}),
                                **({"max_cost": max_cost} if max_cost is not None else {})})
    rounds = stages.state["rounds"]
    current = stages.load(stages.state["model"])
    if current is None:
        current, alphas = swap_prelu(model, activation, calib)
        rounds.clear()
        rounds.append({"round": 0, "activation": activation, "params": count_params(current),
                       "channels": sum(g.units for g in all_groups(current)),
                       "val_cosine": mean_cosine(predict(current, val_x), val_targets),
                       "val_loss": distill_loss(current, val_targets, val_x, TASK_EMBEDDING), "accepted": True,
                       **({"leaky_alphas": {k: round(v, 4) for k, v in alphas.items()}} if alphas else {})})
        if activation != "prelu":  # a different function: recover before measuring what pruning costs
            recover(current, train, finetune_steps, batch_size, lr, seed=0, desc=f"recover {activation}")
            rounds[0]["val_cosine_swapped"] = rounds[0]["val_cosine"]
            rounds[0]["val_cosine"] = mean_cosine(predict(current, val_x), val_targets)
            rounds[0]["val_loss"] = distill_loss(current, val_targets, val_x, TASK_EMBEDDING)
        stages.state["model"] = "round_0.keras"
        stages.save(current, "round_0.keras")
    else:
        log(f"resuming from {stages.dir / stages.state['model']} (round {rounds[-1]['round']})")
    deploy = deploy_form(current, calib, prelu_form)
    data = int8_bytes(deploy, calib, per_channel, strip)
    rounds[-1]["bytes"] = len(data)
    prev_loss = rounds[-1]["val_loss"]
    log(f"round {rounds[-1]['round']}: int8 {len(data):,} B, {count_params(current):,} params, "
        f"val cosine {rounds[-1]['val_cosine']:.4f}")
    total = sum(g.units for g in all_groups(model))
    full_cost = model_cost(model)
    rounds[-1]["cost"] = round(model_cost(current) / full_cost, 4)
    first = rounds[-1]["round"] + 1
    for r in progress(range(first, max_rounds + 1), total=max_rounds - first + 1, desc="fit budget", unit="round"):
        fast_enough = max_cost is None or rounds[-1]["cost"] <= max_cost
        if (len(data) <= budget and fast_enough) or not rounds[-1]["accepted"]:
            break
        count = max(1, int(round(step * total)))
        candidate, keeps = prune_channels(current, calib[:256], count, kind=importance, seed=r, rank=rank)
        pruned_cos = mean_cosine(predict(candidate, val_x), val_targets)
        recover(candidate, train, finetune_steps, batch_size, lr, seed=r, desc=f"recover {r}")
        loss = distill_loss(candidate, val_targets, val_x, TASK_EMBEDDING)
        cand_deploy = deploy_form(candidate, calib, prelu_form)
        cand_data = int8_bytes(cand_deploy, calib, per_channel, strip)
        row = {"round": r, "removed": count, "bytes": len(cand_data), "params": count_params(candidate),
               "channels": sum(g.units for g in all_groups(candidate)), "val_cosine_pruned": pruned_cos,
               "cost": round(model_cost(candidate) / full_cost, 4),
               "val_cosine": mean_cosine(predict(candidate, val_x), val_targets), "val_loss": loss,
               "loss_change": loss - prev_loss}
        if abs(loss - prev_loss) > threshold:
            rounds.append({**row, "accepted": False, "reason": f"validation loss changed by {loss - prev_loss:+.4f}"})
            log(f"round {r}: rejected ({rounds[-1]['reason']})")
            stages.save()
            break
        rounds.append({**row, "accepted": True})
        log(f"round {r}: -{count} channels, int8 {len(cand_data):,} B, est. time {row['cost']:.3f} of the "
            f"unpruned, val cosine {row['val_cosine_pruned']:.4f} "
            f"pruned -> {row['val_cosine']:.4f} recovered")
        current, deploy, data, prev_loss = candidate, cand_deploy, cand_data, loss
        stages.state["model"] = f"round_{r}.keras"
        stages.save(current, f"round_{r}.keras")
    if final_steps:
        current = _final_recovery(current, train, (val_x, val_targets), stages, final_steps, batch_size, final_lr,
                                  eval_every, log, anneal_relu)
        deploy = deploy_form(current, calib, prelu_form)
        data = int8_bytes(deploy, calib, per_channel, strip)
        stages.state["final"].update(bytes=len(data), params=count_params(current), accepted=True)
        stages.save()
    return Result(current, deploy, data, rounds + ([{"round": "final", **stages.state["final"]}] if final_steps else []))


def _final_recovery(current, train: Faces, val: tuple[np.ndarray, np.ndarray], stages: _Stages, steps: int,
                    batch_size: int, lr: float, eval_every: int, log, anneal_relu: int = 0):
    """Recover for `steps`, checkpointing every `eval_every`; returns the best-validation weights.
    val: (inputs with mirrors, targets). anneal_relu: see fit_budget; only checkpoints after the
    anneal can be best, and the result is the ReLU network."""
    from edgeface.optimize.activation import SlopeAnneal, prelu_layers, swap_prelu

    val_x, val_targets = val
    # the schedule starts from the pruned round's slopes, also when a resumed model replaces `current`
    start_slopes = [np.asarray(l.get_weights()[0]).copy() for l in prelu_layers(current)] if anneal_relu else None
    final = stages.state["final"] or {"steps": steps, "done": 0, "best_step": 0,
                                      "best_val_loss": distill_loss(current, val_targets, val_x, TASK_EMBEDDING),
                                      "curve": []}
    stages.state["final"] = final
    resumed = stages.load("final_last.keras")
    if resumed is not None and final["done"]:
        current = resumed
        log(f"final recovery: resuming at step {final['done']} of {steps}")
    best = stages.load("final_best.keras") if final["best_step"] else None
    anneal = SlopeAnneal(current, anneal_relu, start_slopes) if anneal_relu else None

    def on_eval(done, loss):
        nonlocal best
        final["done"] = done
        final["curve"].append({"step": done, "val_loss": round(loss, 6)})
        if (anneal.keeps(done, loss, final["best_val_loss"], final["best_step"]) if anneal
                else loss < final["best_val_loss"]):
            final.update(best_step=done, best_val_loss=loss)
            best = clone_with_weights(current)
            stages.save(best, "final_best.keras")
        stages.save(current, "final_last.keras")
        log(f"final recovery: step {done}/{steps}, val loss {loss:.5f} (best {final['best_val_loss']:.5f} "
            f"at {final['best_step']})")

    recover(current, train, steps, batch_size, lr, seed=99, start=final["done"], total=steps, val=val,
            eval_every=eval_every, on_eval=on_eval, on_step=anneal, desc="final recovery")
    chosen = best if best is not None else current
    if anneal:
        chosen = swap_prelu(chosen, "relu")[0]
    final["val_cosine"] = mean_cosine(predict(chosen, val_x), val_targets)
    return chosen


def load_faces_split(root, input_shape, mean: float, std: float, val_fraction: float = 0.2, seed: int = 0,
                     max_train: int | None = None, exclude: tuple[str, ...] = (),
                     as_paths: bool = False, val_identities: tuple[str, ...] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, dict]:
    """(train, val, info): normalised aligned faces of `root`/<identity>/, split by identity.

    Recovery fine-tunes on train; the pruning rule and the choices are made on val: people the
    fine-tune never saw (never LFW). `exclude`: identities left out entirely (leakage).
    val_identities: exactly these people are val (else a random val_fraction of them, by seed).
    as_paths: return the two path lists instead of loaded images.
    """
    from edgeface.data.calibration import refuse_lfw
    from edgeface.data.folders import scan_folder, split_by_identity

    refuse_lfw(root)
    folder = scan_folder(root)
    excluded = set(exclude)
    dropped = [i for i, lab in enumerate(folder.labels) if folder.class_names[lab] in excluded]
    if dropped:
        folder = folder.subset(sorted(set(range(len(folder.paths))) - set(dropped)))
    if val_identities is None:
        train, val = split_by_identity(folder, val_fraction, seed)
    else:
        wanted = set(val_identities)
        missing = sorted(wanted - {folder.class_names[lab] for lab in folder.labels})
        if missing:
            raise EdgefaceError(f"{root}: no faces of the validation identities {', '.join(missing)}")
        is_val = [folder.class_names[lab] in wanted for lab in folder.labels]
        val = folder.subset([i for i, v in enumerate(is_val) if v])
        train = folder.subset([i for i, v in enumerate(is_val) if not v])
    paths = list(train.paths)
    if max_train and len(paths) > max_train:
        paths = [paths[i] for i in np.sort(np.random.default_rng(seed).permutation(len(paths))[:max_train])]
    info = {"dir": str(root), "split": "by identity",
            **({"val_fraction": val_fraction, "seed": seed} if val_identities is None
               else {"val_identity_names": sorted(val_identities)}),
            "excluded_identities": sorted(exclude), "excluded_images": len(dropped),
            "train_images": len(paths), "val_images": len(val.paths), "val_identities": int(len(np.unique(val.labels)))}
    if as_paths:
        return paths, list(val.paths), info
    return load_crops(paths, input_shape, mean, std), load_crops(val.paths, input_shape, mean, std), info


def load_crops(paths, input_shape, mean: float, std: float, dtype=np.float32) -> np.ndarray:
    """Normalised aligned crops; a crop of another size is a one-line error (align first)."""
    from edgeface.utils.images import read_image

    h, w, _ = input_shape
    out = np.empty((len(paths), h, w, 3), dtype)
    for i, p in enumerate(progress(paths, total=len(paths), desc="load faces", unit="img")):
        img = read_image(p)
        if img.shape[:2] != (h, w):
            raise EdgefaceError(f"{p}: {img.shape[1]}x{img.shape[0]}, expected aligned {w}x{h} crops (edgeface align)")
        out[i] = (img.astype(np.float32) - mean) / std
    return out


def face_paths(root) -> list[str]:
    """The face crops of an aligned folder (detected faces only when it has an align manifest)."""
    from edgeface.data.calibration import refuse_lfw
    from edgeface.data.hygiene import detected_faces

    root = Path(root)
    refuse_lfw(root)
    if not root.is_dir():
        raise EdgefaceError(f"face folder not found: {root}")
    files = detected_faces(root)[0]
    if not files:
        raise EdgefaceError(f"no face crops in {root}")
    return [str(root / f) for f in files]


def teacher_targets(teacher, root, paths: list[str], cache_dir=None) -> np.ndarray:
    """(N, 2, D): the teacher's embeddings of each crop of folder `root` and its mirror, from the
    folder's cache: `root/../teacher_<root>.npz` when `edgeface data lfw-overlap` wrote one, else
    `cache_dir/teacher_<root>.npz` (made and kept for reruns)."""
    from edgeface.teachers.base import set_cache, teacher_embeddings

    root = Path(root)
    cache = set_cache(root.parent, root.name)
    if not cache.exists():
        cache = set_cache(cache_dir, root.name) if cache_dir else None
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
    emb, emb_m = teacher_embeddings(teacher, paths, cache)
    return np.stack([emb, emb_m], axis=1)
