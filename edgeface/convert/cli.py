"""`edgeface convert MODEL` and `edgeface info MODEL.tflite`.

convert: a training run directory (run.json + model.keras) or a Keras file -> NAME_DTYPE.tflite +
NAME_DTYPE.json for each dtype, optionally pruned / QAT fine-tuned first, optionally with a TFLite
Micro C array. Calibration and fine-tune images are *training* faces (never LFW).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import click

from edgeface.errors import CheckFailed, EdgefaceError
from edgeface.optimize.compress import PRELU_FORMS, RANKS
from edgeface.optimize.finetune import FINETUNE_IMAGES, FINETUNE_STEPS
from edgeface.spec import TASK_CLASSIFICATION, TASK_EMBEDDING, TTA_MODES
from edgeface.utils.paths import output_path

DEFAULT_FACE_BUDGET = 1_000_000
MICRO_DTYPES = ("int8", "float32")  # TFLM has no float16 weights and no hybrid (dynamic-range) kernels


@click.command("convert")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path, file_okay=False), callback=output_path,
              help="Output folder for NAME_DTYPE.tflite + NAME_DTYPE.json.")
@click.option("--name", default=None, help="Artifact base name [default: the run folder / model file name].")
@click.option("--dtypes", default="float32,float16,int8", show_default=True,
              help="Comma list of float32, float16, int8 (full integer), dynamic (int8 weights).")
@click.option("--calib", type=click.Path(path_type=Path), default=None,
              help="Aligned training faces (folder) or a .npy of normalised inputs [default: the run's training data]. Never LFW.")
@click.option("--calib-count", type=click.IntRange(min=1), default=300, show_default=True,
              help="Calibration images, sampled with a fixed seed.")
@click.option("--budget", type=click.IntRange(min=0), default=None,
              help=f"Max bytes per artifact; exit 1 if over [default: {DEFAULT_FACE_BUDGET} for a face embedder's int8 file, "
                   "none otherwise; 0 = none].")
@click.option("--int8-io", is_flag=True, help="int8 input/output tensors (default: float in, float out).")
@click.option("--per-tensor", is_flag=True,
              help="One scale per weight tensor (int8/dynamic): a smaller file; check the accuracy it costs.")
@click.option("--strip-strings", "strip", is_flag=True,
              help="Drop tensor names and the signature from the files (about 3% smaller; tools that look "
                   "tensors up by name cannot read them, edgeface's runtime and bench can).")
@click.option("--c-array", is_flag=True, help="Also write a TFLite Micro C array + ops resolver (int8/float32 artifacts).")
@click.option("--prune", "prune_sparsity", type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True), default=None,
              help="Magnitude-prune to this sparsity (e.g. 0.5) with a self-distillation fine-tune first.")
@click.option("--prune-steps", type=click.IntRange(min=1), default=FINETUNE_STEPS, show_default=True,
              help="Fine-tune steps for --prune.")
@click.option("--qat-finetune", "qat_steps", type=click.IntRange(min=0), default=None,
              help="Quantisation-aware fine-tune (self-distillation) for STEPS before the int8 convert.")
@click.option("--finetune-count", type=click.IntRange(min=1), default=FINETUNE_IMAGES, show_default=True,
              help="Training images used by --prune / --qat-finetune (as train.finetune_images).")
@click.option("--fit/--no-fit", "fit", default=None,
              help="Prune + recover until the int8 file fits --budget (structured pruning, self-distillation, "
                   "per-tensor int8) [default: on for `edgeface import` runs].")
@click.option("--fit-step", type=click.FloatRange(0.005, 0.5), default=0.04, show_default=True,
              help="With --fit: fraction of the prunable channels removed per round.")
@click.option("--fit-steps", "fit_finetune_steps", type=click.IntRange(min=0), default=300, show_default=True,
              help="With --fit: recovery fine-tune steps per round.")
@click.option("--fit-images", type=click.IntRange(min=16), default=2000, show_default=True,
              help="With --fit: faces of --calib for recovery and calibration (identity-disjoint from the validation faces).")
@click.option("--fit-faces", "fit_faces", multiple=True, type=click.Path(path_type=Path, file_okay=False),
              help="With --fit: more aligned faces for recovery, no labels needed (repeatable; e.g. `edgeface data "
                   "lfw-overlap` output sets). Never LFW.")
@click.option("--fit-teacher", default=None,
              help="With --fit: embedder whose outputs are the recovery targets; it must compute the run's float model "
                   "(checked, cosine >= 0.999), e.g. the ncnn source of an import, whose caches the data "
                   "commands wrote [default: the run's float model].")
@click.option("--fit-activation", type=click.Choice(["prelu", "leaky", "relu"]), default="prelu", show_default=True,
              help="With --fit: keep PReLU (exact; split into 4 delegated int8 ops) or swap it for one LeakyReLU / "
                   "ReLU per layer (about 1.8x faster int8; needs retraining-scale recovery).")
@click.option("--fit-prelu-form", type=click.Choice(PRELU_FORMS), default=PRELU_FORMS[0], show_default=True,
              help="With --fit: how int8 writes a kept PReLU, both exact and delegated whole: residual = "
                   "x + relu((a-1)x), two ops; split = c1*x + c2*|x|, four ops (the files shipped before session 10).")
@click.option("--fit-final-steps", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --fit: a last recovery of this many steps, keeping the best-validation weights.")
@click.option("--fit-final-lr", type=click.FloatRange(min=0.0, min_open=True), default=1e-4, show_default=True,
              help="With --fit: peak learning rate of the final recovery (cosine decay; a changed final setting "
                   "keeps the saved pruning rounds and redoes only the final recovery).")
@click.option("--fit-anneal-relu", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --fit: the final recovery shrinks every PReLU slope to 0 over its first N steps and ships "
                   "the ReLU network (fused into the convolutions: int8 about 1.5x faster than the PReLU form).")
@click.option("--fit-rank", type=click.Choice(RANKS), default=RANKS[0], show_default=True,
              help="With --fit: remove the least important channels (importance), or those with the least "
                   "importance per unit of estimated int8 time (time: early, wide layers go first).")
@click.option("--fit-max-cost", type=click.FloatRange(0.05, 1.0), default=None,
              help="With --fit: also prune until the estimated int8 time is at most this fraction of the "
                   "unpruned model's (a speed budget beside --budget; measure the result side by side).")
@click.option("--fit-rounds", type=click.IntRange(min=1), default=8, show_default=True,
              help="With --fit: at most this many pruning rounds (a deep cut needs rounds x step near its fraction).")
@click.option("--fit-threshold", type=click.FloatRange(min=0.0, min_open=True), default=0.1, show_default=True,
              help="With --fit: reject a round whose recovered validation loss (1 - cosine) moves by more than this.")
@click.option("--tta", type=click.Choice(TTA_MODES), default=None,
              help="Expression classifiers: the test-time augmentation the card recommends to `edgeface expression` "
                   "(notes.preprocessing.tta; choose it on the validation split, benchmarks/expr_tta.py).")
def convert(model, out_dir, name, dtypes, calib, calib_count, budget, int8_io, per_tensor, strip, c_array, prune_sparsity,
            prune_steps, qat_steps, finetune_count, fit, fit_step, fit_finetune_steps, fit_images, fit_faces,
            fit_teacher, fit_activation, fit_prelu_form, fit_final_steps, fit_final_lr, fit_anneal_relu, fit_rank,
            fit_max_cost, fit_rounds, fit_threshold, tta):
    """Convert MODEL (a run directory or a .keras file) to TFLite artifacts with model cards."""
    from edgeface.data.calibration import load_calibration, refuse_lfw
    from edgeface.convert.source import load_source
    from edgeface.convert.tflite import convert_all, over_budget_message, parse_dtypes

    dtype_list = parse_dtypes(dtypes)
    if qat_steps is not None and "int8" not in dtype_list:
        raise EdgefaceError("--qat-finetune trains for the int8 file: add int8 to --dtypes")
    if calib is not None:
        refuse_lfw(calib)  # before loading anything: a fast, clear refusal
    src = load_source(model)
    name = name or (src.run_dir.name if src.run_dir else src.path.stem)
    # An explicit --budget holds for every artifact; the default 1 MB promise is the int8 face
    # embedder's (its float32/float16 siblings are reference files, larger by design).
    def budget_for(dtype: str) -> int:
        if budget is not None:
            return budget
        return DEFAULT_FACE_BUDGET if (src.task == TASK_EMBEDDING and dtype == "int8") else 0
    extra = src.card_extra()
    if tta is not None:
        if src.task != TASK_CLASSIFICATION:
            raise EdgefaceError(f"--tta is for expression classifiers; {model} is a {src.task} model")
        notes = extra.setdefault("notes", {})
        notes["preprocessing"] = {**(notes.get("preprocessing") or {}), "tta": tta}
    if fit is None:
        fit = src.run.get("kind") == "imported" and "int8" in dtype_list
    if fit:
        return _convert_fit(src, out_dir, name, dtype_list, calib, calib_count, budget_for("int8"), extra, c_array,
                            FitOptions(fit_step, fit_finetune_steps, fit_images, fit_faces, fit_teacher,
                                       fit_activation, fit_final_steps, strip, fit_rounds, fit_threshold, fit_final_lr,
                                       fit_prelu_form, fit_anneal_relu, fit_rank, fit_max_cost))

    needs_images = "int8" in dtype_list or prune_sparsity or qat_steps
    images = calib_info = None
    count = max(calib_count, finetune_count) if (prune_sparsity or qat_steps) else calib_count
    split = (src.run.get("data") or {}).get("split") if src.run else None
    if needs_images and calib is None and src.task != TASK_EMBEDDING and isinstance(split, dict):
        # An expression run's data folder holds its val/test images too: calibrate on the run's
        # own TRAIN split only, so no evaluation image shapes the int8 ranges.
        from edgeface.data.calibration import load_split_calibration

        images, calib_info = load_split_calibration(src.run, src.input_shape, count)
    elif needs_images:
        calib_dir = calib or src.training_dir()
        if calib_dir is None:
            raise EdgefaceError("int8 / fine-tuning needs calibration data: pass --calib DIR (aligned training faces)")
        pre = src.preprocessing()
        norm = src.normalization()
        images, calib_info = load_calibration(calib_dir, src.input_shape, count, mean=norm["mean"], std=norm["std"],
                                              grayscale=pre["grayscale"], clahe=pre["clahe"])
    reps = images[:calib_count] if images is not None else None
    if calib_info:
        extra["calibration"] = {**calib_info, "count": int(len(reps))}

    float_model, qat, record = src.model, None, {}
    if prune_sparsity or qat_steps is not None:
        from edgeface.optimize.finetune import prune_and_qat

        done = prune_and_qat(float_model, images, sparsity=prune_sparsity or 0.0, prune_steps=prune_steps,
                             qat_steps=qat_steps, task=src.task)
        float_model, qat, record = done.model, done.qat, done.record
    # the float files carry the pruning only; the QAT int8 file carries both
    extra["optimization"] = {k: v for k, v in record.items() if k != "qat"} or None

    cards, over = [], []
    float_dtypes = [d for d in dtype_list if not (qat is not None and d == "int8")]
    for dtype in float_dtypes:
        c, o = convert_all(float_model, out_dir, name, [dtype], reps, int8_io, extra, budget_for(dtype),
                           per_channel=not per_tensor, strip=strip)
        cards += c
        over += o
    if qat is not None:
        qextra = {**extra, "optimization": record}
        c, o = convert_all(qat, out_dir, name, ["int8"], reps, int8_io, qextra, budget_for("int8"),
                           per_channel=not per_tensor, strip=strip)
        cards += c
        over += o

    if c_array:
        _export_micro(cards, out_dir)

    for card in cards:
        q = card["input"]["quantization"]
        click.echo(f"{out_dir / card['file']}: {card['dtype']}, {card['bytes']:,} bytes, input {card['input']['dtype']}"
                   + (f" (scale {q['scale']:.6g}, zero point {q['zero_point']})" if q else "")
                   + f", sha256 {card['sha256'][:12]}")
    if over:
        raise CheckFailed(over_budget_message(over) + " (drop those --dtypes, shrink the model, or --budget 0 for no limit)")


def _export_micro(cards: list[dict], out_dir: Path) -> None:
    """TFLite Micro C arrays for the int8/float32 artifacts just written."""
    from edgeface.convert.micro import export_micro

    for card in cards:
        if card["dtype"] in MICRO_DTYPES:
            info = export_micro(Path(out_dir) / card["file"])
            click.echo(f"  micro: {out_dir / info['dir']}/ ({len(info['ops'])} ops, flash {info['flash_bytes']:,} B, "
                       f"arena {info['arena_bytes']:,} B, {info['arena_method'].split(':')[0]})")
        else:
            click.echo(f"  micro: skipped {card['file']} (TFLite Micro runs int8 and float32 models only)")


@dataclass
class FitOptions:
    step: float
    finetune_steps: int
    max_images: int
    faces: tuple = ()
    teacher: str | None = None
    activation: str = "prelu"
    final_steps: int = 0
    strip: bool = False
    max_rounds: int = 8
    threshold: float = 0.1
    final_lr: float = 1e-4
    prelu_form: str = "residual"
    anneal_relu: int = 0
    rank: str = "importance"
    max_cost: float | None = None


def _fit_data(src, calib, opts: FitOptions, work_dir):
    """(train Faces, val Faces, record): --calib split by identity (val = people recovery never sees),
    plus the --fit-faces sets for training, with their teacher targets."""
    import numpy as np

    from edgeface.data.hygiene import LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.compress import Faces, face_paths, load_crops, load_faces_split, teacher_targets
    from edgeface.optimize.distill import mean_cosine, predict
    from edgeface.teachers.base import KerasTeacher, load_teacher

    faces = calib or src.training_dir()
    if faces is None:
        raise EdgefaceError("--fit needs aligned training faces: pass --calib DIR")
    extra_sets = [(Path(d), face_paths(d)) for d in opts.faces]  # validated before anything heavy
    norm = src.normalization()
    shape = src.input_shape
    train_paths, val_paths, split = load_faces_split(faces, shape, norm["mean"], norm["std"],
                                                     max_train=opts.max_images, exclude=LFW_PEOPLE_IN_CELEBA,
                                                     as_paths=True)
    val = Faces.from_model(src.model, load_crops(val_paths, shape, norm["mean"], norm["std"]))
    if opts.teacher is None and not extra_sets:
        train = Faces.from_model(src.model, load_crops(train_paths, shape, norm["mean"], norm["std"]))
        return train, val, {**split, "teacher": "the run's float model"}
    teacher = load_teacher(opts.teacher) if opts.teacher else KerasTeacher(src.path)
    groups = [(Path(faces), train_paths)] + extra_sets
    x = np.concatenate([load_crops(p, shape, norm["mean"], norm["std"], np.float16) for _, p in groups])
    targets = np.concatenate([teacher_targets(teacher, root, p, work_dir / "targets") for root, p in groups])
    probe = np.asarray(x[:64], np.float32)
    agree = mean_cosine(predict(src.model, probe), targets[:64, 0], reduce=np.min)
    if agree < 0.999:
        raise EdgefaceError(f"--fit-teacher {opts.teacher} does not compute the run's float model (min cosine "
                            f"{agree:.4f} on 64 training faces): recovery must distil from the unpruned model")
    record = {**split, "teacher": teacher.describe(), "teacher_min_cosine_to_model": round(float(agree), 6),
              "sets": [{"dir": str(root), "images": len(p)} for root, p in groups], "train_images": int(len(x))}
    return Faces(x, targets), val, record


def _convert_fit(src, out_dir, name, dtype_list, calib, calib_count, budget, extra, c_array, opts: FitOptions):
    """--fit: prune and recover until int8 fits, then write every dtype of the fitted model."""
    import time

    import numpy as np

    from edgeface.convert.tflite import convert_all
    from edgeface.optimize.compress import check_anneal, fit_budget

    if not budget:
        raise EdgefaceError("--fit needs a byte budget (--budget N)")
    check_anneal(opts.activation, opts.final_steps, opts.anneal_relu)  # before any data is read
    work_dir = (src.run_dir / "fit") if src.run_dir else (Path(out_dir) / f".{name}_fit")
    train, val, split = _fit_data(src, calib, opts, work_dir)
    t0 = time.perf_counter()
    result = fit_budget(src.model, train, val, budget, step=opts.step, finetune_steps=opts.finetune_steps,
                        calib_count=calib_count, activation=opts.activation, final_steps=opts.final_steps,
                        strip=opts.strip, max_rounds=opts.max_rounds, threshold=opts.threshold,
                        final_lr=opts.final_lr, prelu_form=opts.prelu_form, anneal_relu=opts.anneal_relu,
                        rank=opts.rank, max_cost=opts.max_cost, work_dir=work_dir, log=click.echo)
    kept = {"residual": "PReLU as x + relu((a-1)x) (slopes above 1 flipped), two delegated ops",
            "split": "PReLU split into four delegated ops"}[opts.prelu_form]
    activation = {"prelu": kept, "leaky": "PReLU swapped for one LeakyReLU per layer",
                  "relu": "PReLU swapped for ReLU"}[opts.activation]
    if opts.anneal_relu:
        activation = f"PReLU slopes annealed to 0 over {opts.anneal_relu} recovery steps: ReLU, fused into the convolutions"
    extra["optimization"] = {
        "fit_budget": {"budget": budget, "step": opts.step, "finetune_steps": opts.finetune_steps,
                       "final_steps": opts.final_steps, "final_lr": opts.final_lr, "activation": opts.activation,
                       "prelu_form": opts.prelu_form, **({"anneal_relu": opts.anneal_relu} if opts.anneal_relu else {}),
                       "max_rounds": opts.max_rounds, "threshold": opts.threshold,
                       "importance": "activation energy x outgoing weight norm, least-squares refit of the next conv"
                                     + (", per unit of estimated int8 time" if opts.rank == "time" else ""),
                       **({"max_cost": opts.max_cost} if opts.max_cost is not None else {}),
                       "recovery": "self-distillation to the unpruned float model, flip augmentation",
                       "int8": f"cross-layer equalisation, {activation}, per-tensor weights",
                       "faces": split, "seconds": round(time.perf_counter() - t0, 1), "rounds": result.rounds}}
    calib_x = np.asarray(train.x[:calib_count], np.float32)
    extra["calibration"] = {"dir": split["dir"], "count": len(calib_x)}
    floats = [d for d in dtype_list if d != "int8"]
    cards, over = (convert_all(result.model, out_dir, name, floats, None, False, extra, 0, strip=opts.strip)
                   if floats else ([], []))
    if "int8" in dtype_list:
        c, o = convert_all(result.deploy, out_dir, name, ["int8"], calib_x, False, extra, budget, per_channel=False,
                           converted={"int8": result.int8}, strip=opts.strip)  # fit_budget measured this very file
        cards, over = cards + c, over + o
    for card in cards:
        click.echo(f"{out_dir / card['file']}: {card['dtype']}, {card['bytes']:,} bytes, sha256 {card['sha256'][:12]}")
    if c_array:
        _export_micro(cards, out_dir)
    if over:
        from edgeface.convert.tflite import over_budget_message
        raise CheckFailed(over_budget_message(over))


@click.command("info")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("--tensors", "show_tensors", is_flag=True, help="List every tensor (name, shape, dtype, quantisation).")
@click.option("--json", "as_json", is_flag=True, help="Print everything as one JSON object.")
def info(model, show_tensors, as_json):
    """Print the model card of MODEL.tflite, its ops and its input/output tensors."""
    from edgeface.convert.micro import op_names
    from edgeface.runtime.interpreter import TFLiteModel, card_path, check_tflite_file
    from edgeface.utils.io import sha256_file

    data = check_tflite_file(model)
    m = TFLiteModel(model)

    def tensor(d):
        scale, zp = d["quantization"]
        return {"name": d["name"], "shape": [int(v) for v in d["shape"]], "dtype": d["dtype"].__name__,
                "quantization": None if (scale == 0.0 and zp == 0) else {"scale": float(scale), "zero_point": int(zp)}}
    interp = m.interpreter
    report = {
        "file": str(model), "bytes": len(data), "sha256": sha256_file(model), "interpreter": m.backend,
        "card": m.card or None,
        "card_matches_file": (m.card.get("sha256") == sha256_file(model)) if m.card else None,
        "ops": op_names(data),
        "inputs": [tensor(d) for d in interp.get_input_details()],
        "outputs": [tensor(d) for d in interp.get_output_details()],
        "tensor_count": len(interp.get_tensor_details()),
    }
    if show_tensors:
        report["tensors"] = [tensor(d) for d in interp.get_tensor_details()]
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    for line in card_summary(model, report, m.card or {}):
        click.echo(line)
    if m.card and not report["card_matches_file"]:
        click.echo("WARNING: the card's sha256 does not match this file", err=True)
    for t in report.get("tensors", []):
        q = t["quantization"]
        click.echo(f"  {t['name']} {t['shape']} {t['dtype']}" + (f" q({q['scale']:.4g},{q['zero_point']})" if q else ""))


def _tensor_line(t: dict) -> str:
    q = t["quantization"]
    return f"{t['shape']} {t['dtype']}" + (f" (scale {q['scale']:.6g}, zero point {q['zero_point']})" if q else "")


def card_summary(model: Path, report: dict, card: dict) -> list[str]:
    """A model in at most 15 lines: task, size, input, output, thresholds, accuracy, licence."""
    from edgeface.runtime.interpreter import card_path
    from edgeface.utils.paths import portable

    budget = card.get("budget_bytes")
    match = "" if not card else (", matches its card" if report["card_matches_file"] else ", DIFFERS from its card")
    lines = [f"{model.name}: {card.get('task', 'no model card')}, {card.get('dtype') or report['inputs'][0]['dtype']}, "
             f"{report['bytes']:,} bytes" + (f" (budget {budget:,})" if budget else "")
             + f", sha256 {report['sha256'][:12]}{match}"]
    inp, out = card.get("input") or {}, card.get("output") or {}
    norm = inp.get("normalization") or {}
    prep = ", ".join(filter(None, [inp.get("color"), f"(x - {norm['mean']:g}) / {norm['std']:g}" if norm else None,
                                   f"aligned {inp['alignment']}" if inp.get("alignment") else None]))
    lines.append(f"input:  {_tensor_line(report['inputs'][0])}" + (f"; {prep}" if prep else ""))
    kind = (f"{len(out['class_names'])} classes: {', '.join(out['class_names'])}" if out.get("class_names")
            else f"{out['embedding_dim']}-d embedding, L2-normalise on the host" if out.get("embedding_dim") else "")
    lines.append(f"output: {_tensor_line(report['outputs'][0])}" + (f"; {kind}" if kind else ""))
    v = card.get("verification") or {}
    if v:
        lines.append(f"accuracy: {100 * v['lfw_accuracy']:.2f}% +- {100 * v['std']:.2f} (k-fold) on {v.get('pairs')}, "
                     f"AUC {v['auc']:.4f}, TAR {v['tar_at_far_1e-3']:.3f} at FAR 1e-3 ({v.get('date', '')[:10]})")
        points = v.get("operating_points") or {"best_accuracy": {"threshold": v["threshold"]}}
        lines.append("thresholds (cosine; verify/identify use best_accuracy unless given --far RATE or --threshold X):")
        for name, p in points.items():
            rates = f"  TAR {p['tar']:.3f}  FAR {p['far']:.4f}" if "tar" in p else ""
            lines.append(f"  {name:<14} {p['threshold']:.4f}{rates}")
    elif card.get("task", TASK_EMBEDDING) == TASK_EMBEDDING:
        lines.append("accuracy: not measured (`edgeface bench MODEL --lfw DIR --update-cards` records it and the thresholds)")
    if card.get("training_data"):
        lines.append(f"trained on: {portable(card['training_data'])}")
    if (card.get("teacher") or {}).get("name"):
        lines.append(f"teacher: {card['teacher']['name']}")
    lines.append(f"licence: {card.get('license') or 'not stated in the card'}")
    lines.append(f"ops ({len(report['ops'])}): {', '.join(report['ops'])}; {report['tensor_count']} tensors; "
                 f"loaded with {report['interpreter']}")
    lines.append(f"the whole card: edgeface info {model} --json" if card else
                 f"no model card ({card_path(model).name} beside the file)")
    return lines
