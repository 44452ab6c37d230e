"""read_image on damaged and unusual files made from a real LFW JPEG (or a synthetic face without data)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeface.utils.images import BadImage, read_image


@pytest.fixture(scope="module")
def jpeg_bytes(request) -> bytes:
    try:
        lfw = request.getfixturevalue("lfw_root")
        return (lfw / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg").read_bytes()
    except pytest.skip.Exception:  # no shared data: a synthetic textured image instead
        rng = np.random.default_rng(0)
        img = cv2.GaussianBlur(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8), (9, 9), 3)
        return cv2.imencode(".jpg", img)[1].tobytes()


@pytest.fixture(scope="module")
def reference(jpeg_bytes) -> np.ndarray:
    bgr = cv2.imdecode(np.frombuffer(jpeg_bytes, np.uint8), cv2.IMREAD_COLOR)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_good_jpeg(tmp_path, jpeg_bytes, reference):
    p = tmp_path / "a.jpg"
    p.write_bytes(jpeg_bytes)
    img = read_image(p)
    assert img.dtype == np.uint8 and img.shape == (250, 250, 3)
    assert np.array_equal(img, reference)


def test_png_with_alpha(tmp_path, reference):
    bgra = cv2.cvtColor(reference, cv2.COLOR_RGB2BGRA)
    bgra[:, :, 3] = 128
    p = tmp_path / "alpha.png"
    cv2.imwrite(str(p), bgra)
    img = read_image(p)
    assert img.shape == (250, 250, 3) and img.dtype == np.uint8
    assert np.array_equal(img, reference)  # alpha dropped, colour order kept


def test_grayscale(tmp_path, reference):
    gray = cv2.cvtColor(reference, cv2.COLOR_RGB2GRAY)
    p = tmp_path / "gray.png"
    cv2.imwrite(str(p), gray)
    img = read_image(p)
    assert img.shape == (250, 250, 3) and img.dtype == np.uint8
    assert np.array_equal(img[:, :, 0], gray) and np.array_equal(img[:, :, 2], gray)


def test_16bit_png(tmp_path, reference):
    p = tmp_path / "deep.png"
    cv2.imwrite(str(p), cv2.cvtColor(reference, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257)
    img = read_image(p)
    assert img.shape == (250, 250, 3) and img.dtype == np.uint8
    assert np.abs(img.astype(int) - reference).max() <= 1


@pytest.mark.parametrize("case", ["truncated", "zero_byte", "text_as_jpg", "missing", "directory"])
def test_bad_files_raise_one_line(tmp_path, jpeg_bytes, case):
    p = tmp_path / f"{case}.jpg"
    if case == "truncated":
        p.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    elif case == "zero_byte":
        p.write_bytes(b"")
    elif case == "text_as_jpg":
        p.write_text("this is not an image\n")
    elif case == "directory":
        p.mkdir()
    with pytest.raises(BadImage) as e:
        read_image(p)
    msg = str(e.value)
    assert "\n" not in msg and str(Path(p).name) in msg
