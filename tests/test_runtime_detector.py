"""The TF-free TFLite MTCNN against the mtcnn package it re-implements (real nets, real LFW faces)."""
from __future__ import annotations

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.runtime.detector import Detector, crop_and_resize, iou_suppressed, pyramid_scales

# Spread over the alphabet; Colin_Powell_0010 has two faces.
LFW_SAMPLES = ["Aaron_Eckhart/Aaron_Eckhart_0001.jpg", "Colin_Powell/Colin_Powell_0010.jpg",
               "George_W_Bush/George_W_Bush_0007.jpg", "Serena_Williams/Serena_Williams_0003.jpg",
               "Tony_Blair/Tony_Blair_0011.jpg", "Zhang_Ziyi/Zhang_Ziyi_0001.jpg"]


@pytest.fixture(scope="module")
def detector():
    return Detector()


@pytest.fixture(scope="module")
def lfw_images(lfw_root):
    from edgeface.utils.images import read_image

    paths = [lfw_root / p for p in LFW_SAMPLES]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        pytest.skip(f"LFW sample images missing: {missing}")
    return {p.name: read_image(p) for p in paths}


def tf_or_skip():
    try:
        import edgeface  # noqa: F401
        import tensorflow as tf
        return tf
    except ImportError:
        pytest.skip("TensorFlow not installed (reference checks need the mtcnn package)")


def test_finds_faces_and_landmarks_like_tf_mtcnn(detector, lfw_images):
    tf_or_skip()
    from edgeface.align.detect import MTCNNDetector

    ref = MTCNNDetector()
    for name, rgb in lfw_images.items():
        got = sorted(detector.detect(rgb), key=lambda f: f.box[0])
        want = sorted(ref.detect(rgb), key=lambda f: f.box[0])
        assert len(got) == len(want) >= 1, name
        for g, w in zip(got, want):
            iod = np.linalg.norm(w.landmarks[0] - w.landmarks[1])
            err = np.linalg.norm(g.landmarks - w.landmarks, axis=1)
            # float16 weights vs float32 TF: well under a pixel on 250x250 LFW
            assert err.max() < 1.0, (name, err)
            assert err.max() / iod < 0.02, name
            assert np.abs(g.box - w.box).max() < 1.5, name
            assert abs(g.score - w.score) < 1e-2, name


def test_main_face_is_plausible(detector, lfw_images):
    from edgeface.align.faces import pick_main_face

    rgb = lfw_images["Aaron_Eckhart_0001.jpg"]
    face = pick_main_face(detector.detect(rgb), rgb.shape)
    le, re, nose, ml, mr = face.landmarks
    assert le[0] < nose[0] < re[0] and ml[0] < mr[0]       # left/right as seen in the image
    assert max(le[1], re[1]) < nose[1] < min(ml[1], mr[1])  # eyes above nose above mouth
    assert 60 < face.box[0] + face.box[2] / 2 < 190 and face.score > 0.9  # LFW faces are centred


def test_large_image_is_downscaled_and_mapped_back(detector, lfw_images):
    import cv2

    rgb = lfw_images["Aaron_Eckhart_0001.jpg"]
    big = cv2.resize(rgb, (1000, 1000), interpolation=cv2.INTER_CUBIC)
    small_face = max(detector.detect(rgb), key=lambda f: f.score)
    big_face = max(detector.detect(big), key=lambda f: f.score)
    assert np.abs(big_face.landmarks / 4.0 - small_face.landmarks).max() < 2.0


def test_no_face_and_bad_input(detector):
    assert detector.detect(np.full((200, 160, 3), 127, np.uint8)) == []
    assert detector.detect(np.zeros((8, 8, 3), np.uint8)) == []  # smaller than P-Net's window
    gray = np.random.RandomState(0).randint(0, 255, (64, 64)).astype(np.uint8)
    assert isinstance(detector.detect(gray), list)
    with pytest.raises(EdgefaceError):
        detector.detect(np.zeros((10, 10, 3), np.float32))


def test_crop_and_resize_matches_tensorflow():
    tf = tf_or_skip()
    rng = np.random.RandomState(0)
    image = rng.uniform(-1, 1, (57, 83, 3)).astype(np.float32)
    # inside, partly outside and fully outside boxes (x1, y1, x2, y2 pixels)
    boxes = np.array([[10, 5, 40, 35], [-10, -8, 30, 32], [60, 40, 100, 80], [2.5, 3.7, 20.2, 21.4], [100, 70, 130, 99]],
                     np.float64)
    for size in (24, 48):
        ours = crop_and_resize(image, boxes, size)
        h, w = image.shape[:2]
        norm = boxes[:, [1, 0, 3, 2]] / np.array([h, w, h, w])
        ref = tf.image.crop_and_resize(image[None], norm, np.zeros(len(boxes), np.int32), (size, size)).numpy()
        np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_pyramid_and_nms_match_the_package():
    tf_or_skip()
    from mtcnn.utils.bboxes import smart_nms_from_bboxes
    from mtcnn.utils.images import build_scale_pyramid

    for w, h in ((250, 250), (640, 480), (100, 37)):
        np.testing.assert_allclose(pyramid_scales(w, h, 20, 0.709), build_scale_pyramid(w, h, 20, 0.709))
    rng = np.random.RandomState(1)
    xy = rng.uniform(0, 100, (300, 2))
    wh = rng.uniform(5, 40, (300, 2))
    rows = np.concatenate([np.zeros((300, 1)), xy, xy + wh, rng.uniform(0, 1, (300, 1))], axis=1)
    rows = rows[np.argsort(rows[:, 5])[::-1]]
    for method, thr in (("union", 0.5), ("union", 0.7), ("min", 0.7)):
        ref = smart_nms_from_bboxes(rows, threshold=thr, method=method, initial_sort=False)
        ours = rows[iou_suppressed(rows[:, 1:5], thr, method, block=64)]  # small blocks: exercise the chunking
        np.testing.assert_array_equal(ours, ref)
