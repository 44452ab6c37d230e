"""TF-free MTCNN: the mtcnn package's cascade re-implemented in numpy/OpenCV over .tflite nets.

The three networks are the package's own weights converted by `edgeface.runtime.build_detector`
(assets/mtcnn_{pnet,rnet,onet}.tflite). Everything around them follows mtcnn 1.0 step by step so
results match the TensorFlow path (`edgeface.align.detect.MTCNNDetector`):

- the whole image is normalised once, (x - 127.5) / 128, RGB, no transposes (the Caffe
  column-major flatten is a Permute layer inside R-Net/O-Net, so it ships inside the .tflite);
- pyramid scales (12 / min_face) * 0.709^k, each level an AREA resize of the normalised image
  with truncated sizes (cv2.INTER_AREA matches tf.image.resize(method="area") to ~1e-5);
- P-Net cells: stride 2, 12 px window, box = cell + regression * 11; NMS 0.5 per scale, 0.7 across;
- R-Net / O-Net patches: tf.image.crop_and_resize semantics (bilinear, coordinates divided by
  H and W, samples outside the image are 0) re-implemented in numpy;
- the package's NMS keeps a box unless ANY higher-scoring box overlaps it above the threshold
  (suppressed boxes still suppress), "union" IoU except O-Net's final "min".
"""
from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np

from edgeface.align.faces import Face, faces_from_rows, shrink_for_detection
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import allocate, check_tflite_file, make_interpreter

ASSETS = Path(__file__).resolve().parent / "assets"
MEAN, STD = 127.5, 128.0  # mtcnn.utils.images.normalize_images
PNET_CELL, PNET_STRIDE, MIN_LEVEL = 12, 2, 12


