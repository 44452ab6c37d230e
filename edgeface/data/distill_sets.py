"""Label-free faces for distillation: more DISTINCT faces than the labelled training set holds.

With 259 CelebA identities the student learns the teacher's map only around those few people. The
teacher can label any face, so two builders widen what the student sees:

- `morphs`: blends of two aligned faces of different identities. Both crops sit on the same five
  template points, so a blend is a plausible new face (a face morph), not a ghosted double image;
  the teacher places it somewhere new in its space. Some get a small re-warp and photometric damage.
  `--mode parts` instead joins the upper face of one (eyes, brows) to the lower face of the other
  (nose, mouth) across a soft horizontal seam, colour-matched: sharper and further from both parents
  than a global blend, which drifts towards an average face. `--mode bands` stacks three identities:
  eyes and brows from one, nose from a second, mouth and chin from a third.
- `faces`: any folder of small face crops (e.g. FER2013's 48x48 training faces, thousands of
  people): detected, five-point aligned onto the template, K views (view 0 clean, the rest jittered
  and damaged as in `edgeface.data.views`). Images without a detection use the mean landmarks of
  the detected ones (these crops are framed alike).

Each DST gets `manifest.jsonl` with one {"output", "sources", "identities"} record per image; the
trainer (`data.extra`) drops every image made from a held-out validation identity.

    edgeface data morphs ALIGNED_DIR DST --count 30000 [--mode parts|bands]
    edgeface data faces SRC_DIR DST --views 2
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np

from edgeface.align.transform import get_template, similarity_transform
from edgeface.data.views import jitter_matrix, photometric
from edgeface.errors import EdgefaceError
from edgeface.utils.images import is_image_name, read_image, write_image
from edgeface.utils.io import write_text_atomic
from edgeface.utils.progress import progress


def _ok_entries(aligned_dir: Path) -> list[str]:
    """Relative outputs of the aligned folder's detected (not fallback) faces, sorted."""
    from edgeface.align.pipeline import read_manifest

    return sorted(r["output"] for r in read_manifest(aligned_dir) if r.get("status") == "ok" and r.get("output"))


def rewarp(crop: np.ndarray, rng: np.random.Generator, rot_deg=8.0, scale=0.06, shift=3.0) -> np.ndarray:
    """A small random similarity warp of an aligned crop about its centre (alignment noise)."""
    h, w = crop.shape[:2]
    m = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), rng.uniform(-rot_deg, rot_deg),
                                rng.uniform(1 - scale, 1 + scale))
    m[:, 2] += rng.uniform(-shift, shift, 2)
    return cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


MORPH_MODES = ("blend", "parts", "bands")


def band_swap(layers: list[np.ndarray], seams: list[float], soft: float) -> np.ndarray:
    """Horizontal bands from several faces: rows above seams[0] from layers[0], between seams[k-1]
    and seams[k] from layers[k], ..., below the last seam from the last layer; each seam a sigmoid
    `soft` rows wide. Every later layer is first shifted to layers[0]'s per-channel mean and spread
    so skin tones meet."""
    if len(seams) != len(layers) - 1 or list(seams) != sorted(seams):
        raise EdgefaceError("band_swap needs one increasing seam between each two layers")
    x = layers[0]
    h = x.shape[0]
    rows = np.arange(h, dtype=np.float32)[:, None, None]
    out = x
    for y, seam in zip(layers[1:], seams):
        y = (y - y.mean((0, 1))) / (y.std((0, 1)) + 1e-3) * x.std((0, 1)) + x.mean((0, 1))
        upper = 1.0 / (1.0 + np.exp((rows - seam * h) / soft))
        out = upper * out + (1.0 - upper) * y
    return out


def part_swap(x: np.ndarray, y: np.ndarray, seam: float, soft: float) -> np.ndarray:
    """Rows above `seam` (fraction of the height) from x, below from y (two bands)."""
    return band_swap([x, y], [seam], soft)


def _draw_other(rng, ids: np.ndarray, idx: np.ndarray, *others: np.ndarray) -> None:
    """Redraw idx[i] in place until its identity differs from every others[k][i]."""
    for i in range(len(idx)):
        while any(ids[idx[i]] == ids[o[i]] for o in others):
            idx[i] = rng.integers(0, len(ids))


