"""Align a whole `<identity>/<file>` folder: detect, pick the main face, warp onto the template.

Resumable and crash-safe: each finished image appends one JSON line to DST/manifest.jsonl (flushed),
so an interrupted run loses at most the images in flight and a rerun skips what is already done.
Parallel: a 'spawn' pool where every worker builds its own MTCNN once and runs TF single-threaded
(N single-threaded workers beat one N-threaded TF on the small MTCNN graphs).
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from edgeface.align.transform import align_face, centre_crop, clahe as apply_clahe, get_template
from edgeface.errors import EdgefaceError, sigterm_as_interrupt
from edgeface.utils.images import BadImage, encode_image, is_image_name, read_image, write_image
from edgeface.utils.io import check_output_path, write_bytes_atomic, write_json_atomic
from edgeface.utils.locks import locked
from edgeface.utils.progress import progress

MANIFEST = "manifest.jsonl"
CROP_BYTES = "_crop_png"  # a worker's encoded crop, written by the parent (never in the manifest)
SUMMARY = "summary.json"
OPTIONS = "align_options.json"
STATUSES = ("ok", "fallback", "no_face", "bad_image")
FAILED = ("fallback", "no_face", "bad_image")  # everything without a detected face counts as a failure
# Options that change the pixels of the outputs: a resumed run must use the same ones.
PIXEL_OPTIONS = ("template", "clahe", "fallback")


def align_image(rgb: np.ndarray, detector, template="arcface112", clahe: bool = False, fallback: bool = True):
    """Align the main face of one RGB image. Returns (crop | None, Face | None, status).

    status: "ok" (face found and warped), "fallback" (no face; a centre crop, flagged) or "no_face".
    """
    faces = detector.detect(rgb)
    if not faces:
        faces = relaxed_detector(detector).detect(rgb)
    return crop_main_face(rgb, faces, template, clahe, fallback)


def relaxed_detector(detector):
    """A second-chance view of `detector` (same networks): full resolution, laxer cascade thresholds.

    On the CelebA training set it recovers about 2/3 of the first pass's misses (tilted, occluded faces).
    """
    relaxed = copy.copy(detector)
    relaxed.min_face_size = min(20, detector.min_face_size)
    relaxed.thresholds = RELAXED_THRESHOLDS
    return relaxed


def crop_main_face(rgb: np.ndarray, faces, template="arcface112", clahe: bool = False, fallback: bool = True):
    """`align_image` given the detector's faces for `rgb`."""
    from edgeface.align.faces import pick_main_face

    template = get_template(template) if isinstance(template, str) else template
    face = pick_main_face(faces, rgb.shape)
    if face is not None:
        crop, status = align_face(rgb, face.landmarks, template), "ok"
    elif fallback:
        crop, status = centre_crop(rgb, template), "fallback"
    else:
        return None, None, "no_face"
    if clahe:
        crop = apply_clahe(crop)
    return crop, face, status


# ---------------------------------------------------------------- manifest

def _read_manifest_lines(path: Path) -> list[dict]:
    records: dict[str, dict] = {}
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by an interrupt: that image is simply redone
            if isinstance(rec, dict) and isinstance(rec.get("source"), str):
                records[rec["source"]] = rec  # the last record for a source wins
    return list(records.values())


def read_manifest(dst: str | os.PathLike) -> list[dict]:
    """The deduplicated records of DST/manifest.jsonl (last record per source wins)."""
    path = Path(dst) / MANIFEST
    if not path.is_file():
        raise EdgefaceError(f"no {MANIFEST} in {dst}: is it a folder made by `edgeface align`?")
    return _read_manifest_lines(path)


def _is_done(rec: dict, dst: Path) -> bool:
    if rec.get("status") not in STATUSES:
        return False
    if rec.get("output"):
        return (dst / rec["output"]).is_file()
    return rec["status"] in ("no_face", "bad_image")  # nothing to write: the verdict is the result


# ---------------------------------------------------------------- discovery

