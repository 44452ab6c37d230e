"""`edgeface bench`: size, latency and accuracy of .tflite artifacts; `--check` guards sizes in CI.

    edgeface bench models/*.tflite --lfw DIR [--pairs FILE] [--json OUT] [--markdown OUT] [--plots DIR]
    edgeface bench --check benchmarks/baseline.json models/*.tflite      (no dataset, no TensorFlow)
    edgeface bench --write-baseline benchmarks/baseline.json models/*.tflite
"""
from __future__ import annotations

import shlex
from pathlib import Path

import click

from edgeface.errors import CheckFailed, EdgefaceError
from edgeface.utils.paths import output_path


def _threads(value: str) -> tuple[int, ...]:
    try:
        t = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        t = ()
    if not t or min(t) < 1:
        raise EdgefaceError(f"--threads takes positive integers like 1,2; got {value!r}")
    return t


def _models(paths: tuple[str, ...]) -> list[Path]:
    if not paths:
        raise EdgefaceError("no models given: edgeface bench MODEL.tflite [MODEL ...]")
    out = []
    for p in paths:
        if any(ch in p for ch in "*?[") and not Path(p).exists():
            raise EdgefaceError(f"no file matches {p}")
        path = Path(p)
        if not path.is_file():
            raise EdgefaceError(f"model not found: {path}")
        out.append(path)
    return out


def _command(models, **opts) -> str:
    """The canonical command line of this run (recorded in JSON and in model cards)."""
    parts = ["edgeface", "bench", *map(str, models)]
    for flag, value in opts.items():
        if value is None or value is False:
            continue
        parts.append(f"--{flag}") if value is True else parts.extend([f"--{flag}", str(value)])
    return shlex.join(parts)


@click.command("bench")
@click.argument("models", nargs=-1)
@click.option("--lfw", "lfw_dir", type=click.Path(path_type=Path),
              help="LFW root: raw <Name>/<Name>_NNNN.jpg (aligned once into the cache) or a folder made by `edgeface align`.")
@click.option("--pairs", "pairs_file", type=click.Path(path_type=Path), help="Pairs file [default: LFW/../pairs.txt].")
@click.option("--no-flip", is_flag=True, help="Embed each face once (default: face + mirror, summed).")
@click.option("--threads", default="1,2", show_default=True, help="Thread counts for the latency runs.")
@click.option("--runs", default=200, show_default=True, type=click.IntRange(1), help="Timed latency runs per thread count.")
@click.option("--warmup", default=20, show_default=True, type=click.IntRange(0), help="Untimed runs first.")
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1),
              help="Latency rounds alternating between the models (and the teacher); each reports its middle round.")
@click.option("--e2e-images", default=20, show_default=True, type=click.IntRange(0),
              help="Real photos for the end-to-end (decode+detect+align+embed) timing; 0 = skip.")
@click.option("--batch", default=16, show_default=True, type=click.IntRange(1),
              help="Faces per interpreter call (x2 with flip).")
@click.option("--expr-data", type=click.Path(path_type=Path), multiple=True,
              help="Dataset folder for expression classifiers (repeatable: each model takes the one its card names).")
@click.option("--json", "json_out", type=click.Path(path_type=Path), callback=output_path, metavar="PATH",
              help="Write results JSON here.")
@click.option("--markdown", "md_out", type=click.Path(path_type=Path), callback=output_path, metavar="PATH",
              help="Write a Markdown report here.")
@click.option("--plots", "plots_dir", type=click.Path(path_type=Path), callback=output_path, metavar="DIR",
              help="Write roc.png, size_vs_accuracy.png, latency.png here.")
@click.option("--teacher-latency", "teacher_dir", type=click.Path(path_type=Path, exists=True),
              help="Also time this ncnn embedder (folder with .param/.bin) on 1 thread, side by side.")
@click.option("--update-cards", is_flag=True,
              help="Record LFW accuracy and the thresholds at each operating point in each model card.")
@click.option("--check", "check_file", type=click.Path(path_type=Path),
              help="Only check sizes against this baseline JSON (exit 1 on a regression).")
@click.option("--write-baseline", "baseline_out", type=click.Path(path_type=Path), callback=output_path,
              metavar="PATH", help="Only record the current sizes here.")
@click.option("--tolerance", type=float, help="Growth tolerance stored by --write-baseline [default: keep, or 0.02].")
@click.option("--replace", is_flag=True,
              help="--write-baseline: write only the models given (default: merge into the existing baseline).")
@click.option("--allow-shrink", is_flag=True,
              help="--check: accept a model smaller than its baseline beyond the tolerance.")
