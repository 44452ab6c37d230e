"""`edgeface import SRC --out RUN`: a pretrained embedder -> RUN/model.keras + RUN/run.json.

The import is verified on real aligned faces: both the source runtime (ncnn) and the rebuilt
Keras model embed them, and the result is refused when the lowest cosine is under --min-cosine.
`edgeface convert RUN` then treats RUN like a training run (and fits it under --budget).
"""
from __future__ import annotations

import hashlib
import time
from pathlib import Path

import click

from edgeface.errors import CheckFailed, EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION, TASK_EMBEDDING

NCNN_LICENSE = "insightface MobileFaceNet weights (trained on MS1M-ArcFace): non-commercial research use only"


def _ncnn_files(src: Path) -> tuple[Path, Path]:
    if src.is_dir():
        params = sorted(src.glob("*.param"))
        if len(params) != 1:
            raise EdgefaceError(f"{src}: expected one ncnn .param file, found {len(params)}")
        src = params[0]
    if src.suffix != ".param":
        raise EdgefaceError(f"unsupported model format {src.name}: give an ncnn .param file or its folder")
    weights = src.with_suffix(".bin")
    if not src.is_file() or not weights.is_file():
        raise EdgefaceError(f"ncnn model needs both {src.name} and {weights.name}")
    return src, weights


def verification_faces(faces_dir: Path, count: int, size: int):
    """Up to `count` aligned uint8 RGB crops of size x size from `faces_dir` (fixed-seed sample)."""
    import numpy as np

    from edgeface.data.calibration import list_images, refuse_lfw, sample_files
    from edgeface.utils.images import read_image

    refuse_lfw(faces_dir)
    # crops live in <identity>/ folders; `edgeface align` also leaves a summary picture at the top
    listed = list_images(faces_dir)
    found = [f for f in listed if f.parent != Path(faces_dir)] or listed
    files = sample_files(found, count)
    crops = [read_image(f) for f in files]
    bad = [f.name for f, c in zip(files, crops) if c.shape != (size, size, 3)]
    if bad:
        raise EdgefaceError(f"verification faces must be aligned {size}x{size} RGB crops (edgeface align); "
                            f"{bad[0]} is not")
    return np.stack(crops), files


def expression_images(data_dir: Path, count: int, card):
    """Up to `count` training images of an expression data set (class folders; FER2013 layout: its
    train/ only), preprocessed as the classifier's card says (size, channels, CLAHE): uint8 arrays."""
    from edgeface.data import expressions as xdata
    from edgeface.data.calibration import sample_files

    size, _ = card.input.size
    channels = int(card.input.shape[-1])
    _, prep = card.split_and_preprocessing()
    data = xdata.load_dataset(data_dir)
    by_path = {s.path: s for s in data.splits["train"]}
    files = sample_files(sorted(by_path), count)
    x, _ = xdata.load_images([by_path[f] for f in files], size, channels, bool(prep.get("clahe")), "import images")
    return x, files


@click.command("import")
@click.argument("src", type=click.Path(path_type=Path, exists=True))  # ncnn folder/.param, or an edgeface .tflite
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Run folder to write (model.keras + run.json).")
@click.option("--faces", "faces_dir", type=click.Path(path_type=Path), default=None,
              help="Aligned 112x112 training faces to verify on (and, later, to calibrate and fine-tune on). "
                   "Never LFW. [default: the aligned CelebA crops in cache/celeba/arcface112]")
@click.option("--count", type=click.IntRange(min=2), default=50, show_default=True, help="Faces to verify on.")
@click.option("--min-cosine", type=click.FloatRange(0.0, 1.0), default=0.999, show_default=True,
              help="Refuse the import if any face's cosine between source and Keras embeddings is lower.")
@click.option("--input-size", type=click.IntRange(min=16), default=112, show_default=True)
@click.option("--mean", type=float, default=PIXEL_MEAN, show_default=True, help="Pixel mean of the project's normalisation.")
@click.option("--std", type=float, default=PIXEL_STD, show_default=True, help="Pixel std of the project's normalisation.")
@click.option("--license", "license_text", default=NCNN_LICENSE, show_default=False,
              help="The source weights' licence, carried into every card [default: insightface's research-only terms].")
