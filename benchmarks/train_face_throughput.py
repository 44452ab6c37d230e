"""Training throughput of the face trainer (real pipeline, real model, real optimizer step).

    nice -n 10 python benchmarks/train_face_throughput.py --data cache/celeba/arcface112 \
        --config face_mnv2 --steps 100 --json benchmarks/train_face.json

Times every optimizer step after `--warmup` steps (graph tracing, pipeline fill) and reports
images/s over the whole timed span plus the median and best 10-step windows: on a shared machine
the best window is the closest to what an idle machine does. Load averages are recorded beside.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--config", default="face_mnv2")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import tensorflow as tf

    from edgeface.train.common import seed_everything
    from edgeface.train.face import FaceTask, resolve_config
    from edgeface.train.loop import Trainer
    from edgeface.utils.io import write_json_atomic

    run_dir = Path(tempfile.mkdtemp(prefix="ef_tput_"))
    cfg = resolve_config(run_dir, args.config, ["data.val_fraction=0.0", *args.sets])
    tr = FaceTask(args.data, cfg)
    seed_everything(tr.seed)
    tr.load_data()
    tr.prepare()
    trainer = Trainer(tr, run_dir)
    trainer.build()
    stage = trainer.stages[0]
    bs = cfg["data"]["batch_size"]
    load_before = os.getloadavg()
    times, t_prev, n = [], None, 0
    epoch = 0
    while n < args.warmup + args.steps:
        for batch in stage.batches(epoch, 0):
            float(stage.train_step(batch)["loss"])  # wait for the step
            now = time.perf_counter()
            if n >= args.warmup:
                times.append(now - t_prev)
            t_prev, n = now, n + 1
            if n >= args.warmup + args.steps:
                break
        epoch += 1
    load_after = os.getloadavg()
    t = np.asarray(times)
    windows = [bs * 10 / t[i:i + 10].sum() for i in range(0, len(t) - 9, 10)]
    result = {
        "model": cfg["model"]["name"], "config": args.config, "batch_size": bs, "input_size": tr.input_size,
        "params": int(tr.model.count_params()), "loss": cfg["loss"]["name"], "optimizer": cfg["optim"]["name"],
        "timed_steps": len(t), "images_per_s": round(bs * len(t) / t.sum(), 1),
        "images_per_s_median_10step_window": round(float(np.median(windows)), 1),
        "images_per_s_best_10step_window": round(float(np.max(windows)), 1),
        "step_ms_median": round(float(np.median(t)) * 1000, 1),
        "loadavg_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "cpus": os.cpu_count(), "machine": platform.processor() or platform.machine(),
        "tensorflow": tf.__version__,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