def bench(models, lfw_dir, pairs_file, no_flip, threads, runs, warmup, repeats, e2e_images, batch, expr_data, json_out,
          md_out, plots_dir, teacher_dir, update_cards, check_file, baseline_out, tolerance, replace, allow_shrink):
    """Benchmark .tflite MODELS: bytes, gzip, params, budget, latency, LFW View 2 verification."""
    from edgeface.utils.io import check_output_path

    from edgeface.runtime.interpreter import check_tflite_file

    paths = _models(models)
    for p in paths:
        check_tflite_file(p)  # not a model at all: say so before any note or any work
    if check_file or baseline_out:
        if baseline_out:
            check_output_path(baseline_out, "baseline")
        _size_only(paths, check_file, baseline_out, tolerance, replace, allow_shrink)
        return
    # every output is checked before the (long) run, so a bad path never costs its results
    for out, what in ((json_out, "--json"), (md_out, "--markdown")):
        if out:
            check_output_path(out, what)
    if plots_dir:
        check_output_path(plots_dir, "--plots", folder=True)
    if lfw_dir is not None:  # the pairs file is checked before any model loads or any image is aligned
        from edgeface.bench.lfw import default_pairs, protocol_pairs

        if not lfw_dir.is_dir():
            raise EdgefaceError(f"LFW folder not found: {lfw_dir}")
        pairs = pairs_file or default_pairs(lfw_dir)
        if not pairs.is_file():
            raise EdgefaceError(f"pairs file not found: {pairs} (pass --pairs FILE)")
        protocol_pairs(pairs)
    thread_counts = _threads(threads)
    if update_cards and lfw_dir is None:
        raise EdgefaceError("--update-cards needs --lfw (it records the LFW threshold)")
    if lfw_dir is None:
        click.echo("edgeface: note: no --lfw given: size and latency only", err=True)
    command = _command(paths, lfw=lfw_dir, pairs=pairs_file, **{"no-flip": no_flip}, threads=threads,
                       runs=runs, repeats=repeats)
    if teacher_dir:
        command += " --teacher-latency " + shlex.quote(str(teacher_dir))
    for d in expr_data:
        command += " --expr-data " + shlex.quote(str(d))

    from edgeface.bench.latency import describe_cpu
    from edgeface.bench.report import format_table, make_plots, write_markdown
    from edgeface.bench.run import run_bench, update_cards as write_cards
    from edgeface.utils.io import write_json_atomic

    result = run_bench(paths, lfw_dir=lfw_dir, pairs_file=pairs_file, flip=not no_flip, threads=thread_counts,
                       runs=runs, warmup=warmup, e2e_images=e2e_images, batch=batch, expr_data=list(expr_data),
                       plots_dir=plots_dir, command=command, teacher_dir=teacher_dir, repeats=repeats)
    rocs = result.pop("_rocs")
    click.echo(format_table(result["models"]))
    click.echo(f"CPU: {describe_cpu(result['machine']['cpu'])}; latency: {thread_counts[0]} thread(s), middle of {repeats} alternating rounds")
    plot_files = make_plots(result["models"], rocs, plots_dir) if plots_dir else []
    if json_out:
        write_json_atomic(json_out, result)
    if md_out:
        write_markdown(md_out, result, plot_files)
    if update_cards:
        for card in write_cards(result):
            click.echo(f"edgeface: updated {card}", err=True)
    for out in [json_out, md_out, *plot_files]:
        if out:
            click.echo(f"wrote {out}", err=True)


def _size_only(paths: list[Path], check_file: Path | None, baseline_out: Path | None, tolerance: float | None,
               replace: bool = False, allow_shrink: bool = False) -> None:
    from edgeface.bench.check import check_sizes, format_check_table, load_baseline, write_baseline

    if baseline_out:
        base = write_baseline(baseline_out, paths, tolerance, replace=replace,
                              command=_command(paths, **{"write-baseline": baseline_out}, tolerance=tolerance,
                                               replace=replace))
        kept = len(base["models"]) - len({p.name for p in paths})
        click.echo(f"wrote {baseline_out} ({len(paths)} models" + (f", {kept} others kept)" if kept else ")"), err=True)
    if check_file:
        rows, ok, notes = check_sizes(check_file, paths, allow_shrink=allow_shrink)
        tol = load_baseline(check_file)["tolerance"]
        click.echo(format_check_table(rows, f"tolerance {tol * 100:.1f}% over baseline bytes ({check_file})"))
        for n in notes:
            click.echo(f"note: {n}")
        if not ok:
            bad = [r["model"] for r in rows if not r["ok"]]
            raise CheckFailed(f"size check failed for {', '.join(bad)}")
        click.echo(f"size check passed ({len(rows)} models)")
