"""Expression-classifier benchmark: accuracy, per-class recall, confusion matrix (+ PNG), latency.

Runs the .tflite artifact itself through `TFLiteModel` (the on-device path, int8 handled there),
rebuilding the exact split and preprocessing the model card records. No TensorFlow needed.

    from edgeface.bench.classification import evaluate
    r = evaluate("models/edgeface_expr_cnn_int8.tflite", "../shared/data/expressions/ckplus48")
"""
from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLiteModel
from edgeface.runtime.tta import average as tta_average, check_mode
from edgeface.spec import TASK_CLASSIFICATION, Normalization, card_split_and_preprocessing
from edgeface.utils.plots import save_figure
from edgeface.utils.progress import progress


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int) -> np.ndarray:
    cm = np.zeros((n, n), np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def plot_confusion(cm: np.ndarray, class_names: list[str], title: str, path: str | os.PathLike,
                   pred_names: list[str] | None = None) -> Path:
    """Row-normalised confusion matrix (recall per true class) with counts, as a PNG. pred_names:
    the predicted classes when they differ from the true ones (a model tested on another data set)."""
    pred_names = pred_names or class_names
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = cm.sum(1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, float), where=rows > 0)
    fig, ax = plt.subplots(figsize=(1.0 + 0.75 * len(pred_names), 0.8 + 0.7 * len(class_names)))
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(pred_names)), pred_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, f"{cm[i, j]}", ha="center", va="center", fontsize=8,
                    color="white" if norm[i, j] > 0.6 else "black")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _recalls(cm: np.ndarray, class_names: list[str]) -> dict:
    """Per-class recall (None for a class with no test image) and its mean, the balanced accuracy."""
    support = cm.sum(1)
    recall = {name: (float(cm[i, i] / support[i]) if support[i] else None) for i, name in enumerate(class_names)}
    valid = [r for r in recall.values() if r is not None]
    return {"balanced_accuracy": float(np.mean(valid)) if valid else None, "per_class_recall": recall}


def latency_ms(model: TFLiteModel, x: np.ndarray, runs: int = 50, warmup: int = 5) -> float:
    """Median single-image invoke time in milliseconds."""
    from edgeface.bench.latency import time_invocations

    return float(statistics.median(time_invocations(model, x, runs, warmup))) * 1e3


@dataclass
class Split:
    """One split of an expression data set, read and preprocessed as a classifier's card says."""
    model: TFLiteModel
    data: xdata.ExpressionData
    x: np.ndarray  # (N, S, S, C) float32, normalised as the card says
    y: np.ndarray  # (N,) class indices
    clahe: bool


def load_split(model_path: str | os.PathLike, data_dir: str | os.PathLike, split: str = "test", *,
               num_threads: int = 1, limit: int | None = None, dataset: str | None = None,
               seed: int | None = None, clahe: bool | None = None) -> Split:
    """The model and the split of `data_dir` it is evaluated on (see `evaluate` for the arguments)."""
    if split not in xdata.SPLITS:
        raise EdgefaceError(f"split must be one of {', '.join(xdata.SPLITS)}, got {split!r}")
    model = TFLiteModel(model_path, num_threads=num_threads)
    card = model.model_card
    if card and card.task != TASK_CLASSIFICATION:
        raise EdgefaceError(f"{model_path} is a {card.task} model, not an expression classifier")
    spec, pre = card_split_and_preprocessing(card)
    kind = dataset or "auto"
    if kind == "auto" and spec.get("kind") and xdata.detect_kind(Path(data_dir)) in (spec["kind"], "folder"):
        kind = spec["kind"]
    data = xdata.load_dataset(data_dir, kind=kind, seed=spec.get("seed", 0) if seed is None else seed,
                              val_fraction=spec.get("val_fraction", 0.1), test_fraction=spec.get("test_fraction", 0.1),
                              split_by=spec.get("split_by") if spec.get("split_by") in ("subject", "stratified") else None)
    names = card and card.class_names
    if names is not None and names != data.class_names:
        raise EdgefaceError(f"{Path(model_path).name} predicts {names}, but {data_dir} has classes {data.class_names}")
    n_out = int(model.output["shape"][-1])
    if n_out != len(data.class_names):
        raise EdgefaceError(f"{Path(model_path).name} has {n_out} outputs; {data_dir} has {len(data.class_names)} classes")
    samples = data.splits[split]
    if limit is not None:
        taken: dict[int, int] = {}
        kept = []
        for s in samples:
            if taken.get(s.label, 0) < limit:
                taken[s.label] = taken.get(s.label, 0) + 1
                kept.append(s)
        samples = kept
    if not samples:
        raise EdgefaceError(f"the {split} split of {data_dir} is empty")

    _, h, w, c = model.input_shape
    if h != w:
        raise EdgefaceError(f"expected a square input, {Path(model_path).name} takes {h}x{w}")
    use_clahe = bool(pre.get("clahe", True)) if clahe is None else clahe
    norm = card.input.normalization if card and card.input.normalization else Normalization()
    x, y = xdata.load_images(samples, h, c, use_clahe, desc=f"{split} images")
    xf = (x.astype(np.float32) - float(norm.mean)) / float(norm.std)
    return Split(model, data, xf, y, use_clahe)


