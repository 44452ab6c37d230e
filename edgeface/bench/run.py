"""One bench run over several .tflite artifacts: size, latency, LFW verification, expression accuracy,
agreement between dtypes of the same model. Returns a JSON-ready dict (rates are fractions 0-1).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeface.align.transform import TEMPLATES, registered_template_for
from edgeface.bench import latency as lat
from edgeface.bench.embed import embed_faces, load_faces, model_input_spec
from edgeface.bench.size import size_report
from edgeface.bench.verification import cosine_scores, downsample_roc, evaluate
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLiteModel, interpreter_class, load_card
from edgeface.spec import TASK_CLASSIFICATION, TASK_EMBEDDING, ModelCard, Verification, load_card_file
from edgeface.utils.io import write_json_atomic
from edgeface.utils.paths import portable

EXPRESSION = TASK_CLASSIFICATION


def note(msg: str) -> None:
    print(f"edgeface: {msg}", file=sys.stderr, flush=True)


def model_template(model: TFLiteModel) -> str:
    name = model.model_card.input.alignment if model.model_card else None
    if name:
        if name not in TEMPLATES:
            raise EdgefaceError(f"{model.path.name}: card names unknown alignment template {name!r}")
        return name
    _, h, w, _ = model.input_shape
    return registered_template_for(h, w) or "arcface112"


def source_key(card: ModelCard | None) -> str | None:
    """Models converted from the same trained model share their card's `source`."""
    src = card.provenance.source if card else None
    return json.dumps(src, sort_keys=True) if src else None


def agreement(models: list[dict], embeddings: dict[str, np.ndarray]) -> None:
    """Per group of the same source: cosine between each member's and the reference's embeddings
    of the same images, and the LFW accuracy delta (reference: the float32 member, else the first)."""
    groups: dict[str, list[dict]] = {}
    for m in models:
        if m.get("_source") and m["_name"] in embeddings:
            groups.setdefault(m["_source"], []).append(m)
    for members in groups.values():
        if len(members) < 2:
            continue
        ref = next((m for m in members if m.get("dtype") == "float32"), members[0])
        e_ref = embeddings[ref["_name"]]
        for m in members:
            if m is ref:
                m["agreement"] = {"reference": ref["_name"], "role": "reference"}
                continue
            e = embeddings[m["_name"]]
            if e.shape != e_ref.shape:
                m["agreement"] = {"reference": ref["_name"], "error": f"embedding shapes differ {e.shape} vs {e_ref.shape}"}
                continue
            cos = np.einsum("ij,ij->i", e, e_ref)
            delta = None
            if m.get("lfw") and ref.get("lfw"):
                delta = m["lfw"]["accuracy"] - ref["lfw"]["accuracy"]
            m["agreement"] = {"reference": ref["_name"], "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
                              "p01_cosine": float(np.percentile(cos, 1)), "images": int(len(cos)),
                              "accuracy_delta": delta}


def expression_data_for(card: ModelCard | None, expr_dirs: list[Path]) -> Path:
    """The --expr-data folder a classifier was made for: the one whose name its card mentions
    (e.g. ckplus48, jaffe, fer2013), else the first given."""
    text = json.dumps(card.to_dict() if card else {})
    for d in expr_dirs:
        if Path(d).name and Path(d).name in text:
            return Path(d)
    return Path(expr_dirs[0])


