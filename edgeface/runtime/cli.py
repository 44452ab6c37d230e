"""`edgeface verify | enroll | identify | expression`: the on-device commands (numpy, OpenCV, TFLite; no TensorFlow).

    edgeface verify A.jpg B.jpg [--model M] [--threshold T] [--json]
    edgeface enroll NAME IMG_OR_DIR... [--gallery FILE]
    edgeface identify IMG | --camera N | --video FILE [--gallery FILE] [--top-k 3] [--output out.mp4]
    edgeface expression IMG... | --camera N | --video FILE [--model M] [--json] [--out out.mp4|out.png]

Model: --model, else $EDGEFACE_MODEL, else models/edgeface_face_int8.tflite (repo root, then cwd);
for `expression`: $EDGEFACE_EXPR_MODEL, else models/edgeface_expr_cnn_int8.tflite.
Threshold: --threshold X, or --far F (the card's verification.operating_points["far_F"]), else the
card's best-accuracy threshold verification.threshold (all written by `edgeface bench --update-cards`).
The commands say which threshold they use and where it came from.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from edgeface.errors import EdgefaceError
from edgeface.spec import TTA_MODES
from edgeface.utils.paths import output_path

DEFAULT_MODEL_NAME = "edgeface_face_int8.tflite"
DEFAULT_GALLERY = "gallery.npz"


def default_model(name: str = DEFAULT_MODEL_NAME, env_var: str = "EDGEFACE_MODEL") -> Path:
    """$env_var, else models/<name> under the repo root, then the current folder."""
    from edgeface.utils.paths import REPO_ROOT

    env = os.environ.get(env_var)
    if env:
        return Path(env)
    for root in (REPO_ROOT, Path.cwd()):
        p = root / "models" / name
        if p.exists():
            return p
    raise EdgefaceError(f"no model given and models/{name} not found (under {REPO_ROOT} or the "
                        f"current folder): pass --model M.tflite or set {env_var}")


def default_gallery() -> Path:
    return Path(os.environ.get("EDGEFACE_GALLERY", DEFAULT_GALLERY))


def open_pipeline(model, threads: int, allow_corrupt: bool = False, max_pixels: int | None = None):
    from edgeface.runtime.pipeline import FacePipeline

    return FacePipeline(Path(model) if model else default_model(), num_threads=threads,
                        allow_corrupt=allow_corrupt, max_pixels=max_pixels)


def far_value(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        far = float(text)
    except ValueError:
        far = -1.0
    if not 0 < far < 1:
        raise EdgefaceError(f"--far takes a false-accept rate like 1e-3; got {text!r}")
    return far


def decision_threshold(threshold: float | None, far: float | None, embedder) -> tuple[float | None, str | None]:
    """(cosine threshold, where it came from): --threshold, else the card's operating point at
    --far, else the card's best-accuracy threshold, else (None, None)."""
    if threshold is not None and far is not None:
        raise EdgefaceError("give --threshold or --far, not both")
    if threshold is not None:
        return threshold, "--threshold"
    card_name = embedder.path.with_suffix(".json").name
    card = embedder.card
    pairs = card.verification.pairs if card and card.verification else None
    on = f" on {pairs}" if pairs else ""  # the pairs the bench measured
    points = card.operating_points if card else {}
    if far is not None:
        from edgeface.spec import far_key

        key = far_key(far)
        point = points.get(key)
        if point is None:
            have = ", ".join(k.removeprefix("far_") for k in points if k.startswith("far_")) or "none"
            raise EdgefaceError(f"the model card {card_name} has no operating point at FAR {key.removeprefix('far_')} "
                                f"(it has: {have}; `edgeface bench --update-cards` writes them); pass --threshold T")
        return float(point.threshold), f"{card_name}: {key}, TAR {point.tar:.3f} at FAR {point.far:.4f}{on}"
    if embedder.threshold is None:
        return None, None
    best = points.get("best_accuracy")
    tar = f", TAR {best.tar:.3f} at FAR {best.far:.3f}" if best and best.tar is not None else ""
    return embedder.threshold, f"{card_name}: best accuracy{tar}{on}"


NO_THRESHOLD = ("no decision threshold: the model card of {model} has no verification.threshold "
                "(`edgeface bench --update-cards` writes it); pass --threshold T")

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
                                help="Cosine threshold [default: the model card's best-accuracy threshold].")
