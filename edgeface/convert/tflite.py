"""Keras model -> .tflite artifacts (float32, float16, int8, dynamic) each with a model card.

Every artifact is checked by loading it in a real TFLite interpreter before it is put in place;
the card's input/output quantisation parameters are read from that interpreter, never assumed.
Files are written atomically (an interrupted convert never leaves a half-written .tflite), and an
artifact over the size budget is kept only as NAME.tflite.over-budget, never as a good NAME.tflite.
"""
from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import CheckFailed, EdgefaceError, first_line
from edgeface.optimize.tflite_bytes import DTYPES, convert_bytes, strip_strings
from edgeface.runtime.interpreter import allocate, card_path, interpreter_class, make_interpreter
from edgeface.spec import (TASK_CLASSIFICATION, TASK_EMBEDDING, InputSpec, ModelCard, Normalization, OutputSpec,
                           Provenance, infer_task)
from edgeface.utils.io import atomic_path, sha256_file, write_json_atomic
from edgeface.utils.paths import portable
from edgeface.utils.progress import progress

OVER_BUDGET_SUFFIX = ".over-budget"


def parse_dtypes(text: str | Sequence[str]) -> tuple[str, ...]:
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in DTYPES]
    if bad or not items:
        raise EdgefaceError(f"unknown dtype(s) {', '.join(bad) or '(none)'}; choose from {', '.join(DTYPES)}")
    return tuple(dict.fromkeys(items))  # keep order, drop repeats