def list_sources(src: Path) -> list[str]:
    """Every non-hidden file under SRC (relative, sorted); non-images are listed too (as bad_image later)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            out.append(Path(dirpath, name).relative_to(src).as_posix())
    return out


def output_name(source: str) -> str:
    return str(Path(source).with_suffix(".png").as_posix())


def output_names(sources: list[str]) -> dict[str, str]:
    """source -> output; `a.jpg` and `a.png` side by side keep their extension (`a.jpg.png`) instead of colliding."""
    names: dict[str, list[str]] = {}
    for s in sources:
        names.setdefault(output_name(s), []).append(s)
    return {s: (out if len(group) == 1 else s + ".png") for out, group in names.items() for s in group}


# ---------------------------------------------------------------- workers

_DETECTOR = None
_RELAXED = None
_OPTS: dict = {}
RELAXED_THRESHOLDS = (0.5, 0.6, 0.7)


def _limit_threads() -> None:
    # Before TensorFlow starts its thread pools; each worker owns one core's worth of work.
    for var in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ[var] = "1"
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


_PARENT_PID = None


def _die_with_parent() -> None:
    """A worker whose parent was killed (-9: no chance to stop the pool) must not go on writing
    crops that no manifest lists: the kernel kills it with its parent (Linux), and every chunk
    checks the parent is still there (other systems)."""
    global _PARENT_PID
    _PARENT_PID = os.getppid()
    with contextlib.suppress(Exception):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != _PARENT_PID:  # the parent died before prctl took effect
        os._exit(1)


def _parent_gone() -> bool:
    return _PARENT_PID is not None and os.getppid() != _PARENT_PID


def _init_worker(opts: dict, single_thread: bool = True) -> None:
    """Load the detector in this process. TensorFlow's start-up writes "Could not find cuda drivers"
    and a cuInit error straight to fd 2 in every worker on a CPU machine: expected, so silenced
    (Python errors still raise)."""
    from edgeface.utils.native import quiet_native_stderr

    with quiet_native_stderr():
        _load_detector(opts, single_thread)


def _load_detector(opts: dict, single_thread: bool) -> None:
    global _DETECTOR, _OPTS
    import edgeface  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)

    if single_thread:  # a pool worker: the parent handles Ctrl-C and stops the pool
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _die_with_parent()
        _limit_threads()
        from edgeface.utils.native import quiet_tensorflow_import

        quiet_tensorflow_import()  # the workers share the parent's stderr
        import cv2
        import tensorflow as tf

        cv2.setNumThreads(1)
        try:
            tf.config.threading.set_intra_op_parallelism_threads(1)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # TF already initialised in this process (in-process mode): keep its pools
    from edgeface.align.detect import MTCNNDetector

    _DETECTOR = MTCNNDetector(min_face_size=opts["min_face_size"], max_side=opts["max_side"])
    _OPTS = opts
    global _RELAXED
    _RELAXED = relaxed_detector(_DETECTOR)


def _new_record(source: str) -> dict:
    return {"source": source, "output": None, "box": None, "landmarks": None, "score": None,
            "status": "bad_image", "error": None, "retry": False}


def _read(task) -> tuple[dict, np.ndarray | None]:
    source, src_path = task[:2]
    rec = _new_record(source)
    if not is_image_name(source):
        rec["error"] = f"not an image file name: {source}"
        return rec, None
    try:
        return rec, read_image(src_path)
    except BadImage as e:
        rec["error"] = str(e)
    except Exception as e:  # a decoder crash is still just one bad file
        rec["error"] = f"{type(e).__name__}: {e}"
    return rec, None


def _detect_all(images: list[np.ndarray]) -> tuple[list, list[bool]]:
    """(faces per image, whether the relaxed retry found them). An image that breaks the detector
    gets its exception instead of a face list."""
    try:
        found = _DETECTOR.detect_batch(images)
    except Exception:  # one odd image spoils a batch: redo them one by one to find it
        found = []
        for im in images:
            try:
                found.append(_DETECTOR.detect(im))
            except Exception as e:
                found.append(e)
    retried = [False] * len(images)
    for i, faces in enumerate(found):
        if isinstance(faces, list) and not faces:
            try:
                found[i], retried[i] = _RELAXED.detect(images[i]), True
            except Exception:
                pass  # keep "no face"
    return found, retried


def _process_chunk(tasks: list[tuple[str, str, str, str]]) -> list[dict]:
    # task: (source relative to SRC, its absolute path, DST, output relative to DST)
    """Align a few files and write their crops. Never raises: every outcome is a manifest record."""
    read = [_read(t) for t in tasks]
    good = [i for i, (_, img) in enumerate(read) if img is not None]
    found, retried = _detect_all([read[i][1] for i in good]) if good else ([], [])
    faces, retry = dict(zip(good, found)), dict(zip(good, retried))
    records = []
    for i, (task, (rec, rgb)) in enumerate(zip(tasks, read)):
        if _parent_gone():
            os._exit(1)
        if rgb is not None:
            if isinstance(faces[i], Exception):  # e.g. MTCNN on a 3x3 image: report, don't stop the run
                rec["error"] = f"detection failed: {type(faces[i]).__name__}: {faces[i]}"
            else:
                crop, face, status = crop_main_face(rgb, faces[i], _OPTS["template"], _OPTS["clahe"],
                                                    _OPTS["fallback"])
                rec["status"] = status
                rec["retry"] = retry[i]
                if face is not None:
                    rec.update(face.to_json())
                if crop is not None:
                    # the parent writes the file, then its manifest line: a killed run never
                    # leaves a crop that no manifest lists
                    rec[CROP_BYTES] = encode_image(task[3], crop)
                    rec["output"] = task[3]
        records.append(rec)
    return records


# ---------------------------------------------------------------- folder

def _check_options(dst: Path, opts: dict) -> None:
    path = dst / OPTIONS
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        diff = [k for k in PIXEL_OPTIONS if k in old and old[k] != opts[k]]
        if diff:
            raise EdgefaceError(f"{dst} was aligned with different {', '.join(diff)} "
                                f"({', '.join(f'{k}={old[k]}' for k in diff)}); use a new DST")
    write_json_atomic(path, {k: opts[k] for k in (*PIXEL_OPTIONS, "min_face_size", "max_side")})


def _count(records: list[dict]) -> dict:
    counts = {s: 0 for s in STATUSES}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    return counts


def align_folder(src, dst, template: str = "arcface112", workers: int = 2, clahe: bool = False,
                 fallback: bool = True, min_face_size: int = 20, max_side: int = 640,
                 limit: int | None = None, redo_failed: bool = False, only: Iterable[str] | None = None) -> dict:
    """Align every image under SRC into DST (same relative layout, .png). Returns the summary dict.

    only: just these sources (paths relative to SRC, e.g. the images a pairs file names).
    Resumes: sources already in DST's manifest are skipped, except failures when `redo_failed`.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise EdgefaceError(f"source folder not found: {src}")
    get_template(template)  # fail fast on a bad name
    if src.resolve() == dst.resolve() or dst.resolve().is_relative_to(src.resolve()):
        raise EdgefaceError(f"DST must be outside SRC: {dst}")
    if workers < 0 or min_face_size < 1 or max_side < 32 or (limit is not None and limit < 0):
        raise EdgefaceError("workers must be >= 0, min_face_size >= 1, max_side >= 32, limit >= 0")
    opts = {"template": template, "clahe": bool(clahe), "fallback": bool(fallback),
            "min_face_size": int(min_face_size), "max_side": int(max_side)}
    check_output_path(dst, "DST", folder=True)
    dst.mkdir(parents=True, exist_ok=True)
    old_term = sigterm_as_interrupt()
    try:
        # two runs appending to one manifest would do every image twice
        with locked(dst, timeout=0, lock_path=dst / ".align.lock",
                    busy=f"another `edgeface align` is already writing to {dst}"):
            _check_options(dst, opts)
            for stale in dst.rglob(".*.tmp"):  # a killed run's half-written crops (we hold the lock)
                stale.unlink(missing_ok=True)
            return _align_locked(src, dst, opts, workers, limit, redo_failed, only)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _align_locked(src: Path, dst: Path, opts: dict, workers: int, limit: int | None, redo_failed: bool,
                  only: Iterable[str] | None = None) -> dict:
    t0 = time.time()
    sources = list_sources(src)
    if only is not None:
        wanted = set(only)
        sources = [s for s in sources if s in wanted]
    if limit is not None:
        sources = sources[:limit]
    manifest = dst / MANIFEST
    done = {r["source"] for r in _read_manifest_lines(manifest)
            if _is_done(r, dst) and not (redo_failed and r["status"] in FAILED)} if manifest.is_file() else set()
    todo = [s for s in sources if s not in done]
    outputs = output_names(sources)
    tasks = [(s, str(src / s), str(dst), outputs[s]) for s in todo]

    processed, t_work = 0, time.time()
    with open(manifest, "a", encoding="utf-8") as mf:
        if mf.tell() > 0 and not _ends_with_newline(manifest):
            mf.write("\n")  # an interrupt cut the last line: start clean
        bar = progress(total=len(tasks), desc="align", unit="img")
        try:
            for records in _run(tasks, opts, workers):
                for rec in records:
                    if CROP_BYTES in rec:
                        write_bytes_atomic(dst / rec["output"], rec.pop(CROP_BYTES))
                mf.write("".join(json.dumps(rec) + "\n" for rec in records))
                mf.flush()
                processed += len(records)
                bar.update(len(records))
        finally:
            bar.close()
    work_s = time.time() - t_work

    wanted = set(sources)
    records = [r for r in _read_manifest_lines(manifest) if r["source"] in wanted]
    counts = _count(records)
    total = sum(counts.values())
    summary = {
        "src": str(src), "dst": str(dst), "options": opts, "workers": workers,
        "total": total, "counts": counts,
        "fail_rate": round(sum(counts[s] for s in FAILED) / total, 6) if total else 0.0,
        "processed_now": processed, "skipped_done": len(sources) - len(todo),
        "images_per_s": round(processed / work_s, 3) if processed and work_s > 0 else None,
        "work_s": round(work_s, 2), "wall_s": round(time.time() - t0, 2),
    }
    write_json_atomic(dst / SUMMARY, summary)
    try:
        if processed or not (dst / "summary.png").is_file():
            contact_sheet(src, dst, dst / "summary.png", records=records)
    except Exception as e:  # the picture is a convenience: never lose a finished run over it
        print(f"edgeface: warning: could not draw {dst / 'summary.png'}: {e}", file=sys.stderr)
    return summary


