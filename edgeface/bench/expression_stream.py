"""Frames/s of the `edgeface expression --video` path on a video of CK+ test-split faces.

    python -m edgeface.bench.expression_stream --data ../shared/data/expressions/ckplus48 --frames 120

In the bench stage, not the runtime: it rebuilds the data split recorded on the model's card.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click
import cv2
import numpy as np

from edgeface.data import expressions as xdata
from edgeface.errors import EdgefaceError
from edgeface.runtime.cli import default_model
from edgeface.runtime.expression import (DEFAULT_MODEL_NAME, FRAME_SIZE, MODEL_ENV, ExpressionPipeline, face_frames,
                                         run_stream, write_video)
from edgeface.spec import card_split_and_preprocessing


@click.command()
@click.option("--data", "data_dir", type=click.Path(path_type=Path), required=True,
              help="CK+48 folder (<class>/*.png); the test split recorded on the card is used.")
@click.option("--frames", type=click.IntRange(min=5), default=120, show_default=True)
@click.option("--faces-per-frame", type=click.IntRange(min=1, max=3), default=1, show_default=True)
@click.option("--model", type=click.Path(path_type=Path), default=None)
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--keep", type=click.Path(path_type=Path), default=None, help="Also keep the generated video here.")
def main(data_dir, frames, faces_per_frame, model, threads, keep):
    """Frames/s of the `edgeface expression --video` path at 640x480: a video of CK+ test-split faces
    (subject-held-out), written with VideoWriter, then read, detected, classified and drawn frame by frame."""
    import tempfile

    model = model or default_model(DEFAULT_MODEL_NAME, MODEL_ENV)
    pipe = ExpressionPipeline(model, num_threads=threads)
    spec, _ = card_split_and_preprocessing(pipe.classifier.model.model_card)
    data = xdata.load_dataset(data_dir, kind=spec.get("kind", "auto"), seed=spec.get("seed", 0),
                              val_fraction=spec.get("val_fraction", 0.1), test_fraction=spec.get("test_fraction", 0.1),
                              split_by=spec.get("split_by"))
    test = data.splits["test"]
    grays = [cv2.imread(str(s.path), cv2.IMREAD_GRAYSCALE) for s in test]
    order = np.random.default_rng(0).permutation(len(grays))  # every class, not the sorted split's first
    sets = [[grays[order[(i * faces_per_frame + k) % len(grays)]] for k in range(faces_per_frame)] for i in range(frames)]
    with tempfile.TemporaryDirectory() as tmp:
        video = write_video(face_frames(sets), (keep or Path(tmp) / "faces.mp4"))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        c0 = time.process_time()
        s = _quiet_stream(pipe, video, Path(tmp) / "out.mp4")
        cpu = time.process_time() - c0
    cpu_med = pipe.times.cpu_medians()
    # accuracy on the same faces: the live path (one face per 640x480 frame, no video codec) vs the
    # 48x48 crop straight into the model
    c, live, direct, found = pipe.classifier, 0, 0, 0
    for g, smp, frame in zip(grays, test, face_frames([[g] for g in grays])):
        got = pipe.analyse(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        found += len(got)
        live += len(got) == 1 and got[0].index == smp.label
        direct += int(c.probabilities(c.prepare(g)[None])[0].argmax() == smp.label)
    click.echo(json.dumps({"model": str(model), "interpreter": pipe.classifier.model.backend, "threads": threads,
                           "frame_size": list(FRAME_SIZE), "faces_per_frame": faces_per_frame, "frames": s["frames"],
                           "faces": s["faces"], "median_fps": round(s["median_fps"], 2),
                           "median_frame_ms": round(s["median_frame_ms"], 2), "mean_fps_wall": round(s["fps"], 2),
                           "median_fps_cpu": round(s["median_fps_cpu"], 2),
                           "median_frame_cpu_ms": round(s["median_frame_cpu_ms"], 2),
                           "fps_per_cpu_second": round(s["frames"] / cpu, 2) if cpu > 0 else None,
                           "median_ms": {k: round(v, 2) for k, v in s["median_ms"].items()},
                           "median_cpu_ms": {k: round(v, 2) for k, v in cpu_med.items()},
                           "labels": s["labels"], "loadavg_1min": round(load, 2),
                           "test_faces": len(test), "test_faces_found": found,
                           "accuracy_live_path": round(live / len(test), 4),
                           "accuracy_direct_48px": round(direct / len(test), 4)}, indent=1))


def _quiet_stream(pipe, video, out):
    """run_stream with the per-face lines dropped (the benchmark prints one JSON summary)."""
    import contextlib
    import io

    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        return run_stream(pipe, video, out, as_json=True, max_frames=None, show=False)


if __name__ == "__main__":
    try:
        main(standalone_mode=True)
    except EdgefaceError as e:
        raise SystemExit(f"edgeface: error: {e}") from None
