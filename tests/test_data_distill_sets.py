"""Label-free distillation sets: morphs are exact blends of two different identities, resumable,
and the trainer's loader drops every image made from a held-out identity."""
import json

import numpy as np
import pytest

from edgeface.data.distill_sets import band_swap, extra_images, make_face_views, make_morphs, part_swap
from edgeface.errors import EdgefaceError
from edgeface.utils.images import read_image, write_image


def _aligned(root, ids=("a", "b", "c"), per=2, size=32):
    rng = np.random.default_rng(0)
    lines = []
    for i in ids:
        for k in range(per):
            out = f"{i}/{k}.png"
            write_image(root / out, rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
            lines.append(json.dumps({"source": f"{i}/{k}.jpg", "output": out, "status": "ok"}))
    # A fallback crop (no detected face) must never be blended.
    write_image(root / "c/fallback.png", np.zeros((size, size, 3), np.uint8))
    lines.append(json.dumps({"source": "c/fallback.jpg", "output": "c/fallback.png", "status": "fallback"}))
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_morphs_are_blends_of_two_identities(tmp_path):
    src = _aligned(tmp_path / "aligned")
    dst = tmp_path / "morphs"
    info = make_morphs(src, dst, count=12, damage=0.0)
    assert info == {"images": 12, "identities": 3}
    recs = [json.loads(line) for line in (dst / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 12
    for r in recs:
        assert len(r["identities"]) == 2 and "c/fallback.png" not in r["sources"]
        x, y = (read_image(src / s).astype(np.float64) for s in r["sources"])
        got = read_image(dst / r["output"]).astype(np.float64)
        want = r["weight"] * x + (1 - r["weight"]) * y
        assert 0.3 <= r["weight"] <= 0.7
        assert np.abs(got - want).max() <= 1.0  # rounding only (weight is stored to 4 decimals)
    # Resumable and deterministic: a deleted image comes back identical, others are kept.
    first = (dst / recs[0]["output"]).read_bytes()
    (dst / recs[0]["output"]).unlink()
    make_morphs(src, dst, count=12, damage=0.0)
    assert (dst / recs[0]["output"]).read_bytes() == first


def test_part_swap_joins_upper_and_lower_face():
    rng = np.random.default_rng(0)  # two textured faces of very different tones
    x = 200.0 + np.arange(3) * 10 + rng.normal(0, 8, (40, 20, 3))
    y = 50.0 + rng.normal(0, 5, (40, 20, 3))
    got = part_swap(x, y, seam=0.5, soft=1.0)
    np.testing.assert_allclose(got[:12], x[:12], atol=0.2)  # above the seam: x exactly
    # Below it: y's texture, moved to x's tone (mean and spread per channel) so the seam is invisible.
    below = got[30:]
    np.testing.assert_allclose(below.mean((0, 1)), x.mean((0, 1)), atol=3.0)
    np.testing.assert_allclose(below.std((0, 1)), x.std((0, 1)), rtol=0.25)
    assert np.corrcoef(below[..., 0].ravel(), y[30:, :, 0].ravel())[0, 1] > 0.99


def test_part_morphs_record_mode_and_stay_deterministic(tmp_path):
    src = _aligned(tmp_path / "aligned", size=48)
    make_morphs(src, tmp_path / "p1", count=6, seed=3, mode="parts", damage=0.0)
    make_morphs(src, tmp_path / "p2", count=6, seed=3, mode="parts", damage=0.0)
    recs = [json.loads(line) for line in (tmp_path / "p1/manifest.jsonl").read_text().splitlines()]
    assert all(r["mode"] == "parts" and len(r["identities"]) == 2 for r in recs)
    for r in recs:
        got = read_image(tmp_path / "p1" / r["output"]).astype(np.float64)
        x = read_image(src / r["sources"][0]).astype(np.float64)
        assert np.abs(got[:8] - x[:8]).mean() < 2.0  # the top rows are the first parent's
        assert (tmp_path / "p2" / r["output"]).read_bytes() == (tmp_path / "p1" / r["output"]).read_bytes()
    with pytest.raises(EdgefaceError, match="unknown morph mode"):
        make_morphs(src, tmp_path / "p3", count=2, mode="swirl")


def test_band_swap_stacks_three_faces():
    rng = np.random.default_rng(1)
    x = 200.0 + rng.normal(0, 8, (60, 20, 3))
    y = 40.0 + rng.normal(0, 5, (60, 20, 3))
    z = 120.0 + rng.normal(0, 6, (60, 20, 3))
    got = band_swap([x, y, z], [0.3, 0.7], soft=1.0)
    np.testing.assert_allclose(got[:12], x[:12], atol=0.2)  # top band: x itself
    for band, src in ((slice(24, 36), y), (slice(48, 60), z)):  # the others: their texture, x's tone
        assert np.corrcoef(got[band, :, 1].ravel(), src[band, :, 1].ravel())[0, 1] > 0.99
        np.testing.assert_allclose(got[band].mean((0, 1)), x.mean((0, 1)), atol=4.0)
    np.testing.assert_allclose(band_swap([x, y], [0.5], 2.0), part_swap(x, y, 0.5, 2.0), rtol=1e-6, atol=1e-6)
    with pytest.raises(EdgefaceError, match="increasing seam"):
        band_swap([x, y, z], [0.7, 0.3], 1.0)


def test_band_morphs_use_three_identities(tmp_path):
    src = _aligned(tmp_path / "aligned", size=64)
    make_morphs(src, tmp_path / "b", count=8, seed=5, mode="bands", damage=0.0)
    recs = [json.loads(line) for line in (tmp_path / "b/manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 8
    for r in recs:
        assert r["mode"] == "bands" and len(r["sources"]) == 3 and len(r["identities"]) == 3
        got = read_image(tmp_path / "b" / r["output"]).astype(np.float64)
        x = read_image(src / r["sources"][0]).astype(np.float64)
        assert np.abs(got[:20] - x[:20]).mean() < 2.0  # eyes band: the first parent
    two = _aligned(tmp_path / "two", ids=("a", "b"))
    with pytest.raises(EdgefaceError, match="at least 3 identities"):
        make_morphs(two, tmp_path / "b2", count=2, mode="bands")


def test_extra_images_drops_held_out_identities(tmp_path):
    src = _aligned(tmp_path / "aligned")
    dst = tmp_path / "morphs"
    make_morphs(src, dst, count=20, damage=1.0)
    recs = [json.loads(line) for line in (dst / "manifest.jsonl").read_text().splitlines()]
    paths, counts = extra_images([dst], exclude_identities={"a"})
    with_a = sum("a" in r["identities"] for r in recs)
    assert 0 < with_a < 20
    assert counts[str(dst)] == {"images": 20 - with_a, "dropped": with_a}
    kept = {str(dst / r["output"]) for r in recs if "a" not in r["identities"]}
    assert set(paths) == kept
    # A plain folder (no manifest) contributes every image below it.
    plain = tmp_path / "plain"
    write_image(plain / "x" / "1.png", np.zeros((8, 8, 3), np.uint8))
    assert extra_images([plain])[0] == [str(plain / "x" / "1.png")]
    with pytest.raises(EdgefaceError, match="not found"):
        extra_images([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgefaceError, match="no usable images"):
        extra_images([tmp_path / "empty"])
    (dst / "manifest.jsonl").write_text("{not json\n")
    with pytest.raises(EdgefaceError, match="manifest.jsonl:1"):
        extra_images([dst])


def test_face_views_of_small_crops(tmp_path, expressions_root):
    """Real 48x48 FER2013 faces through the real MTCNN: aligned 112x112 views, view 0 clean."""
    src = tmp_path / "fer"
    files = sorted((expressions_root / "fer2013" / "train" / "happy").iterdir())[:6]
    for f in files:
        (src / "happy").mkdir(parents=True, exist_ok=True)
        (src / "happy" / f.name).write_bytes(f.read_bytes())
    info = make_face_views(src, tmp_path / "views", views=2)
    assert info["sources"] == 6 and info["views"] == 12 and info["detected"] >= 4
    recs = [json.loads(line) for line in (tmp_path / "views" / "manifest.jsonl").read_text().splitlines()]
    assert [r["view"] for r in recs[:2]] == [0, 1] and all(r["identities"] == [] for r in recs)
    for r in recs:
        img = read_image(tmp_path / "views" / r["output"])
        assert img.shape == (112, 112, 3)
    (tmp_path / "empty_src").mkdir()
    with pytest.raises(EdgefaceError, match="no images"):
        make_face_views(tmp_path / "empty_src", tmp_path / "v2")


def test_cli_errors_are_one_line(tmp_path, capsys):
    from edgeface.cli import main

    assert main(["data", "faces", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert main(["data", "morphs", str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"edgeface: error: source folder not found: {tmp_path / 'missing'}",
                   f"edgeface: error: no manifest.jsonl in {tmp_path}: is it a folder made by `edgeface align`?"]


def test_teacher_cli_errors(tmp_path, capsys):
    from edgeface.cli import main

    (tmp_path / "d").mkdir()
    for argv in (["embed", "t", str(tmp_path / "d"), "c", "--shard", "2/2"], ["embed", "t", "d", "c", "--shard", "x"],
                 ["embed", "t", str(tmp_path / "nope"), "c"], ["embed", "t", str(tmp_path / "d"), "c"], ["merge", "out"]):
        assert main(["teacher", *argv]) == 2, argv
    err = capsys.readouterr().err.strip().splitlines()
    assert err[:4] == ["edgeface: error: --shard must be K/N with 0 <= K < N, got '2/2'",
                       "edgeface: error: --shard must be K/N with 0 <= K < N, got 'x'",
                       f"edgeface: error: aligned folder not found: {tmp_path / 'nope'}",
                       f"edgeface: error: no images under {tmp_path / 'd'}"]
    assert "Missing argument" in err[4] and len(err) == 5  # click's usage error, one line
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert main(["teacher", "merge", str(tmp_path / "out.npz"), str(tmp_path / "bad.npz")]) == 2
    assert "is not a teacher cache" in capsys.readouterr().err and not (tmp_path / "out.npz").exists()
