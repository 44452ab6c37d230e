"""Gallery file: concurrent writers, interrupted writes, model binding, matching."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgeface.errors import EdgefaceError
from edgeface.runtime.gallery import UNKNOWN, Gallery, enroll

SHA_A = "a" * 64
SHA_B = "b" * 64
DIM = 16
REPO = Path(__file__).resolve().parents[1]


def unit(rng, n=1, dim=DIM):
    v = rng.normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def child_env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def child(code: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=child_env())


def test_enroll_load_search_roundtrip(tmp_path):
    rng = np.random.RandomState(0)
    path = tmp_path / "g.npz"
    people = {f"p{i}": unit(rng, 3) for i in range(5)}
    for name, embs in people.items():
        enroll(path, name, embs, [f"{name}_{k}.jpg" for k in range(3)], SHA_A, "model-a")
    g = Gallery.load(path, model_sha256=SHA_A)
    assert g.names == list(people) and g.counts() == [3] * 5 and g.embeddings.shape == (15, DIM)
    assert g.sources[:2] == ["p0_0.jpg", "p0_1.jpg"]
    means = g.means()
    np.testing.assert_allclose(np.linalg.norm(means, axis=1), 1.0, atol=1e-6)
    # a query equal to p3's mean is p3 with cosine 1, and the top-k is sorted
    m = g.search(means[3], top_k=3, threshold=0.5)[0]
    assert m.name == "p3" and m.score == pytest.approx(1.0, abs=1e-5)
    assert len(m.candidates) == 3 and [s for _, s in m.candidates] == sorted((s for _, s in m.candidates), reverse=True)
    # an unrelated direction is below any sensible threshold: unknown, but the candidates are still reported
    far = g.search(-means.sum(0) / np.linalg.norm(means.sum(0)), top_k=2, threshold=0.9)[0]
    assert far.name == UNKNOWN and len(far.candidates) == 2
    # adding more images of an existing person appends to them
    enroll(path, "p0", unit(rng, 2), ["x.jpg", "y.jpg"], SHA_A)
    assert Gallery.load(path, SHA_A).counts()[0] == 5


def test_other_model_is_refused(tmp_path):
    path = tmp_path / "g.npz"
    enroll(path, "alice", unit(np.random.RandomState(1)), ["a.jpg"], SHA_A, "model-a")
    with pytest.raises(EdgefaceError, match="another model"):
        Gallery.load(path, model_sha256=SHA_B, model_name="model-b")
    with pytest.raises(EdgefaceError, match="another model"):
        enroll(path, "bob", unit(np.random.RandomState(2)), ["b.jpg"], SHA_B, "model-b")
    assert Gallery.load(path, SHA_A).names == ["alice"]  # the refused enroll changed nothing


def test_gallery_of_the_renamed_student_names_its_file(tmp_path):
    """Galleries enrolled with the MobileNetV2 student (the default model until session 5) are
    refused by the new default and told which shipped file they were made with."""
    import json

    repo = Path(__file__).resolve().parents[1]
    card = repo / "models" / "edgeface_face_mnv2_int8.json"
    if not card.is_file():
        pytest.skip("shipped MobileNetV2 student not present")
    old_sha = json.loads(card.read_text())["sha256"]
    new_sha = json.loads((repo / "models" / "edgeface_face_int8.json").read_text())["sha256"]
    path = tmp_path / "g.npz"
    enroll(path, "alice", unit(np.random.RandomState(1)), ["a.jpg"], old_sha, "edgeface_face_int8")
    with pytest.raises(EdgefaceError, match=r"another model .*--model .*edgeface_face_mnv2_int8\.tflite"):
        Gallery.load(path, model_sha256=new_sha, model_name="edgeface_face_int8")


def test_invalid_files_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(EdgefaceError, match="not a valid edgeface gallery"):
        Gallery.load(bad, SHA_A)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(EdgefaceError, match="not a valid edgeface gallery"):
        Gallery.load(other, SHA_A)
    with pytest.raises(EdgefaceError, match="gallery not found"):
        Gallery.load(tmp_path / "missing.npz", SHA_A)
    with pytest.raises(EdgefaceError, match="embedding size"):
        g = Gallery(tmp_path / "g.npz", SHA_A)
        g.add("a", unit(np.random.RandomState(0), 1, 8))
        g.add("b", unit(np.random.RandomState(0), 1, 9))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "g.npz"
    n = 25
    code = f"""
        import sys, numpy as np
        from edgeface.runtime.gallery import enroll
        who = sys.argv[1]
        rng = np.random.RandomState(len(who))
        for i in range({n}):
            enroll({str(path)!r}, f"{{who}}{{i}}", rng.normal(size=(2, {DIM})).astype(np.float32),
                   [f"{{who}}{{i}}a", f"{{who}}{{i}}b"], {SHA_A!r})
    """
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), who], env=child_env(),
                              stderr=subprocess.PIPE, text=True) for who in ("left", "right")]
    for p in procs:
        assert p.wait(timeout=120) == 0, p.stderr.read()
    g = Gallery.load(path, SHA_A)
    assert sorted(g.names) == sorted([f"left{i}" for i in range(n)] + [f"right{i}" for i in range(n)])
    assert len(g.embeddings) == 4 * n and set(g.counts()) == {2}
    assert not list(tmp_path.glob(".g.npz.*.tmp"))  # no temp file left behind by clean runs


@pytest.mark.parametrize("die_at", ["os.replace", "os.fsync"])
def test_interrupted_write_leaves_old_gallery_valid(tmp_path, die_at):
    path = tmp_path / "g.npz"
    enroll(path, "alice", unit(np.random.RandomState(3), 2), ["a1", "a2"], SHA_A)
    before = path.read_bytes()
    # A real process death (SIGKILL) in the middle of a save: after the temp file is fully
    # written but before the rename, or before its data is even flushed.
    r = child(f"""
        import os, signal, numpy as np
        from edgeface.runtime import gallery
        import edgeface.utils.io as io
        def die(*a, **k):
            os.kill(os.getpid(), signal.SIGKILL)
        {"io.os.replace = die" if die_at == "os.replace" else "io.os.fsync = die"}
        gallery.enroll({str(path)!r}, "bob", np.ones((1, {DIM}), np.float32), ["b"], {SHA_A!r})
    """)
    assert r.returncode == -9, r.stderr
    assert path.read_bytes() == before
    g = Gallery.load(path, SHA_A)
    assert g.names == ["alice"] and len(g.embeddings) == 2
    # the next writer is not blocked by the dead one's lock and does not see its temp file
    enroll(path, "carol", unit(np.random.RandomState(4)), ["c"], SHA_A)
    assert Gallery.load(path, SHA_A).names == ["alice", "carol"]


def test_gallery_of_a_retired_model_says_which_file_it_was(tmp_path):
    from edgeface.runtime.gallery import RETIRED_MODELS

    old_sha = next(iter(RETIRED_MODELS))
    path = tmp_path / "g.npz"
    enroll(path, "alice", unit(np.random.RandomState(1)), ["a.jpg"], old_sha, "edgeface_face_int8")
    with pytest.raises(EdgefaceError, match=r"enroll again .*session 5 .*no longer shipped"):
        Gallery.load(path, model_sha256=SHA_B, model_name="edgeface_face_int8")
