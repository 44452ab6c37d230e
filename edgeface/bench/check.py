"""Size-regression check for CI: artifacts must fit their budget and not grow past the baseline.

Needs no dataset and no TensorFlow. Baseline file (benchmarks/baseline.json):

    {"tolerance": 0.02,
     "models": {"NAME.tflite": {"bytes": 412345, "gzip_bytes": 380000, "budget_bytes": 1000000, "sha256": "...",
                                "ops": ["CONV_2D", ...]}},
     "command": "...", "date": "..."}

Models are matched by file name. A model fails when it does not load in the TFLite interpreter,
when bytes > budget (card `budget_bytes`, else the baseline's), bytes > baseline bytes *
(1 + tolerance), bytes < baseline bytes * (1 - tolerance) (a truncated or stripped file; unless
allow_shrink), or when it has no baseline entry. A changed sha256 or op list is reported.
--write-baseline merges: it updates the entries of the models given and keeps the others.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

from edgeface.bench.size import card_budget, gzip_size
from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLiteModel, check_tflite_file, load_card
from edgeface.utils.io import read_json, sha256_file, write_json_atomic

DEFAULT_TOLERANCE = 0.02


def load_baseline(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise EdgefaceError(f"baseline not found: {path} (record one with: edgeface bench --write-baseline {path} MODEL...)")
    base = read_json(path, "baseline")
    models = base.get("models") if isinstance(base, dict) else None
    if not isinstance(models, dict):
        raise EdgefaceError(f"baseline {path} has no 'models' object")
    tol = base.get("tolerance", DEFAULT_TOLERANCE)
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not 0 <= tol < 1:
        raise EdgefaceError(f"baseline {path}: 'tolerance' must be a fraction in [0, 1), got {tol!r}")
    for name, entry in models.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("bytes"), int) or entry["bytes"] <= 0:
            raise EdgefaceError(f"baseline {path}: entry {name!r} needs a positive integer 'bytes'")
        b = entry.get("budget_bytes")
        if b is not None and (not isinstance(b, int) or b <= 0):
            raise EdgefaceError(f"baseline {path}: entry {name!r} has a bad 'budget_bytes' {b!r}")
    return {"tolerance": float(tol), "models": models}


def load_problem(path: Path) -> str | None:
    """None if the artifact parses and loads in the interpreter, else why not (one line)."""
    from edgeface.convert.micro import op_names

    try:
        TFLiteModel(path)
        op_names(path.read_bytes())
    except EdgefaceError as e:
        return str(e)
    return None


def check_sizes(baseline_path: str | os.PathLike, model_paths: list[Path],
                allow_shrink: bool = False) -> tuple[list[dict], bool, list[str]]:
    """(rows, ok, notes): one row per model; ok is False if any row failed; notes name baseline
    entries that were not checked."""
    from edgeface.convert.micro import op_names

    base = load_baseline(baseline_path)
    tol = base["tolerance"]
    rows, ok = [], True
    for p in model_paths:
        p = Path(p)
        data = check_tflite_file(p)
        size = len(data)
        entry = base["models"].get(p.name)
        budget = card_budget(load_card(p), (entry or {}).get("budget_bytes"))
        problems, changes = [], []
        broken = load_problem(p)
        if broken:
            problems.append(broken)
        if budget is not None and size > budget:
            problems.append(f"over budget by {size - budget} B")
        if entry is None:
            problems.append(f"no baseline entry (record it with --write-baseline {baseline_path})")
            growth = None
        else:
            growth = size / entry["bytes"] - 1.0
            if size > entry["bytes"] * (1.0 + tol):
                problems.append(f"grew {growth * 100:+.2f}% > {tol * 100:.1f}% tolerance")
            elif size < entry["bytes"] * (1.0 - tol) and not allow_shrink:
                problems.append(f"shrank {growth * 100:+.2f}% beyond the {tol * 100:.1f}% tolerance: a truncated "
                                f"or stripped file is a regression too (--allow-shrink if the smaller model is intended)")
            if entry.get("sha256") and entry["sha256"] != sha256_file(p):
                changes.append("sha256 changed")
            if entry.get("ops") is not None and not broken and op_names(data) != entry["ops"]:
                changes.append(f"ops changed ({', '.join(op_names(data))})")
        rows.append({"model": p.name, "bytes": size, "baseline": None if entry is None else entry["bytes"],
                     "growth": growth, "budget": budget, "ok": not problems, "problems": problems,
                     "changes": changes})
        ok &= not problems
    given = {Path(p).name for p in model_paths}
    notes = [f"baseline entry {n} was not checked (not among the models given)" for n in base["models"] if n not in given]
    return rows, ok, notes


def format_check_table(rows: list[dict], tolerance_note: str = "") -> str:
    head = f"{'model':<36} {'bytes':>10} {'baseline':>10} {'growth':>8} {'budget':>10}  status"
    lines = [head, "-" * len(head)]
    for r in rows:
        growth = "-" if r["growth"] is None else f"{r['growth'] * 100:+.2f}%"
        lines.append(f"{r['model']:<36} {r['bytes']:>10} {r['baseline'] if r['baseline'] is not None else '-':>10} "
                     f"{growth:>8} {r['budget'] if r['budget'] is not None else '-':>10}  "
                     f"{'ok' if r['ok'] else 'FAIL: ' + '; '.join(r['problems'])}"
                     + (f" ({'; '.join(r['changes'])})" if r.get("changes") else ""))
    if tolerance_note:
        lines.append(tolerance_note)
    return "\n".join(lines)


def write_baseline(path: str | os.PathLike, model_paths: list[Path], tolerance: float | None = None,
                   command: str = "", replace: bool = False) -> dict:
    """Record the current sizes of `model_paths`, merged into an existing baseline (its other
    entries and its tolerance are kept) unless `replace`. A model that does not load is refused
    before anything is written."""
    from edgeface.convert.micro import op_names

    path = Path(path)
    old = None
    if path.exists() and not replace:
        try:
            old = load_baseline(path)
        except EdgefaceError as e:
            raise EdgefaceError(f"{e}: not merging into it (--replace overwrites it)") from None
    if tolerance is None:
        tolerance = old["tolerance"] if old else DEFAULT_TOLERANCE
    if not 0 <= tolerance < 1:
        raise EdgefaceError(f"tolerance must be a fraction in [0, 1), got {tolerance}")
    models = dict(old["models"]) if old else {}
    for p in model_paths:
        p = Path(p)
        data = check_tflite_file(p)
        broken = load_problem(p)
        if broken:
            raise EdgefaceError(f"not recording {p.name} in the baseline: {broken}")
        models[p.name] = {"bytes": len(data), "gzip_bytes": gzip_size(data), "sha256": sha256_file(p),
                          "ops": op_names(data), "budget_bytes": card_budget(load_card(p))}
    base = {"tolerance": tolerance, "models": dict(sorted(models.items())), "command": command,
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_json_atomic(path, base)
    return base