def run_bench(model_paths: list[Path], lfw_dir: Path | None = None, pairs_file: Path | None = None,
              flip: bool = True, threads=(1, 2), runs: int = 200, warmup: int = 20, e2e_images: int = 20,
              batch: int = 16, expr_data: list[Path] | None = None, plots_dir: Path | None = None,
              command: str = "", align_workers: int = 2, teacher_dir: Path | None = None, repeats: int = 3) -> dict:
    t_start = time.time()
    models = []
    for p in model_paths:
        card = load_card(p)
        entry = {"path": str(p), "_name": Path(p).name, "_source": source_key(card),
                 "task": card.task if card else TASK_EMBEDDING, "dtype": card and card.dtype}
        entry.update(size_report(p))
        models.append(entry)

    faces_needed = [m for m in models if m["task"] != EXPRESSION]
    expr_needed = [m for m in models if m["task"] == EXPRESSION]
    if expr_needed and not expr_data:
        raise EdgefaceError(f"{expr_needed[0]['_name']} is an expression classifier: pass --expr-data DIR")
    evaluate_expr = None
    if expr_needed:
        try:
            from edgeface.bench.classification import evaluate as evaluate_expr
        except ImportError as e:
            raise EdgefaceError(f"{expr_needed[0]['_name']} is an expression classifier but "
                                f"edgeface.bench.classification is not available ({e})") from None

    sample_face = None
    rocs, embeddings, lfw_setup, e2e_raw = {}, {}, None, None
    if lfw_dir is not None and faces_needed:
        from edgeface.bench.lfw import aligned_pairs, default_pairs, raw_images_for_e2e

        pairs_file = Path(pairs_file) if pairs_file else default_pairs(lfw_dir)
        if not pairs_file.is_file():
            raise EdgefaceError(f"pairs file not found: {pairs_file} (pass --pairs FILE)")
        loaded: dict[tuple, np.ndarray] = {}
        resolved: dict[str, tuple] = {}
        for m in faces_needed:
            model = TFLiteModel(m["path"], num_threads=max(threads))
            template = model_template(model)
            if template not in resolved:
                resolved[template] = aligned_pairs(lfw_dir, pairs_file, template, workers=align_workers)
            pairs, aligned_root, raw_root = resolved[template]
            images, index = pairs.index_pairs()
            spec = model_input_spec(model)
            key = (str(aligned_root), spec["height"], spec["width"], spec["gray"])
            if key not in loaded:
                faces, resized = load_faces(images, spec["height"], spec["width"], spec["gray"], desc="read crops")
                if resized:
                    note(f"{resized} crops resized to {spec['width']}x{spec['height']} for {m['_name']}")
                loaded = {key: faces}  # keep one set in RAM (7.7k x 112x112x3 = 290 MB)
            faces = loaded[key]
            t0 = time.time()
            emb = embed_faces(model, faces, flip=flip, batch=batch)
            embed_s = time.time() - t0
            zero = int(np.sum(np.linalg.norm(emb, axis=1) < 0.5))  # unit rows, or 0 for an all-zero output
            if zero:
                note(f"warning: {m['_name']} gave an all-zero embedding for {zero} of {len(images)} faces "
                     "(collapsed quantisation?); their cosine is 0")
            res = evaluate(cosine_scores(emb, index), pairs.labels, pairs.fold_ids)
            far, tar, thr = res.pop("_roc")
            rocs[m["_name"]] = (far, tar, thr)
            res["roc"] = downsample_roc(far, tar, thr)
            res.update({"flip": flip, "template": template, "zero_embeddings": zero, "embed_s": round(embed_s, 2),
                        "embed_ms_per_image": round(1000 * embed_s / len(images), 3), "embed_threads": max(threads)})
            m["lfw"] = res
            embeddings[m["_name"]] = emb
            sample_face = faces[0] if sample_face is None else sample_face
            lfw_setup = {"pairs": str(pairs_file), "aligned_root": str(aligned_root), "n_pairs": len(pairs),
                         "n_folds": pairs.n_folds, "n_images": len(images), "flip": flip}
            if e2e_raw is None:
                e2e_raw = raw_images_for_e2e(pairs_file, raw_root, e2e_images)
        agreement(models, embeddings)

    for m in expr_needed:
        data_dir = expression_data_for(load_card(m["path"]), expr_data)
        note(f"expression accuracy: {m['_name']} on {data_dir}")
        m["expression"] = evaluate_expr(m["path"], data_dir, out_dir=plots_dir, num_threads=int(threads[0]),
                                        latency_runs=0)  # latency is measured below like every model's

    note(f"latency: {len(models)} models" + (" and the ncnn teacher" if teacher_dir is not None else "")
         + f", {repeats} alternating rounds of {runs} runs, threads {','.join(map(str, threads))}")
    timed, teacher_latency = lat.interleaved_latency(
        [(m["path"], sample_face if m["task"] != EXPRESSION else None) for m in models], threads=threads, runs=runs,
        warmup=warmup, repeats=repeats, teacher_dir=teacher_dir, teacher_face=sample_face)
    for m, d in zip(models, timed):
        head = d["per_thread"][str(threads[0])]
        m["latency_ms"] = {"median": head["median"], "p90": head["p90"], "threads": int(threads[0]), **d}
        m["delegate"] = lat.delegate_partitions(m["path"], threads=int(threads[0]))
    if teacher_latency is not None and int(threads[0]) == 1:
        # the reference runtime, timed in the same rounds on the same face: ratios hold across machines
        for m in faces_needed:
            m["speedup_vs_teacher"] = round(teacher_latency["median"] / m["latency_ms"]["median"], 3)

    if e2e_raw:
        detector, detector_name = lat.load_detector()
        for m in faces_needed:
            note(f"end-to-end: {m['_name']} on {len(e2e_raw)} LFW photos with {detector_name.split(' ')[0]}")
            tpl = (m.get("lfw") or {}).get("template", "arcface112")
            m["end_to_end_ms"] = lat.end_to_end_latency(m["path"], e2e_raw, detector, detector_name, template=tpl,
                                                        threads=int(threads[0]), flip=flip)

    for m in models:
        m.setdefault("agreement", None)
        m.setdefault("lfw", None)
    backend = None
    try:
        backend = interpreter_class()[1]
    except EdgefaceError:
        pass
    result = {
        "command": command, "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - t_start, 2),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "interpreter": backend, "cpu": lat.cpu_info()},
        "threads": list(threads), "runs": runs, "repeats": repeats, "warmup": warmup, "lfw_setup": lfw_setup,
        "teacher_latency_ms": teacher_latency,
        "models": [{k: v for k, v in m.items() if not k.startswith("_")} for m in models],
    }
    result["_rocs"] = rocs
    return result


def card_operating_points(points: dict) -> dict:
    """The bench's operating points, rounded for the card."""
    return {name: {k: round(float(v), 6) for k, v in point.items()} for name, point in points.items()}


def update_cards(result: dict) -> list[str]:
    """Write `verification` into each verified model's card, and make every card's paths portable
    (atomically). Returns the cards updated."""
    updated = []
    for m in result["models"]:
        v = m.get("lfw")
        card_file = Path(m["path"]).with_suffix(".json")
        if not card_file.is_file():
            if v:
                note(f"no model card for {m['path']}: --update-cards skipped it")
            continue
        card = load_card_file(card_file)
        if v:
            points = card_operating_points(v["operating_points"])
            card = replace(card, verification=Verification.from_dict({
                "threshold": points["best_accuracy"]["threshold"],  # the default decision (best accuracy)
                "lfw_accuracy": round(v["accuracy"], 6), "std": round(v["std"], 6),
                "auc": round(v["auc"], 6), "tar_at_far_1e-3": round(v["tar_at_far_1e-3"], 6),
                "operating_points": points,
                "flip": v["flip"], "template": v["template"], "pairs": (result.get("lfw_setup") or {}).get("pairs"),
                "command": result["command"], "date": result["date"],
            }, str(card_file)))
        doc = card.to_dict()
        if not v and portable(doc) == doc:
            continue
        write_json_atomic(card_file, portable(doc))
        updated.append(str(card_file))
    return updated
