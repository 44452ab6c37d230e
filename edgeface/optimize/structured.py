"""Structured filter pruning (the seed's L2-norm kernel importance), made to shrink the file.

Unlike magnitude pruning, removing whole expansion filters makes every tensor narrower: the
.tflite gets smaller raw and the model gets faster. Each round removes the least important
fraction of the filters of every prunable group (by default the MobileNetV2 `block{i}_expand`
convs), rebuilds the narrower model with the kept weights (edgeface.optimize.surgery), re-estimates
BN statistics, fine-tunes by self-distillation to the original float model, and measures the
validation distillation loss. As in the seed, rounds continue while that loss changes by no more
than a threshold (0.1); the round that breaks it is discarded.
"""
from __future__ import annotations

import re

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.distill import (distill_loss, freeze_batchnorm, mean_cosine, predict, recalibrate_batchnorm,
                                       self_distill, teacher_data)
from edgeface.optimize.surgery import all_groups, count_params, narrow
from edgeface.utils.progress import progress

EXPAND_PATTERN = r"^block\d+_expand$"
SEED_THRESHOLD = 0.1


def l2_importance(model, producer: str) -> np.ndarray:
    """L2 norm of each output filter of a Conv2D/Dense kernel (the seed's importance score)."""
    kernel = np.asarray(model.get_layer(producer).get_weights()[0])
    return np.sqrt(np.sum(kernel.reshape(-1, kernel.shape[-1]) ** 2, axis=0))


def prunable_groups(model, pattern: str | None = EXPAND_PATTERN):
    """Channel groups whose producer name matches `pattern` (None: every group)."""
    rx = re.compile(pattern) if pattern else None
    return [g for g in all_groups(model) if rx is None or rx.search(g.producer)]


def prune_filters(model, remove: dict[str, int] | None = None, fraction: float | None = None,
                  pattern: str | None = EXPAND_PATTERN, min_keep: int = 8):
    """Remove the lowest-L2 filters: `remove` {producer: count} or `fraction` of every matching group.

    Returns (new model, {producer: sorted kept indices}). Filters with equal importance are removed
    in index order, so the result is deterministic.
    """
    groups = {g.producer: g for g in prunable_groups(model, pattern)}
    if remove is None:
        if fraction is None or not 0.0 < fraction < 1.0:
            raise EdgefaceError(f"pass remove={{layer: count}} or a fraction in (0, 1), got {fraction}")
        remove = {name: int(g.units * fraction) for name, g in groups.items()}
    keeps = {}
    for name, n in remove.items():
        if name not in groups:
            raise EdgefaceError(f"{name!r} is not a prunable filter group (matching {pattern!r})")
        units = groups[name].units
        n = min(int(n), max(0, units - min_keep))
        if n <= 0:
            continue
        order = np.argsort(l2_importance(model, name), kind="stable")
        keeps[name] = np.sort(order[n:])
    if not keeps:
        return model, {}
    return narrow(model, keeps), keeps


def structured_prune(model, images: np.ndarray, val_images: np.ndarray, step_fraction: float = 0.1,
                     max_rounds: int = 5, finetune_steps: int = 100, threshold: float = SEED_THRESHOLD,
                     pattern: str | None = EXPAND_PATTERN, min_keep: int = 8, batch_size: int = 32,
                     lr: float = 1e-4, task: str | None = None, seed: int = 0):
    """Iterative prune -> rebuild -> fine-tune; returns (best model, report)."""
    x, targets, task = teacher_data(model, images, task)
    val_targets = predict(model, val_images)
    base_params = count_params(model)
    prev_loss = distill_loss(model, val_targets, val_images, task)
    rounds = [{"round": 0, "params": base_params, "val_loss": prev_loss,
               "val_cosine": mean_cosine(predict(model, val_images), val_targets), "accepted": True,
               "widths": {g.producer: g.units for g in prunable_groups(model, pattern)}}]
    current = model
    for r in progress(range(1, max_rounds + 1), total=max_rounds, desc="structured prune", unit="round"):
        candidate, keeps = prune_filters(current, fraction=step_fraction, pattern=pattern, min_keep=min_keep)
        if not keeps:
            rounds.append({"round": r, "accepted": False, "reason": "every group is at min_keep"})
            break
        recalibrate_batchnorm(candidate, images)
        freeze_batchnorm(candidate)
        self_distill(candidate, x, targets, finetune_steps, task, batch_size, lr, seed=seed + r, desc=f"round {r}")
        for layer in candidate.layers:  # frozen BN was a fine-tune detail, not a property of the model
            layer.trainable = True
        loss = distill_loss(candidate, val_targets, val_images, task)
        change = loss - prev_loss
        row = {"round": r, "params": count_params(candidate), "val_loss": loss, "loss_change": change,
               "val_cosine": mean_cosine(predict(candidate, val_images), val_targets),
               "widths": {k: int(len(v)) for k, v in keeps.items()}}
        if abs(change) > threshold:
            rounds.append({**row, "accepted": False, "reason": f"validation loss changed by {change:+.4f} > {threshold}"})
            break
        rounds.append({**row, "accepted": True})
        current, prev_loss = candidate, loss
    report = {"method": "L2-norm filter importance, self-distillation fine-tune, seed stop rule",
              "threshold": threshold, "step_fraction": step_fraction, "finetune_steps": finetune_steps,
              "params_before": base_params, "params_after": count_params(current), "rounds": rounds}
    return current, report
