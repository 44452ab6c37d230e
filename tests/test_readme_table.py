"""`make bench` rewrites the README's table from bench.json: only between the markers, atomically."""
import importlib.util
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("readme_table", REPO / "benchmarks" / "readme_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_table_between_markers(tmp_path, capsys):
    mod = _module()
    bench = {"date": "2026-11-22", "teacher_latency_ms": {"median": 5.6}, "models": [
        {"path": str(tmp_path / "f_int8.tflite"), "task": "face_embedding", "dtype": "int8", "bytes": 862144,
         "budget": 1000000, "budget_ok": True, "latency_ms": {"median": 0.7}, "end_to_end_ms": {"median": 13.2},
         "speedup_vs_teacher": 8.0, "delegate": {"partitions": 1},
         "lfw": {"accuracy": 0.9512, "std": 0.0101, "auc": 0.98765, "tar_at_far_1e-3": 0.5}},
        {"path": str(tmp_path / "f_float32.tflite"), "task": "face_embedding", "dtype": "float32", "bytes": 2378112,
         "budget": None, "budget_ok": None, "latency_ms": {"median": 1.2}, "lfw": None},
    ]}
    (tmp_path / "f_int8.json").write_text(json.dumps({"micro": {"arena_bytes": 1234, "flash_bytes": 5678}}))
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- bench:start -->\nold table\n<!-- bench:end -->\noutro\n")
    assert mod.main([str(tmp_path / "bench.json"), str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("intro\n<!-- bench:start -->\n") and text.endswith("<!-- bench:end -->\noutro\n")
    assert "old table" not in text
    assert ("| `f_int8` (TFLM arena 1,234 B, C array 5,678 B) | int8 | 862,144 | 1,000,000 ok | 95.12 ± 1.01 | 0.9877 | "
            "0.500 | 0.70 | 8.00x | 1 | 13.2 |") in text
    assert "x ncnn teacher (5.60 ms)" in text
    assert text.index("f_int8") < text.index("f_float32")  # int8 first
    assert "Measured on:" not in text  # an older bench.json without the CPU: no line

    bench["machine"] = {"cpu": {"model": "AMD EPYC", "int8_dot_product": False, "int8_features": []}}
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    assert mod.main([str(tmp_path / "bench.json"), str(readme)]) == 0
    assert "Measured on: AMD EPYC, int8 dot product: no." in readme.read_text()

    from edgeface.errors import run_main
    readme.write_text("no markers\n")
    assert run_main(mod.main, [str(tmp_path / "bench.json"), str(readme)]) == 2
    assert "markers" in capsys.readouterr().err
    assert readme.read_text() == "no markers\n"