def converter_versions() -> dict:
    out = {}
    for key, dist in (("tensorflow", "tensorflow"), ("tf_keras", "tf-keras"),
                      ("tfmot", "tensorflow-model-optimization")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def model_input_shape(model) -> tuple[int, int, int]:
    """(H, W, C) of a single-input image model."""
    if len(model.inputs) != 1:
        raise EdgefaceError(f"expected a model with one input, {model.name} has {len(model.inputs)}")
    shape = tuple(model.inputs[0].shape[1:])
    if len(shape) != 3 or any(v is None for v in shape):
        raise EdgefaceError(f"expected a fixed (H, W, C) image input, {model.name} has {shape}")
    return tuple(int(v) for v in shape)


def representative_array(representative, input_shape: Sequence[int]) -> np.ndarray:
    """Stack calibration inputs into float32 (N, H, W, C), or fail with one line if the shape is wrong."""
    if isinstance(representative, np.ndarray):
        arr = representative
    else:
        items = [np.asarray(x) for x in representative]
        if not items:
            raise EdgefaceError("calibration data is empty: int8 needs representative images")
        items = [x[0] if x.ndim == len(input_shape) + 1 and x.shape[0] == 1 else x for x in items]
        shapes = {x.shape for x in items}
        if len(shapes) != 1:
            raise EdgefaceError(f"calibration inputs have mixed shapes {sorted(shapes)}; the model expects {list(input_shape)}")
        arr = np.stack(items)
    if arr.ndim == len(input_shape):  # a single example
        arr = arr[None]
    if tuple(arr.shape[1:]) != tuple(input_shape):
        raise EdgefaceError(f"calibration data has input shape {list(arr.shape[1:])} but the model expects {list(input_shape)}")
    if len(arr) == 0:
        raise EdgefaceError("calibration data is empty: int8 needs representative images")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise EdgefaceError("calibration data contains NaN or infinite values")
    return arr


def _quant(detail: dict):
    scale, zp = detail["quantization"]
    if scale == 0.0 and zp == 0:
        return None
    return {"scale": float(scale), "zero_point": int(zp)}


def describe_tflite(data: bytes) -> dict:
    """Load the flatbuffer in a real interpreter and read what the card needs from it."""
    try:
        it, backend = make_interpreter(data)  # quiet: no XNNPACK INFO line in the CLI's output
        allocate(it)
    except (ValueError, RuntimeError) as e:
        raise EdgefaceError(f"converted model does not load in {interpreter_class()[1]}: {first_line(e)}") from None
    ins, outs = it.get_input_details(), it.get_output_details()
    if len(ins) != 1 or len(outs) != 1:
        raise EdgefaceError(f"expected one input and one output, got {len(ins)} and {len(outs)}")

    def io(d):
        return {"shape": [int(v) for v in d["shape"]], "dtype": np.dtype(d["dtype"]).name, "quantization": _quant(d)}
    from edgeface.convert.micro import op_names  # from the flatbuffer: the interpreter's list shows DELEGATE nodes
    return {"input": io(ins[0]), "output": io(outs[0]), "ops": op_names(data), "interpreter": backend}


def build_card(name: str, file: str, dtype: str, path: Path, details: dict, extra: dict,
               budget: int | None) -> ModelCard:
    """The model card of the artifact at `path` (to be published as `file`); `extra` fills what the
    graph cannot tell. Paths in it are portable (repo-relative or names): a card describes the
    model, not the machine."""
    extra = portable(extra)
    task = extra.get("task", TASK_EMBEDDING)
    shape = details["input"]["shape"]
    channels = shape[-1] if len(shape) == 4 else None
    out = details["output"]
    return ModelCard(
        name=name, task=task, file=file, bytes=path.stat().st_size, sha256=sha256_file(path), dtype=dtype,
        input=InputSpec(**details["input"], color=extra.get("color", "GRAY" if channels == 1 else "RGB"),
                        normalization=Normalization(**extra.get("normalization", {})),
                        alignment=extra.get("alignment")),
        output=OutputSpec(**out, l2_normalized=False,  # embeddings are raw: normalise on the host
                          **({"class_names": extra.get("class_names")} if task == TASK_CLASSIFICATION
                             else {"embedding_dim": int(np.prod(out["shape"][1:]))})),
        ops=details["ops"],
        provenance=Provenance(
            source=extra.get("source", {}), training_data=extra.get("training_data"), teacher=extra.get("teacher"),
            calibration=extra.get("calibration") if dtype == "int8" else None,
            converter={**converter_versions(), "interpreter_checked": details["interpreter"],
                       "int8_io": bool(extra.get("int8_io", False)) if dtype == "int8" else None,
                       "per_channel": bool(extra.get("per_channel", True)) if dtype in ("int8", "dynamic") else None,
                       "strings_stripped": bool(extra.get("strings_stripped", False))}),
        budget_bytes=budget,
        license=extra.get("license"),
        extra={k: v for k, v in extra.items() if k in ("optimization", "notes")},
    )


def artifact_paths(out_dir: str | os.PathLike, name: str, dtype: str) -> tuple[Path, Path]:
    tflite = Path(out_dir) / f"{name}_{dtype}.tflite"
    return tflite, card_path(tflite)


def _write_pair(tflite: Path, data: bytes, make_card) -> dict:
    """Write the .tflite and its card so that both appear together or neither does."""
    with atomic_path(tflite) as tmp_model:
        tmp_model.write_bytes(data)
        with open(tmp_model, "rb+") as f:
            os.fsync(f.fileno())
        # The card hashes the final bytes: hash the temp file (same content), name the final path.
        card = make_card(tmp_model).to_dict()
        write_json_atomic(card_path(tflite), card)
    return card


def _set_aside_over_budget(tflite: Path, data: bytes) -> Path:
    """Keep the bytes for inspection under a name no tool mistakes for a good artifact."""
    aside = tflite.with_name(tflite.name + OVER_BUDGET_SUFFIX)
    with atomic_path(aside) as tmp:
        tmp.write_bytes(data)
    # An existing NAME.tflite and its card (maybe the shipped model) stay byte-identical: the
    # failed result never replaces or deletes what was there.
    return aside


def convert_keras(model, out_dir: str | os.PathLike, name: str,
                  dtypes: Iterable[str] = ("float32", "float16", "int8"),
                  representative=None, int8_io: bool = False, card_extra: dict | None = None,
                  budget: int | None = None, per_channel: bool = True) -> list[dict]:
    """Convert `model` to each dtype under out_dir as NAME_DTYPE.tflite + NAME_DTYPE.json.

    representative: float inputs in the model's normalised range ((N, H, W, C) array or an iterable
    of examples), needed for int8 unless the model is quantisation-aware.
    budget: maximum bytes per artifact (None or 0: no limit). Artifacts over it are set aside as
    *.tflite.over-budget and a CheckFailed is raised after the others are written.
    Returns the cards of the artifacts written.
    """
    cards, over = convert_all(model, out_dir, name, dtypes, representative, int8_io, card_extra, budget, per_channel)
    if over:
        raise CheckFailed(over_budget_message(over))
    return cards


def over_budget_message(over: list[str]) -> str:
    return "over the size budget: " + "; ".join(over)


def convert_all(model, out_dir, name, dtypes, representative=None, int8_io=False, card_extra=None,
                budget=None, per_channel=True, converted=None, strip=False) -> tuple[list[dict], list[str]]:
    """convert_keras without the raise: (cards written, one line per artifact over budget).
    converted: {dtype: bytes} already converted from `model` (e.g. by convert --fit), written as they are.
    strip: drop the strings of newly converted files (strip_strings)."""
    converted = converted or {}
    dtypes = parse_dtypes(list(dtypes))
    extra = dict(card_extra or {})
    extra.setdefault("task", infer_task(model))
    extra["int8_io"] = int8_io
    extra["per_channel"] = per_channel
    if strip:
        extra["strings_stripped"] = True
    reps = None
    if "int8" in dtypes and representative is not None:
        reps = representative_array(representative, model_input_shape(model))
    from edgeface.nets.io import is_qat_model

    if "int8" in dtypes and reps is None and not is_qat_model(model) and "int8" not in converted:
        raise EdgefaceError("int8 needs calibration data (representative training images): pass --calib DIR")
    budget = int(budget) if budget else None

    cards, over = [], []
    for dtype in progress(dtypes, total=len(dtypes), desc="convert", unit="model"):
        data = converted.get(dtype)
        if data is None:
            data = convert_bytes(model, dtype, reps, int8_io, per_channel)
            data = strip_strings(data) if strip else data
        details = describe_tflite(data)
        tflite, _ = artifact_paths(out_dir, name, dtype)
        if budget is not None and len(data) > budget:
            aside = _set_aside_over_budget(tflite, data)
            kept = f"; the existing {tflite.name} is unchanged" if tflite.exists() else ""
            over.append(f"{tflite.name} is {len(data):,} bytes > budget {budget:,} (set aside as {aside.name}{kept})")
            continue
        card = _write_pair(tflite, data, lambda tmp, d=dtype, det=details:
                           build_card(tflite.stem, tflite.name, d, tmp, det, extra, budget))
        cards.append(card)
    return cards, over
