"""The one place that runs the label-free fine-tunes after training: magnitude pruning, then
quantisation-aware training (both self-distillation to the float model). `edgeface train face
--prune/--qat` and `edgeface convert --prune/--qat-finetune` call `prune_and_qat` with the same
defaults, so the two paths give the same model from the same images.

    done = prune_and_qat(model, images, sparsity=0.5, qat_steps=300)
    done.model    # the float model, pruned when asked (plain layers, zeros in the kernels)
    done.qat      # the QAT model for the int8 convert, or None
    done.record   # {"prune": {...}, "qat": {...}}: what was done, for run.json and the cards
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgeface.errors import EdgefaceError

if TYPE_CHECKING:  # the configs import the defaults above: nothing heavy at import time
    import numpy as np

FINETUNE_IMAGES = 512  # training images the fine-tunes distil on (train.finetune_images, convert --finetune-count)
FINETUNE_STEPS = 300   # steps of each fine-tune (train.finetune_steps, convert --prune-steps)
SELF_DISTILLATION = "self-distillation to the float model, flip augmentation"


@dataclass
class Finetuned:
    model: object
    qat: object | None = None
    record: dict = field(default_factory=dict)


def prune_and_qat(model, images: np.ndarray, *, sparsity: float = 0.0, prune_steps: int = FINETUNE_STEPS,
                  qat_steps: int | None = None, task: str | None = None, seed: int = 0) -> Finetuned:
    """Prune `model` to `sparsity` (0 = no pruning), then, when qat_steps is not None, QAT-fine-tune
    the result (sparsity-preserving after pruning). `images` are normalised training inputs."""
    try:
        from edgeface.optimize.prune import kernel_sparsity, prune_finetune
        from edgeface.optimize.qat import qat_finetune
    except ImportError as e:
        raise EdgefaceError(f"pruning / QAT need tensorflow-model-optimization, which is not available: {e}") from None
    record: dict = {}
    if sparsity:
        model = prune_finetune(model, images, sparsity, prune_steps, task=task, seed=seed)
        record["prune"] = {"target_sparsity": sparsity, "steps": prune_steps,
                           "kernel_sparsity": round(kernel_sparsity(model)["overall"], 4),
                           "finetune": SELF_DISTILLATION, "images": int(len(images))}
    qat = None
    if qat_steps is not None:
        preserve = bool(sparsity)
        qat = qat_finetune(model, images, qat_steps, preserve_sparsity=preserve, task=task, seed=seed)
        record["qat"] = {"steps": qat_steps, "preserve_sparsity": preserve,
                         "scheme": "Default8BitPrunePreserveQuantizeScheme" if preserve else "Default8BitQuantizeScheme",
                         "finetune": SELF_DISTILLATION, "images": int(len(images))}
    return Finetuned(model, qat, record)