def run_batches(model: TFLiteModel, x: np.ndarray, batch_size: int = 64, desc: str | None = None) -> np.ndarray:
    """The model's outputs on x, `batch_size` inputs an interpreter call (a progress bar with `desc`)."""
    starts = range(0, len(x), batch_size)
    if desc:
        starts = progress(starts, total=len(starts), desc=desc, unit="batch")
    return np.concatenate([model.run(x[i:i + batch_size]) for i in starts])


def evaluate(model_path: str | os.PathLike, data_dir: str | os.PathLike, split: str = "test", *,
             out_dir: str | os.PathLike | None = None, num_threads: int = 1, batch_size: int = 64,
             latency_runs: int = 50, limit: int | None = None, dataset: str | None = None,
             seed: int | None = None, clahe: bool | None = None, tta: tuple[str, ...] = ("flip", "ten")) -> dict:
    """Accuracy of an expression .tflite on a split of `data_dir`.

    The split (kind, seed, fractions, split_by) and the preprocessing (CLAHE, gray->RGB, pixel
    normalisation) come from the model card, so the test split is exactly the one the training run
    held out; `dataset`, `seed`, `clahe` override them. `limit` takes the first N images per class
    (quick checks). `out_dir` gets `<model>_<split>_confusion.png`. Each `tta` mode
    (edgeface.runtime.tta: "flip", "ten") is also reported, under "tta", beside the plain numbers.
    """
    sp = load_split(model_path, data_dir, split, num_threads=num_threads, limit=limit, dataset=dataset, seed=seed,
                    clahe=clahe)
    model, data, xf, y = sp.model, sp.data, sp.x, sp.y
    card = model.model_card

    def predict(xs: np.ndarray, desc: str | None = None) -> np.ndarray:
        return run_batches(model, xs, batch_size, desc)

    pred = predict(xf, "tflite").argmax(1)
    n = len(data.class_names)
    cm = confusion_matrix(y, pred, n)
    augmented = {}
    for mode in tta:  # reported beside the plain numbers, never instead of them
        cm_t = confusion_matrix(y, tta_average(predict, xf, check_mode(mode)).argmax(1), n)
        augmented[mode] = {"accuracy": float(np.trace(cm_t) / len(y)), **_recalls(cm_t, data.class_names),
                           "confusion": cm_t.tolist()}
    result = {
        "model": str(model_path),
        "dtype": card and card.dtype,
        "bytes": Path(model_path).stat().st_size,
        "data_dir": str(data_dir),
        "split": split,
        "split_spec": data.split_spec,
        "clahe": sp.clahe,
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()),
        **_recalls(cm, data.class_names),
        "class_names": data.class_names,
        "confusion": cm.tolist(),
        "tta": augmented,
        "latency_ms_median": latency_ms(model, xf[0], runs=latency_runs) if latency_runs > 0 else None,
        "num_threads": num_threads,
        "interpreter": model.backend,
    }
    if out_dir is not None:
        png = Path(out_dir) / f"{Path(model_path).stem}_{split}_confusion.png"
        plot_confusion(cm, data.class_names, f"{Path(model_path).name} on {Path(data_dir).name}/{split}: "
                                             f"acc {result['accuracy']:.3f} (n={len(y)})", png)
        result["confusion_png"] = str(png)
    return result


# One name per expression across data sets (FER2013 says angry/sad, CK+ and JAFFE anger/sadness).
SAME_EXPRESSION = {"angry": "anger", "sadness": "sad"}


def canonical_expression(name: str) -> str:
    return SAME_EXPRESSION.get(name.lower(), name.lower())


