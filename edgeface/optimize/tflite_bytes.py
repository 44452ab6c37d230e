"""A Keras model as TFLite flatbuffer bytes: the converter call, and string stripping.

The byte-budget loop (`optimize.compress`) measures these bytes after every pruning round;
`edgeface.convert` builds the checked artifacts and their cards on top of them.
"""
from __future__ import annotations

import warnings

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError, first_line
from edgeface.utils.native import quiet_native_stderr

DTYPES = ("float32", "float16", "int8", "dynamic")


def strip_strings(data: bytes) -> bytes:
    """The same flatbuffer without tensor names, signature and descriptions (~3% of a MobileFaceNet
    int8 file); the runtime and bench address tensors by index, so they still run it."""
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def convert_bytes(model, dtype: str, representative: np.ndarray | None = None, int8_io: bool = False,
                  per_channel: bool = True) -> bytes:
    """One TFLite flatbuffer for `dtype`. `representative`: float (N, H, W, C) for int8.

    per_channel=False quantises each weight tensor with one scale: a float32 scale and an int64
    zero point per output channel (weights and biases) are 20-30% of an int8 MobileNetV2 file.
    """
    import tensorflow as tf

    from edgeface.nets.io import is_qat_model

    if dtype not in DTYPES:
        raise EdgefaceError(f"unknown dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if dtype == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif dtype == "dynamic":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]  # int8 weights, float activations, no calibration
    elif dtype == "int8":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        if representative is None and not is_qat_model(model):
            raise EdgefaceError("int8 needs calibration data (representative training images): pass --calib DIR")
        if representative is not None:
            reps = representative

            def gen():
                for x in reps:
                    yield [x[None]]
            conv.representative_dataset = gen
        if representative is not None:
            # Full-integer only: fail rather than leave float ops in an "int8" file. (A QAT model
            # without calibration images cannot use this switch: the converter insists on a
            # representative set; its fake-quant ranges still make every op int8.)
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            conv.inference_input_type = tf.int8
            conv.inference_output_type = tf.int8
    if not per_channel and dtype in ("int8", "dynamic"):
        if not hasattr(conv, "_experimental_disable_per_channel"):
            raise EdgefaceError("this TensorFlow's converter has no per-tensor switch (_experimental_disable_per_channel)")
        conv._experimental_disable_per_channel = True  # private but long-standing TFLiteConverter flag
    try:
        # the converter prints MLIR/quantiser chatter on fd 2 and Python warnings: one line per outcome
        with quiet_native_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return conv.convert()
    except Exception as e:  # the MLIR converter raises ConverterError / RuntimeError with long text
        raise EdgefaceError(f"TFLite conversion to {dtype} failed: {first_line(e)}") from None
