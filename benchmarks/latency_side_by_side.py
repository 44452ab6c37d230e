"""Single-face embed latency of several .tflite files and the ncnn teacher, timed side by side in one
run (1 thread; median of 3 alternating 200-call medians, so a change in machine load hits each alike).

    .venv/bin/python benchmarks/latency_side_by_side.py models/edgeface_face_int8.tflite NEW.tflite \\
        --teacher ../shared/teachers/mobilefacenet-ncnn --json benchmarks/results/compression/latency_residual.json
"""
import argparse
from pathlib import Path

from edgeface.errors import run_main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--json")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    from edgeface.bench.latency import delegate_partitions, side_by_side
    from edgeface.utils.io import write_json_atomic

    ms, ref = side_by_side(a.models, a.teacher, a.repeats)
    rows = [{"model": m, "bytes": Path(m).stat().st_size, "partitions": delegate_partitions(m)["partitions"],
             "embed_ms": round(v, 3), "x_teacher": round(ref / v, 3)} for m, v in ms.items()]
    for r in rows:
        print(f"{r['model']:<55} {r['embed_ms']:6.2f} ms  {r['x_teacher']:.2f}x the teacher ({ref:.2f} ms), "
              f"{r['partitions']} partition(s)")
    if a.json:
        write_json_atomic(a.json, {"threads": 1, "teacher": a.teacher, "teacher_ms": round(ref, 3), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main))
