"""Aligned face crops -> L2-normalised embeddings with a .tflite face model (no TensorFlow).

Everything the host must do around the graph comes from the model card (input size, colour,
normalisation, alignment template); a model without a card gets the edgeface defaults: RGB,
(x - 127.5) / 127.5, the ArcFace template matching its input size.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from edgeface.align.transform import Template, get_template, template_for_size
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLiteModel, l2_normalize
from edgeface.spec import TASK_EMBEDDING, InputSpec
from edgeface.utils.io import sha256_file


def flip_tta(model: TFLiteModel, x: np.ndarray, flip: bool = True) -> np.ndarray:
    """Raw (N, D) embeddings of standardised inputs (N, H, W, C). flip: the image's plus its mirror's
    embedding, both views in ONE call (batching beats two half-size calls). Not normalised."""
    n = len(x)
    if not flip:
        return model.run(x).reshape(n, -1)
    y = model.run(np.concatenate([x, x[:, :, ::-1]])).reshape(2 * n, -1)
    return y[:n] + y[n:]


class FaceEmbedder:
    def __init__(self, model_path: str | os.PathLike, num_threads: int = 1):
        self.model = TFLiteModel(model_path, num_threads=num_threads)
        self.path = self.model.path
        card = self.model.model_card
        if card and card.task != TASK_EMBEDDING:
            raise EdgefaceError(f"{self.path.name} is a {card.task} model, not a face embedder")
        shape = self.model.input_shape
        if len(shape) != 4 or shape[3] not in (1, 3):
            raise EdgefaceError(f"{self.path.name}: expected an image input (N, H, W, 1|3), got {list(shape)}")
        self.height, self.width, self.channels = shape[1], shape[2], shape[3]
        inp = card.input if card else InputSpec()
        # scalars or per-channel lists
        self.mean = np.asarray(inp.mean, dtype=np.float32)
        self.std = np.asarray(inp.std, dtype=np.float32)
        self.color = inp.color or ("GRAY" if self.channels == 1 else "RGB")
        self.template: Template = (get_template(inp.alignment) if inp.alignment
                                   else template_for_size(self.width, self.height))
        if (self.template.width, self.template.height) != (self.width, self.height):
            raise EdgefaceError(f"{self.path.name}: alignment template {self.template.name} is "
                                f"{self.template.width}x{self.template.height} but the model input is {self.width}x{self.height}")
        self.card = card
        self.name = card.name if card and card.name else self.path.stem
        self._sha256 = None

    @property
    def sha256(self) -> str:
        """The model file's hash (galleries are bound to it: embeddings of two models never mix)."""
        if self._sha256 is None:
            self._sha256 = sha256_file(self.path)
        return self._sha256

    @property
    def threshold(self) -> float | None:
        """Cosine threshold written by `edgeface bench` into the card, or None."""
        v = self.card.threshold if self.card else None
        return float(v) if v is not None else None

    def preprocess(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if crops.ndim != 4 or crops.shape[1:3] != (self.height, self.width) or crops.shape[3] != 3:
            raise EdgefaceError(f"{self.path.name} expects aligned RGB crops (N, {self.height}, {self.width}, 3), "
                                f"got {list(crops.shape)}")
        if self.color == "GRAY":
            crops = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops])[..., None]
        return (crops.astype(np.float32) - self.mean) / self.std

    def raw(self, crops: np.ndarray) -> np.ndarray:
        """Dequantised, un-normalised model outputs for uint8 crops."""
        x = self.preprocess(crops)
        return self.model.run(x).reshape(len(x), -1)

    def embed(self, crops: np.ndarray, flip: bool = True) -> np.ndarray:
        """(N, H, W, 3) uint8 aligned crops (or one crop) -> (N, D) unit-length float32 embeddings.

        flip: test-time augmentation, the sum of the image's and its mirror's embeddings.
        """
        crops = np.asarray(crops)
        if crops.ndim == 3:
            crops = crops[None]
        if len(crops) == 0:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(flip_tta(self.model, self.preprocess(crops), flip))

    @property
    def dim(self) -> int:
        return int(np.prod(self.model.output["shape"][1:]))