far_option = click.option("--far", default=None, metavar="RATE",
                          help="Use the card's threshold at this false-accept rate, e.g. 1e-3 (stricter than the default).")
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
@far_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a sentence.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the answer is \"different people\" (for scripts).")
@fallback_option
@image_options
@threads_option
def verify(image_a, image_b, model, threshold, far, as_json, exit_code, fallback_crop, allow_corrupt, max_pixels,
           threads):
    """Are IMAGE_A and IMAGE_B the same person? Prints the decision, the cosine score and the
    threshold with where it came from."""
    far = far_value(far)
    pipe = open_pipeline(model, threads, allow_corrupt, max_pixels)
    thr, thr_source = decision_threshold(threshold, far, pipe.embedder)
    faces, embs = [], []
    for path in (image_a, image_b):
        rgb = pipe.read(path)
        face, _, emb = pipe.main_face(rgb, name=str(path), fallback_crop=fallback_crop)
        faces.append(face)
        embs.append(emb)
    score = float(embs[0] @ embs[1])
    same = None if thr is None else score >= thr
    if as_json:
        click.echo(json.dumps({"a": str(image_a), "b": str(image_b), "same": same, "score": round(score, 5),
                               "threshold": thr, "threshold_source": thr_source, "model": str(pipe.embedder.path),
                               "faces": [f.to_json() if f else None for f in faces],
                               "timings_ms": {k: round(v, 2) for k, v in pipe.times.medians().items()}}))
    elif thr is None:
        click.echo(f"cosine {score:.4f}")
    else:
        verdict = "same person" if same else "different people"
        click.echo(f"{verdict}: cosine {score:.4f} {'>=' if same else '<'} threshold {thr:.4f} ({thr_source})")
    if thr is None:
        raise EdgefaceError(NO_THRESHOLD.format(model=pipe.embedder.path.name))
    if exit_code and not same:
        raise click.exceptions.Exit(1)


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
@click.option("--output", type=click.Path(path_type=Path), default=None, callback=output_path,
              help="Stream mode: write frames with boxes and names to this video (.mp4/.avi).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stream mode: stop after N frames.")
