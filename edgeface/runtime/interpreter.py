"""Load and run .tflite models without TensorFlow.

Interpreter order: ai_edge_litert (the maintained LiteRT wheel, fast int8 kernels), then
tflite_runtime (old; slow int8, breaks with numpy 2), then tf.lite when TensorFlow happens to be
installed. Quantisation is handled here once: callers feed float inputs in the model's
normalised range and always get dequantised float outputs back.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError, first_line
from edgeface.spec import ModelCard, card_path, load_card  # noqa: F401  (re-exported: every card read is validated)
from edgeface.utils.native import quiet_native_stderr

TFLITE_IDENTIFIER = b"TFL3"  # flatbuffer file identifier at bytes 4..8 of every .tflite


def interpreter_class():
    """(Interpreter class, backend name): the first TFLite interpreter importable here."""
    try:
        from ai_edge_litert.interpreter import Interpreter
        return Interpreter, "ai_edge_litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter
        return Interpreter, "tflite_runtime"
    except ImportError:
        pass
    try:
        import edgeface  # noqa: F401  (legacy keras flag before TF loads)
        import tensorflow as tf
        return tf.lite.Interpreter, "tf.lite"
    except ImportError:
        raise EdgefaceError("no TFLite interpreter found: pip install ai-edge-litert "
                            "(or: pip install 'edgeface[runtime]')") from None


def make_interpreter(data: bytes, num_threads: int = 1):
    """(interpreter, backend name) for a model's bytes, tensors not yet allocated."""
    cls, backend = interpreter_class()
    with quiet_native_stderr():
        return cls(model_content=data, num_threads=num_threads), backend


def allocate(interpreter) -> None:
    """allocate_tensors() without the delegate's INFO line (it is printed here, not at construction)."""
    with quiet_native_stderr():
        interpreter.allocate_tensors()


def check_tflite_file(path: str | os.PathLike) -> bytes:
    """Read a .tflite file, or raise one clear line if it is missing, empty or not a TFLite model."""
    from edgeface.utils.io import read_input_file

    path = Path(path)
    data = read_input_file(path, "model")
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise EdgefaceError(f"not a valid TFLite model: {path} (no TFL3 identifier)")
    return data


class TFLiteModel:
    """One .tflite model with a single input and a single output, run on float arrays."""

    def __init__(self, path: str | os.PathLike, num_threads: int = 1):
        self.path = Path(path)
        data = check_tflite_file(self.path)
        # None for a model without a card; a bad card is refused before the interpreter starts
        self.model_card: ModelCard | None = load_card(self.path)
        _, self.backend = interpreter_class()
        try:
            # A truncated or damaged flatbuffer fails in the constructor, in allocate or (no
            # subgraph, no tensors) when its input is looked up: every one is the same bad input.
            self.interpreter, _ = make_interpreter(data, num_threads)
            allocate(self.interpreter)
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]
        except Exception as e:  # noqa: BLE001  the interpreter raises ValueError, RuntimeError, IndexError...
            raise EdgefaceError(f"not a valid TFLite model: {self.path} ({self.backend}: {first_line(e)})") from None
        self.num_threads = num_threads

    @property
    def card(self) -> dict:
        """The card as JSON ({} without one), for code that prints or stores the whole card."""
        return self.model_card.to_dict() if self.model_card else {}

    @property
    def input_shape(self) -> tuple:
        return tuple(int(v) for v in self.input["shape"])

    @property
    def input_dtype(self):
        return self.input["dtype"]

    @property
    def output_dtype(self):
        return self.output["dtype"]

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        dtype = self.input["dtype"]
        if dtype in (np.int8, np.uint8):
            scale, zp = self.input["quantization"]
            info = np.iinfo(dtype)
            return np.clip(np.round(x / scale + zp), info.min, info.max).astype(dtype)
        return x.astype(dtype)

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        if self.output["dtype"] in (np.int8, np.uint8):
            scale, zp = self.output["quantization"]
            return (y.astype(np.float32) - zp) * scale
        return y.astype(np.float32)

    def _resize(self, batch: int) -> None:
        if self.input_shape[0] != batch:
            self.interpreter.resize_tensor_input(self.input["index"], [batch, *self.input_shape[1:]])
            allocate(self.interpreter)
            self.input = self.interpreter.get_input_details()[0]
            self.output = self.interpreter.get_output_details()[0]

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: float32 (N, *input_shape[1:]) in the model's normalised range -> float32 outputs."""
        x = np.asarray(x, dtype=np.float32)
        if x.shape[1:] != self.input_shape[1:]:
            raise EdgefaceError(f"{self.path.name} expects input {list(self.input_shape[1:])}, got {list(x.shape[1:])}")
        self._resize(x.shape[0])
        self.interpreter.set_tensor(self.input["index"], self.quantize_input(x))
        self.interpreter.invoke()
        return self.dequantize_output(self.interpreter.get_tensor(self.output["index"]))

    def run_one(self, x: np.ndarray) -> np.ndarray:
        """One example (no batch axis) -> its output: `run` on a batch of one."""
        return self.run(np.asarray(x, dtype=np.float32)[None])[0]


def l2_normalize(x: np.ndarray, axis: int = -1, eps: float = 1e-10) -> np.ndarray:
    """Host-side L2 normalisation (int8 L2_NORMALIZATION in TFLite is too coarse, scale 1/128)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), eps)
