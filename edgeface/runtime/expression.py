"""`edgeface expression IMG... | --video FILE | --camera N`: facial expressions on the device (no TensorFlow).

Per image or frame: the TFLite MTCNN detector finds every face; each face is cropped, then
preprocessed by the same function training and `edgeface bench` use
(`edgeface.runtime.expression_preprocess.preprocess`: grayscale, CLAHE on the native crop, resize to
the model input) and normalised with the card's mean/std, classified by the expression .tflite (int8
outputs dequantised by `TFLiteModel`), and printed (label and probabilities; `--json`: one object
per image or frame) or drawn (box, label, one probability bar per class) into `--out`.

The crop: the training images (CK+48, FER2013) are 48x48 face crops with no alignment (the card's
`input.alignment` is null), so a face is cut as a square centred on the MTCNN box, side
BOX_SCALE x the box's longer side (its height). 0.96 is the median side of the CK+48 training
crops over the MTCNN box height found on them (189 train-split images, upscaled 4x and pasted on
a 640x480 frame; spread 0.05). A card may override it with notes.preprocessing.crop.box_scale.

Throughput of the stream path on this CPU (median frames/s over a real video of CK+ test-split
faces; it reads a data set's split, so it lives in the bench stage):

    python -m edgeface.bench.expression_stream --data ../shared/data/expressions/ckplus48 --frames 120
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click
import cv2
import numpy as np

from edgeface.align.faces import Face
from edgeface.errors import EdgefaceError
from edgeface.runtime.expression_preprocess import preprocess
from edgeface.runtime.interpreter import TFLiteModel
from edgeface.runtime.tta import average, check_mode
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION
from edgeface.runtime.pipeline import NoFace, StageTimes

DEFAULT_MODEL_NAME = "edgeface_expr_cnn_int8.tflite"
MODEL_ENV = "EDGEFACE_EXPR_MODEL"
BOX_SCALE = 0.96
STAGES = ("decode", "detect", "preprocess", "classify")


@dataclass
class FaceExpression:
    face: Face
    probabilities: np.ndarray  # (n_classes,) float32, dequantised
    class_names: list[str]

    @property
    def index(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def label(self) -> str:
        return self.class_names[self.index]

    @property
    def confidence(self) -> float:
        return float(self.probabilities[self.index])

    def to_json(self) -> dict:
        return {**self.face.to_json(), "label": self.label,
                "probabilities": {n: round(float(p), 5) for n, p in zip(self.class_names, self.probabilities)}}

    def text(self) -> str:
        x, y, w, h = (int(round(v)) for v in self.face.box)
        probs = " ".join(f"{n} {p:.3f}" for n, p in zip(self.class_names, self.probabilities))
        return f"box {x},{y},{w},{h}: {self.label} {self.confidence:.3f} ({probs})"


class ExpressionClassifier:
    """An expression .tflite with its card: face crop -> class probabilities."""

    def __init__(self, model_path: str | os.PathLike, num_threads: int = 1, tta: str | None = None):
        from edgeface.spec import card_split_and_preprocessing

        self.model = TFLiteModel(model_path, num_threads=num_threads)
        self.path = self.model.path
        card = self.model.model_card
        if card and card.task != TASK_CLASSIFICATION:
            raise EdgefaceError(f"{self.path.name} is a {card.task} model, not an expression classifier "
                                f"(the default is models/{DEFAULT_MODEL_NAME})")
        shape = self.model.input_shape
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] not in (1, 3):
            raise EdgefaceError(f"{self.path.name}: expected a square image input (N, S, S, 1|3), got {list(shape)}")
        self.size, self.channels = int(shape[1]), int(shape[3])
        n_out = int(np.prod(self.model.output["shape"][1:]))
        names = (card and card.class_names) or [f"class_{i}" for i in range(n_out)]
        if len(names) != n_out:
            raise EdgefaceError(f"{self.path.name} has {n_out} outputs but its card names {len(names)} classes")
        self.class_names = [str(n) for n in names]
        _, pre = card_split_and_preprocessing(card)  # the preprocessing the card records, read as `edgeface bench` reads it
        if pre.get("grayscale") is False:
            raise EdgefaceError(f"{self.path.name}: the card asks for colour input; expression models here are gray")
        clahe = pre.get("clahe", True)
        if isinstance(clahe, dict) and (float(clahe.get("clip_limit", 2.0)), int(clahe.get("grid", 8))) != (2.0, 8):
            raise EdgefaceError(f"{self.path.name}: CLAHE {clahe} differs from the training preprocessing "
                                "(clip_limit 2.0, grid 8)")
        self.clahe = bool(clahe)
        norm = (card.input.normalization.to_dict() if card and card.input.normalization
                else pre.get("normalization") or {})
        self.mean = float(np.mean(norm.get("mean", PIXEL_MEAN)))
        self.std = float(np.mean(norm.get("std", PIXEL_STD)))
        self.box_scale = float((pre.get("crop") or {}).get("box_scale", BOX_SCALE))
        # test-time augmentation (edgeface.runtime.tta): "flip" doubles the classifier's time, "ten" takes 10x
        self.tta = check_mode(pre.get("tta") or "none" if tta is None else tta)
        self.name = card.name if card and card.name else self.path.stem

    def crop(self, rgb: np.ndarray, face: Face) -> np.ndarray:
        """The square face crop (uint8, native resolution): centred on the box, side box_scale x its longer side."""
        x, y, w, h = (float(v) for v in face.box)
        side = max(2, int(round(max(w, h) * self.box_scale)))
        x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
        H, W = rgb.shape[:2]
        pad = (max(0, -y0), max(0, y0 + side - H), max(0, -x0), max(0, x0 + side - W))
        crop = rgb[max(0, y0):min(H, y0 + side), max(0, x0):min(W, x0 + side)]
        if any(pad):  # a face at the frame's edge: replicate the border (no black band for CLAHE to amplify)
            crop = cv2.copyMakeBorder(crop, *pad, cv2.BORDER_REPLICATE)
        return crop

    def prepare(self, crop: np.ndarray) -> np.ndarray:
        """A face crop -> the model input (S, S, C) float32: the training/bench preprocessing, then the card's normalisation."""
        return (preprocess(crop, self.size, self.channels, self.clahe).astype(np.float32) - self.mean) / self.std

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, S, S, C) model inputs -> (N, n_classes) probabilities (softmax applied if the graph ends in
        logits); with test-time augmentation, the mean over each input's views."""
        return average(self._probabilities, x, self.tta)

    def _probabilities(self, x: np.ndarray) -> np.ndarray:
        out = np.concatenate([self.model.run(np.ascontiguousarray(x[i:i + 1])).reshape(1, -1) for i in range(len(x))]) \
            if len(x) else np.zeros((0, len(self.class_names)), np.float32)
        if len(out) and (out.min() < -1e-3 or np.abs(out.sum(1) - 1).max() > 0.05):
            e = np.exp(out - out.max(1, keepdims=True))
            out = e / e.sum(1, keepdims=True)
        return out