def cross_dataset(model_path: str | os.PathLike, data_dir: str | os.PathLike, *, num_threads: int = 1,
                  out_dir: str | os.PathLike | None = None, limit: int | None = None) -> dict:
    """A classifier on every image of another data set's class folders, the way a deployed model
    meets it: the runtime's MTCNN finds the face, the card's preprocessing crops it (the photo's main
    face counts, as `align` picks it: largest and most central; a photo without a face counts as
    wrong). Accuracy is over the classes the model and the data set share (names matched by
    canonical_expression); the others are listed."""
    from edgeface.align.faces import pick_main_face
    from edgeface.runtime.expression import ExpressionPipeline
    from edgeface.utils.images import is_image_name

    data_dir = Path(data_dir)
    folders = sorted(d for d in data_dir.iterdir() if d.is_dir()) if data_dir.is_dir() else []
    if not folders:
        raise EdgefaceError(f"{data_dir}: no class folders")
    pipe = ExpressionPipeline(model_path, num_threads=num_threads)
    model_names = list(pipe.classifier.class_names)
    model_index = {canonical_expression(n): i for i, n in enumerate(model_names)}
    true_names = [d.name for d in folders]
    shared = [n for n in true_names if canonical_expression(n) in model_index]
    if not shared:
        raise EdgefaceError(f"{Path(model_path).name} predicts {model_names}: no class of {data_dir} among them")
    items = [(i, f) for i, d in enumerate(folders) for f in sorted(p for p in d.iterdir() if is_image_name(p))[:limit]]
    cm = np.zeros((len(true_names), len(model_names) + 1), np.int64)  # last column: no face found
    for label, path in progress(items, total=len(items), desc=f"{Path(model_path).stem} on {data_dir.name}",
                                unit="img"):
        rgb = pipe.read(path)
        found = pipe.analyse(rgb)
        main = pick_main_face([fx.face for fx in found], rgb.shape)
        col = -1 if main is None else next(fx.index for fx in found if fx.face is main)
        cm[label, col] += 1
    # each scored JAFFE row -> the model's column of the same expression
    target = {i: model_index[canonical_expression(n)] for i, n in enumerate(true_names) if n in shared}
    correct = sum(int(cm[i, j]) for i, j in target.items())
    n = int(cm[list(target)].sum())
    recall = {true_names[i]: float(cm[i, j] / cm[i].sum()) for i, j in target.items() if cm[i].sum()}
    result = {"model": str(model_path), "bytes": Path(model_path).stat().st_size, "data_dir": str(data_dir),
              "protocol": ("every image; runtime MTCNN + the card's crop and preprocessing; "
                           "the main face (largest, most central)"),
              "n": n, "accuracy": correct / n if n else None,
              "balanced_accuracy": float(np.mean(list(recall.values()))) if recall else None,
              "per_class_recall": recall, "shared_classes": shared,
              "unscored_classes": [t for t in true_names if t not in shared],
              "model_classes_absent": [m for m in model_names if canonical_expression(m) not in
                                       {canonical_expression(t) for t in true_names}],
              "no_face": int(cm[:, -1].sum()), "true_names": true_names, "pred_names": model_names + ["no face"],
              "confusion": cm.tolist(), "interpreter": pipe.classifier.model.backend}
    if out_dir is not None:
        png = Path(out_dir) / f"{Path(model_path).stem}_on_{data_dir.name}_confusion.png"
        plot_confusion(cm, true_names, f"{Path(model_path).name} on all of {data_dir.name}: acc "
                                       f"{result['accuracy']:.3f} over {len(shared)} shared classes (n={n})", png,
                       pred_names=result["pred_names"])
        result["confusion_png"] = str(png)
    return result


def plot_accuracy_bars(rows: list[dict], title: str, path: str | os.PathLike) -> Path:
    """Accuracy per model (x) and dtype (bars), size in KB on top of each bar."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["label"] for r in rows))
    dtypes = [d for d in ("float32", "float16", "int8", "dynamic") if any(r["dtype"] == d for r in rows)]
    width = 0.8 / max(1, len(dtypes))
    fig, ax = plt.subplots(figsize=(1.6 + 1.6 * len(models), 3.6))
    for k, d in enumerate(dtypes):
        for i, m in enumerate(models):
            r = next((r for r in rows if r["label"] == m and r["dtype"] == d), None)
            if r is None:
                continue
            xpos = i + (k - (len(dtypes) - 1) / 2) * width
            ax.bar(xpos, 100 * r["accuracy"], width, color=f"C{k}", label=d if i == 0 else None)
            ax.text(xpos, 100 * r["accuracy"] + 0.5, f"{r['bytes'] / 1024:.0f}K", ha="center", fontsize=7, rotation=90)
    ax.set_xticks(range(len(models)), models)
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 110)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _main():
    """python -m edgeface.bench.classification MODEL.tflite... --data DIR --out DIR [--split test]"""
    import click

    from edgeface.utils.io import write_json_atomic

    @click.command()
    @click.argument("models", nargs=-1, required=True, type=click.Path(path_type=Path))
    @click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path))
    @click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path))
    @click.option("--split", default="test", type=click.Choice(xdata.SPLITS))
    @click.option("--name", default="results", help="Base name of the JSON and the bar chart.")
    @click.option("--threads", default=1, type=int)
    def cmd(models, data_dir, out_dir, split, name, threads):
        rows = []
        for m in models:
            t0 = time.time()
            r = evaluate(m, data_dir, split, out_dir=out_dir, num_threads=threads)
            r["label"] = Path(m).stem.rsplit("_", 1)[0].replace("edgeface_expr_", "")
            r["seconds"] = round(time.time() - t0, 1)
            rows.append(r)
            click.echo(f"{Path(m).name}: acc {r['accuracy']:.4f} (n={r['n']}), {r['bytes']} bytes, "
                       f"{r['latency_ms_median']:.2f} ms")
        write_json_atomic(Path(out_dir) / f"{name}.json", rows)
        plot_accuracy_bars(rows, f"{Path(data_dir).name} / {split}", Path(out_dir) / f"{name}.png")

    try:
        cmd.main(standalone_mode=False)
    except EdgefaceError as e:
        click.echo(f"edgeface: error: {e}", err=True)
        raise SystemExit(e.exit_code)


if __name__ == "__main__":
    _main()
