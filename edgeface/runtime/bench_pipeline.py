"""Throughput of the whole on-device pipeline on this CPU, with a per-stage breakdown.

    python -m edgeface.runtime.bench_pipeline --images DIR --n 200 [--model M] [--threads 1]

Per image: decode (JPEG/PNG bytes already read from disk -> RGB), detect (TFLite MTCNN), align
(every face onto the model's template), embed (flip TTA, as `edgeface verify` does), match
(cosine top-3 against a gallery of the identities in the sample: <identity>/<file> folders).
The gallery needs the embeddings first, so match is timed in a second pass over the same
embeddings. images/s = n / (end-to-end seconds of pass 1 + match seconds). TF-free.
On a shared machine the wall clock includes waiting for a core, so process CPU time is
reported too (images per CPU-second, median CPU ms per stage) with the load average.
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import click
import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.pipeline import STAGES


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def sample_images(root: Path, n: int) -> list[Path]:
    from edgeface.utils.images import is_image_name

    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_name(p))
    if not files:
        raise EdgefaceError(f"no images under {root}")
    step = max(1, len(files) // n)
    return files[::step][:n]


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    med = result["median_ms"]
    fig, ax = plt.subplots(figsize=(8, 2.4))
    left = 0.0
    colors = ["#8c8c8c", "#3b7dd8", "#f0a030", "#3cb371", "#c04040"]
    for stage, c in zip(STAGES, colors):
        v = med.get(stage, 0.0)
        ax.barh([0], [v], left=left, color=c, label=f"{stage} {v:.1f} ms")
        left += v
    ax.set_yticks([])
    ax.set_xlabel("median ms per image (stacked)")
    ax.set_title(f"{result['images_per_s']:.1f} images/s, {result['threads']} thread(s), {result['model_name']}")
    ax.legend(ncol=5, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.45))
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


@click.command()
@click.option("--images", "images_dir", required=True, type=click.Path(path_type=Path), help="Folder of images (recursive).")
@click.option("--n", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None, help="Face embedder [default: as `edgeface verify`].")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--no-flip", is_flag=True, help="Embed without the mirror image (half the embed cost).")
@click.option("--out", type=click.Path(path_type=Path), default=Path("benchmarks/runtime_pipeline.json"), show_default=True)
@click.option("--plot/--no-plot", "make_plot", default=True, help="Write a PNG beside the JSON (skipped when matplotlib is missing).")
def main(images_dir, n, model, threads, no_flip, out, make_plot):
    """Benchmark decode, detect, align, embed and match on N images."""
    from edgeface.runtime.cli import default_model
    from edgeface.runtime.gallery import Gallery
    from edgeface.runtime.pipeline import FacePipeline
    from edgeface.utils.io import write_json_atomic
    from edgeface.utils.progress import progress

    if not images_dir.is_dir():
        raise EdgefaceError(f"image folder not found: {images_dir}")
    files = sample_images(images_dir, n)
    pipe = FacePipeline(model or default_model(), num_threads=threads, flip=not no_flip)
    blobs = [f.read_bytes() for f in files]  # disk I/O is not part of the on-device pipeline
    pipe.faces(pipe.decode(blobs[0], str(files[0])))  # warm-up: interpreter allocation
    pipe.times.reset()

    per_image, faces_found = [], 0
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for f, data in progress(list(zip(files, blobs)), total=len(files), desc="pipeline", unit="img"):
        found = pipe.faces(pipe.decode(data, str(f)))
        faces_found += len(found)
        per_image.append((f.parent.name, [e for _, _, e in found]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    load_after = os.getloadavg()[0]

    gallery = Gallery(Path("<memory>"), pipe.embedder.sha256, pipe.embedder.name)
    for ident in sorted({i for i, embs in per_image if embs}):
        gallery.add(ident, np.concatenate([np.stack(e) for i, e in per_image if i == ident and e]))
    for _, embs in per_image:
        pipe.match(np.stack(embs) if embs else np.zeros((0, pipe.embedder.dim), np.float32), gallery, top_k=3)
    match_s = sum(pipe.times.history["match"]) / 1000.0
    match_cpu_s = sum(pipe.times.cpu_history["match"]) / 1000.0

    med, cpu_med = pipe.times.medians(), pipe.times.cpu_medians()
    total = wall + match_s
    result = {
        "command": "python -m " + " ".join(["edgeface.runtime.bench_pipeline", *sys.argv[1:]]),
        "images": len(files), "images_dir": str(images_dir), "faces": faces_found,
        "gallery_people": len(gallery.names), "model": str(pipe.embedder.path), "model_name": pipe.embedder.name,
        "model_sha256": pipe.embedder.sha256, "flip": not no_flip, "threads": threads,
        "interpreter": pipe.embedder.model.backend, "machine": f"{platform.machine()}, {cpu_name()}, {os.cpu_count()} cores",
        "images_per_s": len(files) / total, "seconds": total,
        "images_per_cpu_s": len(files) / (cpu + match_cpu_s), "cpu_seconds": cpu + match_cpu_s,
        "load_average_1min": [round(load_before, 2), round(load_after, 2)],
        "median_ms": {s: round(med.get(s, 0.0), 3) for s in STAGES},
        "median_cpu_ms": {s: round(cpu_med.get(s, 0.0), 3) for s in STAGES},
        "mean_ms": {s: round(float(np.mean(pipe.times.history[s])), 3) for s in STAGES if pipe.times.history[s]},
        "sum_of_medians_ms": round(sum(med.get(s, 0.0) for s in STAGES), 3),
    }
    write_json_atomic(out, result)
    msg = f"wrote {out}"
    if make_plot:
        try:
            plot(result, out.with_suffix(".png"))
            msg += f" and {out.with_suffix('.png')}"
        except ImportError:  # devices install the runtime only: no matplotlib there
            msg += " (no PNG: matplotlib not installed)"
    stages = ", ".join(f"{s} {result['median_ms'][s]:.2f}" for s in STAGES)
    cpu_stages = ", ".join(f"{s} {result['median_cpu_ms'][s]:.2f}" for s in STAGES)
    click.echo(f"{len(files)} images ({faces_found} faces): {result['images_per_s']:.1f} images/s wall, "
               f"{result['images_per_cpu_s']:.1f} per CPU-second, {threads} thread(s), load {load_before:.1f}; "
               f"median wall ms: {stages}; median CPU ms: {cpu_stages}; {msg}")


if __name__ == "__main__":
    sys.exit(main())
