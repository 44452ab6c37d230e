"""The on-device pipeline: decode -> detect -> align -> embed -> match, each stage timed.

    pipe = FacePipeline("models/edgeface_face_int8.tflite")
    for face, crop, embedding in pipe.faces(pipe.read("photo.jpg")):
        ...
    pipe.times.last      # ms per stage of the last call
    pipe.times.medians() # median ms per stage over every call so far
"""
from __future__ import annotations

import contextlib
import os
import time
from collections import defaultdict

import numpy as np

from edgeface.align.faces import Face, pick_main_face
from edgeface.align.transform import align_face, centre_crop
from edgeface.errors import EdgefaceError
from edgeface.runtime.embedder import FaceEmbedder
from edgeface.utils.images import decode_image, read_image

STAGES = ("decode", "detect", "align", "embed", "match")


class NoFace(EdgefaceError):
    """No face was found in an image (exit 2: the input cannot be used as given)."""


class StageTimes:
    """Wall-clock ms per named stage (the last call and the full history), plus process CPU ms.

    CPU time is what a stage would take on an idle core when the interpreter runs single-threaded:
    on a shared, loaded machine the wall clock also counts time spent waiting for a core.
    """

    def __init__(self):
        self.last: dict[str, float] = {}
        self.history: dict[str, list[float]] = defaultdict(list)
        self.cpu_history: dict[str, list[float]] = defaultdict(list)

    @contextlib.contextmanager
    def stage(self, name: str):
        t0, c0 = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            ms = (time.perf_counter() - t0) * 1000.0
            self.last[name] = ms
            self.history[name].append(ms)
            self.cpu_history[name].append((time.process_time() - c0) * 1000.0)

    def medians(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.history.items() if v}

    def cpu_medians(self) -> dict[str, float]:
        return {k: float(np.median(v)) for k, v in self.cpu_history.items() if v}

    def reset(self) -> None:
        self.last.clear()
        self.history.clear()
        self.cpu_history.clear()


class FacePipeline:
    def __init__(self, model: FaceEmbedder | str | os.PathLike, detector=None, num_threads: int = 1,
                 flip: bool = True, allow_corrupt: bool = False, max_pixels: int | None = None):
        self.embedder = model if isinstance(model, FaceEmbedder) else FaceEmbedder(model, num_threads=num_threads)
        if detector is None:
            from edgeface.runtime.detector import Detector

            detector = Detector(num_threads=num_threads)
        self.detector = detector
        self.flip = flip
        self.allow_corrupt = allow_corrupt  # how read/decode treat damaged and huge images
        self.max_pixels = max_pixels
        self.times = StageTimes()

    @property
    def template(self):
        return self.embedder.template

    def read(self, path: str | os.PathLike) -> np.ndarray:
        with self.times.stage("decode"):
            return read_image(path, self.allow_corrupt, self.max_pixels)

    def decode(self, data: bytes, name: str = "<bytes>") -> np.ndarray:
        with self.times.stage("decode"):
            return decode_image(data, name, self.allow_corrupt, self.max_pixels)

    def detect(self, rgb: np.ndarray) -> list[Face]:
        with self.times.stage("detect"):
            return self.detector.detect(rgb)

    def align(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        with self.times.stage("align"):
            crops = [align_face(rgb, f.landmarks, self.template) for f in faces]
            return np.stack(crops) if crops else np.zeros((0, self.template.height, self.template.width, 3), np.uint8)

    def embed(self, crops: np.ndarray) -> np.ndarray:
        with self.times.stage("embed"):
            return self.embedder.embed(crops, flip=self.flip)

    def faces(self, rgb: np.ndarray) -> list[tuple[Face, np.ndarray, np.ndarray]]:
        """Every face in the image: (Face, aligned crop, unit embedding)."""
        faces = self.detect(rgb)
        crops = self.align(rgb, faces)
        embeddings = self.embed(crops)
        return list(zip(faces, crops, embeddings))

    def main_face(self, rgb: np.ndarray, name: str = "image", fallback_crop: bool = False):
        """(Face or None, crop, embedding) of the largest central face.

        No face: NoFace, or with fallback_crop the centre crop of the image (Face None).
        """
        face = pick_main_face(self.detect(rgb), rgb.shape)
        if face is None and not fallback_crop:
            raise NoFace(f"no face found in {name} (--fallback-crop embeds the centre crop instead)")
        with self.times.stage("align"):
            crop = align_face(rgb, face.landmarks, self.template) if face else centre_crop(rgb, self.template)
        return face, crop, self.embed(crop[None])[0]

    def match(self, embeddings: np.ndarray, gallery, top_k: int = 3, threshold: float | None = None):
        """Gallery.search with the time counted as the pipeline's match stage."""
        with self.times.stage("match"):
            return gallery.search(embeddings, top_k=top_k, threshold=threshold)
