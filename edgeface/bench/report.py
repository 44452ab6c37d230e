"""Bench results as a terminal table, Markdown and PNG plots (matplotlib Agg, imported lazily)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgeface.bench.latency import describe_cpu
from edgeface.utils.io import write_text_atomic
from edgeface.utils.plots import save_figure

COLUMNS = ("model", "dtype", "bytes", "gzip", "budget ok", "lat med ms", "lat p90 ms", "e2e med ms",
           "LFW acc %", "AUC", "TAR@1e-3", "expr acc %", "+flip / +ten %")


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def tta_cell(expr: dict) -> str:
    """An expression result's accuracies with flip and ten-view TTA, "flip / ten" in %."""
    tta = expr.get("tta") or {}
    if not tta:
        return "-"
    return " / ".join(_fmt(100 * tta[k]["accuracy"] if k in tta else None, ".2f") for k in ("flip", "ten"))


def table_rows(models: list[dict]) -> list[list[str]]:
    rows = []
    for m in models:
        lat, lfw, e2e = m.get("latency_ms") or {}, m.get("lfw") or {}, m.get("end_to_end_ms") or {}
        budget_ok = m.get("budget_ok")
        expr = m.get("expression") or {}
        expr_acc = expr.get("accuracy")
        acc = None if not lfw else f"{lfw['accuracy'] * 100:.2f} ± {lfw['std'] * 100:.2f}"
        rows.append([
            Path(m["path"]).name, str(m.get("dtype") or "-"), str(m["bytes"]), str(m["gzip_bytes"]),
            "-" if budget_ok is None else ("yes" if budget_ok else "NO"),
            _fmt(lat.get("median"), ".2f"), _fmt(lat.get("p90"), ".2f"), _fmt(e2e.get("median"), ".1f"),
            acc or "-", _fmt(lfw.get("auc"), ".4f"), _fmt(lfw.get("tar_at_far_1e-3"), ".4f"),
            _fmt(None if expr_acc is None else expr_acc * 100, ".2f"),
            tta_cell(expr),
        ])
    return rows


def format_table(models: list[dict]) -> str:
    rows = table_rows(models)
    widths = [max(len(c), *(len(r[i]) for r in rows)) if rows else len(c) for i, c in enumerate(COLUMNS)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(COLUMNS), "  ".join("-" * w for w in widths), *(line(r) for r in rows)])


