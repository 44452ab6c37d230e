"""Write the README's "Shipped models" table from `make bench`'s results (benchmarks/results/bench.json)
and the model cards, between the `<!-- bench:start -->` / `<!-- bench:end -->` markers, so the
README's numbers are always the last bench run's.

    .venv/bin/python benchmarks/readme_table.py [benchmarks/results/bench.json] [README.md]
"""
import json
import sys
from pathlib import Path

from edgeface.bench.latency import describe_cpu
from edgeface.errors import EdgefaceError, run_main
from edgeface.utils.io import read_json, write_text_atomic

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
ORDER = {"face_embedding": 0, "expression_classification": 1}
DTYPES = {"int8": 0, "float16": 1, "float32": 2, "dynamic": 3}


def _card(path: str) -> dict:
    p = Path(path).with_suffix(".json")
    return json.loads(p.read_text()) if p.is_file() else {}


def table(bench: dict) -> str:
    teacher = bench.get("teacher_latency_ms") or {}
    vs = f"x ncnn teacher ({teacher['median']:.2f} ms)" if teacher.get("median") else "x ncnn teacher"
    cpu = (bench.get("machine") or {}).get("cpu")
    rows = ([f"Measured on: {describe_cpu(cpu)}. Int8 is faster than float32 only where the CPU has int8 "
             "dot-product instructions, so the speed columns hold within one run.", ""] if cpu else [])
    rows += [f"| model | dtype | bytes | budget | LFW acc % | AUC | TAR@FAR=1e-3 | embed ms (1 thread) | {vs} "
            "| delegate partitions | end-to-end ms |",
            "|---|---|---:|---|---|---|---|---:|---:|---:|---:|"]
    models = sorted(bench["models"], key=lambda m: (ORDER.get(m["task"], 9), "micro" in m["path"],
                                                    DTYPES.get(m["dtype"], 9), m["path"]))
    for m in models:
        name = Path(m["path"]).stem
        card = _card(m["path"])
        micro = card.get("micro") or {}
        arena, flash = micro.get("arena_bytes"), micro.get("flash_bytes")
        tier = "MCU tier, " if "micro" in name else ""
        label = f"`{name}`" + (f" ({tier}TFLM arena {arena:,} B" + (f", C array {flash:,} B" if flash else "") + ")"
                               if arena else "")
        budget = f"{m['budget']:,} {'ok' if m['budget_ok'] else 'OVER'}" if m.get("budget") else "-"
        lat = (m.get("latency_ms") or {}).get("median")
        e2e = (m.get("end_to_end_ms") or {}).get("median")
        lfw, expr = m.get("lfw"), m.get("expression")
        if lfw:
            acc = f"{100 * lfw['accuracy']:.2f} ± {100 * lfw['std']:.2f}"
            auc, tar = f"{lfw['auc']:.4f}", f"{lfw['tar_at_far_1e-3']:.3f}"
        elif expr:
            by = (expr.get("split_spec") or {}).get("split_by")
            tta = expr.get("tta") or {}
            with_tta = "".join(f"; +{k} TTA {100 * tta[k]['accuracy']:.2f}" for k in ("flip", "ten") if k in tta)
            acc = (f"{100 * expr['accuracy']:.2f} (expressions: {Path(expr['data_dir']).name} {expr['split']} split"
                   + (f", held out by {by}" if by else "") + with_tta + ")")
            auc = tar = "-"
        else:
            acc = auc = tar = "-"
        speed = f"{m['speedup_vs_teacher']:.2f}x" if m.get("speedup_vs_teacher") else "-"
        parts = (m.get("delegate") or {}).get("partitions", "-")
        rows.append(f"| {label} | {m['dtype']} | {m['bytes']:,} | {budget} | {acc} | {auc} | {tar} | "
                    f"{f'{lat:.2f}' if lat is not None else '-'} | {speed} | {parts} | {f'{e2e:.1f}' if e2e else '-'} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    bench_path = Path(args[0] if args else "benchmarks/results/bench.json")
    readme = Path(args[1] if len(args) > 1 else "README.md")
    bench = read_json(bench_path, "bench results")
    text = readme.read_text()
    if START not in text or END not in text:
        raise EdgefaceError(f"{readme} has no {START} ... {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    note = f"<!-- written by benchmarks/readme_table.py from {bench_path} ({bench.get('date', '?')}) -->"
    write_text_atomic(readme, f"{head}{START}\n{note}\n{table(bench)}\n{END}{tail}")
    print(f"{readme}: table of {len(bench['models'])} models from {bench_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
