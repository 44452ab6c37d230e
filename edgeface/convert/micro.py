"""TFLite Micro export: the model as a C array, the ops resolver it needs, and its tensor-arena size.

Writes NAME_micro/{model.tflite, model_data.h, model_data.cc, ops_resolver.h} beside NAME.tflite
and adds a `micro` section to the model card. The C array holds the .tflite without the quantisation
parameters of its convolution biases (`strip_bias_quantization`), which TFLM never reads, once
TFLM's output on it is checked identical to the full file's. The arena is measured with the tflite-micro Python interpreter
(RecordingMicroAllocator, in a subprocess so a TFLM abort cannot kill the convert) when that package
is installed; a greedy memory plan over tensor lifetimes (what TFLM's GreedyMemoryPlanner does for
the activations) is always computed too, and is the estimate when tflite-micro is absent.

TF-free: the flatbuffer is read with the schema bindings shipped in ai_edge_litert.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.runtime.interpreter import TFLITE_IDENTIFIER, card_path, check_tflite_file, load_card
from edgeface.utils.io import sha256_file, write_bytes_atomic, write_json_atomic, write_text_atomic

ARRAY_NAME = "g_model_data"
ALIGNMENT = 16  # TFLM wants the model and every arena buffer 16-byte aligned
ARENA_MARGIN = 1.10  # the generated kTensorArenaSize: measured use + 10% (kernels differ across targets)
TFLM_TIMEOUT_S = 300

# TFLite TensorType -> bytes per element (schema.fbs order).
_TYPE_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 5: 1, 6: 1, 7: 2, 8: 8, 9: 1, 10: 8, 11: 16, 12: 8, 13: 4,
               14: 4, 15: 1, 16: 2, 17: 1, 18: 1}
# BuiltinOperator names whose MicroMutableOpResolver method is not plain CamelCase of the name.
_RESOLVER_EXCEPTIONS = {"PADV2": "AddPadV2", "CUMSUM": "AddCumSum", "SPLIT_V": "AddSplitV", "ADD_N": "AddAddN"}


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as schema
        except ImportError:
            raise EdgefaceError("reading .tflite structure needs ai-edge-litert (pip install ai-edge-litert)") from None
    return schema


def parse_model(data: bytes):
    schema = _schema()
    try:
        return schema.ModelT.InitFromPackedBuf(bytearray(data), 0), schema
    except Exception as e:  # a damaged flatbuffer raises struct/index errors from deep inside
        raise EdgefaceError(f"cannot parse the TFLite flatbuffer: {type(e).__name__}: {e}") from None


def _operators(model, schema):
    """(subgraph, operator, builtin name) for every operator of a parsed model."""
    by_code = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    for sg in model.subgraphs:
        for op in sg.operators or []:
            oc = model.operatorCodes[op.opcodeIndex]
            code = max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))  # schema v3a split field
            yield sg, op, by_code.get(code, f"BUILTIN_{code}")


def op_names(data: bytes) -> list[str]:
    """Builtin op names the model uses, in first-use order (CUSTOM ops as CUSTOM:name)."""
    model, schema = parse_model(data)
    names = []
    for _, op, name in _operators(model, schema):
        if name == "CUSTOM":
            cc = model.operatorCodes[op.opcodeIndex].customCode
            name = "CUSTOM:" + (cc.decode() if isinstance(cc, bytes) else str(cc))
        if name not in names:
            names.append(name)
    return names


def resolver_method(op: str) -> str:
    """BuiltinOperator name -> MicroMutableOpResolver method (CONV_2D -> AddConv2D)."""
    if op.startswith("CUSTOM:"):
        raise EdgefaceError(f"custom op {op[7:]} has no TFLite Micro builtin kernel")
    if op in _RESOLVER_EXCEPTIONS:
        return _RESOLVER_EXCEPTIONS[op]
    parts = op.split("_")
    return "Add" + "".join(p if p[:1].isdigit() else p.capitalize() for p in parts)


def _nbytes(tensor) -> int:
    shape = [int(v) for v in (tensor.shape if tensor.shape is not None else [])]
    return int(np.prod(shape, dtype=np.int64)) * _TYPE_BYTES.get(int(tensor.type), 4)


def _align(n: int, a: int = ALIGNMENT) -> int:
    return (n + a - 1) // a * a


def plan_activations(data: bytes) -> dict:
    """Greedy arena plan of the non-constant tensors of subgraph 0 (TFLM GreedyMemoryPlanner's rule:
    largest first, each at the lowest 16-byte-aligned offset free for its whole lifetime)."""
    model, _ = parse_model(data)
    sg = model.subgraphs[0]
    ops = sg.operators or []
    n_ops = len(ops)

    def constant(i):
        buf = model.buffers[sg.tensors[i].buffer]
        return (buf.data is not None and len(buf.data) > 0) or bool(getattr(buf, "size", 0))

    first, last = {}, {}
    for i in sg.inputs:
        first[i], last[i] = 0, 0
    for k, op in enumerate(ops):
        for i in list(op.inputs if op.inputs is not None else []) + list(op.intermediates if op.intermediates is not None else []):
            if i >= 0 and not constant(i):
                first.setdefault(i, k)
                last[i] = max(last.get(i, k), k)
        for i in (op.outputs if op.outputs is not None else []):
            if i >= 0:
                first.setdefault(i, k)
                last[i] = max(last.get(i, k), k)
    for i in sg.outputs:
        last[i] = max(n_ops - 1, 0)
        first.setdefault(i, 0)

    buffers = sorted(((_align(_nbytes(sg.tensors[i])), first[i], last[i], i) for i in first), reverse=True)
    placed, high = [], 0  # (offset, size, first, last)
    for size, f, l, _ in buffers:
        live = sorted((o, s) for o, s, pf, pl in placed if not (pl < f or pf > l))
        offset = 0
        for o, s in live:  # first gap big enough
            if offset + size <= o:
                break
            offset = max(offset, _align(o + s))
        placed.append((offset, size, f, l))
        high = max(high, offset + size)
    largest = max((b[0] for b in buffers), default=0)
    return {"planned_bytes": high, "largest_tensor_bytes": largest, "tensors": len(buffers), "ops": n_ops}


_TFLM_SCRIPT = r"""
import json, sys
import numpy as np
from tflite_micro import runtime
data = open(sys.argv[1], "rb").read()
arena = int(sys.argv[2])
it = runtime.Interpreter.from_bytes(data, arena_size=arena)
d = it.get_input_details(0)
shape = [int(v) for v in d["shape"]]
x = np.random.default_rng(0).uniform(-1, 1, shape).astype(np.float32)
q = d["quantization_parameters"]
if np.dtype(d["dtype"]) == np.int8:
    x = np.clip(np.round(x / q["scales"][0] + q["zero_points"][0]), -128, 127).astype(np.int8)
