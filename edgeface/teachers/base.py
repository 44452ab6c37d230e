"""Teacher embedders behind one interface, plus a cache of their embeddings."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import l2_normalize
from edgeface.utils.images import read_image
from edgeface.utils.io import atomic_path, sha256_file
from edgeface.utils.progress import progress


class Teacher:
    """An embedder of aligned 112x112 RGB uint8 faces. Subclasses implement `_embed_raw`."""

    name = "teacher"
    license = "unknown"
    input_size = 112

    def __init__(self, path: Path, sha256: str, dim: int):
        self.path = Path(path)
        self.sha256 = sha256
        self.dim = dim

    def _embed_raw(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def embed(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch)
        if batch.ndim != 4 or batch.shape[1:] != (self.input_size, self.input_size, 3) or batch.dtype != np.uint8:
            raise EdgefaceError(f"teacher {self.name} expects uint8 (N, {self.input_size}, {self.input_size}, 3) "
                                f"aligned RGB crops, got {batch.dtype} {batch.shape}")
        return l2_normalize(self._embed_raw(batch))

    def describe(self) -> dict:
        return {"name": self.name, "path": str(self.path), "sha256": self.sha256, "dim": self.dim,
                "license": self.license}


class NcnnTeacher(Teacher):
    """insightface MobileFaceNet in ncnn format (`mobilefacenet.param` + `.bin`).

    Input blob `data` takes raw 0-255 RGB (the net normalises itself); output blob `fc1` is 128-d.
    One thread: with two, ncnn runs pathologically slowly on these machines.
    """

    name = "insightface-mobilefacenet-ncnn"
    license = "insightface MobileFaceNet weights (trained on MS1M-ArcFace): non-commercial research use only"

    def __init__(self, param: Path, weights: Path, num_threads: int = 1):
        import ncnn

        self._ncnn = ncnn
        self.net = ncnn.Net()
        self.net.opt.num_threads = num_threads
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(weights)) != 0:
            raise EdgefaceError(f"ncnn could not load teacher {param} / {weights}")
        digest = hashlib.sha256(Path(param).read_bytes() + Path(weights).read_bytes()).hexdigest()
        super().__init__(Path(param).parent, digest, dim=0)
        self.dim = int(self._embed_raw(np.zeros((1, 112, 112, 3), np.uint8)).shape[1])

    def _embed_raw(self, batch):
        out = []
        for img in batch:
            ex = self.net.create_extractor()
            mat = self._ncnn.Mat.from_pixels(np.ascontiguousarray(img), self._ncnn.Mat.PixelType.PIXEL_RGB, 112, 112)
            ex.input("data", mat)
            ret, feat = ex.extract("fc1")
            if ret != 0:
                raise EdgefaceError(f"ncnn teacher failed to run (code {ret})")
            out.append(np.array(feat, dtype=np.float32).reshape(-1))
        return np.stack(out)


class TFLiteTeacher(Teacher):
    """Any edgeface .tflite face embedder (reads normalisation from its card)."""

    def __init__(self, path: Path, num_threads: int = 1):
        from edgeface.runtime.interpreter import TFLiteModel
        from edgeface.spec import InputSpec

        self.model = TFLiteModel(path, num_threads=num_threads)
        card = self.model.model_card
        inp = card.input if card else InputSpec()
        self.mean, self.std = inp.mean, inp.std
        self.name = card.name if card and card.name else Path(path).stem
        self.license = (card and card.license) or self.license
        self.input_size = self.model.input_shape[1]
        super().__init__(path, sha256_file(path), dim=0)
        self.dim = int(self.model.output["shape"][-1])

    def _embed_raw(self, batch):
        return self.model.run((batch.astype(np.float32) - self.mean) / self.std)


class KerasTeacher(Teacher):
    """A Keras embedder saved by edgeface (`model.keras`), inputs standardised to [-1, 1]."""

    def __init__(self, path: Path):
        from edgeface.nets import load_model
        from edgeface.spec import normalize_pixels

        self._norm = normalize_pixels
        self.model = load_model(path)
        self.name = Path(path).parent.name or Path(path).stem
        self.input_size = int(self.model.input_shape[1])
        super().__init__(path, sha256_file(path), dim=int(self.model.output_shape[-1]))

    def _embed_raw(self, batch):
        return np.asarray(self.model(self._norm(batch), training=False))


def load_teacher(spec: str | os.PathLike, num_threads: int = 1) -> Teacher:
    """A teacher from an ncnn folder / .param file, a .tflite, or a .keras/.h5 file."""
    p = Path(spec)
    if p.is_dir():
        params = sorted(p.glob("*.param"))
        if len(params) == 1:
            p = params[0]
        elif (p / "model.keras").exists():
            p = p / "model.keras"
        else:
            raise EdgefaceError(f"teacher folder {p} has no single .param (ncnn) file and no model.keras")
    if not p.exists():
        raise EdgefaceError(f"teacher not found: {spec}")
    if p.suffix == ".param":
        weights = p.with_suffix(".bin")
        if not weights.exists():
            raise EdgefaceError(f"ncnn teacher {p} has no weights file {weights.name} beside it")
        return NcnnTeacher(p, weights, num_threads=num_threads)
    if p.suffix == ".tflite":
        return TFLiteTeacher(p, num_threads=num_threads)
    if p.suffix in (".keras", ".h5"):
        return KerasTeacher(p)
    raise EdgefaceError(f"unsupported teacher {spec}: give an ncnn .param/folder, a .tflite or a .keras file")


def _read_store(cache_file, teacher: Teacher) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A cache's {path: (embedding, mirror)}, or {} when it is missing, unreadable or another teacher's."""
    if cache_file is None or not Path(cache_file).exists():
        return {}
    try:
        with np.load(cache_file, allow_pickle=False) as z:
            if str(z["teacher_sha256"]) != teacher.sha256:
                return {}
            return {p: (e, m) for p, e, m in zip(z["paths"].tolist(), z["emb"], z["emb_mirror"])}
    except (OSError, KeyError, ValueError):
        return {}  # unreadable or old-format cache: recompute


