"""The training driver under tf.distribute (the face task): a MirroredStrategy run over 2 logical CPU devices and a
default single-device run (same seed, same data, 8 steps) give the same loss curve, the same
center-loss centres and the same weight updates; resume works under the strategy; a missing or
malformed TF_CONFIG fails in one line.

Logical devices must be set before TensorFlow initialises its devices, so every training run
happens in ONE child process (this file run as a script) and the tests check what it wrote. Data:
10 real CelebA identities x 4 photos (their 250x250 crops, not re-aligned: alignment plays no part
in what is compared); model: a 22k-parameter MobileNetV2 at 64 px.

Why lr 1e-5: at a random init, float32 rounding alone (fused vs unfused BatchNorm, on ONE device)
flips a few ReLU6 masks per step and moves the gradient by ~1e-3, and larger steps amplify that
chaotically (at lr 1e-4 two single-device runs drift apart by ~4e-3 within 8 steps). At 1e-5 the
runs stay within rounding of each other, while a real distribution bug (per-replica BatchNorm
statistics, a loss not scaled to the global batch, centres moved per replica) shows at 1e-2..1.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgeface  # noqa: F401

N_IDS, PER_ID, STEPS = 10, 4, 8
SETS = ["model.name=mobilenetv2", "model.alpha=0.35", "model.input_size=64", "model.last_channels=64",
        "model.embedding_dim=32", "model.stages=[[1,16,1,1],[6,24,1,2]]",
        "data.val_fraction=0.2", "data.batch_size=8", "data.val_batch_size=16",
        "optim.name=sgd", "optim.lr=1e-5", "optim.warmup_epochs=0", "optim.schedule=step", "optim.milestones=[100]",
        "train.log_every=1", "train.checkpoint_every=0", "train.seed=5"]
CASES = {  # (a) softmax + center loss; (b) distillation (cosine via a 32->128 projection, relational) + ArcFace
    "center": ["loss.name=center", "loss.center_lambda=0.1"],
    "distill": ["loss.name=arcface", "loss.weight=0.1", "loss.relational_weight=1"],
}
TAGS = ("loss", "cls_loss", "center_loss", "distill_loss", "relational_loss")


# ---------------------------------------------------------------------------------------------
# The child process: python tests/test_train_distribute.py SPEC.json

def _child(spec_path: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from edgeface.cli import main
    from edgeface.train.face import FaceTask, resolve_config
    from edgeface.train.loop import Trainer

    class Recording(Trainer):
        """The real driver, keeping the initial weights for the update comparison."""

        def build(self):
            super().build()
            self.w0 = [v.numpy() for v in self.stages[0].variables]

    spec = json.loads(Path(spec_path).read_text())
    out, data = Path(spec["out"]), spec["data"]
    cases = {"center": CASES["center"]}
    if spec["teacher"]:
        cases["distill"] = [*CASES["distill"], f"train.teacher={spec['teacher']}"]
    results = {}
    for case, extra in cases.items():
        for strategy in ("default", "mirrored"):
            run = out / f"{case}_{strategy}"
            cfg = resolve_config(run, None, [*SETS, *extra, f"train.max_steps={STEPS}", f"train.strategy={strategy}"])
            trainer = Recording(FaceTask(data, cfg), run)
            info = trainer.run()
            trained, center = trainer.stages[0].variables, trainer.task.center
            tracked = list(trained) + ([center.centers] if center is not None else [])
            copies = [[c.numpy() for c in getattr(v, "values", [v])] for v in tracked]
            np.savez(run / "weights.npz", **{f"w0_{i}": w for i, w in enumerate(trainer.w0)},
                     **{f"w_{i}": v.numpy() for i, v in enumerate(trained)},
                     centers=center.centers.numpy() if center is not None else np.zeros(0))
            results[f"{case}_{strategy}"] = {
                "curves": _curves(run), "distribute": info["distribute"], "copies": len(copies[0]),
                # the largest difference between two replicas' copies of any weight or centre
                "replica_spread": max(float(np.abs(c - cs[0]).max()) for cs in copies for c in cs)}
    # Resume under the strategy, through the CLI: 4 steps, then --resume to 8 in a fresh trainer.
    run = out / "resume_mirrored"
    args = ["train", "face", "--data", data, "--out", str(run), "--strategy", "mirrored"]
    for s in [*SETS, *CASES["center"]]:
        args += ["--set", s]
    codes = [main([*args, "--max-steps", str(STEPS // 2)]), main([*args, "--resume", "--max-steps", str(STEPS)])]
    # every saved variable at step 8 (weights, optimizer slots, centres, counters) against the uninterrupted run
    a, b = (tf.train.load_checkpoint(str(r / "checkpoints" / f"ckpt-{STEPS}")) for r in (run, out / "center_mirrored"))

    def names(ckpt):
        return sorted(k for k in ckpt.get_variable_to_shape_map()
                      if "OBJECT_GRAPH" not in k and "save_counter" not in k)

    diff = max(float(np.abs(np.float64(a.get_tensor(k)) - np.float64(b.get_tensor(k))).max()) for k in names(a))
    results["resume_mirrored"] = {"codes": codes, "curves": _curves(run), "saved_vars": len(names(a)),
                                  "same_names": names(a) == names(b), "vars_max_diff": diff,
                                  "run_json": json.loads((run / "run.json").read_text())}
    (out / "results.json").write_text(json.dumps(results))


def _curves(run: Path) -> dict:
    """Per-step train/* scalars from the run's TensorBoard events."""
    import tensorflow as tf
    from tensorflow.core.util import event_pb2

    got: dict = {}
    for f in sorted((run / "tb").iterdir()):
        for record in tf.data.TFRecordDataset(str(f)):
            event = event_pb2.Event.FromString(record.numpy())
            for v in event.summary.value:
                if v.tag.startswith("train/"):
                    got.setdefault(v.tag[6:], {})[event.step] = float(tf.make_ndarray(v.tensor))
    return {k: [d[s] for s in sorted(d)] for k, d in got.items()}


if __name__ == "__main__":
    _child(sys.argv[1])
    sys.exit(0)


# ---------------------------------------------------------------------------------------------
# The tests

@pytest.fixture(scope="module")
def celeba_ids(tmp_path_factory, celeba_root) -> Path:
    root = tmp_path_factory.mktemp("celeba_ids")
    ids = [d for d in sorted(celeba_root.iterdir()) if d.is_dir() and len(list(d.iterdir())) >= PER_ID][:N_IDS]
    for d in ids:
        for f in sorted(d.iterdir())[:PER_ID]:
            link = root / d.name / f.name
            link.parent.mkdir(exist_ok=True)
            link.symlink_to(f)
    return root


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def runs(tmp_path_factory, celeba_ids):
    """The child's runs and, at the same time, a 2-worker MultiWorkerMirroredStrategy run on this
    host (one process per worker, 1 CPU device each, TF_CONFIG naming both)."""
    from edgeface.utils.paths import shared_root

    out = tmp_path_factory.mktemp("distribute")
    shared = shared_root()
    teacher = shared / "teachers" / "mobilefacenet-ncnn" if shared is not None else None
    spec = out / "spec.json"
    spec.write_text(json.dumps({"out": str(out), "data": str(celeba_ids),
                                "teacher": str(teacher) if teacher is not None and teacher.is_dir() else ""}))
    env = {**os.environ, "EDGEFACE_CACHE": str(out / "cache"), "EDGEFACE_NO_PROGRESS": "1"}

    def start(name, cmd, **extra_env):  # output to files: a full pipe would stall a process
        log = open(out / f"{name}.log", "w")
        return subprocess.Popen(cmd, env={**env, **extra_env}, stdout=log, stderr=subprocess.STDOUT)

    procs = {"child": start("child", [sys.executable, __file__, str(spec)])}
    cluster = {"worker": [f"localhost:{p}" for p in _free_ports(2)]}
    cmd = [sys.executable, "-m", "edgeface.cli", "train", "face", "--data", str(celeba_ids),
           "--out", str(out / "multiworker"), "--strategy", "multiworker", "--max-steps", str(STEPS // 2)]
    for s in [*SETS, *CASES["center"]]:
        cmd += ["--set", s]
    for i in range(2):
        (out / f"tmp{i}").mkdir()
        tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": i}})
        procs[f"worker{i}"] = start(f"worker{i}", cmd, TF_CONFIG=tf_config, TMPDIR=str(out / f"tmp{i}"))
    done = {}
    try:
        for name, proc in procs.items():
            proc.wait(timeout=900)
            done[name] = (proc.returncode, (out / f"{name}.log").read_text()[-3000:])
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    assert done["child"][0] == 0, done["child"][1]
    return out, json.loads((out / "results.json").read_text()), done


def _max_rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.size
    return float(np.max(np.abs(a - b) / np.abs(a)))


def _update_rel(out: Path, case: str) -> float:
    """|| (w_mirrored - w0) - (w_default - w0) || / || w_default - w0 || over all trained variables."""
    with np.load(out / f"{case}_default" / "weights.npz") as d, np.load(out / f"{case}_mirrored" / "weights.npz") as m:
        n = len([k for k in d.files if k.startswith("w0_")])
        assert all(np.array_equal(d[f"w0_{i}"], m[f"w0_{i}"]) for i in range(n))  # same seed, same init
        num = sum(np.sum((m[f"w_{i}"] - d[f"w_{i}"]) ** 2) for i in range(n))
        den = sum(np.sum((d[f"w_{i}"] - d[f"w0_{i}"]) ** 2) for i in range(n))
    return float(np.sqrt(num / den))


@pytest.mark.parametrize("case", list(CASES))
def test_mirrored_matches_single_device(runs, case):
    out, res, _ = runs
    if f"{case}_default" not in res:
        pytest.skip("teacher models not found: ../shared/teachers")
    d, m = res[f"{case}_default"], res[f"{case}_mirrored"]
    assert d["distribute"] == {"strategy": "default", "replicas": 1, "workers": 1, "global_batch": 8,
                               "per_replica_batch": 8}
    assert m["distribute"] == {"strategy": "mirrored", "replicas": 2, "workers": 1, "global_batch": 8,
                               "per_replica_batch": 4}
    # every replica holds the same weights (margin head included) and the same centres
    assert m["copies"] == 2 and m["replica_spread"] == 0.0
    used = [t for t in TAGS if max(d["curves"][t]) > 0]
    assert {"loss", "cls_loss"} <= set(used) and len(d["curves"]["loss"]) == STEPS
    assert {"center": {"center_loss"}, "distill": {"distill_loss", "relational_loss"}}[case] <= set(used)
    rel = {t: _max_rel(d["curves"][t], m["curves"][t]) for t in used}
    update = _update_rel(out, case)
    print(f"{case}: max relative loss-curve difference {max(rel.values()):.1e} {rel}; weight updates {update:.1e}")
    assert max(rel.values()) < 1e-3, rel
    assert update < 2e-2
    if case == "center":  # the moving-average centres: one update per global batch
        with np.load(out / "center_default" / "weights.npz") as a, \
                np.load(out / "center_mirrored" / "weights.npz") as b:
            scale = np.abs(a["centers"]).max()
            assert scale > 0.1 and np.abs(a["centers"] - b["centers"]).max() < 2e-3 * scale


def test_resume_under_strategy(runs):
    out, res, _ = runs
    r, full = res["resume_mirrored"], res["center_mirrored"]
    assert r["codes"] == [0, 0]
    assert r["run_json"]["steps"] == STEPS and r["run_json"]["distribute"]["replicas"] == 2
    # Rebuilt model, restored checkpoint (weights, optimizer slots, centres): the uninterrupted run.
    for tag in ("loss", "center_loss"):
        assert _max_rel(full["curves"][tag], r["curves"][tag]) < 1e-5
    assert r["same_names"] and r["saved_vars"] > 50 and r["vars_max_diff"] < 1e-5


def test_multiworker_on_two_processes(runs):
    out, res, done = runs
    for i in range(2):
        assert done[f"worker{i}"][0] == 0, done[f"worker{i}"][1]
    run = out / "multiworker"
    info = json.loads((run / "run.json").read_text())
    assert info["distribute"] == {"strategy": "multiworker", "replicas": 2, "workers": 2, "global_batch": 8,
                                  "per_replica_batch": 4}
    # Only the chief (worker 0) wrote the run folder; worker 1's scratch copies are gone.
    assert len(list((run / "tb").iterdir())) == 1 and not list((out / "tmp1").iterdir())
    assert sorted(f.name for f in (run / "checkpoints").iterdir()) == ["checkpoint", "ckpt-4.data-00000-of-00001",
                                                                        "ckpt-4.index"]
    # Each worker took its half of every global batch (DATA auto-shard): the single-device curve.
    got, want = _curves(run), res["center_default"]["curves"]
    rel = {tag: _max_rel(want[tag][:STEPS // 2], got[tag]) for tag in ("loss", "cls_loss", "center_loss")}
    print(f"multiworker: max relative loss-curve difference {max(rel.values()):.1e} {rel}")
    assert max(rel.values()) < 1e-3, rel


def test_tf_config_errors(tmp_path, capsys, monkeypatch, celeba_ids):
    from edgeface.cli import main

    args = ["train", "face", "--data", str(celeba_ids), "--out", str(tmp_path / "run"), "--strategy", "multiworker"]
    monkeypatch.delenv("TF_CONFIG", raising=False)
    bad = ((None, "needs TF_CONFIG"), ("{not json", "not valid JSON"),
           ('{"cluster": {"worker": ["h:1"]}}', '"task"'),
           ('{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 1}}', "not one of"),
           ('{"cluster": {"ps": ["h:1"]}, "task": {"type": "ps", "index": 0}}', "chief and worker"),
           ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "host:port"))
    for tf_config, msg in bad:
        if tf_config is not None:
            monkeypatch.setenv("TF_CONFIG", tf_config)
        capsys.readouterr()
        assert main(args) == 2, tf_config
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()
    # an unknown strategy fails in config validation, like any bad key
    assert main([*args[:-2], "--set", "train.strategy=horovod"]) == 2
    assert "unknown train.strategy" in capsys.readouterr().err
    # both before TensorFlow is imported
    code = ("import sys; from edgeface.cli import main; "
            f"assert main({args!r}) == 2; assert main({[*args[:-2], '--set', 'train.strategy=horovod']!r}) == 2; "
            "assert 'tensorflow' not in sys.modules, 'TensorFlow was imported'")
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr[-2000:]


def test_chief_is_the_writer():
    from edgeface.train.distribute import is_chief, read_tf_config

    two = {"cluster": {"worker": ["a:1", "b:1"]}}
    assert is_chief(read_tf_config(json.dumps({**two, "task": {"type": "worker", "index": 0}})))
    assert not is_chief(read_tf_config(json.dumps({**two, "task": {"type": "worker", "index": 1}})))
    with_chief = {"cluster": {"chief": ["c:1"], "worker": ["a:1"]}}
    assert is_chief(read_tf_config(json.dumps({**with_chief, "task": {"type": "chief", "index": 0}})))
    assert not is_chief(read_tf_config(json.dumps({**with_chief, "task": {"type": "worker", "index": 0}})))