it.set_input(x, 0)
it.invoke()
y = it.get_output(0)
sys.stderr.flush()
it.print_allocations()
print(json.dumps({"output": np.asarray(y, np.float64).ravel().tolist(), "output_dtype": str(np.asarray(y).dtype)}))
"""


def tflm_available() -> bool:
    try:
        import importlib.util
        return importlib.util.find_spec("tflite_micro") is not None
    except (ImportError, ValueError):
        return False


def measure_arena_tflm(tflite_path: str | os.PathLike, planned_bytes: int) -> dict:
    """Run the model once in the tflite-micro interpreter; read the arena use it records.

    Returns {"arena_bytes", "head_bytes", "tail_bytes", "output"} or {"error": one line}.
    """
    arena = max(1 << 20, 4 * planned_bytes + (1 << 20))
    try:
        proc = subprocess.run([sys.executable, "-c", _TFLM_SCRIPT, str(tflite_path), str(arena)],
                              capture_output=True, text=True, timeout=TFLM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"error": f"tflite-micro did not finish within {TFLM_TIMEOUT_S}s"}
    found = {}
    for line in proc.stderr.splitlines():
        for key, tag in (("arena_bytes", "Arena allocation total"), ("head_bytes", "Arena allocation head"),
                         ("tail_bytes", "Arena allocation tail")):
            if tag in line:
                found[key] = int(line.split(tag)[1].split()[0])
    if proc.returncode != 0 or "arena_bytes" not in found:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        why = next((ln for ln in reversed(lines) if "Error" in ln or "error" in ln or "not" in ln),
                   lines[-1] if lines else f"exit {proc.returncode}")
        return {"error": why.strip()[:300]}
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        result = {}
    return {**found, **result}


def strip_bias_quantization(data: bytes) -> tuple[bytes, int]:
    """(flatbuffer, tensors changed): `data` without the per-channel scales and zero points of the int32
    biases of CONV_2D and DEPTHWISE_CONV_2D, 12 bytes per output channel (17% of round 10's 282 KB per-channel micro face
    model; a per-tensor file has none). TFLM's int8 kernels take the bias scale to be input scale x filter scale and never read these;
    XNNPACK does read them (it refuses such nodes), so the .tflite for LiteRT keeps them."""
    import flatbuffers

    model, schema = parse_model(data)
    changed = 0
    for sg, op, name in _operators(model, schema):
        inputs = list(op.inputs if op.inputs is not None else [])
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D") or len(inputs) < 3 or inputs[2] < 0:
            continue
        bias = sg.tensors[inputs[2]]
        q = bias.quantization
        if bias.type == schema.TensorType.INT32 and q is not None and q.scale is not None and len(q.scale) > 1:
            bias.quantization = None
            changed += 1
    if not changed:
        return data, 0
    builder = flatbuffers.Builder(len(data))
    builder.Finish(model.Pack(builder), file_identifier=TFLITE_IDENTIFIER)
    return bytes(builder.Output()), changed


def c_array(data: bytes, name: str = ARRAY_NAME, source_name: str = "model.tflite") -> tuple[str, str]:
    """(model_data.h, model_data.cc) text: a 16-byte aligned const array and its length."""
    guard = "EDGEFACE_MODEL_DATA_H_"
    header = (f"// Generated by edgeface from {source_name}: the TFLite flatbuffer as a C array.\n"
              f"#ifndef {guard}\n#define {guard}\n\n"
              f"extern const unsigned char {name}[];\n"
              f"extern const unsigned int {name}_len;\n"
              f"constexpr unsigned int k{_camel(name)}Len = {len(data)}u;\n\n#endif  // {guard}\n")
    rows = []
    for i in range(0, len(data), 12):
        rows.append("  " + ", ".join(f"0x{b:02x}" for b in data[i:i + 12]) + ",")
    source = (f"// Generated by edgeface from {source_name} ({len(data)} bytes).\n"
              f'#include "model_data.h"\n\n'
              f"// TFLM reads the flatbuffer in place: keep it in flash, aligned for its 16-byte loads.\n"
              f"alignas({ALIGNMENT}) const unsigned char {name}[] = {{\n" + "\n".join(rows) + "\n};\n"
              f"const unsigned int {name}_len = {len(data)}u;\n")
    return header, source


def _camel(name: str) -> str:
    return "".join(p.capitalize() for p in name.removeprefix("g_").split("_"))


def resolver_header(ops: list[str], arena_bytes: int, arena_note: str, source_name: str) -> str:
    methods = [resolver_method(op) for op in ops]
    arena = _align(int(arena_bytes * ARENA_MARGIN))
    body = "\n".join(f"  TF_LITE_ENSURE_STATUS(resolver.{m}());" for m in methods)
    return (f"// Generated by edgeface from {source_name}: the ops this model needs, for TFLite Micro.\n"
            "#ifndef EDGEFACE_OPS_RESOLVER_H_\n#define EDGEFACE_OPS_RESOLVER_H_\n\n"
            "#include <cstddef>\n\n"
            '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
            f"constexpr int kEdgefaceNumOps = {len(methods)};\n"
            f"// {arena_note}; +{round((ARENA_MARGIN - 1) * 100)}% margin, 16-byte aligned.\n"
            f"constexpr size_t kEdgefaceTensorArenaSize = {arena};\n\n"
            "using EdgefaceOpResolver = tflite::MicroMutableOpResolver<kEdgefaceNumOps>;\n\n"
            f"// Ops in first-use order: {', '.join(ops)}.\n"
            "inline TfLiteStatus EdgefaceRegisterOps(EdgefaceOpResolver& resolver) {\n"
            f"{body}\n  return kTfLiteOk;\n}}\n\n#endif  // EDGEFACE_OPS_RESOLVER_H_\n")


def _lean_flatbuffer(data: bytes, measured: dict | None, planned_bytes: int, out: Path) -> tuple[bytes, int, str]:
    """(bytes for the C array, bias tensors stripped, how that was checked): the stripped flatbuffer
    only when TFLM gives the same output on it as on the full file (same seeded input), else `data`.
    planned_bytes: the full file's activation plan (stripping leaves the activations as they are)."""
    lean, n = strip_bias_quantization(data)
    if not n:
        return data, 0, "nothing to strip"
    if not (measured and "output" in measured):
        return data, 0, "kept: tflite-micro is needed to check the stripped flatbuffer"
    import tempfile
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        probe = Path(tmp) / "lean.tflite"
        probe.write_bytes(lean)
        again = measure_arena_tflm(probe, planned_bytes)
    if again.get("output") != measured["output"]:
        return data, 0, "kept: TFLM output differs on the stripped flatbuffer (" + again.get("error", "values") + ")"
    return lean, n, "TFLM output identical to the full .tflite's (seeded input)"