def make_morphs(aligned_dir, dst, count: int = 30000, seed: int = 0, lam=(0.3, 0.7), damage: float = 0.5,
                mode: str = "blend") -> dict:
    """Write DST/mNNN/NNNNNN.png: `count` morphs of faces of different identities: global blends of
    two (mode "blend", weight in `lam`), upper/lower part swaps of two (mode "parts"), or eyes/nose/
    mouth bands of three (mode "bands")."""
    if mode not in MORPH_MODES:
        raise EdgefaceError(f"unknown morph mode {mode!r}; choose one of {', '.join(MORPH_MODES)}")
    aligned_dir, dst = Path(aligned_dir), Path(dst)
    outputs = _ok_entries(aligned_dir)
    ids = np.array([o.split("/", 1)[0] for o in outputs])
    need = 3 if mode == "bands" else 2
    if len(np.unique(ids)) < need:
        raise EdgefaceError(f"{aligned_dir}: {mode} morphs need faces of at least {need} identities")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, len(outputs), count)
    b = rng.integers(0, len(outputs), count)
    _draw_other(rng, ids, b, a)  # (the draw order keeps earlier sets' images reproducible)
    weights = rng.uniform(lam[0], lam[1], count)
    c = None
    if mode == "bands":
        c = rng.integers(0, len(outputs), count)
        _draw_other(rng, ids, c, a, b)
    lines = []
    dst.mkdir(parents=True, exist_ok=True)
    for i in progress(range(count), total=count, desc="morphs"):
        out = f"m{i // 1000:03d}/{i:06d}.png"
        picks = [a[i], b[i]] if c is None else [a[i], b[i], c[i]]
        rec = {"output": out, "sources": [outputs[k] for k in picks], "identities": sorted({ids[k] for k in picks})}
        rec.update({"weight": round(float(weights[i]), 4)} if mode == "blend" else {"mode": mode})
        lines.append(json.dumps(rec))
        if (dst / out).exists():
            continue  # resumable: every image depends only on (seed, i)
        r = np.random.default_rng([seed, i])
        faces = [read_image(aligned_dir / outputs[k]).astype(np.float32) for k in picks]
        if any(f.shape != faces[0].shape for f in faces):
            raise EdgefaceError(f"{aligned_dir}: crops differ in size ({', '.join(str(f.shape) for f in faces)})")
        x, y = faces[:2]
        if mode == "blend":
            mixed = weights[i] * x + (1 - weights[i]) * y
        elif mode == "parts":  # the seam falls between the eyes (row 0.46 of an arcface crop) and the mouth (0.82)
            mixed = part_swap(x, y, seam=r.uniform(0.55, 0.72), soft=r.uniform(2.0, 6.0))
        else:  # seams below the eyes (0.46) and above the mouth (0.82), around the nose tip (0.64)
            seams = [r.uniform(0.52, 0.58), r.uniform(0.70, 0.76)]
            mixed = band_swap(faces, seams, soft=r.uniform(2.0, 4.0))
        img = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        if r.random() < damage:
            img = photometric(rewarp(img, r), r)
        write_image(dst / out, img)
    write_text_atomic(dst / "manifest.jsonl", "\n".join(lines) + "\n")
    return {"images": count, "identities": int(len(np.unique(ids)))}


def detect_landmarks(paths: list[Path], pad: int = 16, batch: int = 64) -> tuple[list[np.ndarray | None], list]:
    """(five landmarks per image in source pixels or None, (height, width) per image) from MTCNN on a
    replicate-padded copy (faces that fill a small crop touch its border, where the detector's
    windows do not reach)."""
    from edgeface.align.detect import MTCNNDetector
    from edgeface.align.faces import pick_main_face

    det = MTCNNDetector(min_face_size=20, max_side=640)
    landmarks: list[np.ndarray | None] = []
    shapes = []
    for start in progress(range(0, len(paths), batch), total=(len(paths) + batch - 1) // batch,
                          desc="detect", unit="batch"):
        imgs = [read_image(p) for p in paths[start:start + batch]]
        shapes += [im.shape[:2] for im in imgs]
        padded = [cv2.copyMakeBorder(im, pad, pad, pad, pad, cv2.BORDER_REPLICATE) for im in imgs]
        for im, faces in zip(padded, det.detect_batch(padded)):
            face = pick_main_face(faces, im.shape)
            landmarks.append(None if face is None else np.asarray(face.landmarks, np.float64) - pad)
    return landmarks, shapes


