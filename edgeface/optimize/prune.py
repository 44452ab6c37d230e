"""Magnitude pruning (TF-MOT prune_low_magnitude) with a self-distillation fine-tune.

Sparsity ramps from 0 to the target along a PolynomialDecay schedule over the first 70% of the
steps, then the mask is held while the surviving weights recover. The returned model is stripped
(plain layers, zeros in the kernels): the .tflite is no smaller raw, but compresses (gzip) by about
the sparsity, and pruning-preserving QAT keeps the zeros through int8.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.distill import clone_with_weights, freeze_batchnorm, self_distill, teacher_data

RAMP_FRACTION = 0.7


def prune_finetune(model, images: np.ndarray, sparsity: float, steps: int, batch_size: int = 32,
                   lr: float = 1e-4, task: str | None = None, seed: int = 0, return_history: bool = False):
    """Prune `model` to `sparsity` (0..1) while distilling it to itself; returns the stripped model."""
    import tensorflow_model_optimization as tfmot

    if not 0.0 < sparsity < 1.0:
        raise EdgefaceError(f"sparsity must be in (0, 1), got {sparsity}")
    if steps < 1:
        raise EdgefaceError(f"pruning needs at least 1 fine-tune step, got {steps}")
    x, targets, task = teacher_data(model, images, task)
    end = max(1, int(steps * RAMP_FRACTION))
    schedule = tfmot.sparsity.keras.PolynomialDecay(initial_sparsity=0.0, final_sparsity=float(sparsity),
                                                    begin_step=0, end_step=end, frequency=max(1, end // 10))
    pruned = tfmot.sparsity.keras.prune_low_magnitude(clone_with_weights(model), pruning_schedule=schedule)
    freeze_batchnorm(pruned)
    losses = self_distill(pruned, x, targets, steps, task, batch_size, lr, seed=seed,
                          callbacks=[tfmot.sparsity.keras.UpdatePruningStep()], desc=f"prune {sparsity:.0%}")
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    return (stripped, losses) if return_history else stripped


def kernel_sparsity(model) -> dict:
    """Fraction of exact zeros in the prunable kernels (Conv2D, DepthwiseConv2D, Dense), overall and per layer."""
    import tf_keras as keras
    per, zeros, total = {}, 0, 0
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)
        if isinstance(inner, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            k = np.asarray(inner.get_weights()[0])
            per[inner.name] = float(np.mean(k == 0))
            zeros += int(np.sum(k == 0))
            total += k.size
    return {"overall": zeros / total if total else 0.0, "per_layer": per}
