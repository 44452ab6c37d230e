"""`edgeface verify | enroll | identify`: the on-device commands (numpy, OpenCV, TFLite; no TensorFlow).

    edgeface verify A.jpg B.jpg [--model M] [--threshold T] [--json]
    edgeface enroll NAME IMG_OR_DIR... [--gallery FILE]
    edgeface identify IMG | --camera N | --video FILE [--gallery FILE] [--top-k 3] [--output out.mp4]

Model: --model, else $EDGEFACE_MODEL, else models/edgeface_face_int8.tflite (repo root, then cwd).
Threshold: --threshold, else the card's verification.threshold (written by `edgeface bench`).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgeface.errors import EdgefaceError

DEFAULT_MODEL_NAME = "edgeface_face_int8.tflite"
DEFAULT_GALLERY = "gallery.npz"


def default_model() -> Path:
    from edgeface.utils.paths import REPO_ROOT

    env = os.environ.get("EDGEFACE_MODEL")
    if env:
        return Path(env)
    for root in (REPO_ROOT, Path.cwd()):
        p = root / "models" / DEFAULT_MODEL_NAME
        if p.exists():
            return p
    raise EdgefaceError(f"no model given and models/{DEFAULT_MODEL_NAME} not found (under {REPO_ROOT} or the "
                        f"current folder): pass --model M.tflite or set EDGEFACE_MODEL")


def default_gallery() -> Path:
    return Path(os.environ.get("EDGEFACE_GALLERY", DEFAULT_GALLERY))


def open_pipeline(model, threads: int, allow_corrupt: bool = False, max_pixels: int | None = None):
    from edgeface.runtime.pipeline import FacePipeline

    return FacePipeline(Path(model) if model else default_model(), num_threads=threads,
                        allow_corrupt=allow_corrupt, max_pixels=max_pixels)


def decision_threshold(threshold: float | None, embedder) -> float | None:
    return threshold if threshold is not None else embedder.threshold


NO_THRESHOLD = ("no decision threshold: the model card of {model} has no verification.threshold "
                "(`edgeface bench` writes it); pass --threshold T")

def _finite(ctx, param, value):
    import math

    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite number, got {value}")
    return value


def image_options(f):
    """--allow-corrupt and --max-pixels: how damaged and huge photos are treated."""
    f = click.option("--max-pixels", type=click.IntRange(min=0), default=None,
                     help="Refuse images larger than this many pixels, read from the header before decoding "
                          "[default: $EDGEFACE_MAX_PIXELS or 50000000; 0 = no limit].")(f)
    return click.option("--allow-corrupt", is_flag=True,
                        help="Use JPEGs that libjpeg reports as corrupt (damaged areas decode as grey).")(f)


model_option = click.option("--model", type=click.Path(path_type=Path), default=None,
                            help=f"Face embedder .tflite [default: $EDGEFACE_MODEL or models/{DEFAULT_MODEL_NAME}].")
threshold_option = click.option("--threshold", type=float, default=None, callback=_finite,
                                help="Cosine threshold [default: the model card's verification.threshold].")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
                              help="Interpreter threads.")
gallery_option = click.option("--gallery", type=click.Path(path_type=Path), default=None,
                              help=f"Gallery file [default: $EDGEFACE_GALLERY or ./{DEFAULT_GALLERY}].")
fallback_option = click.option("--fallback-crop", is_flag=True,
                               help="When no face is found, embed the image's centre crop instead of failing.")


# ---- verify ---------------------------------------------------------------------------------
@click.command("verify")
@click.argument("image_a", type=click.Path(path_type=Path))
@click.argument("image_b", type=click.Path(path_type=Path))
@model_option
@threshold_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a sentence.")
@fallback_option
@image_options
@threads_option
def verify(image_a, image_b, model, threshold, as_json, fallback_crop, allow_corrupt, max_pixels, threads):
    """Are IMAGE_A and IMAGE_B the same person? Prints the decision and the cosine score."""
    pipe = open_pipeline(model, threads, allow_corrupt, max_pixels)
    faces, embs = [], []
    for path in (image_a, image_b):
        rgb = pipe.read(path)
        face, _, emb = pipe.main_face(rgb, name=str(path), fallback_crop=fallback_crop)
        faces.append(face)
        embs.append(emb)
    score = float(embs[0] @ embs[1])
    thr = decision_threshold(threshold, pipe.embedder)
    same = None if thr is None else score >= thr
    if as_json:
        click.echo(json.dumps({"a": str(image_a), "b": str(image_b), "same": same, "score": round(score, 5),
                               "threshold": thr, "model": str(pipe.embedder.path),
                               "faces": [f.to_json() if f else None for f in faces],
                               "timings_ms": {k: round(v, 2) for k, v in pipe.times.medians().items()}}))
    elif thr is None:
        click.echo(f"cosine {score:.4f}")
    else:
        verdict = "same person" if same else "different people"
        click.echo(f"{verdict}: cosine {score:.4f} {'>=' if same else '<'} threshold {thr:.4f}")
    if thr is None:
        raise EdgefaceError(NO_THRESHOLD.format(model=pipe.embedder.path.name))


# ---- enroll ---------------------------------------------------------------------------------
def expand_images(paths: list[Path]) -> list[Path]:
    """Files as given, folders as their image files (sorted)."""
    from edgeface.utils.images import is_image_name

    out = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_name(f))
            if not found:
                raise EdgefaceError(f"no image files in folder {p}")
            out += found
        else:
            out.append(p)
    return out


@click.command("enroll")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@gallery_option
@model_option
@fallback_option
@image_options
@click.option("--strict", is_flag=True, help="All or nothing: if any image is unusable, enroll none and exit 2.")
@click.option("--lock-timeout", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for another process's lock on the gallery.")
@threads_option
def enroll(name, images, gallery, model, fallback_crop, allow_corrupt, max_pixels, strict, lock_timeout, threads):
    """Add NAME's face IMAGES (files or folders) to the gallery.

    An unusable image (no face, unreadable, corrupt, too large) is skipped with a line naming it;
    the exit code is 2 only when nothing was enrolled (with --strict: when anything was unusable).
    """
    from edgeface.runtime.gallery import check_name, enroll as enroll_gallery, safe_text
    from edgeface.runtime.pipeline import NoFace
    from edgeface.utils.images import BadImage

    name = check_name(name)  # before the model loads or any image is read
    files = expand_images(list(images))
    pipe = open_pipeline(model, threads, allow_corrupt, max_pixels)
    gallery = gallery or default_gallery()
    embs, sources, skipped = [], [], []
    for path in files:
        try:
            _, _, emb = pipe.main_face(pipe.read(path), name=str(path), fallback_crop=fallback_crop)
        except (NoFace, BadImage) as e:
            click.echo(f"edgeface: skipped: {safe_text(e)}", err=True)
            skipped.append(path)
            continue
        embs.append(emb)
        sources.append(str(path))
    if not embs:
        raise EdgefaceError(f"nothing enrolled for {safe_text(name)}: no usable face in {len(files)} image(s)")
    if strict and skipped:
        raise EdgefaceError(f"--strict: {len(skipped)} of {len(files)} image(s) unusable; nothing enrolled")
    import numpy as np

    g = enroll_gallery(gallery, name, np.stack(embs), sources, pipe.embedder.sha256, pipe.embedder.name,
                       lock_timeout=lock_timeout, on_wait=lambda msg: click.echo(f"edgeface: {msg}", err=True))
    count = g.counts()[g.names.index(name)]
    click.echo(f"enrolled {len(embs)} image(s) of {safe_text(name)} into {gallery} "
               f"({count} for {safe_text(name)}, {len(g.names)} people, {len(g.embeddings)} embeddings)"
               + (f"; skipped {len(skipped)}: {', '.join(safe_text(p) for p in skipped)}" if skipped else ""))


# ---- identify -------------------------------------------------------------------------------
@click.command("identify")
@click.argument("image", required=False, type=click.Path(path_type=Path))
@click.option("--camera", type=click.IntRange(min=0), default=None, help="Read frames from camera N (e.g. 0).")
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Read frames from a video file.")
@gallery_option
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True, help="Candidates to report per face.")
@click.option("--output", type=click.Path(path_type=Path), default=None,
              help="Stream mode: write frames with boxes and names to this video (.mp4/.avi).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stream mode: stop after N frames.")
@click.option("--show", is_flag=True, help="Stream mode: also show a window (needs an OpenCV build with GUI).")
@click.option("--json", "as_json", is_flag=True, help="Image mode: print JSON.")
@model_option
@threshold_option
@fallback_option
@image_options
@threads_option
def identify(image, camera, video, gallery, top_k, output, max_frames, show, as_json, model, threshold,
             fallback_crop, allow_corrupt, max_pixels, threads):
    """Name the faces in IMAGE, or in every frame of --camera N / --video FILE."""
    from edgeface.runtime.gallery import Gallery

    sources = [s for s in (image, camera, video) if s is not None]
    if len(sources) != 1:
        raise EdgefaceError("give exactly one of IMAGE, --camera N or --video FILE")
    if image is None and as_json:
        raise EdgefaceError("--json is for image mode; stream mode writes --output and prints a summary")
    pipe = open_pipeline(model, threads, allow_corrupt, max_pixels)
    gallery = gallery or default_gallery()
    g = Gallery.load(gallery, model_sha256=pipe.embedder.sha256, model_name=pipe.embedder.name)
    if not g.names:
        raise EdgefaceError(f"gallery {gallery} is empty: enroll people first")
    thr = decision_threshold(threshold, pipe.embedder)
    if thr is None:
        raise EdgefaceError(NO_THRESHOLD.format(model=pipe.embedder.path.name))
    if image is not None:
        identify_image(pipe, g, image, top_k, thr, as_json, fallback_crop)
    else:
        from edgeface.runtime.stream import run_stream

        run_stream(pipe, g, camera if camera is not None else video, top_k, thr, output, max_frames, show)


def identify_image(pipe, g, image, top_k, thr, as_json, fallback_crop):
    import numpy as np

    from edgeface.runtime.gallery import safe_text
    from edgeface.runtime.pipeline import NoFace

    rgb = pipe.read(image)
    found = pipe.faces(rgb)
    if not found:
        if not fallback_crop:
            raise NoFace(f"no face found in {image} (--fallback-crop identifies the centre crop instead)")
        found = [pipe.main_face(rgb, fallback_crop=True)]
    matches = pipe.match(np.stack([e for _, _, e in found]), g, top_k=top_k, threshold=thr)
    if as_json:
        click.echo(json.dumps({"image": str(image), "threshold": thr, "faces": [
            {"face": f.to_json() if f else None, **m.to_json()} for (f, _, _), m in zip(found, matches)],
            "timings_ms": {k: round(v, 2) for k, v in pipe.times.medians().items()}}))
        return
    for i, ((face, _, _), m) in enumerate(zip(found, matches), 1):
        where = "centre crop" if face is None else "box " + ",".join(f"{v:.0f}" for v in face.box)
        cands = ", ".join(f"{safe_text(n)} {s:.3f}" for n, s in m.candidates)
        click.echo(f"face {i} ({where}): {safe_text(m.name)} {m.score:.3f} (threshold {thr:.3f}; "
                   f"top-{len(m.candidates)}: {cands})")