class ExpressionPipeline:
    """decode -> detect -> preprocess -> classify, each stage timed like FacePipeline."""

    def __init__(self, model: str | os.PathLike, num_threads: int = 1, allow_corrupt: bool = False,
                 max_pixels: int | None = None, detector=None, tta: str | None = None):
        self.classifier = ExpressionClassifier(model, num_threads, tta)
        if detector is None:
            from edgeface.runtime.detector import Detector

            detector = Detector(num_threads=num_threads)
        self.detector = detector
        self.allow_corrupt = allow_corrupt
        self.max_pixels = max_pixels
        self.times = StageTimes()

    def read(self, path) -> np.ndarray:
        from edgeface.utils.images import read_image

        with self.times.stage("decode"):
            return read_image(path, self.allow_corrupt, self.max_pixels)

    def analyse(self, rgb: np.ndarray) -> list[FaceExpression]:
        """Every face in an RGB uint8 image with its expression, left to right."""
        with self.times.stage("detect"):
            faces = sorted(self.detector.detect(rgb), key=lambda f: float(f.box[0]))
        c = self.classifier
        with self.times.stage("preprocess"):
            x = np.stack([c.prepare(c.crop(rgb, f)) for f in faces]) if faces else None
        if x is None:
            return []
        with self.times.stage("classify"):
            probs = c.probabilities(x)
        return [FaceExpression(f, p, c.class_names) for f, p in zip(faces, probs)]