@click.option("--show", is_flag=True, help="Stream mode: also show a window (needs an OpenCV build with GUI).")
@click.option("--json", "as_json", is_flag=True, help="Image mode: print JSON.")
@model_option
@threshold_option
@far_option
@fallback_option
@image_options
@threads_option
def identify(image, camera, video, gallery, top_k, output, max_frames, show, as_json, model, threshold, far,
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
    thr, thr_source = decision_threshold(threshold, far_value(far), pipe.embedder)
    if thr is None:
        raise EdgefaceError(NO_THRESHOLD.format(model=pipe.embedder.path.name))
    if not as_json:
        click.echo(f"edgeface: threshold {thr:.4f} ({thr_source})", err=True)
    if image is not None:
        identify_image(pipe, g, image, top_k, thr, thr_source, as_json, fallback_crop)
    else:
        from edgeface.runtime.stream import run_stream

        run_stream(pipe, g, camera if camera is not None else video, top_k, thr, output, max_frames, show)


def identify_image(pipe, g, image, top_k, thr, thr_source, as_json, fallback_crop):
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
        click.echo(json.dumps({"image": str(image), "threshold": thr, "threshold_source": thr_source, "faces": [
            {"face": f.to_json() if f else None, **m.to_json()} for (f, _, _), m in zip(found, matches)],
            "timings_ms": {k: round(v, 2) for k, v in pipe.times.medians().items()}}))
        return
    for i, ((face, _, _), m) in enumerate(zip(found, matches), 1):
        where = "centre crop" if face is None else "box " + ",".join(f"{v:.0f}" for v in face.box)
        cands = ", ".join(f"{safe_text(n)} {s:.3f}" for n, s in m.candidates)
        click.echo(f"face {i} ({where}): {safe_text(m.name)} {m.score:.3f} (threshold {thr:.3f}; "
                   f"top-{len(m.candidates)}: {cands})")


# ---- expression -----------------------------------------------------------------------------
@click.command("expression")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
@click.option("--camera", type=click.IntRange(min=0), default=None, help="Read frames from camera N (e.g. 0).")
@click.option("--video", type=click.Path(path_type=Path), default=None, help="Read frames from a video file.")
@click.option("--model", type=click.Path(path_type=Path), default=None,
              help="Expression classifier .tflite [default: $EDGEFACE_EXPR_MODEL or models/edgeface_expr_cnn_int8.tflite].")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per image (or per frame) on stdout.")
@click.option("--out", type=click.Path(path_type=Path), default=None, callback=output_path,
              help="Write the drawn result: an image (.png/.jpg; a folder for several images) or, "
                   "for --video/--camera, a video (.mp4/.avi).")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stream mode: stop after N frames.")
@click.option("--show", is_flag=True, help="Stream mode: also show a window (needs an OpenCV build with GUI).")
@click.option("--tta", type=click.Choice(TTA_MODES), default=None,
              help="Test-time augmentation: average each face's probabilities over its mirror (flip, 2x the "
                   "classifier time) or over four 1-pixel diagonal shifts and their mirrors too (ten, 10x) "
                   "[default: what the model card recommends (notes.preprocessing.tta), else none].")
@click.option("--flip/--no-flip", default=None, help="Shorthand for --tta flip / --tta none.")
@image_options
@threads_option
def expression(images, camera, video, model, as_json, out, max_frames, show, tta, flip, allow_corrupt, max_pixels,
               threads):
    """The facial expression of every face in IMAGES, or in every frame of --video FILE / --camera N.

    Prints per face its box, label and class probabilities (--json: one object per image or frame);
    --out draws box, label and a probability bar per class. The summary of a stream gives the frame rate.
    """
    from edgeface.runtime.expression import (DEFAULT_MODEL_NAME as EXPR_MODEL, MODEL_ENV, ExpressionPipeline,
                                             check_image_out, check_video_out, run_images, run_stream)

    sources = [s for s in (images or None, camera, video) if s is not None]
    if len(sources) != 1:
        raise EdgefaceError("give IMAGE... or --camera N or --video FILE (exactly one kind of input)")
    if flip is not None:
        if tta is not None:
            raise EdgefaceError("give --tta or --flip/--no-flip, not both")
        tta = "flip" if flip else "none"
    if images:
        files = expand_images(list(images))
        for f in files:  # before the models load: a missing file is bad input, one line
            if not f.is_file():
                raise EdgefaceError(f"image not found: {f}")
        out = check_image_out(out, files)
    else:
        if video is not None and not video.is_file():
            raise EdgefaceError(f"video not found: {video}")
        out = check_video_out(out)
    pipe = ExpressionPipeline(model or default_model(EXPR_MODEL, MODEL_ENV), num_threads=threads,
                              allow_corrupt=allow_corrupt, max_pixels=max_pixels, tta=tta)
    if images:
        run_images(pipe, files, out, as_json)
    else:
        run_stream(pipe, camera if camera is not None else video, out, as_json, max_frames, show)


def model_rows(models_dir: Path, pattern: str = "*") -> list[dict]:
    """One row per shipped .tflite whose stem matches PATTERN (fnmatch), from its validated card."""
    from fnmatch import fnmatch

    from edgeface.spec import InputSpec, load_card

    rows = []
    for path in sorted(Path(models_dir).glob("*.tflite")):
        if not fnmatch(path.stem, pattern):
            continue
        card = load_card(path)
        inp = card.input if card else InputSpec()
        acc = card.verification.lfw_accuracy if card and card.verification else None  # bench --update-cards
        rows.append({"name": path.stem, "task": card and card.task, "dtype": card and card.dtype,
                     "bytes": path.stat().st_size, "input": "x".join(str(d) for d in (inp.shape or [])[1:]),
                     "color": inp.color, "normalization": inp.normalization and inp.normalization.to_dict(),
                     "alignment": inp.alignment or "-",
                     "accuracy": f"LFW {100 * acc:.2f}%" if acc is not None else "-",
                     "license": (card and card.license) or "-"})
    return rows


def architecture_rows(pattern: str = "*") -> list[dict]:
    """One row per registered architecture matching PATTERN (fnmatch), from its ArchSpec."""
    from edgeface.nets import list_models, model_spec

    rows = []
    for name in list_models(pattern):
        a = model_spec(name)
        rows.append({"name": name, "task": a.task, "input": f"{a.input_size}x{a.input_size}x{a.channels}",
                     "color": a.color, "normalization": {"mean": a.mean, "std": a.std},
                     "alignment": a.template or "-", "license": a.license, "description": a.description})
    return rows


def print_table(rows: list[dict], cols: tuple[str, ...]) -> None:
    """Left-aligned columns (byte counts right-aligned with thousands separators)."""
    def cell(r, c):
        return f"{r[c]:,}" if c == "bytes" else str(r[c])
    width = {c: max(len(c), *(len(cell(r, c)) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(width[c]) for c in cols).rstrip())
    for r in rows:
        click.echo("  ".join((cell(r, c).rjust if c == "bytes" else cell(r, c).ljust)(width[c]) for c in cols).rstrip())


@click.command("models")
@click.argument("pattern", default="*")
@click.option("--dir", "models_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of .tflite files with their cards [default: the repository's models/].")
@click.option("--architectures", is_flag=True, help="List the trainable architectures of the registry instead "
              "(`get_model(name)`: task, input, normalisation, template, weights licence; needs the train install).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(pattern, models_dir, architectures, as_json):
    """List the shipped models (or architectures) whose name matches PATTERN, e.g. '*micro*'. TF-free."""
    import json

    if architectures:
        rows = architecture_rows(pattern)
        if as_json:
            click.echo(json.dumps(rows, indent=2))
        elif not rows:
            raise EdgefaceError(f"no registered architecture matches {pattern!r}")
        else:
            print_table(rows, ("name", "task", "input", "color", "alignment", "license", "description"))
        return
    if models_dir is None:
        from edgeface.utils.paths import REPO_ROOT

        models_dir = REPO_ROOT / "models"
    if not Path(models_dir).is_dir():
        raise EdgefaceError(f"models folder not found: {models_dir}")
    rows = model_rows(models_dir, pattern)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        raise EdgefaceError(f"no model in {models_dir} matches {pattern!r}")
    print_table(rows, ("name", "task", "dtype", "bytes", "input", "alignment", "accuracy"))