def import_model(src, out_dir, faces_dir, count, min_cosine, input_size, mean, std, license_text):
    """Import a face embedder (ncnn .param/.bin, or an edgeface .tflite with its card) as a verified Keras run."""
    faces_dir = faces_dir or Path("cache/celeba/arcface112")
    if not Path(faces_dir).is_dir():
        raise EdgefaceError(f"verification faces not found: {faces_dir} (align some training faces with "
                            "`edgeface align SRC DST` and pass --faces DST)")
    if (out_dir / "model.keras").exists():
        raise EdgefaceError(f"{out_dir} already holds a model.keras: choose a new --out")
    if Path(src).suffix == ".tflite":
        return _import_tflite(Path(src), out_dir, Path(faces_dir), count, min_cosine)
    param, weights = _ncnn_files(src)
    crops, files = verification_faces(Path(faces_dir), count, input_size)
    _import_ncnn(param, weights, out_dir, Path(faces_dir), crops, files, min_cosine, input_size, mean, std,
                 license_text)


def _import_ncnn(param, weights, out_dir, faces_dir, crops, files, min_cosine, input_size, mean, std, license_text):
    import numpy as np

    t0 = time.perf_counter()
    from edgeface.importers.ncnn import load_ncnn
    from edgeface.teachers.base import NcnnTeacher

    model, layers = load_ncnn(param, weights, input_size, mean, std)
    ref = NcnnTeacher(param, weights).embed(crops)
    digest = hashlib.sha256(param.read_bytes() + weights.read_bytes()).hexdigest()
    run = {
        "task": TASK_EMBEDDING,
        "kind": "imported",
        "status": "done",
        "input": {"size": input_size, "color": "RGB", "normalization": {"mean": mean, "std": std}},
        "alignment": "arcface112" if input_size == 112 else None,
        "data": {"dir": str(faces_dir)},
        "source": {"format": "ncnn", "param": param.name, "weights": weights.name, "sha256": digest,
                   "layers": len(layers)},
        "model": {"name": "imported-ncnn"},
        "license": license_text,
    }
    cos = _verify_and_save(model, (crops.astype(np.float32) - mean) / std, ref, files, min_cosine, "ncnn",
                           out_dir, faces_dir, run, t0)
    click.echo(f"{out_dir}/model.keras: {run['model']['params']:,} parameters, {len(layers)} ncnn layers; "
               f"cosine to ncnn on {len(cos)} faces: min {cos.min():.6f}, mean {cos.mean():.6f}")


def check_agreement(model, x, ref, files, bar: float, what: str):
    """Per-face cosine between `model` on inputs x and the source's own unit embeddings `ref`;
    CheckFailed naming the worst face unless every one reaches `bar` (every importer's rule)."""
    import numpy as np

    got = np.asarray(model(x[:len(ref)], training=False), np.float64)
    got /= np.maximum(np.linalg.norm(got, axis=1, keepdims=True), 1e-12)
    cos = np.sum(ref * got, axis=1)
    if float(cos.min()) < bar:
        raise CheckFailed(f"import refused: lowest cosine to {what} on {len(cos)} faces is {cos.min():.6f} "
                          f"< {bar} ({files[int(cos.argmin())].name})")
    return cos


def _verify_and_save(model, x, ref, files, bar: float, what: str, out_dir: Path, faces_dir: Path, run: dict,
                     t0: float):
    """Refuse (CheckFailed) unless every face's cosine to the source's own embedding reaches `bar`;
    then write model.keras and run.json (with the verification). Returns the cosines."""
    from edgeface.nets import save_model
    from edgeface.utils.io import write_json_atomic

    cos = check_agreement(model, x, ref, files, bar, what)
    run["model"].update(params=int(model.count_params()), embedding_dim=int(model.output_shape[-1]))
    run["verification"] = {"faces": len(cos), "faces_dir": str(faces_dir), "min_cosine": float(cos.min()),
                           "mean_cosine": float(cos.mean()), "threshold": bar}
    run["seconds"] = round(time.perf_counter() - t0, 1)
    save_model(model, out_dir / "model.keras")
    write_json_atomic(out_dir / "run.json", run)
    return cos