# ---- drawing --------------------------------------------------------------------------------
COLOURS = [(60, 60, 230), (180, 80, 180), (40, 140, 60), (160, 60, 120), (40, 200, 240), (200, 120, 40),
           (230, 200, 40), (120, 120, 120), (80, 200, 120), (200, 200, 200)]  # BGR, one per class


def colour(i: int) -> tuple[int, int, int]:
    return COLOURS[i % len(COLOURS)]


def draw(bgr: np.ndarray, fx: FaceExpression) -> None:
    """Box and label in the winning class's colour, and a panel under the box: one bar per class."""
    H, W = bgr.shape[:2]
    x, y, w, h = (int(round(v)) for v in fx.face.box)
    col = colour(fx.index)
    cv2.rectangle(bgr, (x, y), (x + w, y + h), col, 2)
    label = f"{fx.label} {fx.confidence:.2f}"
    font = cv2.FONT_HERSHEY_SIMPLEX
    (tw, th), base = cv2.getTextSize(label, font, 0.5, 1)
    ty = max(th + base, y)
    cv2.rectangle(bgr, (x, ty - th - base), (x + tw + 2, ty), col, -1)
    cv2.putText(bgr, label, (x + 1, ty - base), font, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    # probability panel under the box (over its bottom when the frame ends), as wide as the box
    row, name_w = 12, 56
    pw = min(W, max(w, name_w + 50))
    ph = min(H, row * len(fx.class_names) + 4)
    px = min(max(0, x), W - pw)
    py = y + h + 3 if y + h + 3 + ph <= H else max(0, min(y + h, H) - ph)
    bar_w = pw - name_w - 4
    sub = bgr[py:py + ph, px:px + pw]
    sub[:] = (sub * 0.4).astype(np.uint8)  # darken behind the bars
    for i, (n, p) in enumerate(zip(fx.class_names, fx.probabilities)):
        ry = py + 2 + i * row
        cv2.putText(bgr, n[:9], (px + 2, ry + row - 3), font, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
        bx = px + name_w
        cv2.rectangle(bgr, (bx, ry + 2), (bx + bar_w, ry + row - 2), (90, 90, 90), 1)
        fill = int(round(float(np.clip(p, 0, 1)) * bar_w))
        if fill:
            cv2.rectangle(bgr, (bx, ry + 2), (bx + fill, ry + row - 2), colour(i), -1)


def annotate(rgb: np.ndarray, found: list[FaceExpression]) -> np.ndarray:
    """A BGR copy of the image with every face drawn."""
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    for fx in found:
        draw(bgr, fx)
    return bgr


# ---- the command's two modes ------------------------------------------------------------------
def output_for(out: Path | None, image: Path, many: bool) -> Path | None:
    if out is None:
        return None
    if not many:
        return out
    ext = image.suffix if image.suffix.lower() in (".png", ".jpg", ".jpeg") else ".png"
    return out / f"{image.stem}_expression{ext}"


def run_images(pipe: ExpressionPipeline, images: list[Path], out: Path | None, as_json: bool) -> int:
    """Classify every face of every image; returns the number of faces. No face anywhere: NoFace."""
    from edgeface.utils.images import write_image

    many = len(images) > 1
    total = 0
    for path in images:
        rgb = pipe.read(path)
        found = pipe.analyse(rgb)
        if not found and not many:  # one image and no face: bad input, nothing printed or written
            raise NoFace(f"no face found in {path}")
        total += len(found)
        if as_json:
            click.echo(json.dumps({"image": str(path), "faces": [f.to_json() for f in found]}))
        else:
            for i, fx in enumerate(found, 1):
                click.echo(f"{path} face {i}: {fx.text()}")
            if not found:
                click.echo(f"{path}: no face found")
        target = output_for(out, path, many)
        if target is not None:
            write_image(target, cv2.cvtColor(annotate(rgb, found), cv2.COLOR_BGR2RGB))
    if total == 0:
        raise NoFace(f"no face found in any of the {len(images)} images")
    if out is not None and not as_json:
        click.echo(f"wrote {out}")
    return total


def run_stream(pipe: ExpressionPipeline, source, out: Path | None, as_json: bool, max_frames: int | None,
               show: bool) -> dict:
    """Every frame of a video file or camera: print per face (or one JSON object per frame), draw into `out`."""
    from edgeface.runtime.stream import stream_frames, stream_summary_line

    def on_frame(bgr, index):
        found = pipe.analyse(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        for fx in found:
            draw(bgr, fx)
        if as_json:
            click.echo(json.dumps({"source": str(source), "frame": index, "faces": [f.to_json() for f in found]}))
        else:
            for i, fx in enumerate(found, 1):
                click.echo(f"frame {index} face {i}: {fx.text()}")
        return [fx.label for fx in found]

    summary = stream_frames(pipe, source, out, max_frames, show, on_frame)
    summary["labels"] = summary["seen"]
    click.echo(stream_summary_line(summary, "no faces"), err=as_json)  # --json: stdout stays one object per frame
    return summary


def check_image_out(out: Path | None, images: list[Path]) -> Path | None:
    from edgeface.utils.io import check_output_path

    if out is None:
        return None
    if len(images) > 1:
        check_output_path(out, "--out folder", folder=True)
        out.mkdir(parents=True, exist_ok=True)
        return out
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise EdgefaceError(f"--out {out}: with one image, name a .png or .jpg to write (a folder for several images)")
    return check_output_path(out, "--out image")


def check_video_out(out: Path | None) -> Path | None:
    from edgeface.runtime.stream import FOURCC
    from edgeface.utils.io import check_output_path

    if out is None:
        return None
    if out.suffix.lower() not in FOURCC:
        raise EdgefaceError(f"--out {out}: stream mode writes a video ({', '.join(FOURCC)})")
    return check_output_path(out, "--out video")


# ---- test and benchmark videos --------------------------------------------------------------
FRAME_SIZE = (640, 480)
FACE_PX = 192


def face_frames(face_sets: list[list[np.ndarray]], frame_size=FRAME_SIZE, face_px: int = FACE_PX,
                background: int = 110) -> list[np.ndarray]:
    """One BGR frame per list of gray face photos: each upscaled to face_px and pasted side by side,
    centred vertically, on a plain grey frame (48x48 crops are too small for a 20 px-minimum detector
    to find reliably, and their tight framing leaves no margin around the face)."""
    W, H = frame_size
    frames = []
    for faces in face_sets:
        frame = np.full((H, W), background, np.uint8)
        gap = (W - len(faces) * face_px) // (len(faces) + 1)
        if gap < 0 or face_px > H:
            raise EdgefaceError(f"{len(faces)} faces of {face_px} px do not fit a {W}x{H} frame")
        y0 = (H - face_px) // 2
        for i, g in enumerate(faces):
            x0 = gap + i * (face_px + gap)
            frame[y0:y0 + face_px, x0:x0 + face_px] = cv2.resize(g, (face_px, face_px), interpolation=cv2.INTER_CUBIC)
        frames.append(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    return frames


def write_video(frames: list[np.ndarray], path: Path, fps: float = 10.0) -> Path:
    """Frames -> an .mp4 (mp4v) or .avi (MJPG) file with OpenCV's VideoWriter."""
    from edgeface.runtime.stream import VideoOut

    writer = VideoOut(Path(path), fps, (frames[0].shape[1], frames[0].shape[0]))
    ok = False
    try:
        for f in frames:
            writer.write(f)
        ok = True
    finally:
        writer.close(ok)
    return Path(path)
