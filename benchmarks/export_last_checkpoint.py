"""Export a face run's LAST checkpoint (not its best-validation model.keras) as a .keras file, for
ablations such as "more epochs on the same data" (benchmarks/face_models.md).

    .venv/bin/python benchmarks/export_last_checkpoint.py runs/face_edge_e6 /tmp/e6last/model.keras
"""
import sys

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

from edgeface.errors import EdgefaceError, run_main
from edgeface.nets import get_model
from edgeface.nets.io import save_model
from edgeface.train.config import load_toml


def main(argv=None) -> int:
    run, out = argv if argv is not None else sys.argv[1:]
    cfg = load_toml(f"{run}/config.toml")["model"]
    model = get_model(cfg.pop("name"), **cfg)
    latest = tf.train.latest_checkpoint(f"{run}/checkpoints")
    if latest is None:
        raise EdgefaceError(f"no checkpoint in {run}/checkpoints")
    # The trainer's Checkpointer tracks the backbone as `model`; head/optimizer are not needed here.
    tf.train.Checkpoint(model=model).restore(latest).expect_partial().assert_existing_objects_matched()
    save_model(model, out)
    print(f"{latest} -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
