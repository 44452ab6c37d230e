"""A gallery of enrolled people in one .npz file, bound to the model that made its embeddings.

File (numpy .npz, loaded with allow_pickle=False):
    meta        JSON string: format, version, model_sha256, model_name, embedding_dim,
                people [{name, count}], sources (one per embedding), updated
    embeddings  (M, D) float32 unit vectors, every enrolled image
    labels      (M,) int32 index into meta.people
    means       (P, D) float32 per-person mean embedding, re-normalised (what identify matches)

Safety: writers take an exclusive fcntl lock on FILE.lock around read-modify-write (two enrol
processes never lose each other's people), and the file is replaced atomically (an interrupted
write leaves the previous gallery intact). Embeddings of different models are meaningless to
compare, so a gallery made with another model (by file sha256) is refused.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import l2_normalize
from edgeface.utils.io import write_bytes_atomic
from edgeface.utils.locks import DEFAULT_LOCK_TIMEOUT, locked  # noqa: F401  (re-exported)

FORMAT = "edgeface-gallery"
VERSION = 1
UNKNOWN = "unknown"


@dataclass
class Match:
    name: str      # best person, or "unknown" when its score is below the threshold
    score: float   # cosine similarity to that person's mean embedding
    candidates: list  # top-k [(name, score)] best first, whatever the threshold

    def to_json(self) -> dict:
        return {"name": self.name, "score": round(self.score, 5),
                "top_k": [{"name": n, "score": round(s, 5)} for n, s in self.candidates]}


MAX_NAME_LENGTH = 200


def safe_text(text: str) -> str:
    """`text` with control and format characters escaped, so a name can never drive the terminal."""
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in str(text))


def check_name(name: str) -> str:
    """The stripped person name, or EdgefaceError: not empty, not 'unknown', printable, not too long."""
    name = str(name).strip()
    if not name or name == UNKNOWN:
        raise EdgefaceError(f"invalid person name '{safe_text(name)}'")
    if len(name) > MAX_NAME_LENGTH:
        raise EdgefaceError(f"person name is {len(name):,} characters, more than {MAX_NAME_LENGTH}: "
                            f"{safe_text(name[:40])}...")
    if not name.isprintable():
        raise EdgefaceError(f"person name '{safe_text(name)}' contains control characters")
    return name


def clean_stale_temp_files(path: Path) -> list[Path]:
    """Remove temp files a killed writer left beside `path` (call under `locked(path)`: every live
    writer holds the lock while its temp file exists, so any temp file seen here is a dead one's)."""
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for t in stale:
        with contextlib.suppress(FileNotFoundError):
            t.unlink()
    return stale


# Shipped files that were replaced, by sha256: a gallery made with one is told what happened.
RETIRED_MODELS = {
    "088cf3aac6bc44ade9d6f4a4c295cc9c2581b93b07cd06cb9da8113406e1bc67":
        "edgeface_face_int8 of session 5 (960,608 B, 98.97% LFW), replaced by a better-recovered file",
}


def _model_hint(sha256: str) -> str:
    """Name the shipped model a gallery was made with, if it is still here under another name
    (the MobileNetV2 student became edgeface_face_mnv2_int8 when the default model changed), or
    say which retired file it was."""
    import json

    if sha256 in RETIRED_MODELS:
        return f" (it was made with {RETIRED_MODELS[sha256]}, no longer shipped)"

    from edgeface.utils.paths import REPO_ROOT

    for card in sorted((REPO_ROOT / "models").glob("*.json")):
        try:
            if json.loads(card.read_text()).get("sha256") == sha256:
                return f", or keep using it with --model {card.with_suffix('.tflite')}"
        except (OSError, ValueError, AttributeError):
            continue
    return ""


class Gallery:
    def __init__(self, path: str | os.PathLike, model_sha256: str, model_name: str = "", dim: int | None = None):
        self.path = Path(path)
        self.model_sha256 = model_sha256
        self.model_name = model_name
        self.dim = dim
        self.names: list[str] = []
        self.embeddings = np.zeros((0, dim or 0), np.float32)
        self.labels = np.zeros((0,), np.int32)
        self.sources: list[str] = []

    # ---- reading -------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike, model_sha256: str | None = None, model_name: str = "",
             missing_ok: bool = False) -> "Gallery":
        """Read a gallery; refuse one made with a different model than `model_sha256`.

        missing_ok: a path that does not exist yet gives an empty gallery for that model.
        """
        path = Path(path)
        if not path.exists():
            if missing_ok and model_sha256:
                return cls(path, model_sha256, model_name)
            raise EdgefaceError(f"gallery not found: {path} (create it with `edgeface enroll NAME IMG... --gallery {path}`)")
        if path.is_dir():
            raise EdgefaceError(f"expected a gallery file, got a directory: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                embeddings = np.asarray(z["embeddings"], np.float32)
                labels = np.asarray(z["labels"], np.int32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError, EOFError) as e:
            raise EdgefaceError(f"not a valid edgeface gallery: {path} ({type(e).__name__})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise EdgefaceError(f"not an edgeface gallery v{VERSION}: {path}")
        try:
            g = cls(path, str(meta["model_sha256"]), meta.get("model_name", ""), int(meta["embedding_dim"]))
            g.names = [str(p["name"]) for p in meta["people"]]
            g.sources = list(meta.get("sources", [""] * len(labels)))
            g.embeddings, g.labels = embeddings.reshape(-1, g.dim), labels.reshape(-1)
        except (KeyError, TypeError, ValueError) as e:
            raise EdgefaceError(f"corrupt gallery metadata in {path} ({type(e).__name__}: {e})") from None
        if not np.isfinite(g.embeddings).all():
            raise EdgefaceError(f"corrupt gallery (non-finite embeddings): {path}")
        if (len(g.labels) != len(g.embeddings) or len(g.sources) != len(g.labels)
                or (len(labels) and (labels.min() < 0 or labels.max() >= len(g.names)))):
            raise EdgefaceError(f"corrupt gallery (labels do not match embeddings): {path}")
        if model_sha256 and g.model_sha256 != model_sha256:
            raise EdgefaceError(
                f"gallery {path} was made with another model ({g.model_name or '?'}, sha256 {g.model_sha256[:12]}) "
                f"than {model_name or 'this model'} (sha256 {model_sha256[:12]}): embeddings of different models "
                f"cannot be compared; enroll again into a new gallery file" + _model_hint(g.model_sha256))
        return g

    # ---- writing -------------------------------------------------------------------------
    def add(self, name: str, embeddings: np.ndarray, sources: list[str] | None = None) -> None:
        name = check_name(name)
        embeddings = np.atleast_2d(np.asarray(embeddings, np.float32))
        if not np.isfinite(embeddings).all():
            raise EdgefaceError(f"refusing non-finite embeddings for {safe_text(name)} (NaN or inf from the model)")
        embeddings = l2_normalize(embeddings)
        if self.dim is None:  # a new gallery takes the size of its first embeddings
            self.dim = embeddings.shape[1]
            self.embeddings = self.embeddings.reshape(0, self.dim)
        if embeddings.shape[1] != self.dim:
            raise EdgefaceError(f"embedding size {embeddings.shape[1]} does not match the gallery's {self.dim}")
        if name not in self.names:
            self.names.append(name)
        label = self.names.index(name)
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.labels = np.concatenate([self.labels, np.full(len(embeddings), label, np.int32)])
        self.sources += list(sources) if sources is not None else [""] * len(embeddings)

    def means(self) -> np.ndarray:
        """(P, D) unit-length mean embedding per person."""
        if not self.names:
            return np.zeros((0, self.dim or 0), np.float32)
        sums = np.zeros((len(self.names), self.dim), np.float32)
        np.add.at(sums, self.labels, self.embeddings)
        return l2_normalize(sums)

    def counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(self.names)).tolist()

    def to_bytes(self) -> bytes:
        meta = {"format": FORMAT, "version": VERSION, "model_sha256": self.model_sha256, "model_name": self.model_name,
                "embedding_dim": self.dim, "people": [{"name": n, "count": c} for n, c in zip(self.names, self.counts())],
                "sources": self.sources, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        buf = io.BytesIO()
        np.savez(buf, meta=np.array(json.dumps(meta)), embeddings=self.embeddings.astype(np.float32),
                 labels=self.labels.astype(np.int32), means=self.means())
        return buf.getvalue()

    def save(self) -> Path:
        """Atomic replace (call under `locked(path)` when others may write the same file)."""
        return write_bytes_atomic(self.path, self.to_bytes())

    # ---- matching ------------------------------------------------------------------------
    def search(self, queries: np.ndarray, top_k: int = 3, threshold: float | None = None) -> list[Match]:
        """For each unit query embedding: the best people by cosine to their mean embedding."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if not self.names:
            return [Match(UNKNOWN, float("-inf"), []) for _ in queries]
        sims = queries @ self.means().T
        order = np.argsort(-sims, axis=1)[:, :max(1, top_k)]
        out = []
        for q, idx in enumerate(order):
            cands = [(self.names[i], float(sims[q, i])) for i in idx]
            best, score = cands[0]
            out.append(Match(best if threshold is None or score >= threshold else UNKNOWN, score, cands))
        return out


def enroll(path: str | os.PathLike, name: str, embeddings: np.ndarray, sources: list[str], model_sha256: str,
           model_name: str = "", lock_timeout: float = DEFAULT_LOCK_TIMEOUT, on_wait=None) -> Gallery:
    """Add a person's embeddings to the gallery at `path` (created if absent): locked, atomic.

    A symlinked gallery is written through the link (the real file gets the entry)."""
    path = Path(os.path.realpath(path))
    with locked(path, lock_timeout, on_wait):
        clean_stale_temp_files(path)
        g = Gallery.load(path, model_sha256=model_sha256, model_name=model_name, missing_ok=True)
        g.add(name, embeddings, sources)
        g.save()
    return g