def export_micro(tflite_path: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                 measure: bool = True) -> dict:
    """Write NAME_micro/ (C array, resolver, arena size) for a .tflite and record it on its card."""
    tflite_path = Path(tflite_path)
    data = check_tflite_file(tflite_path)
    out = Path(out_dir) if out_dir else tflite_path.with_name(tflite_path.stem + "_micro")
    ops = op_names(data)
    plan = plan_activations(data)
    measured = measure_arena_tflm(tflite_path, plan["planned_bytes"]) if (measure and tflm_available()) else None
    if measured and "arena_bytes" in measured:
        arena, method = measured["arena_bytes"], "measured: tflite-micro interpreter (RecordingMicroAllocator total)"
    else:
        # Activations only (a lower bound): TFLM adds a persistent tail (per-channel requantisation
        # data, node structs) that grows with the channel count.
        arena = plan["planned_bytes"]
        method = "estimated: greedy memory plan of tensor lifetimes (activations only; tflite-micro " + (
            f"failed: {measured['error']})" if measured else "not installed)")
    flash, stripped, strip_note = _lean_flatbuffer(data, measured, plan["planned_bytes"], out)

    header, source = c_array(flash, source_name=tflite_path.name + (" without its bias quantisation" if stripped else ""))
    write_bytes_atomic(out / "model.tflite", flash)
    write_text_atomic(out / "model_data.h", header)
    write_text_atomic(out / "model_data.cc", source)
    write_text_atomic(out / "ops_resolver.h", resolver_header(ops, arena, method, tflite_path.name))
    info = {
        "dir": out.name,
        "files": ["model.tflite", "model_data.h", "model_data.cc", "ops_resolver.h"],
        "flash_bytes": len(flash),
        "bias_quantization_stripped": stripped,
        "strip_check": strip_note,
        "array": ARRAY_NAME,
        "ops": ops,
        "resolver": [resolver_method(op) for op in ops],
        "arena_bytes": int(arena),
        "arena_method": method,
        "planned_activation_bytes": plan["planned_bytes"],
        "tflm": ({k: v for k, v in measured.items() if k != "output"} if measured else None),
    }
    card = load_card(tflite_path)
    if card:
        if card.sha256 and card.sha256 != sha256_file(tflite_path):
            raise EdgefaceError(f"{card_path(tflite_path).name} does not match {tflite_path.name} (sha256 differs)")
        write_json_atomic(card_path(tflite_path), replace(card, extra={**card.extra, "micro": info}).to_dict())
    return {**info, "tflm_output": measured.get("output") if measured else None}
