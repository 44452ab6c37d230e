"""Latency: single-face embed time per thread count, and end-to-end time per image.

Embed: one input (batch 1) through `TFLiteModel.run_one` (quantise + invoke + dequantise, what an
app pays per face), warm-up runs first, then median and p90 over N timed runs.
End-to-end: decode JPEG bytes + detect + pick the main face + align + embed (x2 with flip TTA).
The detector is the TF-free `edgeface.runtime.detector.Detector` when present (what devices run),
else the TensorFlow MTCNN; the result names which one.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from edgeface.runtime.interpreter import TFLiteModel


# CPU features that give int8 a dot-product instruction; without one, XNNPACK's int8 kernels run
# about as fast as its float32 ones, so int8-vs-float speed ratios depend on the CPU (benchmarks/compression.md).
INT8_DOT_FEATURES = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


def parse_cpuinfo(text: str) -> dict:
    """{"model", "int8_dot_product", "int8_features"} from the text of Linux's /proc/cpuinfo (x86 or Arm)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    board = fields.get("model", "")  # a board name on a Raspberry Pi; a bare number on x86
    model = ((board if board and not board.isdigit() else "") or fields.get("model name")
             or fields.get("hardware") or fields.get("cpu part") or "")
    found = [f for f in INT8_DOT_FEATURES if f in flags]
    return {"model": model, "int8_dot_product": bool(found) if flags else None, "int8_features": found}


def cpu_info() -> dict:
    """This machine's CPU model and whether it has int8 dot-product instructions (None: not known here)."""
    import platform

    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:
        return {"model": platform.processor(), "int8_dot_product": None, "int8_features": []}


def describe_cpu(info: dict) -> str:
    """One line for reports: 'AMD EPYC, int8 dot product: no'."""
    dot = info.get("int8_dot_product")
    has = "unknown" if dot is None else ("yes (" + ", ".join(info.get("int8_features") or []) + ")" if dot else "no")
    return f"{info.get('model') or 'unknown CPU'}, int8 dot product: {has}"


def summarise_ms(seconds: list[float]) -> dict:
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {"median": round(float(np.median(ms)), 4), "p90": round(float(np.percentile(ms, 90)), 4),
            "mean": round(float(ms.mean()), 4), "min": round(float(ms.min()), 4), "runs": int(len(ms))}