def teacher_embeddings(teacher: Teacher, paths, cache_file: str | os.PathLike | None = None,
                       batch_size: int = 64, save_every: int = 2000, also_from=()) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, embeddings of the mirrored images) for aligned crops, cached in an .npz.

    The cache is a per-path store for one teacher (its sha256 is checked, so a changed teacher
    recomputes instead of silently reusing stale targets): any subset or order of paths is served
    from it, only missing paths are computed, and progress is saved every `save_every` images so
    an interrupted run resumes. `also_from` names read-only caches of the same teacher (e.g. the
    teacher_<set>.npz beside a cleaned data set) that serve paths the store lacks.
    """
    paths = [os.path.abspath(p) for p in paths]
    store = _read_store(cache_file, teacher)
    wanted, seeded = set(paths), 0
    for other in also_from:
        for p, v in _read_store(other, teacher).items():
            if p in wanted and p not in store:
                store[p] = v
                seeded += 1

    def save():
        if cache_file is not None and store:
            save_cache(cache_file, teacher, store)

    missing = [p for p in dict.fromkeys(paths) if p not in store]
    done_since_save = 0
    for start in progress(range(0, len(missing), batch_size), total=(len(missing) + batch_size - 1) // batch_size,
                          desc=f"teacher {teacher.name}", unit="batch"):
        chunk = missing[start:start + batch_size]
        imgs = np.stack([_crop(read_image(p), teacher.input_size) for p in chunk])
        e = teacher.embed(imgs)
        m = teacher.embed(np.ascontiguousarray(imgs[:, :, ::-1]))
        for p, ei, mi in zip(chunk, e, m):
            store[p] = (ei, mi)
        done_since_save += len(chunk)
        if done_since_save >= save_every:
            save()
            done_since_save = 0
    if missing or seeded:
        save()
    emb = np.stack([store[p][0] for p in paths]) if paths else np.zeros((0, teacher.dim), np.float32)
    emb_m = np.stack([store[p][1] for p in paths]) if paths else np.zeros((0, teacher.dim), np.float32)
    return emb.astype(np.float32), emb_m.astype(np.float32)


def set_cache(folder, set_name: str) -> Path:
    """Where a data set's teacher cache lives: FOLDER/teacher_<set>.npz (the data commands' convention)."""
    return Path(folder) / f"teacher_{set_name}.npz"


def save_cache(cache_file, teacher: Teacher, store: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write {path: (embedding, mirror embedding)} atomically in the cache format above."""
    keys = sorted(store)
    with atomic_path(cache_file) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(keys), emb=np.stack([store[k][0] for k in keys]),
                     emb_mirror=np.stack([store[k][1] for k in keys]), teacher_sha256=teacher.sha256,
                     teacher=json.dumps(teacher.describe()))


def copy_cache(teacher: Teacher, src_paths, dst_paths, cache_file, out_file) -> int:
    """The embeddings of src_paths (from cache_file, computing what is missing) stored under
    dst_paths in out_file: e.g. for the hard-linked copies of a cleaned data set."""
    emb, emb_m = teacher_embeddings(teacher, src_paths, cache_file)
    save_cache(out_file, teacher, {os.path.abspath(d): (e, m) for d, e, m in zip(dst_paths, emb, emb_m)})
    return len(emb)


def _crop(img: np.ndarray, size: int) -> np.ndarray:
    if img.shape[:2] != (size, size):
        import cv2
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def merge_caches(out_file, in_files) -> int:
    """Merge per-path teacher caches of ONE teacher (e.g. shards computed in parallel)."""
    paths, emb, emb_m, sha, desc = [], [], [], None, ""
    for f in in_files:
        try:
            with np.load(f, allow_pickle=False) as z:
                fields = {k: z[k] for k in ("teacher_sha256", "paths", "emb", "emb_mirror")}
                desc_f = str(z["teacher"]) if "teacher" in z else ""
        except (OSError, ValueError, KeyError, EOFError) as e:  # every input is checked before OUT is written
            raise EdgefaceError(f"{f} is not a teacher cache ({type(e).__name__}: {e})") from None
        if sha is not None and str(fields["teacher_sha256"]) != sha:
            raise EdgefaceError(f"{f} was made by another teacher; refusing to merge")
        sha, desc = str(fields["teacher_sha256"]), desc_f
        paths += fields["paths"].tolist()
        emb.append(fields["emb"])
        emb_m.append(fields["emb_mirror"])
    emb, emb_m = np.concatenate(emb), np.concatenate(emb_m)
    keep = {p: i for i, p in enumerate(paths)}  # last occurrence wins; order by path
    idx = [keep[p] for p in sorted(keep)]
    with atomic_path(out_file) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, paths=np.array(sorted(keep)), emb=emb[idx], emb_mirror=emb_m[idx],
                     teacher_sha256=sha, teacher=desc)
    return len(idx)
