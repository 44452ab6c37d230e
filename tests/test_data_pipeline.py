"""tf.data pipeline: shapes, range, standardisation, seeded determinism, flip flags, extras; load_images."""
import cv2
import numpy as np
import pytest

from edgeface.data.pipeline import Augment, load_images, make_dataset
from edgeface.errors import EdgefaceError
from edgeface.spec import normalize_pixels


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """8 colour PNG/JPEG faces-sized images (asymmetric, so a flip is visible), 1 grayscale, 1 other size."""
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        img = cv2.GaussianBlur(rng.integers(0, 255, (112, 112, 3), dtype=np.uint8), (7, 7), 2)
        img[:, :20] = (i * 30, 0, 255 - i * 30)  # a coloured band on the left
        p = d / f"{i}.{'png' if i % 2 else 'jpg'}"
        cv2.imwrite(str(p), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        paths.append(str(p))
    cv2.imwrite(str(d / "gray.png"), rng.integers(0, 255, (112, 112), dtype=np.uint8))
    big = cv2.GaussianBlur(rng.integers(0, 255, (250, 250, 3), dtype=np.uint8), (15, 15), 5)
    cv2.imwrite(str(d / "big.png"), big)
    return paths + [str(d / "gray.png"), str(d / "big.png")]


def collect(ds):
    return [{k: v.numpy() for k, v in b.items()} if isinstance(b, dict) else tuple(t.numpy() for t in b) for b in ds]


def test_eval_matches_normalize_pixels(images):
    batches = collect(make_dataset(images, np.arange(10), batch_size=4))
    assert [b[0].shape for b in batches] == [(4, 112, 112, 3), (4, 112, 112, 3), (2, 112, 112, 3)]
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert x.dtype == np.float32 and y.tolist() == list(range(10))  # no shuffling when evaluating
    ref = load_images(images, 112)
    assert ref.shape == (10, 112, 112, 3) and ref.dtype == np.uint8
    # Same pixels as the TF-free reader for the native-size files (resizers differ for big.png).
    np.testing.assert_allclose(x[:9], normalize_pixels(ref[:9]), atol=1e-6)
    assert np.abs(x[9] - normalize_pixels(ref[9])).mean() < 0.02  # within ~2.5 grey levels
    assert np.array_equal(ref[8][:, :, 0], ref[8][:, :, 1])  # gray -> 3 equal channels


def test_training_is_seeded_and_augmented(images):
    kw = dict(labels=np.arange(10), batch_size=4, training=True, seed=11, flip_flag=True,
              extra={"emb": np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)})
    ds = make_dataset(images, **kw)
    e1, e2 = collect(ds), collect(ds)
    again = collect(make_dataset(images, **kw))
    assert len(e1) == 2 and e1[0]["image"].shape == (4, 112, 112, 3)  # drop_remainder when training
    for a, b in zip(e1, again):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(e1[0]["image"], e2[0]["image"])  # a new epoch is a new draw
    x = np.concatenate([b["image"] for b in e1])
    assert x.min() >= -1.0 and x.max() <= 1.0
    for b in e1:  # extras follow their image through the shuffle
        np.testing.assert_array_equal(b["emb"][:, 0], b["label"].astype(np.float32))
    # The flip flag tells the truth: the band (green = 0 -> -1.0) moves to the right side when mirrored.
    flags = np.concatenate([b["flip_flag"] for b in e1 + e2])
    imgs = np.concatenate([b["image"] for b in e1 + e2])
    colour = np.concatenate([b["label"] for b in e1 + e2]) < 8
    green_left = imgs[:, 40:72, :10, 1].mean((1, 2))
    green_right = imgs[:, 40:72, -10:, 1].mean((1, 2))
    assert 0 < flags.sum() < len(flags)
    np.testing.assert_array_equal((green_right < green_left)[colour], flags[colour])


def test_no_augment_when_asked_and_grayscale_channel(images):
    plain = collect(make_dataset(images, None, batch_size=10, training=True, augment=False, seed=0))
    ref = normalize_pixels(load_images(images, 112))
    x, y = plain[0]
    assert (y == -1).all()
    # Shuffled, unaugmented: each image equals one reference image exactly.
    assert sum(min(np.abs(xi - r).max() for r in ref[:9]) < 1e-6 for xi in x) >= 9
    gray = collect(make_dataset(images, None, batch_size=5, channels=1))
    assert gray[0][0].shape == (5, 112, 112, 1)
    assert load_images(images[:2], (96, 80), channels=1).shape == (2, 96, 80, 1)  # (height, width)


def test_bad_arguments(images):
    with pytest.raises(EdgefaceError):
        make_dataset([], None)
    with pytest.raises(EdgefaceError):
        make_dataset(images, np.arange(3))
    with pytest.raises(EdgefaceError):
        make_dataset(images, None, augment={"rotation": 5})
    with pytest.raises(EdgefaceError):
        make_dataset(images, None, extra={"emb": np.zeros((3, 2))})
    assert Augment.from_any({"rotate_deg": 5}).rotate_deg == 5
