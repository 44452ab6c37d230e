"""PIC: an autoencoder on descriptor features (LPQ, PHOG) pruned by the angles between its hidden units.

The expression study compresses hand-crafted features with a one-hidden-layer autoencoder and
shrinks the code by distinctiveness (Gedeon & Harris): each hidden unit is described by its
output vector over the data set; pairs within 15 deg are merged (outgoing weights added), pairs
beyond 165 deg are removed as complementary; the network is fine-tuned between rounds. Its
variant ignores the thresholds and removes the single most similar unit each round.

The angle rule and the surgery are edgeface.optimize.distinctiveness (`plan`,
`plan_most_similar`, `prune_dense_by_distinctiveness`); this module adds the autoencoder, the
round loop with fine-tuning, and the per-round measurements (units, reconstruction loss,
smallest angle). The hidden layer is tanh: its outputs are centred on 0 like the study's
sigmoid outputs shifted to [-0.5, 0.5], so angles span 0-180 deg and complementary pairs exist.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.distinctiveness import pair_angles, prune_dense_by_distinctiveness

HIDDEN = "code"


def build_autoencoder(n_in: int, n_hidden: int, activation: str = "tanh", seed: int = 0):
    """x (n_in) -> Dense(n_hidden, tanh) "code" -> Dense(n_in, linear) "recon"."""
    import tf_keras as keras
    if n_in < 1 or n_hidden < 1:
        raise EdgefaceError(f"need n_in >= 1 and n_hidden >= 1, got {n_in}, {n_hidden}")
    keras.utils.set_random_seed(seed)
    inp = keras.Input((n_in,), name="features")
    h = keras.layers.Dense(n_hidden, activation=activation, name=HIDDEN)(inp)
    out = keras.layers.Dense(n_in, name="recon")(h)
    return keras.Model(inp, out, name="pic_autoencoder")


def hidden_units(model) -> int:
    return int(model.get_layer(HIDDEN).units)


_ACT = {"tanh": np.tanh, "linear": lambda z: z, "relu": lambda z: np.maximum(z, 0.0),
        "sigmoid": lambda z: 1.0 / (1.0 + np.exp(-z))}


def _numpy_parts(model):
    """(code fn, recon weights) for the plain features -> code -> recon autoencoder, else None.

    Measuring in numpy avoids a TensorFlow retrace per pruned model (the layers are two matmuls)."""
    names = [l.name for l in model.layers]
    if names[1:] != [HIDDEN, "recon"]:
        return None
    code, recon = model.get_layer(HIDDEN), model.get_layer("recon")
    act = _ACT.get(code.get_config()["activation"])
    if act is None or recon.get_config()["activation"] != "linear":
        return None
    w1, b1 = [np.asarray(v, np.float64) for v in code.get_weights()]
    w2, b2 = [np.asarray(v, np.float64) for v in recon.get_weights()]
    return (lambda x: act(np.asarray(x, np.float64) @ w1 + b1)), (w2, b2)


def encode(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The code (hidden-layer outputs) for each row of x."""
    parts = _numpy_parts(model)
    if parts is not None:
        return parts[0](x)
    import tf_keras as keras
    probe = keras.Model(model.inputs, model.get_layer(HIDDEN).output)
    return np.asarray(probe.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0), np.float64)


def recon_loss(model, x: np.ndarray, batch_size: int = 512) -> float:
    """Mean squared reconstruction error (features are standardised: 1.0 = predicting the mean)."""
    parts = _numpy_parts(model)
    if parts is not None:
        code, (w2, b2) = parts
        y = code(x) @ w2 + b2
    else:
        y = model.predict(np.asarray(x, np.float32), batch_size=batch_size, verbose=0)
    return float(np.mean((y - x) ** 2))


def angle_stats(model, x: np.ndarray) -> dict:
    """Smallest and largest angle (deg) between live hidden units over the patterns x."""
    a = pair_angles(encode(model, x))
    if a.size == 0:
        return {"min_angle_deg": None, "max_angle_deg": None}
    return {"min_angle_deg": float(a.min()), "max_angle_deg": float(a.max())}


