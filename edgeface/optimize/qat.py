"""Quantisation-aware training (TF-MOT) with a self-distillation fine-tune, ready for int8 convert.

`qat_finetune` returns the QAT model itself: `convert_keras(qat_model, ..., dtypes=["int8"])`
turns its learned fake-quant ranges into the int8 file. With preserve_sparsity=True (for a model
that went through prune_finetune) the Default8BitPrunePreserveQuantizeScheme keeps the zeros.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.distill import clone_with_weights, freeze_batchnorm, self_distill, teacher_data


def quantize(model, preserve_sparsity: bool = False):
    """The TF-MOT QAT graph of `model` (a copy; the float model is not touched)."""
    import tensorflow_model_optimization as tfmot

    clone = clone_with_weights(model)
    try:
        if preserve_sparsity:
            annotated = tfmot.quantization.keras.quantize_annotate_model(clone)
            scheme = tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme()
            return tfmot.quantization.keras.quantize_apply(annotated, scheme)
        return tfmot.quantization.keras.quantize_model(clone)
    except (ValueError, RuntimeError, TypeError) as e:  # an unsupported layer: say which, in one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EdgefaceError(f"quantisation-aware training cannot wrap this model: {msg}") from None


def qat_finetune(model, images: np.ndarray, steps: int, preserve_sparsity: bool = False, batch_size: int = 32,
                 lr: float = 5e-5, task: str | None = None, seed: int = 0, return_history: bool = False):
    """QAT-wrap `model` and distil it to the float model for `steps` batches."""
    if steps < 0:
        raise EdgefaceError(f"QAT steps must be >= 0, got {steps}")
    x, targets, task = teacher_data(model, images, task)
    qat = quantize(model, preserve_sparsity)
    freeze_batchnorm(qat)
    losses = self_distill(qat, x, targets, steps, task, batch_size, lr, seed=seed,
                          desc="QAT" + (" (sparsity-preserving)" if preserve_sparsity else ""))
    return (qat, losses) if return_history else qat
