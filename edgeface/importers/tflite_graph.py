"""Rebuild a float32 .tflite of any architecture as a flat tf-keras Functional model.

For a file whose card names no registered architecture (the ncnn-imported MobileFaceNet, after
pruning) there is no model to load the weights into, so the graph itself is read back: the
interpreter's ops in execution order become one Keras layer each, with the file's constants as
weights. The layers are those the ncnn importer uses (Conv2D / DepthwiseConv2D with bias,
PReLU with shared_axes=[1, 2], ZeroPadding2D, Add, Flatten, Dense), so cross-layer equalisation,
channel surgery and the converter take the result as they take an import.

The interpreter does not expose builtin options (stride, padding, fused activation, alpha), so
they are read from the flatbuffer with the schema module that ships with ai_edge_litert.

edgeface writes PReLU as c1*x + c2*leaky_relu(x, alpha) for int8 (equalize.split_prelu); that
exact four-op pattern is collapsed back into one PReLU of slope c1 + alpha*c2 when c1 + c2 = 1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError, first_line

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "PAD", "ADD", "MUL", "LEAKY_RELU", "RELU", "RELU6", "PRELU",
                 "RESHAPE", "FULLY_CONNECTED", "MEAN", "L2_NORMALIZATION", "DEQUANTIZE")
QUANTIZED_DTYPES = (np.int8, np.uint8, np.int16)
# c1 + c2 of a split PReLU is 1 up to the rounding of c1 = 1 - c2 and of the stored weights
SPLIT_SUM_TOLERANCE = 1e-5


# ---------------------------------------------------------------- the file's graph

@dataclass
class Graph:
    """Subgraph 0 of a .tflite: ops in execution order with their builtin options, and its tensors."""

    name: str
    ops: list[dict]
    tensors: dict[int, dict]
    inputs: list[int]
    outputs: list[int]
    constants: dict[int, np.ndarray]  # float32 values (float16 weights already dequantised)
    stored_dtype: dict[int, np.dtype] = field(default_factory=dict)  # of a dequantised constant
    producer: dict[int, int] = field(default_factory=dict)
    consumers: dict[int, list[int]] = field(default_factory=dict)

    def __post_init__(self):
        for i, op in enumerate(self.ops):
            for t in op["outputs"]:
                self.producer[t] = i
            for t in op["inputs"]:
                self.consumers.setdefault(t, []).append(i)

    def const(self, index: int) -> np.ndarray | None:
        return self.constants.get(index)

    def rounding(self, index: int) -> float:
        """Relative rounding of a constant as the file stores it (float16 weights: 2**-10)."""
        return float(np.finfo(self.stored_dtype.get(index, np.float32)).eps)

    def shape(self, index: int) -> tuple[int, ...]:
        return tuple(int(v) for v in self.tensors[index]["shape"])


def _litert():
    """(Interpreter, OpResolverType, flatbuffer schema module) of ai_edge_litert."""
    try:
        from ai_edge_litert import schema_py_generated
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        raise EdgefaceError("the graph importer needs ai-edge-litert: pip install 'edgeface[runtime]'") from None
    return Interpreter, OpResolverType, schema_py_generated


def _options_by_op(data: bytes) -> list[tuple[str, dict]]:
    """(op name, builtin options as a dict) of every operator of subgraph 0, in file order."""
    fb = _litert()[2]
    codes = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    model = fb.Model.GetRootAs(data, 0)
    sub = model.Subgraphs(0)
    readers = {  # op -> (options class, {key: accessor})
        "CONV_2D": (fb.Conv2DOptions, {"padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW",
                                       "dilation_h": "DilationHFactor", "dilation_w": "DilationWFactor",
                                       "activation": "FusedActivationFunction"}),
        "DEPTHWISE_CONV_2D": (fb.DepthwiseConv2DOptions, {
            "padding": "Padding", "stride_h": "StrideH", "stride_w": "StrideW", "multiplier": "DepthMultiplier",
            "dilation_h": "DilationHFactor", "dilation_w": "DilationWFactor",
            "activation": "FusedActivationFunction"}),
        "ADD": (fb.AddOptions, {"activation": "FusedActivationFunction"}),
        "MUL": (fb.MulOptions, {"activation": "FusedActivationFunction"}),
        "FULLY_CONNECTED": (fb.FullyConnectedOptions, {"activation": "FusedActivationFunction",
                                                       "keep_num_dims": "KeepNumDims",
                                                       "weights_format": "WeightsFormat"}),
        "LEAKY_RELU": (fb.LeakyReluOptions, {"alpha": "Alpha"}),
        "MEAN": (fb.ReducerOptions, {"keep_dims": "KeepDims"}),
        "L2_NORMALIZATION": (fb.L2NormOptions, {"activation": "FusedActivationFunction"}),
    }
    out = []
    for i in range(sub.OperatorsLength()):
        op = sub.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # files from before schema v3a keep small codes only in the deprecated field
        name = codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        if name == "CUSTOM":  # the interpreter names a custom op by its code string
            name = (code.CustomCode() or b"CUSTOM").decode()
        options = {}
        table = op.BuiltinOptions()
        if name in readers and table is not None:
            cls, keys = readers[name]
            reader = cls()
            reader.Init(table.Bytes, table.Pos)
            options = {k: getattr(reader, acc)() for k, acc in keys.items()}
        out.append((name, options))
    return out


def read_graph(path) -> Graph:
    """The graph of a float32 .tflite (EdgefaceError for a quantised one)."""
    from edgeface.runtime.interpreter import check_tflite_file

    Interpreter, OpResolverType, _ = _litert()

    path = Path(path)
    data = check_tflite_file(path)
    try:
        # no default delegate: XNNPACK would replace the ops by one DELEGATE node
        interp = Interpreter(model_content=data,
                             experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        interp.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise EdgefaceError(f"not a valid TFLite model: {path} ({first_line(e)})") from None
    tensors = {d["index"]: d for d in interp.get_tensor_details()}
    quantized = sorted({np.dtype(d["dtype"]).name for d in tensors.values() if d["dtype"] in QUANTIZED_DTYPES})
    if quantized:
        raise EdgefaceError(f"{path.name} is a quantised graph ({', '.join(quantized)} tensors): "
                            "the graph importer reads float32 files only")
    ops = interp._get_ops_details()  # noqa: SLF001 - the only view of the op list
    options = _options_by_op(data)
    if [o["op_name"] for o in ops] != [name for name, _ in options]:
        raise EdgefaceError(f"{path.name}: the interpreter's ops are not the file's subgraph 0 in order: "
                            "cannot read their options")
    for op, (_, opts) in zip(ops, options):
        op["options"] = opts
        op["inputs"] = [int(t) for t in op["inputs"]]
        op["outputs"] = [int(t) for t in op["outputs"]]
    inputs = [int(d["index"]) for d in interp.get_input_details()]
    outputs = [int(d["index"]) for d in interp.get_output_details()]
    produced = {t for op in ops for t in op["outputs"]} | set(inputs)
    constants = {i: interp.get_tensor(i) for i in tensors if i not in produced}
    stored = {}
    for op in ops:  # a float16 file stores its weights as float16 constants behind a DEQUANTIZE
        src, out = op["inputs"][0], op["outputs"][0]
        if op["op_name"] == "DEQUANTIZE" and src in constants:
            constants[out], stored[out] = constants[src].astype(np.float32), constants[src].dtype
    return Graph(path.name, ops, tensors, inputs, outputs, constants, stored)


# ---------------------------------------------------------------- split PReLU

@dataclass
class PReLUSplit:
    """An Add(DW1x1(x), DW1x1(LeakyReLU(x))) that is exactly PReLU(x) with these slopes."""

    add: int  # op index of the Add
    source: int  # tensor x
    slopes: np.ndarray
    ops: tuple[int, int, int]  # the linear DW, the LeakyReLU and the bent DW: skipped


def _unit_dw(g: Graph, tensor: int) -> tuple[int, np.ndarray, float] | None:
    """(op index, per-channel kernel, its rounding) when `tensor` is a bias-free, activation-free
    1x1 depthwise conv of stride 1 read by one op only."""
    i = g.producer.get(tensor)
    if i is None or g.ops[i]["op_name"] != "DEPTHWISE_CONV_2D" or len(g.consumers.get(tensor, [])) != 1:
        return None
    op, opts = g.ops[i], g.ops[i]["options"]
    w = g.const(op["inputs"][1])
    bias = g.const(op["inputs"][2]) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
    if (w is None or w.shape[:3] != (1, 1, 1) or opts.get("multiplier", 1) != 1 or opts.get("activation", 0)
            or (opts.get("stride_h", 1), opts.get("stride_w", 1)) != (1, 1) or (bias is not None and np.any(bias))):
        return None
    return i, w.reshape(-1).astype(np.float32), g.rounding(op["inputs"][1])


def find_prelu_splits(g: Graph) -> dict[int, PReLUSplit]:
    """Add op index -> the PReLU split it closes (equalize.split_prelu's pattern, c1 + c2 = 1)."""
    found = {}
    for i, op in enumerate(g.ops):
        if op["op_name"] != "ADD" or op["options"].get("activation", 0) or len(op["inputs"]) != 2:
            continue
        a, b = op["inputs"]
        for lin_t, bent_t in ((a, b), (b, a)):
            lin, bent = _unit_dw(g, lin_t), _unit_dw(g, bent_t)
            if lin is None or bent is None:
                continue
            leaky_t = g.ops[bent[0]]["inputs"][0]
            j = g.producer.get(leaky_t)
            if j is None or g.ops[j]["op_name"] != "LEAKY_RELU" or len(g.consumers[leaky_t]) != 1:
                continue
            x = g.ops[lin[0]]["inputs"][0]
            if g.ops[j]["inputs"][0] != x or {lin_t, bent_t, leaky_t} & set(g.outputs):
                continue
            c1, c2 = lin[1], bent[1]
            tolerance = SPLIT_SUM_TOLERANCE + max(lin[2], bent[2]) * (np.abs(c1) + np.abs(c2))
            if np.any(np.abs(c1 + c2 - 1.0) > tolerance):
                continue  # not a PReLU (slope 1 for x > 0): keep the ops
            alpha = float(g.ops[j]["options"]["alpha"])
            found[i] = PReLUSplit(i, x, (c1 + alpha * c2).astype(np.float32), (lin[0], j, bent[0]))
            break
    return found


# ---------------------------------------------------------------- Keras layers

def _keras():
    import edgeface  # noqa: F401  (tf-keras before TensorFlow)
    import tf_keras as keras
    return keras


class _Namer:
    """Keras layer names from the file's tensor names ('imported/conv_1_conv2d/BiasAdd;...' ->
    'conv_1_conv2d'), unique, so a re-import keeps recognisable names."""

    def __init__(self):
        self.taken: set[str] = set()

    def __call__(self, tensor_name: str, fallback: str) -> str:
        parts = tensor_name.split(";")[0].split("/")
        base = re.sub(r"[^A-Za-z0-9_.-]", "_", parts[1] if len(parts) >= 3 else fallback)
        base = base if base[:1].isalnum() else fallback
        name, k = base, 1
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


def _activation(x, code: int, name: str, where: str):
    """Apply a fused activation as its own layer (equalisation must see a ReLU6 to stop at it)."""
    L = _keras().layers
    if code == 0:
        return x
    if code == 1:
        return L.ReLU(name=name + "_relu")(x)
    if code == 3:
        return L.ReLU(6.0, name=name + "_relu6")(x)
    raise EdgefaceError(f"{where}: fused activation type {code} is not supported (only NONE, RELU, RELU6)")


def _with_weights(layer, x, weights):
    y = layer(x)
    layer.set_weights([np.asarray(w, np.float32) for w in weights])
    return y


def _per_channel_const(value: np.ndarray, channels: int, where: str) -> np.ndarray:
    """A constant that broadcasts along the channel axis only, as a (channels,) vector."""
    v = np.asarray(value, np.float32)
    if v.size == 1:
        return np.full(channels, float(v.reshape(-1)[0]), np.float32)
    if v.size == channels and v.shape[-1] == channels:
        return v.reshape(-1)
    raise EdgefaceError(f"{where}: a constant of shape {list(v.shape)} is not per channel of {channels}")


class _Builder:
    def __init__(self, g: Graph):
        self.g = g
        self.L = _keras().layers
        self.t: dict[int, object] = {}  # tensor index -> Keras tensor
        self.name = _Namer()

    def act(self, index: int, where: str):
        if index not in self.t:
            raise EdgefaceError(f"{where}: input tensor {self.g.tensors[index]['name']!r} is a constant or was "
                                "never computed (only activation inputs are supported here)")
        return self.t[index]

    def const(self, index: int, where: str) -> np.ndarray:
        v = self.g.const(index)
        if v is None:
            raise EdgefaceError(f"{where}: expected a constant input, got an activation")
        return v.astype(np.float32)

    def conv(self, op, where, name):
        L, o = self.L, op["options"]
        x = self.act(op["inputs"][0], where)
        w = self.const(op["inputs"][1], where)
        b = self.const(op["inputs"][2], where) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
        kw = dict(strides=(o["stride_h"], o["stride_w"]), dilation_rate=(o["dilation_h"], o["dilation_w"]),
                  padding="same" if o["padding"] == 0 else "valid", name=name)
        channels = int(x.shape[-1])
        n_out = w.shape[0] if op["op_name"] == "CONV_2D" else w.shape[3]
        if op["op_name"] == "CONV_2D":
            if w.shape[3] != channels:
                raise EdgefaceError(f"{where}: grouped convolution ({channels} channels in, kernel takes {w.shape[3]}) "
                                    "is not supported")
            layer = L.Conv2D(n_out, w.shape[1:3], **kw)
            kernel = w.transpose(1, 2, 3, 0)  # [out, h, w, in] -> [h, w, in, out]
        else:
            mult = n_out // channels
            layer = L.DepthwiseConv2D(w.shape[1:3], depth_multiplier=mult, **kw)
            kernel = w[0].reshape(w.shape[1], w.shape[2], channels, mult)  # out channel c*mult + m
        bias = b if b is not None else np.zeros(n_out)
        return _activation(_with_weights(layer, x, [kernel, bias]), o["activation"], name, where)

    def dense(self, op, where, name):
        o = op["options"]
        x = self.act(op["inputs"][0], where)
        if o.get("weights_format", 0) or o.get("keep_num_dims"):
            raise EdgefaceError(f"{where}: shuffled weights or keep_num_dims are not supported")
        if len(x.shape) > 2:  # TFLite flattens the input of a FULLY_CONNECTED
            x = self.L.Flatten(name=name + "_flatten")(x)
        w = self.const(op["inputs"][1], where)
        b = self.const(op["inputs"][2], where) if len(op["inputs"]) > 2 and op["inputs"][2] >= 0 else None
        y = _with_weights(self.L.Dense(w.shape[0], name=name), x, [w.T, b if b is not None else np.zeros(w.shape[0])])
        return _activation(y, o["activation"], name, where)

    def binary(self, op, where, name):
        """ADD of two activations, or ADD / MUL by a per-channel constant (a 1x1 depthwise conv)."""
        L, kind = self.L, op["op_name"]
        consts = [i for i in op["inputs"] if self.g.const(i) is not None]
        if not consts:
            if kind != "ADD":
                raise EdgefaceError(f"{where}: MUL of two activations is not supported (only by a constant)")
            y = L.Add(name=name)([self.act(i, where) for i in op["inputs"]])
        elif len(consts) == len(op["inputs"]):
            raise EdgefaceError(f"{where}: {kind} of constants only (a graph the converter did not fold)")
        else:
            (x_i,) = [i for i in op["inputs"] if i not in consts]
            x = self.act(x_i, where)
            if len(x.shape) != 4:
                raise EdgefaceError(f"{where}: {kind} by a constant on a rank-{len(x.shape)} tensor is not supported")
            c = int(x.shape[-1])
            v = _per_channel_const(self.const(consts[0], where), c, where)
            kernel, bias = (np.ones(c), v) if kind == "ADD" else (v, np.zeros(c))
            y = _with_weights(L.DepthwiseConv2D(1, name=name), x, [kernel.reshape(1, 1, c, 1), bias])
        return _activation(y, op["options"].get("activation", 0), name, where)

    def prelu(self, x, slopes: np.ndarray, name: str, where: str):
        L = self.L
        if len(x.shape) == 4 and slopes.size == 1:
            return _with_weights(L.PReLU(shared_axes=[1, 2, 3], name=name), x, [slopes.reshape(1, 1, 1)])
        if len(x.shape) == 4:
            c = int(x.shape[-1])
            return _with_weights(L.PReLU(shared_axes=[1, 2], name=name), x,
                                 [_per_channel_const(slopes, c, where).reshape(1, 1, c)])
        if len(x.shape) == 2:
            n = int(x.shape[-1])
            return _with_weights(L.PReLU(name=name), x, [np.broadcast_to(slopes.reshape(-1), (n,))])
        raise EdgefaceError(f"{where}: PRELU on a rank-{len(x.shape)} tensor is not supported")

    def op(self, i: int, op: dict, splits: dict[int, PReLUSplit]):
        L, g, kind = self.L, self.g, op["op_name"]
        out = op["outputs"][0]
        where = f"{g.name}: op {i} {kind}"
        name = self.name(g.tensors[out]["name"], f"{kind.lower()}_{i}")
        if i in splits:
            return self.prelu(self.act(splits[i].source, where), splits[i].slopes, name, where)
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            return self.conv(op, where, name)
        if kind == "FULLY_CONNECTED":
            return self.dense(op, where, name)
        if kind in ("ADD", "MUL"):
            return self.binary(op, where, name)
        if kind == "DEQUANTIZE":
            if out in g.constants:  # float16 weights, already a float32 constant (read_graph)
                return None
            raise EdgefaceError(f"{where}: DEQUANTIZE of an activation: the graph importer reads float32 files only")
        x = self.act(op["inputs"][0], where)
        if kind == "PAD":
            p = self.const(op["inputs"][1], where).astype(int)
            if p.shape != (4, 2) or p[0].any() or p[3].any():
                raise EdgefaceError(f"{where}: only spatial padding of a 4-d tensor is supported, got {p.tolist()}")
            return L.ZeroPadding2D((tuple(p[1]), tuple(p[2])), name=name)(x)
        if kind == "LEAKY_RELU":
            return L.LeakyReLU(float(op["options"]["alpha"]), name=name)(x)
        if kind in ("RELU", "RELU6"):
            return L.ReLU(6.0 if kind == "RELU6" else None, name=name)(x)
        if kind == "PRELU":
            return self.prelu(x, self.const(op["inputs"][1], where).reshape(-1), name, where)
        if kind == "RESHAPE":
            shape = g.shape(out)
            if len(shape) == 2 and len(x.shape) == 4:  # NHWC row-major, as Flatten
                return L.Flatten(name=name)(x)
            return L.Reshape(shape[1:], name=name)(x)
        if kind == "MEAN":
            axes = sorted(int(a) % len(x.shape) for a in self.const(op["inputs"][1], where).reshape(-1))
            if len(x.shape) != 4 or axes != [1, 2]:
                raise EdgefaceError(f"{where}: only the spatial mean of a 4-d tensor is supported, axes {axes}")
            return L.GlobalAveragePooling2D(keepdims=bool(op["options"].get("keep_dims")), name=name)(x)
        if kind == "L2_NORMALIZATION":
            return _activation(L.UnitNormalization(axis=-1, name=name)(x), op["options"].get("activation", 0),
                               name, where)
        raise AssertionError(kind)  # every SUPPORTED_OPS kind is handled above


def import_tflite_graph(path):
    """The tf-keras Functional model that computes the float32 .tflite at `path`."""
    keras = _keras()
    g = read_graph(path)
    unsupported = sorted({op["op_name"] for op in g.ops} - set(SUPPORTED_OPS))
    if unsupported:
        raise EdgefaceError(f"{g.name}: unsupported TFLite op {', '.join(unsupported)} "
                            f"(the graph importer reads {', '.join(SUPPORTED_OPS)})")
    if len(g.inputs) != 1:
        raise EdgefaceError(f"{g.name}: {len(g.inputs)} inputs; the graph importer reads single-input models")
    splits = find_prelu_splits(g)
    skipped = {j for s in splits.values() for j in s.ops}
    b = _Builder(g)
    inp = keras.layers.Input(g.shape(g.inputs[0])[1:], name="input")
    b.t[g.inputs[0]] = inp
    for i, op in enumerate(g.ops):
        if i in skipped:
            continue
        y = b.op(i, op, splits)
        if y is not None:
            b.t[op["outputs"][0]] = y
    outs = [b.act(t, f"{g.name}: output") for t in g.outputs]
    return keras.Model(inp, outs[0] if len(outs) == 1 else outs, name="imported")


def count_prelu_splits(path) -> int:
    """How many split PReLUs (equalize.split_prelu) the float32 file holds."""
    return len(find_prelu_splits(read_graph(path)))