def fit(model, x: np.ndarray, x_val: np.ndarray, epochs: int, lr: float = 1e-3, batch_size: int = 64,
        patience: int | None = None, seed: int = 0) -> dict:
    """Train to reconstruct x (MSE, Adam); with `patience`, stop when the val loss stops improving and
    restore the best weights ("to convergence"). Returns {"epochs": run, "val_loss": best}."""
    import tensorflow as tf
    import tf_keras as keras
    if epochs <= 0:
        return {"epochs": 0, "val_loss": recon_loss(model, x_val)}
    tf.random.set_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss="mse")
    cbs = [keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True)] if patience else []
    x = np.asarray(x, np.float32)
    x_val = np.asarray(x_val, np.float32)
    if not patience:  # a fixed fine-tune: no validation pass per epoch (one trace less per pruned model)
        hist = model.fit(x, x, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
        return {"epochs": len(hist.history["loss"]), "val_loss": recon_loss(model, x_val)}
    hist = model.fit(x, x, validation_data=(x_val, x_val), epochs=epochs, batch_size=batch_size, shuffle=True,
                     callbacks=cbs, verbose=0)
    return {"epochs": len(hist.history["loss"]), "val_loss": float(min(hist.history["val_loss"]))}


def pic_prune(model, x: np.ndarray, x_val: np.ndarray, rule: str = "thresholds", merge_deg: float = 15.0,
              remove_deg: float = 165.0, finetune_epochs: int = 5, lr: float = 1e-3, batch_size: int = 64,
              min_units: int = 1, max_rounds: int = 1000, evaluate=None, angle_patterns: int = 2000, seed: int = 0,
              finetune_patience: int | None = None):
    """Round after round: measure, prune the code layer by angle, fine-tune. Returns (model, rows).

    rule="thresholds": merge < merge_deg, remove pairs > remove_deg (passes repeat inside a round);
    stops when no pair is within the thresholds. rule="most_similar": one unit per round (the
    most similar pair merged) until `min_units`. Each row: units, params, train/val loss, the
    smallest and largest angle, what the round did, the val loss right after the surgery (before
    fine-tuning), and whatever `evaluate(model)` returns (e.g. a classifier's accuracy on the code).
    Angles are measured on the first `angle_patterns` rows of x. finetune_patience: stop each
    fine-tune when the val loss has not improved for that many epochs and keep the best epoch.
    """
    if rule not in ("thresholds", "most_similar"):
        raise EdgefaceError(f"rule must be 'thresholds' or 'most_similar', got {rule!r}")
    if min_units < 1:
        raise EdgefaceError(f"min_units must be >= 1, got {min_units}")
    patterns = np.asarray(x[:angle_patterns], np.float32)

    def measure(m, rnd, extra):
        row = {"round": rnd, "units": hidden_units(m), "params": int(m.count_params()),
               "train_loss": recon_loss(m, x), "val_loss": recon_loss(m, x_val), **angle_stats(m, patterns), **extra}
        if evaluate is not None:
            row.update(evaluate(m))
        return row

    rows = [measure(model, 0, {"merged": 0, "removed_pairs": 0, "dead": 0})]
    for r in range(1, max_rounds + 1):
        if hidden_units(model) <= min_units:
            break
        new, rep = prune_dense_by_distinctiveness(model, HIDDEN, patterns, merge_deg, remove_deg, rule=rule)
        if new is model:
            break
        if rep["units_after"] < min_units:  # a round that overshoots (complementary pairs) is not taken
            break
        after_surgery = recon_loss(new, x_val)
        fit(new, x, x_val, finetune_epochs, lr, batch_size, patience=finetune_patience, seed=seed + r)
        model = new
        rows.append(measure(model, r, {"merged": len(rep["merged"]), "removed_pairs": len(rep["removed_pairs"]),
                                       "dead": len(rep["dead"]), "val_loss_after_surgery": after_surgery,
                                       "angles_acted_on": sorted([m["angle_deg"] for m in rep["merged"]]
                                                                 + [p["angle_deg"] for p in rep["removed_pairs"]])}))
    return model, rows