def time_calls(fn, runs: int, warmup: int) -> list[float]:
    """Seconds per call of `fn()`, after `warmup` untimed calls (caches, XNNPACK packing)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def time_invocations(model: TFLiteModel, x: np.ndarray, runs: int, warmup: int) -> list[float]:
    """Seconds per single-example invoke (quantise + invoke + dequantise)."""
    return time_calls(lambda: model.run_one(x), runs, warmup)


def sample_input(model: TFLiteModel, face: np.ndarray | None = None) -> np.ndarray:
    """A real normalised face when we have one (int8 paths can depend on value ranges), else noise."""
    from edgeface.bench.embed import model_input_spec

    spec = model_input_spec(model)
    shape = (spec["height"], spec["width"], spec["channels"])
    if face is not None and face.shape == shape:
        return (face.astype(np.float32) - spec["mean"]) / spec["std"]
    return np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)


def embed_latency(model_path: str | os.PathLike, threads=(1, 2), runs: int = 200, warmup: int = 20,
                  face: np.ndarray | None = None) -> dict:
    """{"per_thread": {"1": {median, p90, ...}, ...}, "backend": ...}."""
    per_thread, backend = {}, None
    for t in threads:
        model = TFLiteModel(model_path, num_threads=int(t))
        backend = model.backend
        x = sample_input(model, face)
        per_thread[str(t)] = summarise_ms(time_invocations(model, x, runs, warmup))
    return {"per_thread": per_thread, "backend": backend, "warmup": warmup}


def load_detector():
    """(detector, name): the TF-free runtime detector if it is importable, else the TF MTCNN."""
    try:
        from edgeface.runtime.detector import Detector

        return Detector(), "edgeface.runtime.detector.Detector (TFLite MTCNN, TF-free)"
    except ImportError:
        from edgeface.align.detect import MTCNNDetector

        return MTCNNDetector(), "edgeface.align.detect.MTCNNDetector (TensorFlow mtcnn)"


def end_to_end_latency(model_path: str | os.PathLike, image_paths: list[Path], detector, detector_name: str,
                       template: str = "arcface112", threads: int = 1, flip: bool = True,
                       warmup: int = 2) -> dict:
    """Per-image time of decode + detect + align + embed on real photos (file bytes already in RAM)."""
    from edgeface.align.faces import pick_main_face
    from edgeface.align.transform import align_face, centre_crop, get_template
    from edgeface.bench.embed import model_input_spec
    from edgeface.utils.images import decode_image

    model = TFLiteModel(model_path, num_threads=threads)
    spec = model_input_spec(model)
    tpl = get_template(template)
    blobs = [Path(p).read_bytes() for p in image_paths]
    no_face = 0

    def one(data: bytes) -> bool:
        rgb = decode_image(data)
        face = pick_main_face(detector.detect(rgb), rgb.shape)
        crop = align_face(rgb, face.landmarks, tpl) if face is not None else centre_crop(rgb, tpl)
        if crop.shape[:2] != (spec["height"], spec["width"]):
            import cv2
            crop = cv2.resize(crop, (spec["width"], spec["height"]), interpolation=cv2.INTER_AREA)
        if spec["gray"]:
            import cv2
            crop = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)[..., None]
        x = (crop.astype(np.float32) - spec["mean"]) / spec["std"]
        e = model.run_one(x)
        if flip:
            e = e + model.run_one(x[:, ::-1])
        return face is not None

    for data in blobs[:warmup]:
        one(data)
    times = []
    for data in blobs:
        t0 = time.perf_counter()
        found = one(data)
        times.append(time.perf_counter() - t0)
        no_face += not found
    res = summarise_ms(times)
    res.update({"images": len(blobs), "no_face": no_face, "detector": detector_name, "threads": threads,
                "embeds_per_face": 2 if flip else 1, "template": template})
    return res


def delegate_partitions(model_path: str | os.PathLike, threads: int = 1) -> dict:
    """How the interpreter runs the graph: delegate partitions and the ops left on TFLite kernels.

    One partition means XNNPACK runs the whole graph; an op it refuses (int8 PRELU, say) splits the
    graph at every use and each switch costs time.
    """
    model = TFLiteModel(model_path, num_threads=threads)
    ops = model.interpreter._get_ops_details()
    names = [o["op_name"] for o in ops]
    return {"partitions": names.count("DELEGATE"), "nodes": len(names) - names.count("DELEGATE")}


def ncnn_latency(teacher_dir: str | os.PathLike, face: np.ndarray | None, runs: int = 200, warmup: int = 20) -> dict:
    """Single-face time of an ncnn embedder on one thread (Mat from pixels + extract), side by side."""
    from edgeface.teachers import load_teacher

    teacher = load_teacher(teacher_dir, num_threads=1)
    crop = face if face is not None and face.shape == (112, 112, 3) else np.full((112, 112, 3), 128, np.uint8)
    batch = np.ascontiguousarray(crop[None].astype(np.uint8))
    times = time_calls(lambda: teacher.embed(batch), runs, warmup)
    return {"name": teacher.name, "path": str(teacher_dir), "threads": 1, **summarise_ms(times)}


def middle_round(rounds: list[dict]) -> dict:
    """Of several timing rounds' summaries, the one whose median is the median of theirs (its p90 and
    mean stay consistent with it), with every round's median beside it."""
    ordered = sorted(rounds, key=lambda r: r["median"])
    return {**ordered[(len(ordered) - 1) // 2], "round_medians": [r["median"] for r in rounds]}


def interleaved_latency(items: list[tuple[str, np.ndarray | None]], threads=(1, 2), runs: int = 200,
                        warmup: int = 20, repeats: int = 3, teacher_dir=None, teacher_face=None
                        ) -> tuple[list[dict], dict | None]:
    """embed_latency of each (model path, face) and the ncnn teacher's, timed in `repeats` rounds that
    alternate between them, so a load spike on the machine hits every model alike rather than one; each
    reports its middle round (`middle_round`)."""
    rounds: list[list[dict]] = [[] for _ in items]
    teacher_rounds: list[dict] = []
    for _ in range(max(1, int(repeats))):
        for i, (path, face) in enumerate(items):
            rounds[i].append(embed_latency(path, threads=threads, runs=runs, warmup=warmup, face=face))
        if teacher_dir is not None:
            teacher_rounds.append(ncnn_latency(teacher_dir, teacher_face, runs=runs, warmup=warmup))
    results = [{"per_thread": {t: middle_round([r["per_thread"][t] for r in per_model]) for t in per_model[0]["per_thread"]},
                "backend": per_model[0]["backend"], "warmup": warmup, "rounds": len(per_model)}
               for per_model in rounds]
    return results, (middle_round(teacher_rounds) if teacher_rounds else None)


def side_by_side(paths, teacher_dir=None, repeats: int = 3, runs: int = 200, warmup: int = 20
                 ) -> tuple[dict[str, float], float | None]:
    """(median single-face ms per .tflite file, the ncnn teacher's or None), one thread, from
    `interleaved_latency`: ratios between them hold where absolute times do not."""
    timed, teacher = interleaved_latency([(str(p), None) for p in paths], threads=(1,), runs=runs, warmup=warmup,
                                         repeats=repeats, teacher_dir=teacher_dir)
    return ({str(p): d["per_thread"]["1"]["median"] for p, d in zip(paths, timed)},
            teacher["median"] if teacher else None)