def format_markdown(result: dict, plot_files: list[Path] | None = None, md_path: Path | None = None) -> str:
    models = result["models"]
    out = ["# edgeface bench", "",
           f"- command: `{result['command']}`",
           f"- date: {result['date']}, wall time {result['wall_s']:.1f} s",
           f"- machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']}, "
           f"interpreter {result['machine'].get('interpreter') or '-'}"
           + (f", CPU {describe_cpu(result['machine']['cpu'])}" if result["machine"].get("cpu") else "")]
    lfw = result.get("lfw_setup")
    if lfw:
        out.append(f"- LFW: {lfw['pairs']} ({lfw['n_pairs']} pairs, {lfw['n_folds']} folds), crops {lfw['aligned_root']}, "
                   f"{lfw['n_images']} images embedded, flip TTA {'on' if lfw['flip'] else 'off'}")
    out.append(f"- latency: batch 1, median/p90 over {result['runs']} runs after warm-up, threads "
               f"{','.join(map(str, result['threads']))} (table: {result['threads'][0]} thread(s))")
    out += ["", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    out += ["| " + " | ".join(r) + " |" for r in table_rows(models)]

    lat_rows = []
    for m in models:
        for t, d in ((m.get("latency_ms") or {}).get("per_thread") or {}).items():
            lat_rows.append(f"| {Path(m['path']).name} | {t} | {d['median']:.3f} | {d['p90']:.3f} | {d['min']:.3f} |")
    if lat_rows:
        out += ["", "## Embed latency per thread count (ms)", "", "| model | threads | median | p90 | min |",
                "|---|---|---|---|---|", *lat_rows]
    e2e = [(m, m["end_to_end_ms"]) for m in models if m.get("end_to_end_ms")]
    if e2e:
        out += ["", "## End-to-end per image: decode + detect + align + embed (ms)", "",
                "| model | detector | images | median | p90 | no face |", "|---|---|---|---|---|---|"]
        out += [f"| {Path(m['path']).name} | {d['detector']} | {d['images']} | {d['median']:.1f} | {d['p90']:.1f} | "
                f"{d['no_face']} |" for m, d in e2e]
    ver = [m for m in models if m.get("lfw")]
    if ver:
        out += ["", "## LFW verification detail", "",
                "| model | acc | std | se | AUC | EER | TAR@FAR=1e-3 | mean threshold |", "|---|---|---|---|---|---|---|---|"]
        for m in ver:
            v = m["lfw"]
            out.append(f"| {Path(m['path']).name} | {v['accuracy']:.4f} | {v['std']:.4f} | {v['se']:.4f} | {v['auc']:.4f} | "
                       f"{v['eer']:.4f} | {v['tar_at_far_1e-3']:.4f} | {np.mean(v['thresholds']):.4f} |")
    agr = [m for m in models if (m.get("agreement") or {}).get("mean_cosine") is not None]
    if agr:
        out += ["", "## Agreement with the float32 model of the same source", "",
                "| model | reference | mean cosine | min cosine | LFW acc delta |", "|---|---|---|---|---|"]
        for m in agr:
            a = m["agreement"]
            delta = "-" if a.get("accuracy_delta") is None else f"{a['accuracy_delta'] * 100:+.2f} pp"
            out.append(f"| {Path(m['path']).name} | {a['reference']} | {a['mean_cosine']:.5f} | {a['min_cosine']:.5f} | {delta} |")
    if plot_files:
        out.append("")
        for p in plot_files:
            rel = os.path.relpath(p, md_path.parent) if md_path else str(p)
            out.append(f"![{Path(p).stem}]({rel})")
    return "\n".join(out) + "\n"


def make_plots(models: list[dict], rocs: dict[str, tuple], out_dir: Path) -> list[Path]:
    """roc.png (TAR vs FAR, log x) and size_vs_accuracy.png; only what the results support."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    ver = [m for m in models if m.get("lfw") and Path(m["path"]).name in rocs]
    if ver:
        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for m in ver:
            far, tar, _ = rocs[Path(m["path"]).name]
            keep = far > 0
            ax.plot(far[keep], tar[keep], label=f"{Path(m['path']).stem} (AUC {m['lfw']['auc']:.4f})")
        ax.axvline(1e-3, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.set_xlim(1 / 3000 if len(ver) else 1e-4, 1)
        ax.set_xlabel("false accept rate")
        ax.set_ylabel("true accept rate")
        ax.set_title("LFW View 2 ROC (all pairs pooled)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        files.append(save_figure(fig, out_dir / "roc.png", dpi=120))

        fig, ax = plt.subplots(figsize=(6.4, 4.8))
        for m in ver:
            kb = m["bytes"] / 1024
            ax.errorbar(kb, m["lfw"]["accuracy"] * 100, yerr=m["lfw"]["std"] * 100, fmt="o", capsize=3)
            ax.annotate(Path(m["path"]).stem, (kb, m["lfw"]["accuracy"] * 100), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
        budgets = {m["budget"] for m in ver if m.get("budget")}
        for b in budgets:
            ax.axvline(b / 1024, color="red", lw=0.8, ls="--", label=f"budget {b / 1024:.0f} KiB")
        if budgets:
            ax.legend(fontsize=8)
        ax.set_xlabel("file size (KiB)")
        ax.set_ylabel(f"LFW accuracy (%) ± std over {ver[0]['lfw']['n_folds']} folds")
        ax.set_title("Size vs LFW accuracy")
        ax.grid(True, alpha=0.3)
        files.append(save_figure(fig, out_dir / "size_vs_accuracy.png", dpi=120))

    lat = [m for m in models if (m.get("latency_ms") or {}).get("per_thread")]
    if lat:
        fig, ax = plt.subplots(figsize=(6.4, 0.6 * len(lat) + 1.8))
        names = [Path(m["path"]).stem for m in lat]
        threads = sorted({t for m in lat for t in m["latency_ms"]["per_thread"]}, key=int)
        h = 0.8 / len(threads)
        for k, t in enumerate(threads):
            med = [m["latency_ms"]["per_thread"].get(t, {}).get("median", np.nan) for m in lat]
            p90 = [m["latency_ms"]["per_thread"].get(t, {}).get("p90", np.nan) for m in lat]
            y = np.arange(len(lat)) + k * h
            ax.barh(y, med, height=h, label=f"{t} thread(s) median")
            ax.errorbar(p90, y, fmt="|", color="black", ms=10)
        ax.set_yticks(np.arange(len(lat)) + h * (len(threads) - 1) / 2, names, fontsize=8)
        ax.set_xlabel("embed latency, batch 1 (ms); | = p90")
        ax.legend(fontsize=8)
        ax.grid(True, axis="x", alpha=0.3)
        files.append(save_figure(fig, out_dir / "latency.png", dpi=120))
    return files


def write_markdown(path: Path, result: dict, plot_files: list[Path] | None = None) -> Path:
    return write_text_atomic(path, format_markdown(result, plot_files, Path(path)))
