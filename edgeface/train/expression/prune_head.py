"""Prune an expression run's head by distinctiveness (Gedeon & Harris) into a run folder of its own."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.data import expressions as xdata
from edgeface.train.expression.task import load_run, predict_images
from edgeface.utils.io import write_json_atomic


def split_images(info: dict, split: str, size: int, channels: int):
    spec = info["data"]["split"]
    data = xdata.load_dataset(info["data"]["dir"], spec["kind"], spec["seed"], spec["val_fraction"],
                              spec["test_fraction"], spec["split_by"] if spec["split_by"] in ("subject", "stratified") else None)
    return xdata.load_images(data.splits[split], size, channels, bool(info["preprocessing"].get("clahe")), f"{split} images")


def hidden_activations(model, x_norm: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, units) activations of the head's hidden layer: the 'patterns' distinctiveness compares."""
    import tf_keras as keras

    from edgeface.nets.expression import HIDDEN_LAYER
    probe = keras.Model(model.input, model.get_layer(HIDDEN_LAYER).output)
    return np.concatenate([probe.predict_on_batch(x_norm[i:i + batch_size]) for i in range(0, len(x_norm), batch_size)])


def prune_run_head(run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None, merge_deg: float = 15.0,
                   remove_deg: float = 165.0, max_patterns: int = 2000) -> dict:
    """Prune the head's hidden units by distinctiveness (Gedeon & Harris): units whose activation
    vectors over the training patterns are within `merge_deg` of another unit are merged into it,
    pairs more than `remove_deg` apart (complementary) are both removed. Writes OUT (default
    RUN_DIR/pruned) as a run directory of its own (model.keras, run.json, prune.json) and returns the
    report with val/test accuracy before and after (float Keras)."""
    from edgeface.nets.expression import HIDDEN_LAYER
    from edgeface.optimize.distinctiveness import prune_dense_by_distinctiveness

    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "pruned"
    info, model = load_run(run_dir)
    size, channels = int(model.input_shape[1]), int(model.input_shape[3])
    x_tr, _ = split_images(info, "train", size, channels)
    pick = np.random.default_rng(0).permutation(len(x_tr))[:max_patterns]
    patterns = xdata.normalize(x_tr[np.sort(pick)])
    t0 = time.time()
    pruned, report = prune_dense_by_distinctiveness(model, HIDDEN_LAYER, patterns, merge_deg=merge_deg,
                                                    remove_deg=remove_deg)
    seconds = time.time() - t0

    def accuracy(m, split):
        x, y = split_images(info, split, size, channels)
        return float((predict_images(m, x).argmax(1) == y).mean()) if len(y) else None

    result = {
        "run_dir": str(run_dir), "layer": HIDDEN_LAYER, "merge_deg": merge_deg, "remove_deg": remove_deg,
        "patterns": {"split": "train", "count": int(len(patterns))},
        "units_before": int(model.get_layer(HIDDEN_LAYER).units),
        "units_after": int(pruned.get_layer(HIDDEN_LAYER).units),
        "params_before": int(model.count_params()), "params_after": int(pruned.count_params()),
        "val_accuracy_before": accuracy(model, "val"), "val_accuracy_after": accuracy(pruned, "val"),
        "test_accuracy_before": accuracy(model, "test"), "test_accuracy_after": accuracy(pruned, "test"),
        "seconds": round(seconds, 1), "distinctiveness": report,
    }
    from edgeface.nets import save_model
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(pruned, out_dir / "model.keras")
    new_info = dict(info)
    new_info["model"] = {**info["model"], "kwargs": {**info["model"]["kwargs"], "head_units": result["units_after"]},
                         "params": result["params_after"]}
    new_info.update({"pruned_from": str(run_dir), "pruning": {k: v for k, v in result.items() if k != "distinctiveness"},
                     "val_accuracy": result["val_accuracy_after"], "test_accuracy_float_keras": result["test_accuracy_after"]})
    write_json_atomic(out_dir / "run.json", new_info)
    write_json_atomic(out_dir / "prune.json", result)
    return result
