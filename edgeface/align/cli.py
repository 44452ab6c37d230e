"""`edgeface align SRC DST`: detect + five-point align a `<identity>/<file>` folder."""
from __future__ import annotations

from pathlib import Path

import click

from edgeface.align.transform import TEMPLATES
from edgeface.errors import CheckFailed, EdgefaceError


@click.command("align")
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--template", type=click.Choice(list(TEMPLATES)), default="arcface112", show_default=True,
              help="Output template (crop size and landmark positions).")
@click.option("--workers", type=click.IntRange(min=0), default=2, show_default=True,
              help="Parallel detector processes (0 or 1 = in this process).")
@click.option("--clahe", is_flag=True, help="Contrast-limited histogram equalisation on the crops.")
@click.option("--no-fallback", "no_fallback", is_flag=True,
              help="Skip images without a detected face instead of writing a flagged centre crop.")
@click.option("--min-face-size", type=click.IntRange(min=1), default=20, show_default=True,
              help="Smallest face to look for, in source pixels (40 is plenty for 250x250 LFW framing).")
@click.option("--max-side", type=click.IntRange(min=32), default=640, show_default=True,
              help="Downscale larger images to this side before detection.")
@click.option("--limit", type=click.IntRange(min=0), default=None, help="Only the first N files (sorted).")
@click.option("--redo-failed", is_flag=True, help="On resume, also redo fallback/no_face/bad_image files.")
@click.option("--max-fail-rate", type=click.FloatRange(0.0, 1.0), default=1.0, show_default=True,
              help="Exit 1 if the fraction of fallback/no_face/bad_image exceeds this.")
def align(src, dst, template, workers, clahe, no_fallback, min_face_size, max_side, limit, redo_failed,
          max_fail_rate):
    """Align every face image under SRC into DST (same layout, .png crops, manifest.jsonl, summary.json)."""
    from edgeface.utils.io import check_output_path

    if not src.is_dir():
        raise EdgefaceError(f"source folder not found: {src}")
    check_output_path(dst, "DST", folder=True)  # before TensorFlow loads
    from edgeface.align.pipeline import align_folder

    s = align_folder(src, dst, template=template, workers=workers, clahe=clahe, fallback=not no_fallback,
                     min_face_size=min_face_size, max_side=max_side, limit=limit,
                     redo_failed=redo_failed)
    c = s["counts"]
    rate = f"{s['images_per_s']:.1f} img/s" if s["images_per_s"] else "nothing new"
    click.echo(f"aligned {s['total']} files into {dst}: ok {c['ok']}, fallback {c['fallback']}, "
               f"no_face {c['no_face']}, bad_image {c['bad_image']} (fail {s['fail_rate']:.2%}); "
               f"{s['processed_now']} new, {s['skipped_done']} resumed, {rate}, {s['wall_s']:.0f} s")
    if s["fail_rate"] > max_fail_rate:
        raise CheckFailed(f"failure rate {s['fail_rate']:.2%} exceeds --max-fail-rate {max_fail_rate:.2%} "
                          f"(see {dst / 'manifest.jsonl'})")
