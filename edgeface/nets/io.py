"""Save and load edgeface Keras models (`model.keras`) atomically, with every custom object known."""
from __future__ import annotations

import contextlib
import os
import warnings
import zipfile
from pathlib import Path

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tf_keras as keras

from edgeface.errors import EdgefaceError
from edgeface.utils.io import atomic_path

# Layers defined by edgeface that a saved model may contain (the backbones are plain tf-keras).
CUSTOM_OBJECTS: dict[str, object] = {}


def save_model(model: keras.Model, path: str | os.PathLike) -> Path:
    """Write `model` to `path` (.keras zip or .h5); an interrupted save never replaces the old file."""
    path = Path(path)
    if path.suffix not in (".keras", ".h5"):
        raise EdgefaceError(f"model path must end in .keras or .h5: {path}")
    if path.suffix == ".keras" and is_qat_model(model):
        # TF-MOT's quantize layers lose variables in the .keras format (load fails); .h5 round-trips.
        raise EdgefaceError(f"a quantisation-aware (QAT) model must be saved as .h5, not {path.name}")
    # Keras picks the format from the suffix, so the temporary file keeps it.
    with atomic_path(path, keep_suffix=True) as tmp:
        # Inference artifact: the optimizer state lives in the training checkpoints instead.
        if path.suffix == ".h5":
            with warnings.catch_warnings():  # .h5 is chosen on purpose (QAT): Keras's "legacy format" note is noise
                warnings.filterwarnings("ignore", message="You are saving your model as an HDF5 file")
                model.save(tmp, include_optimizer=False)
        else:
            model.save(tmp)
    return path


# TF-MOT's applied quantisation layers. Not QuantizeAnnotate: an annotated model is not quantised yet.
QAT_LAYERS = ("QuantizeLayer", "QuantizeWrapper", "QuantizeWrapperV2")


def is_qat_model(model) -> bool:
    """True when `model` (or a model nested in it) holds TF-MOT quantisation layers: a QAT graph,
    whose fake-quant ranges replace int8 calibration."""
    return any(type(layer).__name__ in QAT_LAYERS or (hasattr(layer, "layers") and is_qat_model(layer))
               for layer in model.layers)


def _tfmot_scopes() -> contextlib.ExitStack:
    """QAT- and pruning-wrapped models need TF-MOT's scopes to deserialise."""
    stack = contextlib.ExitStack()
    try:
        import tensorflow_model_optimization as tfmot
    except ImportError:
        return stack
    stack.enter_context(tfmot.quantization.keras.quantize_scope())
    stack.enter_context(tfmot.sparsity.keras.prune_scope())
    return stack


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a model saved by `save_model` (or any tf-keras .keras/.h5 file) for inference/fine-tuning."""
    path = Path(path)
    if not path.is_file():
        raise EdgefaceError(f"model file not found: {path}")
    if path.suffix == ".keras" and not zipfile.is_zipfile(path):
        raise EdgefaceError(f"not a Keras model file (not a zip archive): {path}")
    try:
        with _tfmot_scopes(), keras.utils.custom_object_scope(CUSTOM_OBJECTS):
            return keras.models.load_model(path, compile=False)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise EdgefaceError(f"cannot load model {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