def make_face_views(src, dst, views: int = 2, template: str = "arcface112", seed: int = 0) -> dict:
    """Write DST/<rel>_vK.png: K aligned views of every face image under SRC (any layout)."""
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise EdgefaceError(f"source folder not found: {src}")
    paths = sorted(p for p in src.rglob("*") if p.is_file() and is_image_name(p.name))
    if not paths:
        raise EdgefaceError(f"no images under {src}")
    landmarks, shapes = detect_landmarks(paths)
    found = [(lm, hw) for lm, hw in zip(landmarks, shapes) if lm is not None]
    if not found:
        raise EdgefaceError(f"no face detected in any image under {src}")
    # Mean landmarks in relative coordinates, for the images without a detection.
    mean_rel = np.mean([lm / np.array([s[1], s[0]]) for lm, s in found], axis=0)
    tpl = get_template(template)
    lines = []
    dst.mkdir(parents=True, exist_ok=True)
    for p, lm in progress(list(zip(paths, landmarks)), total=len(paths), desc="views"):
        rel = p.relative_to(src).as_posix()
        img = read_image(p)
        detected = lm is not None
        if lm is None:
            lm = mean_rel * np.array([img.shape[1], img.shape[0]])
        rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(rel.encode()).digest()[:8], "little")])
        for k in range(views):
            out = f"{Path(rel).with_suffix('')}_v{k}.png"
            lines.append(json.dumps({"output": out, "sources": [rel], "identities": [], "detected": detected,
                                     "view": k}))
            m = similarity_transform(lm, tpl.points) if k == 0 else jitter_matrix(lm, tpl.points, rng)
            crop = cv2.warpAffine(img, m, (tpl.width, tpl.height), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
            if k > 0:
                crop = photometric(crop, rng)
            if not (dst / out).exists():
                write_image(dst / out, crop)
    write_text_atomic(dst / "manifest.jsonl", "\n".join(lines) + "\n")
    return {"sources": len(paths), "detected": len(found), "views": len(lines),
            "source_sizes": sorted({f"{h}x{w}" for h, w in shapes})}


def extra_images(dirs, exclude_identities=()) -> tuple[list[str], dict]:
    """Image paths of label-free distillation folders, minus every image made from an identity in
    `exclude_identities` (held-out validation people must not leak into training through a morph).

    A folder with a manifest.jsonl (these builders) is read from it; any other folder contributes
    every image below it. Returns (paths, {dir: {"images", "dropped"}}).
    """
    exclude = set(exclude_identities)
    paths, counts = [], {}
    for d in dirs:
        d = Path(d)
        if not d.is_dir():
            raise EdgefaceError(f"data.extra folder not found: {d}")
        manifest = d / "manifest.jsonl"
        dropped, found = 0, []
        if manifest.is_file():
            for n, line in enumerate(manifest.read_text().splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    out, ids = rec["output"], rec.get("identities", [])
                except (ValueError, KeyError, TypeError):
                    raise EdgefaceError(f"{manifest}:{n}: not a distillation-set record") from None
                if exclude.intersection(ids):
                    dropped += 1
                elif (d / out).is_file():
                    found.append(str(d / out))
        else:
            found = sorted(str(p) for p in d.rglob("*") if p.is_file() and is_image_name(p.name))
        if not found:
            raise EdgefaceError(f"data.extra folder {d} holds no usable images")
        paths += found
        counts[str(d)] = {"images": len(found), "dropped": dropped}
    return paths, counts


def split_extra_held_out(dirs, paths, fraction: float) -> tuple[list[str], list[str], dict[str, int]]:
    """(training paths, held-out paths, {dir: held-out count}) of extra_images' paths.

    A face is held out when the hash of "<folder name>/<path inside the folder>" falls under `fraction`:
    the choice depends on nothing but the face's own name, so every run with that folder holds out the
    same faces, whatever else it trains on and on whichever machine.
    """
    roots = [(str(Path(d)), Path(d).name) for d in dirs]
    train, held, counts = [], [], {root: 0 for root, _ in roots}
    for p in paths:
        root, name = next((r, n) for r, n in roots if p.startswith(r + os.sep))
        key = f"{name}/{Path(os.path.relpath(p, root)).as_posix()}"
        if int(hashlib.sha1(key.encode()).hexdigest()[:8], 16) < fraction * 16 ** 8:
            held.append(p)
            counts[root] += 1
        else:
            train.append(p)
    return train, held, counts