class MultiOutputNet:
    """A .tflite net whose outputs are told apart by their channel count (P/R/O-Net heads are 2, 4, 10).

    Re-allocating tensors costs about as much as running P-Net on a small level, and a stream of
    same-size frames asks for the same shapes every time, so one interpreter is kept per input
    shape (least recently used dropped past `max_shapes`). Batch nets (R/O-Net) run in fixed
    chunks of `batch` (the tail padded) so their shapes repeat too.
    """

    def __init__(self, path: str | os.PathLike, num_threads: int = 1, batch: int | None = None, max_shapes: int = 24):
        self.path = Path(path)
        self.data = check_tflite_file(self.path)
        self.num_threads = num_threads
        self.batch = batch
        self.max_shapes = max_shapes
        self._by_shape: OrderedDict[tuple, object] = OrderedDict()
        # Tensors are allocated per shape on first use: P-Net's stored shape is a 1x1 placeholder
        # that its 3x3 convolutions cannot even be prepared for.
        self.backend = self._new_interpreter()[1]

    def _new_interpreter(self):
        try:
            return make_interpreter(self.data, self.num_threads)
        except (ValueError, RuntimeError) as e:
            raise EdgefaceError(f"cannot load {self.path}: {str(e).strip().splitlines()[0]}") from None

    def _interpreter(self, shape: tuple):
        it = self._by_shape.get(shape)
        if it is None:
            it = self._new_interpreter()[0]
            it.resize_tensor_input(it.get_input_details()[0]["index"], list(shape))
            allocate(it)
            self._by_shape[shape] = it
            if len(self._by_shape) > self.max_shapes:
                self._by_shape.popitem(last=False)
        else:
            self._by_shape.move_to_end(shape)
        return it

    def _invoke(self, x: np.ndarray) -> dict[int, np.ndarray]:
        it = self._interpreter(x.shape)
        it.set_tensor(it.get_input_details()[0]["index"], x)
        it.invoke()
        return {int(d["shape"][-1]): it.get_tensor(d["index"]) for d in it.get_output_details()}

    def run(self, x: np.ndarray) -> dict[int, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if not self.batch or len(x) <= 1:
            return self._invoke(x)
        n = len(x)
        parts = [self._invoke(x[i:i + self.batch]) for i in range(0, n - n % self.batch, self.batch)]
        tail = n % self.batch
        if tail:  # the rest, padded to the next power of two (a handful of shapes in all)
            b = 1 << (tail - 1).bit_length()
            chunk = x[n - tail:]
            if b > tail:
                chunk = np.concatenate([chunk, np.zeros((b - tail, *x.shape[1:]), np.float32)])
            parts.append(self._invoke(chunk))
        return {k: np.concatenate([p[k] for p in parts])[:n] for k in parts[0]}


def pyramid_scales(width: int, height: int, min_face_size: int, scale_factor: float) -> np.ndarray:
    """mtcnn.utils.images.build_scale_pyramid, minus levels smaller than P-Net's 12 px window."""
    min_dim = min(width, height)
    count = max(0, round(-((np.log(min_dim / MIN_LEVEL) / np.log(scale_factor)) + 1)))
    scales = (MIN_LEVEL / min_face_size) * scale_factor ** np.arange(count)
    return scales[np.floor(min_dim * scales) >= MIN_LEVEL]


def iou_suppressed(boxes: np.ndarray, threshold: float, method: str = "union", block: int = 1024) -> np.ndarray:
    """Keep mask of the package's NMS on score-sorted (n, 4) x1 y1 x2 y2 boxes.

    Box j is dropped when any earlier box i < j overlaps it above `threshold` (computed in column
    blocks so thousands of P-Net proposals do not need an n x n matrix at once).
    """
    n = len(boxes)
    keep = np.ones(n, dtype=bool)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for j0 in range(0, n, block):
        j = np.arange(j0, min(n, j0 + block))
        i = np.arange(0, j[-1])  # only earlier boxes can suppress
        if len(i) == 0:
            continue
        iw = np.maximum(0, np.minimum(boxes[i, None, 2], boxes[None, j, 2]) - np.maximum(boxes[i, None, 0], boxes[None, j, 0]))
        ih = np.maximum(0, np.minimum(boxes[i, None, 3], boxes[None, j, 3]) - np.maximum(boxes[i, None, 1], boxes[None, j, 1]))
        inter = iw * ih
        if method == "union":
            denom = area[i, None] + area[None, j] - inter
        else:
            denom = np.minimum(area[i, None], area[None, j])
        with np.errstate(divide="ignore", invalid="ignore"):
            over = (inter / denom) > threshold
        over &= i[:, None] < j[None, :]
        keep[j] = ~over.any(axis=0)
    return keep


def sort_desc(rows: np.ndarray, col: int = 5) -> np.ndarray:
    return rows[np.argsort(rows[:, col])[::-1]]


def nms(rows: np.ndarray, threshold: float, method: str = "union", sort: bool = True) -> np.ndarray:
    if len(rows) == 0:
        return rows
    if sort:
        rows = sort_desc(rows)
    return rows[iou_suppressed(rows[:, 1:5], threshold, method)]


def to_square(rows: np.ndarray) -> np.ndarray:
    rows = rows.copy()
    w, h = rows[:, 3] - rows[:, 1], rows[:, 4] - rows[:, 2]
    side = np.maximum(w, h)
    rows[:, 1] += w * 0.5 - side * 0.5
    rows[:, 2] += h * 0.5 - side * 0.5
    rows[:, 3] = rows[:, 1] + side
    rows[:, 4] = rows[:, 2] + side
    return rows


def regress(rows: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """mtcnn.utils.bboxes.adjust_bboxes: offsets in units of the (+1) box size."""
    rows = rows.copy()
    w = rows[:, 3] - rows[:, 1] + 1
    h = rows[:, 4] - rows[:, 2] + 1
    rows[:, 1:5] += offsets * np.stack([w, h, w, h], axis=-1)
    return rows


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """tf.image.crop_and_resize(image[None], boxes / [H, W, H, W], size) for (n, 4) x1 y1 x2 y2 pixel boxes.

    Sample k of a crop sits at y1/H*(H-1) + k*(y2-y1)/H*(H-1)/(size-1); bilinear between the
    neighbouring pixels; a sample outside [0, H-1] x [0, W-1] is 0 (TF's extrapolation value).
    """
    h, w = image.shape[:2]
    k = np.arange(size, dtype=np.float32)
    x1, y1, x2, y2 = (boxes[:, c:c + 1].astype(np.float32) for c in range(4))
    ys = y1 / h * (h - 1) + k * ((y2 - y1) / h * (h - 1) / (size - 1))  # (n, size)
    xs = x1 / w * (w - 1) + k * ((x2 - x1) / w * (w - 1) / (size - 1))
    valid = ((ys >= 0) & (ys <= h - 1))[:, :, None] & ((xs >= 0) & (xs <= w - 1))[:, None, :]
    ys, xs = np.clip(ys, 0, h - 1), np.clip(xs, 0, w - 1)
    top, left = np.floor(ys), np.floor(xs)
    dy, dx = (ys - top)[:, :, None, None], (xs - left)[:, None, :, None]
    # Flat row-major indices + np.take: several times faster than 2-D fancy indexing.
    top, left = top.astype(np.intp) * w, left.astype(np.intp)
    bottom, right = np.ceil(ys).astype(np.intp) * w, np.ceil(xs).astype(np.intp)
    flat = image.reshape(-1, image.shape[2])

    def px(rows, cols):
        return np.take(flat, rows[:, :, None] + cols[:, None, :], axis=0)

    tl, tr, bl, br = px(top, left), px(top, right), px(bottom, left), px(bottom, right)
    top_row = tl + (tr - tl) * dx
    bottom_row = bl + (br - bl) * dx
    out = top_row + (bottom_row - top_row) * dy
    out[~valid] = 0.0
    return out.astype(np.float32, copy=False)


class Detector:
    """MTCNN face + 5-landmark detector on TFLite (no TensorFlow): `.detect(rgb) -> [Face]`."""

    def __init__(self, min_face_size: int = 20, max_side: int = 640, thresholds=(0.6, 0.7, 0.8),
                 scale_factor: float = 0.709, num_threads: int = 1, assets: str | os.PathLike | None = None):
        assets = Path(assets) if assets else ASSETS
        missing = [n for n in ("pnet", "rnet", "onet") if not (assets / f"mtcnn_{n}.tflite").is_file()]
        if missing:
            raise EdgefaceError(f"detector models missing in {assets} ({', '.join(missing)}): "
                                "run `python -m edgeface.runtime.build_detector` (needs TensorFlow)")
        self.pnet = MultiOutputNet(assets / "mtcnn_pnet.tflite", num_threads)
        self.rnet = MultiOutputNet(assets / "mtcnn_rnet.tflite", num_threads, batch=32)
        self.onet = MultiOutputNet(assets / "mtcnn_onet.tflite", num_threads, batch=8)
        self.min_face_size = min_face_size
        self.max_side = max_side
        self.thresholds = tuple(thresholds)
        self.scale_factor = scale_factor

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image, with float landmarks in the image's own pixels."""
        image = np.asarray(image)
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or min(image.shape[:2]) < 1:
            raise EdgefaceError(f"detector expects an RGB uint8 HxWx3 image, got {image.dtype} {image.shape}")
        small, scale, min_face = shrink_for_detection(image, self.max_side, self.min_face_size)  # as MTCNNDetector
        rows = self.detect_rows(small, min_face)
        if len(rows) == 0:
            return []
        sh, sw = small.shape[:2]  # the package clips boxes (not landmarks) to the image
        rows[:, [1, 3]] = np.clip(rows[:, [1, 3]], 0, sw - 1)
        rows[:, [2, 4]] = np.clip(rows[:, [2, 4]], 0, sh - 1)
        return faces_from_rows(rows, scale)

    def detect_rows(self, image: np.ndarray, min_face_size: int) -> np.ndarray:
        """The cascade on one image: (n, 16) rows [0, x1, y1, x2, y2, score, 5 x, 5 y] like mtcnn."""
        norm = (image.astype(np.float32) - MEAN) / STD
        rows = self.stage_pnet(norm, min_face_size)
        if len(rows):
            rows = self.stage_rnet(norm, rows)
        if len(rows):
            rows = self.stage_onet(norm, rows)
        return rows

    def stage_pnet(self, norm: np.ndarray, min_face_size: int) -> np.ndarray:
        h, w = norm.shape[:2]
        per_scale = []
        for s in pyramid_scales(w, h, min_face_size, self.scale_factor):
            level = cv2.resize(norm, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
            out = self.pnet.run(level[None])
            prob, reg = out[2][0, :, :, 1], out[4][0]
            ys, xs = np.nonzero(prob > self.thresholds[0])
            if len(ys) == 0:
                continue
            r = reg[ys, xs]
            x0, y0 = xs * PNET_STRIDE + 1.0, ys * PNET_STRIDE + 1.0  # the package's cell corners
            size = PNET_CELL - 1.0
            boxes = np.stack([np.zeros_like(x0), x0 + r[:, 0] * size, y0 + r[:, 1] * size,
                              x0 + size + r[:, 2] * size, y0 + size + r[:, 3] * size, prob[ys, xs]], axis=1)
            boxes = sort_desc(boxes)
            boxes[:, 1:5] /= s
            per_scale.append(nms(boxes, 0.5, sort=False))
        if not per_scale:
            return np.empty((0, 6))
        return to_square(nms(np.concatenate(per_scale), 0.7))

    def stage_rnet(self, norm: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = self.rnet.run(crop_and_resize(norm, rows[:, 1:5], 24))
        rows = rows.copy()
        rows[:, 5] = out[2][:, 1]
        rows = regress(rows, out[4])
        rows = rows[rows[:, 5] > self.thresholds[1]]
        return to_square(nms(rows, 0.7)) if len(rows) else rows

    def stage_onet(self, norm: np.ndarray, rows: np.ndarray) -> np.ndarray:
        out = self.onet.run(crop_and_resize(norm, rows[:, 1:5], 48))
        w = rows[:, 3:4] - rows[:, 1:2] + 1
        h = rows[:, 4:5] - rows[:, 2:3] + 1
        marks = np.concatenate([w * out[10][:, :5] + rows[:, 1:2] - 1, h * out[10][:, 5:] + rows[:, 2:3] - 1], axis=1)
        rows = rows.copy()
        rows[:, 5] = out[2][:, 1]
        rows = np.concatenate([regress(rows, out[4]), marks], axis=1)
        rows = rows[rows[:, 5] > self.thresholds[2]]
        return nms(rows, 0.7, method="min") if len(rows) else rows.reshape(0, 16)
