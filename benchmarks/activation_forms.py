"""Why the shipped MobileFaceNet keeps PReLU (issue 14): the int8 speed of each activation form
against what swapping costs before any fine-tuning.

    .venv/bin/python benchmarks/activation_forms.py runs/mobilefacenet benchmarks/results/compression/activation_forms.json

For the unpruned import: int8 per-tensor after equalisation with PReLU split (exact), one LeakyReLU
per layer (slopes fitted by activation.leaky_alphas) and ReLU; each file's bytes, XNNPACK partitions,
median single-face latency on one thread (all timed in this one run, alternating), and the cosine of
the float model's embeddings to the PReLU model's on held-out CelebA identities (never LFW).
"""
import json
import sys
import tempfile
from pathlib import Path

from edgeface.errors import EdgefaceError, run_main


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        raise EdgefaceError("usage: activation_forms.py RUN OUT.json")
    from edgeface.bench.latency import delegate_partitions, side_by_side
    from edgeface.convert.source import load_source
    from edgeface.data.hygiene import LFW_PEOPLE_IN_CELEBA
    from edgeface.optimize.activation import swap_prelu
    from edgeface.optimize.compress import deploy_form, int8_bytes, load_faces_split
    from edgeface.optimize.distill import mean_cosine, predict
    from edgeface.utils.io import write_json_atomic

    src = load_source(Path(args[0]))
    norm = src.normalization()
    train_x, val_x, split = load_faces_split(src.training_dir(), src.input_shape, norm["mean"], norm["std"],
                                             max_train=300, exclude=LFW_PEOPLE_IN_CELEBA)
    reference = predict(src.model, val_x)
    rows, files = [], {}
    tmp = Path(tempfile.mkdtemp(prefix="activation_forms-"))
    for kind in ("prelu", "leaky", "relu"):
        model, alphas = swap_prelu(src.model, kind, train_x)
        files[kind] = tmp / f"{kind}.tflite"
        files[kind].write_bytes(int8_bytes(deploy_form(model, train_x), train_x[:100], per_channel=False))
        rows.append({"activation": kind, "int8_form": "PReLU split (4 ops)" if kind == "prelu" else kind,
                     "bytes": files[kind].stat().st_size, "partitions": delegate_partitions(files[kind])["partitions"],
                     "float_cosine_to_prelu": round(mean_cosine(predict(model, val_x), reference), 4)})
    ms, _ = side_by_side([files[row["activation"]] for row in rows])
    for row in rows:
        row["latency_ms"] = round(ms[str(files[row["activation"]])], 3)
        print(f"{row['int8_form']:<20} {row['bytes']:>10,} B  {row['partitions']} partition(s)  "
              f"{row['latency_ms']:.2f} ms  float cosine to PReLU {row['float_cosine_to_prelu']:.4f}")
    write_json_atomic(args[1], {"faces": split, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