# int8 files lose up to a few hundredths of cosine to quantisation; the recovered float model is
# compared with the file's own (dequantised) output, so the bar is the quantisation noise.
INT8_MIN_COSINE = 0.95
BN_STAT_FACES = 256


def _import_tflite(src: Path, out_dir: Path, faces_dir: Path, count: int, min_cosine: float) -> None:
    """An edgeface .tflite back to a trainable Keras model: to continue training or re-convert a
    shipped model whose run folder is gone. A card naming a registered architecture rebuilds it and
    loads the file's weights (edgeface.importers.tflite, int8 dequantised); any other float file
    (e.g. the pruned ncnn import) is rebuilt op by op from its graph (edgeface.importers.tflite_graph)."""
    import numpy as np

    from edgeface.nets import list_models
    from edgeface.spec import Normalization, load_card
    from edgeface.teachers.base import TFLiteTeacher

    card = load_card(src)
    if card is None:
        raise EdgefaceError(f"{src.name}: no model card beside it: only edgeface files can be imported back")
    arch = (card.provenance.source or {}).get("model") or {}
    registered = arch.get("name") in list_models()
    size, _ = card.input.size
    norm = card.input.normalization or Normalization()
    wanted = max(count, BN_STAT_FACES) if registered else count
    if card.task == TASK_CLASSIFICATION:
        crops, files = expression_images(faces_dir, wanted, card)
    else:
        crops, files = verification_faces(faces_dir, wanted, size)
    x = (crops.astype(np.float32) - norm.mean) / norm.std
    t0 = time.perf_counter()
    if registered:
        from edgeface.importers.tflite import load_tflite_dense, load_tflite_weights
        from edgeface.nets import get_model

        model = get_model(arch["name"], **arch.get("kwargs", {}))
        detail = {"convolutions": load_tflite_weights(model, src, x), "dense": load_tflite_dense(model, src)}
        kind, model_entry = "recovered", {"name": arch["name"], "kwargs": arch.get("kwargs", {})}
        bar = min(min_cosine, INT8_MIN_COSINE) if card.dtype == "int8" else min_cosine
    else:
        from edgeface.importers.tflite_graph import count_prelu_splits, import_tflite_graph

        model = import_tflite_graph(src)  # one-line EdgefaceError for int8 files and unsupported ops
        detail = {"layers": len(model.layers), "prelu_splits": count_prelu_splits(src)}
        # "imported": convert treats it like the ncnn import (equalise, rewrite PReLU, fit the budget)
        kind, model_entry, bar = "imported", {"name": "imported-tflite-graph"}, min_cosine
    if card.task == TASK_CLASSIFICATION:  # class probabilities, compared by cosine like embeddings
        from edgeface.runtime.interpreter import TFLiteModel, l2_normalize

        ref = l2_normalize(TFLiteModel(src).run((crops[:count].astype(np.float32) - norm.mean) / norm.std))
    else:
        ref = TFLiteTeacher(src).embed(crops[:count])
    run = {
        "task": card.task,
        "kind": kind,
        "status": "done",
        "input": {"size": size, "color": card.input.color or "RGB", "normalization": norm.to_dict()},
        "alignment": card.input.alignment,
        "data": {"dir": str(faces_dir)},
        "source": {"format": "tflite" if registered else "tflite-graph", "file": src.name, "dtype": card.dtype,
                   "sha256": hashlib.sha256(src.read_bytes()).hexdigest(), **detail,
                   "card_source": card.provenance.source},
        "model": model_entry,
        "license": card.license or "",
        # what the file was made from travels on: convert writes it into the new cards
        "teacher": card.provenance.teacher,
        "training_data": card.provenance.training_data,
    }
    cos = _verify_and_save(model, x[:count], ref, files[:count], bar, src.name, out_dir, faces_dir, run, t0)
    what = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in detail.items())
    click.echo(f"{out_dir}/model.keras: {model_entry['name']}, {run['model']['params']:,} parameters, {what} "
               f"from {src.name}; cosine to the file on {len(cos)} faces: min {cos.min():.6f}, mean {cos.mean():.6f}")
