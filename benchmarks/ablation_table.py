"""One row per training run of an ablation: what it trained on and where it ended on its validation.

    .venv/bin/python benchmarks/ablation_table.py runs/ablation --json benchmarks/results/face_ablation/micro_sources.json

Reads each run folder's run.json (data counts, the warm start's own validation scores) and the last
row of its log.csv (the scores after the run's last step), and prints a Markdown table. Runs still
going are listed with their status.
"""
import argparse
import csv
import json
import sys
from pathlib import Path

from edgeface.errors import EdgefaceError, run_main


def last_row(log: Path) -> dict:
    with log.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else {}


def run_row(run: Path) -> dict:
    info = json.loads((run / "run.json").read_text())
    cfg = info.get("config", {})
    end = last_row(run / "log.csv") if (run / "log.csv").is_file() else {}
    extra = info.get("data", {}).get("extra") or {}
    return {
        "run": run.name, "status": info.get("status"), "steps": info.get("steps"),
        "train_images": info.get("data", {}).get("train_images"),
        "extra_sets": {Path(k).name: (v["images"] if isinstance(v, dict) else v) for k, v in extra.items()},
        "relational_weight": cfg.get("loss", {}).get("relational_weight"),
        "lr": cfg.get("optim", {}).get("lr"),
        "init_val_acc": info.get("init_val_acc"), "init_val_teacher_cos": info.get("init_val_teacher_cos"),
        "val_acc": float(end["val_acc"]) if end.get("val_acc") else None,
        "val_teacher_cos": float(end["val_teacher_cos"]) if end.get("val_teacher_cos") else None,
        "init_val_extra_teacher_cos": info.get("init_val_extra_teacher_cos"),
        "val_extra_teacher_cos": float(end["val_extra_teacher_cos"]) if end.get("val_extra_teacher_cos") else None,
        "train_distill_loss": float(end["distill_loss"]) if end.get("distill_loss") else None,
        "wall_s": info.get("wall_time_s"),
        "images_per_s": float(end["images_per_s"]) if end.get("images_per_s") else None,
    }


def fmt(v, spec=".4f"):
    return "-" if v is None else format(v, spec)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="folder of run folders")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    runs = sorted(p for p in a.root.iterdir() if (p / "run.json").is_file()) if a.root.is_dir() else []
    if not runs:
        raise EdgefaceError(f"no run folders with a run.json under {a.root}")
    rows = [run_row(r) for r in runs]
    extra_val = any(r["val_extra_teacher_cos"] is not None for r in rows)  # runs with data.extra_val_fraction
    print("| run | extra sets (images) | train images | steps | val pair acc (warm start -> end) "
          "| val teacher cos (warm start -> end) | " + ("held-out extra faces' teacher cos (warm start -> end) | " if extra_val else "")
          + "train 1 - cos | wall s | status |")
    print("|---|---|---:|---:|---|---|" + ("---|" if extra_val else "") + "---:|---:|---|")
    for r in rows:
        sets = ", ".join(f"{k} {v:,}" for k, v in r["extra_sets"].items())
        print(f"| {r['run']} | {sets or 'none'} | {r['train_images'] or 0:,} | {r['steps']} "
              f"| {fmt(r['init_val_acc'])} -> {fmt(r['val_acc'])} | {fmt(r['init_val_teacher_cos'])} -> "
              f"{fmt(r['val_teacher_cos'])} | "
              + (f"{fmt(r['init_val_extra_teacher_cos'])} -> {fmt(r['val_extra_teacher_cos'])} | " if extra_val else "")
              + f"{fmt(r['train_distill_loss'])} | {fmt(r['wall_s'], ',.0f')} "
              f"| {r['status']} |")
    if a.json:
        from edgeface.utils.io import write_json_atomic
        write_json_atomic(a.json, {"runs": rows})
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
