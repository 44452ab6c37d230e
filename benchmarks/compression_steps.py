"""The compression table of issue 14: what each step from the imported float model to the shipped
int8 file costs. Writes one .tflite (+ card) per step under OUT, for `edgeface bench` to measure
side by side:

    .venv/bin/python benchmarks/compression_steps.py runs/mobilefacenet runs/mobilefacenet/steps
    .venv/bin/edgeface bench runs/mobilefacenet/steps/s1_*.tflite runs/mobilefacenet/steps/s4_*.tflite models/edgeface_face_int8.tflite \
        --lfw cache/lfw/arcface112 --pairs ../shared/data/lfw/pairs.txt --teacher-latency ../shared/teachers/mobilefacenet-ncnn \
        --threads 1 --json benchmarks/results/compression/bench.json
    .venv/bin/python benchmarks/compression_steps.py --table benchmarks/results/compression/bench.json \
        models/edgeface_face_int8.json benchmarks/compression.md

(s2 and s3 keep int8 PRELU, which XNNPACK does not run: 34 partitions and about 7 faces/s, an hour for
LFW with flips on this machine; their bytes and speed are in compression.md's findings.)

Steps: 1 the imported float32; 2 plain int8 per-channel (PReLU kept); 3 int8 per-tensor after
cross-layer equalisation; 4 the same with PReLU split for XNNPACK (all unpruned); the shipped file
is step 5. Calibration: the run's own CelebA training faces (never LFW).
"""
import json
import sys
from pathlib import Path

from edgeface.errors import EdgefaceError, run_main

STEPS = [("s1_import_float32", "imported float32"),
         ("s2_int8_per_channel", "int8 per-channel, PReLU kept (no rewrite)"),
         ("s3_int8_equalized_per_tensor", "int8 per-tensor after cross-layer equalisation"),
         ("s4_int8_equalized_split", "+ PReLU split into delegatable ops (unpruned)")]


def write_steps(run_dir: Path, out: Path) -> None:
    from edgeface.convert.source import load_source
    from edgeface.convert.tflite import convert_all
    from edgeface.data.hygiene import LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.compress import load_faces_split
    from edgeface.optimize.distill import clone_with_weights
    from edgeface.optimize.equalize import equalize_channels, split_prelu

    src = load_source(run_dir)
    norm = src.normalization()
    train_x, _, split = load_faces_split(src.training_dir(), src.input_shape, norm["mean"], norm["std"],
                                         max_train=2000, exclude=LFW_PEOPLE_IN_CELEBA)
    calib = train_x[:300]
    extra = {**src.card_extra(), "calibration": {**split, "count": len(calib)}}
    eq = clone_with_weights(src.model)
    equalize_channels(eq, calib)
    models = [(src.model, "float32", True), (src.model, "int8", True), (eq, "int8", False),
              (split_prelu(eq), "int8", False)]
    for (name, what), (model, dtype, per_channel) in zip(STEPS, models):
        convert_all(model, out, name, [dtype], calib if dtype == "int8" else None, False,
                    {**extra, "notes": {"step": what}}, 0, per_channel=per_channel)
        print(f"{out}/{name}_{dtype}.tflite: {what}")


def table(bench_json: Path, final_card: Path, md: Path) -> None:
    bench = json.loads(bench_json.read_text())
    card = json.loads(final_card.read_text())
    rounds = ((card.get("optimization") or {}).get("fit_budget") or {}).get("rounds", [])
    teacher = (bench.get("teacher_latency_ms") or {}).get("median")
    by_name = {Path(m["path"]).stem: m for m in bench["models"]}
    labels = {f"{n}_{'float32' if i == 0 else 'int8'}": w for i, (n, w) in enumerate(STEPS)}
    labels[Path(card["file"]).stem] = "shipped: pruned + recovered, equalised, split, int8 per-tensor"
    lines = ["| step | bytes | LFW acc % | TAR@FAR=1e-3 | cosine to float (LFW faces) | embed ms, 1 thread | x ncnn | partitions |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for key, what in labels.items():
        m = by_name.get(key)
        if m is None:
            continue
        lfw, lat = m.get("lfw") or {}, (m.get("latency_ms") or {}).get("median")
        agree = (m.get("agreement") or {}).get("mean_cosine")
        lines.append(f"| {what} (`{key}`) | {m['bytes']:,} | {100 * lfw.get('accuracy', float('nan')):.2f} ± "
                     f"{100 * lfw.get('std', float('nan')):.2f} | {lfw.get('tar_at_far_1e-3', float('nan')):.3f} | "
                     f"{'-' if agree is None else f'{agree:.4f}'} | {lat:.2f} | "
                     f"{(teacher / lat) if teacher and lat else float('nan'):.2f} | {(m.get('delegate') or {}).get('partitions', '-')} |")
    lines += ["", f"ncnn teacher on one thread, same run: {teacher:.2f} ms median." if teacher else "",
              "", "Pruning rounds (CelebA held-out identities; cosine to the unpruned float model):", "",
              "| round | channels removed | int8 bytes | params | val cosine after pruning | after recovery | val loss change | accepted |",
              "|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in rounds:
        params = f"{r['params']:,}" if "params" in r else "-"
        what = (f"final recovery ({r['steps']} steps, best at {r['best_step']})" if r["round"] == "final"
                else r["round"])
        lines.append(f"| {what} | {r.get('removed', 0)} | {r['bytes']:,} | {params} | "
                     f"{r.get('val_cosine_pruned', float('nan')):.4f} | {r['val_cosine']:.4f} | "
                     f"{r.get('loss_change', 0.0):+.4f} | {r.get('accepted', True)} |")
    md.write_text(md.read_text().split("<!-- table -->")[0] + "<!-- table -->\n" + "\n".join(lines) + "\n")
    print(f"{md}: {len(labels)} steps, {len(rounds)} rounds")


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--table"] and len(args) == 4:
        table(Path(args[1]), Path(args[2]), Path(args[3]))
        return 0
    if len(args) != 2:
        raise EdgefaceError("usage: compression_steps.py RUN OUT | --table BENCH.json FINAL_CARD.json OUT.md")
    write_steps(Path(args[0]), Path(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
