"""`edgeface data get` against a real tiny git repository made here (real git, real JPEGs, pinned commits)."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeface.cli import main
from edgeface.data.registry import REGISTRY, DataSet, load_registry
from edgeface.errors import EdgefaceError

LFS_POINTER = (b"version https://git-lfs.github.com/spec/v1\n"
               b"oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def _commit(repo: Path, message: str) -> str:
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory, celeba_root):
    """Commit 1: faces/<class>/<jpg> (2 classes, 5 real JPEGs) + a README outside the path;
    commit 2 adds an LFS pointer under faces/; commit 3 (from commit 1) adds a PrivateTest file."""
    repo = tmp_path_factory.mktemp("tiny") / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "config", "uploadpack.allowFilter", "true")  # so the blob-less clone really filters
    people = sorted(p for p in celeba_root.iterdir() if p.is_dir())[:2]
    for cls, person in zip(["happy", "sad"], people):
        (repo / "faces" / cls).mkdir(parents=True)
        for jpg in sorted(person.glob("*.jpg"))[: 3 if cls == "happy" else 2]:
            shutil.copy(jpg, repo / "faces" / cls / jpg.name)
    (repo / "README.md").write_text("not part of the data\n")
    good = _commit(repo, "faces")
    (repo / "faces" / "sad" / "big.jpg").write_bytes(LFS_POINTER)
    lfs = _commit(repo, "an LFS pointer")
    _git(repo, "checkout", "-q", "-b", "private", good)
    shutil.copy(next((repo / "faces" / "sad").glob("*.jpg")), repo / "faces" / "sad" / "PrivateTest_123.jpg")
    private = _commit(repo, "a PrivateTest file")
    _git(repo, "checkout", "-q", "main")
    return {"repo": repo, "good": good, "lfs": lfs, "private": private}


def _registry(tmp_path: Path, tiny_repo, commit: str, files: int = 5, classes=None, name: str = "tiny") -> Path:
    entry = {"name": name, "repo": "test/tiny", "commit": commit, "path": "faces/", "files": files,
             "what": "5 CelebA JPEGs in 2 classes", "terms": "test", "url": tiny_repo["repo"].as_uri()}
    if classes is not None:
        entry["classes"] = classes
    path = tmp_path / "registry.json"
    path.write_text(json.dumps([entry]))
    return path


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgeface: error:") and "\n" not in err, err
    return err


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _check_extracted(dest: Path, tiny_repo, commit: str):
    m = json.loads((dest / "manifest.json").read_text())
    assert (m["repo"], m["commit"], m["path"], m["count"]) == ("test/tiny", commit, "faces/", 5)
    on_disk = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file() and p.name != "manifest.json")
    assert [e["path"] for e in m["files"]] == on_disk
    assert len(on_disk) == 5 and not (dest / "README.md").exists()
    for e in m["files"]:
        # Independent of edgeface: the bytes git holds for that path at that commit, and hashlib.
        blob = subprocess.run(["git", "-C", str(tiny_repo["repo"]), "show", f"{commit}:faces/{e['path']}"],
                              check=True, capture_output=True).stdout
        data = (dest / e["path"]).read_bytes()
        assert data == blob and data[:3] == b"\xff\xd8\xff"
        assert e["sha256"] == hashlib.sha256(data).hexdigest() and e["bytes"] == len(data)
    assert m["classes"] == {"happy": 3, "sad": 2}
    # Nothing left beside DEST (the temp folder is gone).
    assert sorted(p.name for p in dest.parent.iterdir() if p.name.startswith(".")) == []


def test_get_from_mirror_writes_files_and_sha256_manifest(tmp_path, tiny_repo, capsys):
    reg = _registry(tmp_path, tiny_repo, tiny_repo["good"], classes={"happy": 3, "sad": 2})
    dest = tmp_path / "out" / "tiny"
    assert main(["data", "get", "tiny", str(dest), "--mirror", str(tiny_repo["repo"]), "--registry", str(reg)]) == 0
    assert "5 files" in capsys.readouterr().out
    _check_extracted(dest, tiny_repo, tiny_repo["good"])
    # Again: the complete copy is recognised by its manifest and left as it is.
    before = _snapshot(dest)
    assert main(["data", "get", "tiny", str(dest), "--mirror", str(tiny_repo["repo"]), "--registry", str(reg)]) == 0
    assert "nothing to do" in capsys.readouterr().out and _snapshot(dest) == before


def test_get_without_mirror_clones_the_pinned_commit(tmp_path, tiny_repo):
    # The pinned commit is not main's tip (main moved on to the LFS commit): the clone must check it out.
    reg = _registry(tmp_path, tiny_repo, tiny_repo["good"], classes={"happy": 3, "sad": 2})
    dest = tmp_path / "out" / "tiny"
    assert main(["data", "get", "tiny", str(dest), "--registry", str(reg)]) == 0
    _check_extracted(dest, tiny_repo, tiny_repo["good"])


@pytest.mark.parametrize("bad", [{"files": 6}, {"classes": {"happy": 2, "sad": 3}}])
def test_count_mismatch_is_one_line_exit_2_and_dest_untouched(tmp_path, tiny_repo, capsys, bad):
    reg = _registry(tmp_path, tiny_repo, tiny_repo["good"], files=bad.get("files", 5), classes=bad.get("classes"))
    dest = tmp_path / "out" / "tiny"
    dest.mkdir(parents=True)
    (dest / "keep.txt").write_text("the user's earlier copy\n")
    before = _snapshot(dest)
    for mirror in (["--mirror", str(tiny_repo["repo"])], []):
        assert main(["data", "get", "tiny", str(dest), *mirror, "--force", "--registry", str(reg)]) == 2
        err = _one_line_error(capsys)
        assert ("6" in err if "files" in bad else "per-class" in err), err
        assert _snapshot(dest) == before
        assert [p.name for p in dest.parent.iterdir()] == ["tiny"]


def test_existing_dest_is_refused_before_any_work(tmp_path, tiny_repo, capsys):
    reg = _registry(tmp_path, tiny_repo, tiny_repo["good"])
    dest = tmp_path / "tiny"
    dest.mkdir()
    assert main(["data", "get", "tiny", str(dest), "--mirror", str(tiny_repo["repo"]), "--registry", str(reg)]) == 2
    assert "already exists" in _one_line_error(capsys)


@pytest.mark.parametrize("commit,message", [("lfs", "LFS pointer"), ("private", "PrivateTest")])
def test_lfs_pointer_and_private_test_file_are_refused(tmp_path, tiny_repo, capsys, commit, message):
    # Both commits hold 6 files under faces/, so the count check passes and the file check must catch it.
    reg = _registry(tmp_path, tiny_repo, tiny_repo[commit], files=6)
    dest = tmp_path / "tiny"
    assert main(["data", "get", "tiny", str(dest), "--mirror", str(tiny_repo["repo"]), "--registry", str(reg)]) == 2
    assert message in _one_line_error(capsys)
    assert list(tmp_path.iterdir()) == [reg]


def test_private_test_path_is_refused_by_the_registry(tmp_path, capsys):
    with pytest.raises(EdgefaceError, match="PrivateTest"):
        DataSet(name="x", repo="a/b", commit="0" * 40, path="data/test/PrivateTest/", files=1, what="", terms="")
    reg = tmp_path / "r.json"
    reg.write_text(json.dumps([{"name": "fer_private", "repo": "darkbit404/FaceExp", "commit": "9" * 40,
                                "path": "data/test/privatetest_faces/", "files": 1, "what": "", "terms": ""}]))
    assert main(["data", "list", "--registry", str(reg)]) == 2
    assert "PrivateTest" in _one_line_error(capsys)


def test_unknown_name_and_wrong_commit_are_one_line_errors(tmp_path, tiny_repo, capsys):
    assert main(["data", "get", "no_such_set", str(tmp_path / "d")]) == 2
    err = _one_line_error(capsys)
    assert "no_such_set" in err and "utkface" in err
    # A registered set whose pinned commit the mirror does not hold.
    assert main(["data", "get", "utkface", str(tmp_path / "d"), "--mirror", str(tiny_repo["repo"])]) == 2
    assert "b06607bf2477c8295b33facb5dea7aada27cac01 is not in" in _one_line_error(capsys)
    assert main(["data", "get", "utkface", str(tmp_path / "d"), "--mirror", str(tmp_path)]) == 2
    assert "not a git repository" in _one_line_error(capsys)
    assert not (tmp_path / "d").exists()


def test_registry_entries_are_the_pinned_ones():
    reg = load_registry()
    assert set(reg) == {"utkface", "all_age_faces", "scut_fbp5500", "fer2013_train"}
    assert reg["fer2013_train"].path == "data/train/" and sum(reg["fer2013_train"].classes.values()) == 28709
    assert REGISTRY["utkface"].commit == "b06607bf2477c8295b33facb5dea7aada27cac01"


def test_data_commands_run_without_tensorflow(tmp_path, tiny_repo):
    # get, dedupe and pairs are TF-free: they run with TensorFlow blocked from import.
    reg = _registry(tmp_path, tiny_repo, tiny_repo["good"])
    code = ("import sys; sys.modules['tensorflow'] = None; from edgeface.cli import main; "
            f"r = main(['data', 'get', 'tiny', {str(tmp_path / 'd')!r}, '--mirror', {str(tiny_repo['repo'])!r}, "
            f"'--registry', {str(reg)!r}]); "
            f"r += main(['data', 'dedupe', {str(tmp_path / 'd')!r}, '--out', {str(tmp_path / 'clean')!r}]); "
            f"r += main(['data', 'pairs', {str(tmp_path / 'd')!r}, '--out', {str(tmp_path / 'p.txt')!r}, "
            f"'--lfw-layout', {str(tmp_path / 'links')!r}, '--folds', '1']); "
            "sys.exit(r)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "clean" / "d").is_dir() and (tmp_path / "p.txt").read_text().startswith("1\t")
