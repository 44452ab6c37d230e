"""What each speed lever costs a trained MobileFaceNet before any fine-tuning (issue 14's 2x): int8 time
side by side with the ncnn teacher on one thread, and the float function's cosine to the unchanged network
on held-out CelebA faces (never LFW).

    .venv/bin/python benchmarks/speed_levers.py runs/face_1mb_graph benchmarks/results/compression/speed_levers.json \
        [--teacher ../shared/teachers/mobilefacenet-ncnn]

Levers: PReLU -> ReLU (all, the 56x56 ones, the 13 largest), more channels pruned (ranked by importance
per unit of estimated int8 time, or by importance alone), each converted as shipped (equalised, two-op
PReLU, per-tensor int8) and timed alternately (median of 3 runs of 200 calls).
"""
import argparse
import tempfile
from pathlib import Path

from edgeface.errors import EdgefaceError, run_main

PRUNE_COUNTS = (300, 450)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("out")
    ap.add_argument("--teacher", default="../shared/teachers/mobilefacenet-ncnn", help="ncnn teacher folder")
    a = ap.parse_args(argv)
    if not Path(a.teacher).is_dir():
        raise EdgefaceError(f"ncnn teacher folder not found: {a.teacher}")
    import tf_keras as keras

    from edgeface.bench.latency import delegate_partitions, side_by_side
    from edgeface.convert.source import load_source
    from edgeface.data.hygiene import LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.activation import prelu_layers
    from edgeface.optimize.compress import deploy_form, int8_bytes, load_faces_split, prune_channels
    from edgeface.optimize.distill import mean_cosine, predict
    from edgeface.optimize.equalize import rebuild
    from edgeface.utils.io import write_json_atomic

    src = load_source(a.run)
    model, norm = src.model, src.normalization()
    train_x, val_x, split = load_faces_split(src.training_dir(), src.input_shape, norm["mean"], norm["std"],
                                             max_train=300, exclude=LFW_PEOPLE_IN_CELEBA)
    val_x = val_x[:300]
    reference = predict(model, val_x)

    def with_relu(names):
        def replace(layer, arg, new_name):
            return keras.layers.ReLU(name=new_name(layer.name))(arg) if layer.name in names else None
        return rebuild(model, replace, False, name=model.name)

    prelus = prelu_layers(model)
    largest = sorted(prelus, key=lambda l: -int(l.output_shape[1] * l.output_shape[2] * l.output_shape[3]))
    levers = {"none": lambda: model,
              "relu_all": lambda: with_relu({l.name for l in prelus}),
              "relu_56x56": lambda: with_relu({l.name for l in prelus if l.output_shape[1] >= 56}),
              "relu_largest13": lambda: with_relu({l.name for l in largest[:13]})}
    for n in PRUNE_COUNTS:
        levers[f"prune{n}_time"] = lambda n=n: prune_channels(model, train_x[:256], n, rank="time")[0]
        levers[f"prune{n}_importance"] = lambda n=n: prune_channels(model, train_x[:256], n)[0]
    tmp = Path(tempfile.mkdtemp(prefix="speed_levers-"))
    rows = []
    for name, build in levers.items():
        variant = build()
        path = tmp / f"{name}.tflite"
        path.write_bytes(int8_bytes(deploy_form(variant, train_x), train_x[:100], per_channel=False))
        rows.append({"lever": name, "bytes": path.stat().st_size, "partitions": delegate_partitions(path)["partitions"],
                     "cold_cosine": round(mean_cosine(predict(variant, val_x), reference), 4), "path": path})
        print(f"{name}: {rows[-1]['bytes']:,} B, cold cosine {rows[-1]['cold_cosine']:.4f}", flush=True)
    ms, teacher_ms = side_by_side([row["path"] for row in rows], a.teacher)
    for row in rows:
        row["ms"] = round(ms[str(row.pop("path"))], 3)
        row["x_teacher"] = round(teacher_ms / row["ms"], 3)
        print(f"{row['lever']:<20} {row['ms']:6.2f} ms  {row['x_teacher']:.2f}x  cold cosine {row['cold_cosine']:.4f}")
    write_json_atomic(a.out, {"run": str(a.run), "faces": split, "teacher_ms": round(teacher_ms, 3), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
