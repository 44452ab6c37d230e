"""`edgeface data get`: one pinned path of one git repository, extracted, counted and hashed. TF-free.

    git archive COMMIT -- PATH | tar -x      (in Python: subprocess + tarfile, streamed)

The files land in a temporary folder beside DEST and are renamed onto DEST only after every check
passed (file count, per-class counts, no Git LFS pointers, no PrivateTest file), so a failure leaves
DEST as it was. DEST/manifest.json records the repository, commit and path, and each file's
relative path, bytes and sha256.

Without a mirror the repository is cloned without blobs, and only the blobs under PATH are fetched
(a sparse checkout of the pinned commit), into a temporary folder beside DEST that is removed after.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

from edgeface.data.registry import DataSet, forbidden_part
from edgeface.errors import EdgefaceError
from edgeface.utils.progress import progress

MANIFEST = "manifest.json"
LFS_MAGIC = b"version https://git-lfs"
LFS_POINTER_MAX = 1024  # a pointer is ~130 bytes; real data files are far larger


def _git(args: list[str], cwd: Path | None = None, what: str = "git") -> str:
    try:
        res = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError:
        raise EdgefaceError("git is not installed (edgeface data get needs it)") from None
    if res.returncode != 0:
        lines = [l for l in res.stderr.strip().splitlines() if l.strip()] or [f"exit code {res.returncode}"]
        raise EdgefaceError(f"{what} failed: {lines[-1].strip()}")
    return res.stdout


def git_dir_of(mirror: str | os.PathLike) -> Path:
    """The git directory of a local repository (bare, a mirror, or a work tree), or a one-line error."""
    mirror = Path(mirror)
    if not mirror.is_dir():
        raise EdgefaceError(f"mirror not found: {mirror}")
    try:
        out = _git(["-C", str(mirror), "rev-parse", "--absolute-git-dir"], what=f"reading mirror {mirror}")
    except EdgefaceError:
        raise EdgefaceError(f"{mirror} is not a git repository") from None
    return Path(out.strip())


def listed_files(git_dir: Path, ds: DataSet) -> dict[str, str]:
    """{path relative to ds.path: git blob id} of the files under ds.path at ds.commit (the tree alone)."""
    try:
        _git(["--git-dir", str(git_dir), "cat-file", "-e", f"{ds.commit}^{{commit}}"])
    except EdgefaceError:
        raise EdgefaceError(f"{ds.name}: commit {ds.commit} is not in {git_dir}") from None
    out = _git(["--git-dir", str(git_dir), "ls-tree", "-r", "-z", ds.commit, "--", ds.path],
               what=f"listing {ds.path} at {ds.commit[:12]}")
    listed = {}
    for line in filter(None, out.split("\0")):
        meta, path = line.split("\t", 1)  # "<mode> <type> <object id>\t<path>"
        listed[path[len(ds.path):]] = meta.split()[2]
    return listed


def git_blob_id(size: int) -> "hashlib._Hash":
    """A sha1 primed as git hashes a blob, so a file's bytes can be checked against the commit's tree."""
    return hashlib.sha1(b"blob %d\0" % size)


def check_counts(ds: DataSet, relpaths: list[str], stage: str) -> None:
    """One-line error if the files (relative to ds.path) are not the registered number (per class)."""
    if len(relpaths) != ds.files:
        raise EdgefaceError(f"{ds.name}: {stage} {len(relpaths)} files under {ds.path!r} at {ds.commit[:12]}, "
                            f"the registry expects {ds.files}")
    if ds.classes:
        got = Counter(p.split("/", 1)[0] for p in relpaths)
        if dict(got) != ds.classes:
            diff = {c: (got.get(c, 0), ds.classes.get(c, 0)) for c in sorted(set(got) | set(ds.classes))
                    if got.get(c, 0) != ds.classes.get(c, 0)}
            shown = ", ".join(f"{c} {g} (expected {e})" for c, (g, e) in diff.items())
            raise EdgefaceError(f"{ds.name}: {stage} per-class counts differ: {shown}")


def _sparse_pattern(path: str) -> str:
    # Non-cone sparse-checkout patterns are gitignore syntax: anchor at the root, escape the specials.
    escaped = "".join("\\" + c if c in "\\*?[!#" else c for c in path)
    return "/" + escaped


def clone_pinned(ds: DataSet, into: Path) -> Path:
    """A blob-less clone of ds.clone_url holding the commit and only the blobs under ds.path."""
    _git(["clone", "--quiet", "--no-checkout", "--filter=blob:none", ds.clone_url, str(into)],
         what=f"cloning {ds.clone_url}")
    try:
        _git(["-C", str(into), "cat-file", "-e", f"{ds.commit}^{{commit}}"])
    except EdgefaceError:  # not on any branch: ask for the commit itself
        _git(["-C", str(into), "fetch", "--quiet", "--filter=blob:none", "origin", ds.commit],
             what=f"fetching commit {ds.commit} from {ds.clone_url}")
    _git(["-C", str(into), "sparse-checkout", "set", "--no-cone", _sparse_pattern(ds.path)],
         what="setting the sparse checkout")
    # The checkout fetches every missing blob under the path in one batch (git archive alone would
    # fetch them one request at a time).
    _git(["-C", str(into), "checkout", "--quiet", "--detach", ds.commit], what=f"fetching {ds.path}")
    return git_dir_of(into)


def _is_lfs_pointer(head: bytes, size: int) -> bool:
    return size <= LFS_POINTER_MAX and head.startswith(LFS_MAGIC)


def extract(git_dir: Path, ds: DataSet, out: Path, blob_ids: dict[str, str]) -> list[dict]:
    """`git archive COMMIT -- PATH | tar -x` into `out`, PATH stripped; manifest entries, sorted.

    Every file's bytes must hash to the blob id the commit's tree lists for it (`blob_ids`)."""
    proc = subprocess.Popen(["git", "--git-dir", str(git_dir), "archive", "--format=tar", ds.commit, "--", ds.path],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    entries = []
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            bar = progress(total=ds.files, desc=f"extract {ds.name}", unit="file")
            for member in tar:
                if member.isdir() or member.name == "pax_global_header":
                    continue
                if not member.name.startswith(ds.path):
                    raise EdgefaceError(f"{ds.name}: git archive returned {member.name!r} outside {ds.path!r}")
                rel = member.name[len(ds.path):]
                if not member.isfile():
                    raise EdgefaceError(f"{ds.name}: {member.name!r} is not a regular file (a link?): refusing it")
                if forbidden_part(rel):
                    raise EdgefaceError(f"{ds.name}: {member.name!r} is a PrivateTest file: edgeface never "
                                        "extracts FER2013's PrivateTest")
                src = tar.extractfile(member)
                head = src.read(len(LFS_MAGIC))
                if _is_lfs_pointer(head, member.size):
                    raise EdgefaceError(f"{ds.name}: {member.name!r} is a Git LFS pointer, not the file: commit "
                                        f"{ds.commit[:12]} does not hold the data itself")
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                h, git_h = hashlib.sha256(head), git_blob_id(member.size)
                git_h.update(head)
                with open(target, "wb") as f:
                    f.write(head)
                    for block in iter(lambda: src.read(1 << 20), b""):
                        h.update(block)
                        git_h.update(block)
                        f.write(block)
                if blob_ids.get(rel) != git_h.hexdigest():
                    raise EdgefaceError(f"{ds.name}: {member.name!r} does not match blob "
                                        f"{blob_ids.get(rel, 'none')} of commit {ds.commit[:12]}'s tree")
                entries.append({"path": rel, "bytes": member.size, "sha256": h.hexdigest()})
                bar.update(1)
            bar.close()
    except tarfile.ReadError as e:
        raise EdgefaceError(f"{ds.name}: git archive output is not a tar stream ({e}): "
                            f"{_stderr_line(proc)}") from None
    finally:
        proc.stdout.close()
        err = _stderr_line(proc)
        rc = proc.wait()
    if rc != 0:
        raise EdgefaceError(f"{ds.name}: git archive {ds.commit[:12]} -- {ds.path!r} failed: {err}")
    return sorted(entries, key=lambda e: e["path"])


def _stderr_line(proc: subprocess.Popen) -> str:
    if proc.stderr is None or proc.stderr.closed:
        return ""
    lines = [l for l in proc.stderr.read().decode("utf-8", "replace").splitlines() if l.strip()]
    proc.stderr.close()
    return lines[-1].strip() if lines else ""


def read_manifest(root: str | os.PathLike) -> dict | None:
    p = Path(root) / MANIFEST
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def get_dataset_files(ds: DataSet, dest: str | os.PathLike, mirror: str | os.PathLike | None = None,
                      force: bool = False) -> dict:
    """Extract ds into dest (see the module doc); returns the manifest without its file list."""
    dest = Path(dest).absolute()
    # Everything cheap is checked before any download or extraction.
    if dest.exists():
        old = read_manifest(dest)
        if old and (old.get("commit"), old.get("path")) == (ds.commit, ds.path) and not force:
            # The manifest is written last, inside the temporary folder: its presence means complete.
            return {k: v for k, v in old.items() if k != "files"} | {"already": True}
        if not force:
            raise EdgefaceError(f"{dest} already exists: choose a new folder or pass --force to replace it")
        if not dest.is_dir():
            raise EdgefaceError(f"{dest} exists and is not a folder")
    git_dir = git_dir_of(mirror) if mirror is not None else None
    if git_dir is not None:
        listed = listed_files(git_dir, ds)
        check_counts(ds, list(listed), "the mirror lists")

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    t0 = time.time()
    try:
        if git_dir is None:
            git_dir = clone_pinned(ds, work / "clone")
            listed = listed_files(git_dir, ds)
            check_counts(ds, list(listed), "the repository lists")
        t_fetch = time.time() - t0
        files = work / "files"
        files.mkdir()
        entries = extract(git_dir, ds, files, listed)
        check_counts(ds, [e["path"] for e in entries], "extracted")
        manifest = {"name": ds.name, "repo": ds.repo, "url": ds.clone_url, "commit": ds.commit, "path": ds.path,
                    "what": ds.what, "terms": ds.terms, "count": len(entries),
                    "bytes": sum(e["bytes"] for e in entries),
                    "classes": dict(sorted(Counter(e["path"].split("/", 1)[0] for e in entries).items()))
                    if ds.classes else {},
                    "source": "mirror" if mirror is not None else "clone",
                    "seconds": {"fetch": round(t_fetch, 1), "total": round(time.time() - t0, 1)},
                    "files": entries}
        with open(files / MANIFEST, "w") as f:
            json.dump(manifest, f, indent=1)
            f.write("\n")
        _replace_dir(files, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {k: v for k, v in manifest.items() if k != "files"}


def _replace_dir(new: Path, dest: Path) -> None:
    """Rename `new` onto `dest`; an existing dest is moved aside first and removed only after."""
    if not dest.exists():
        os.rename(new, dest)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=dest.parent))
    os.rename(dest, old / "d")
    try:
        os.rename(new, dest)
    except OSError:
        os.rename(old / "d", dest)
        raise
    shutil.rmtree(old, ignore_errors=True)