def contact_sheet(src, dst, path, records: list[dict] | None = None, n_ok: int = 32, max_fail: int = 32,
                  cols: int = 16, seed: int = 0) -> Path:
    """A PNG grid to eyeball an aligned folder: random `ok` crops, then failures labelled by status.

    fallback tiles show the centre crop that was written; no_face tiles the (resized) source image.
    """
    import cv2

    src, dst = Path(src), Path(dst)
    records = sorted(records if records is not None else read_manifest(dst), key=lambda r: r["source"])
    opts = json.loads((dst / OPTIONS).read_text()) if (dst / OPTIONS).is_file() else {}
    t = get_template(opts.get("template", "arcface112"))
    ok = [r for r in records if r["status"] == "ok"]
    rng = np.random.default_rng(seed)
    ok = [ok[i] for i in sorted(rng.choice(len(ok), min(n_ok, len(ok)), replace=False))] if ok else []
    failed = [r for r in records if r["status"] != "ok"][:max_fail]
    tiles = []
    for r in ok + failed:
        tile = np.full((t.height, t.width, 3), 64, np.uint8)
        try:
            if r.get("output"):
                tile = read_image(dst / r["output"])
            elif r["status"] == "no_face":
                tile = cv2.resize(read_image(src / r["source"]), (t.width, t.height), interpolation=cv2.INTER_AREA)
        except BadImage:
            pass
        label = np.full((14, t.width, 3), 255, np.uint8)
        if r["status"] != "ok":
            colour = {"fallback": (200, 120, 0), "no_face": (200, 0, 0), "bad_image": (120, 0, 120)}[r["status"]]
            cv2.putText(label, r["status"], (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, colour, 1, cv2.LINE_AA)
        tiles.append(np.vstack([tile, label]))
    if not tiles:
        raise EdgefaceError(f"nothing to draw: {dst} has no records")
    blank = np.full_like(tiles[0], 255)
    tiles += [blank] * (-len(tiles) % cols)
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    write_image(path, np.vstack(rows))
    return Path(path)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


def _run(tasks, opts: dict, workers: int, chunk: int = 16):
    """Yield lists of records, in-process (workers <= 1) or from a spawn pool, `chunk` files per job.

    Chunks let the detector batch same-size images; they are small enough that an interrupt
    loses little and the progress bar stays close to real time.
    """
    if not tasks:
        return
    chunks = [tasks[i:i + chunk] for i in range(0, len(tasks), chunk)]
    if workers <= 1:
        _init_worker(opts, single_thread=False)
        for c in chunks:
            yield _process_chunk(c)
        return
    import multiprocessing as mp

    ctx = mp.get_context("spawn")  # fork after TensorFlow has started is unsafe
    pool = ctx.Pool(processes=workers, initializer=_init_worker, initargs=(opts,))
    try:
        yield from pool.imap_unordered(_process_chunk, chunks)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()
