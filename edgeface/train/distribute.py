"""tf.distribute for the training driver: train.strategy = default | mirrored | multiworker.

TF_CONFIG is read and checked here before TensorFlow loads (a bad one would otherwise hang or fail
deep inside the strategy); docs/distributed.md says how to launch each.
"""
from __future__ import annotations

import json
import os
import sys

from edgeface.errors import EdgefaceError

STRATEGIES = ("default", "mirrored", "multiworker")
_STRATEGIES: dict = {}  # (name, devices or TF_CONFIG) -> the tf.distribute strategy made for it


def read_tf_config(text: str | None) -> dict:
    """TF_CONFIG (the cluster and this worker's task) for train.strategy = multiworker."""
    hint = "see docs/distributed.md"
    if not text or not text.strip():
        raise EdgefaceError(f"train.strategy = multiworker needs TF_CONFIG (JSON: the cluster's workers and this "
                            f"worker's task); {hint}")
    try:
        tfc = json.loads(text)
    except json.JSONDecodeError as e:
        raise EdgefaceError(f"TF_CONFIG is not valid JSON ({e.msg} at character {e.pos}); {hint}") from None
    cluster, task = (tfc.get("cluster"), tfc.get("task")) if isinstance(tfc, dict) else (None, None)
    if not isinstance(cluster, dict) or not cluster or not isinstance(task, dict):
        raise EdgefaceError(f'TF_CONFIG needs a "cluster" object and a "task" object; {hint}')
    for job, hosts in cluster.items():
        if job not in ("chief", "worker"):
            raise EdgefaceError(f"TF_CONFIG cluster job {job!r}: MultiWorkerMirroredStrategy has only chief and "
                                f"worker jobs; {hint}")
        if (not isinstance(hosts, list) or not hosts or (job == "chief" and len(hosts) > 1)
                or not all(isinstance(h, str) and h.rpartition(":")[2].isdigit() for h in hosts)):
            raise EdgefaceError(f'TF_CONFIG cluster.{job} must be a list of "host:port" strings (one chief at most), '
                                f"got {hosts!r}; {hint}")
    kind, index = task.get("type"), task.get("index")
    if kind not in cluster or isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(cluster[kind]):
        raise EdgefaceError(f"TF_CONFIG task {task!r} is not one of the cluster's tasks "
                            f"({', '.join(f'{j} 0..{len(h) - 1}' for j, h in cluster.items())}); {hint}")
    return tfc


def is_chief(tf_config: dict | None) -> bool:
    """The one worker that writes the run folder: the chief, else worker 0 (TensorFlow's convention)."""
    if tf_config is None:
        return True
    task = tf_config["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0
                                       and "chief" not in tf_config["cluster"])


def make_strategy(name: str, tf_config: dict | None, global_batch: int):
    """(strategy, replicas, workers); the strategy is None for "default" (no tf.distribute at all:
    plain single-device numerics). Must run before TensorFlow runs any op (multiworker)."""
    if name == "default":
        return None, 1, 1
    import tensorflow as tf

    workers = 1
    if name == "multiworker":  # reads TF_CONFIG
        key = (name, os.environ.get("TF_CONFIG"))
        workers = sum(len(tf_config["cluster"].get(j, [])) for j in ("chief", "worker"))
    else:  # this machine's GPUs, else its CPU devices (several when split into logical devices)
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        key = (name, tuple(d.name for d in devices))
    # One strategy per process and device set: every new one numbers its collectives from 1
    # again, and the runtime rejects a second run whose collectives clash with the first's.
    if key not in _STRATEGIES:
        _STRATEGIES[key] = (tf.distribute.MultiWorkerMirroredStrategy() if name == "multiworker"
                            else tf.distribute.MirroredStrategy(list(key[1])))
    strategy = _STRATEGIES[key]
    replicas = int(strategy.num_replicas_in_sync)
    if global_batch % replicas:
        raise EdgefaceError(f"the batch size {global_batch} is the global batch: it must split evenly over the "
                            f"{replicas} replicas of train.strategy = {name}")
    print(f"edgeface: train.strategy {name}: {replicas} replicas on {workers} worker(s), "
          f"{global_batch // replicas} images per replica (global batch {global_batch})", file=sys.stderr, flush=True)
    return strategy, replicas, workers
