"""Rebuild an ncnn embedder (`.param` + `.bin`) as a flat tf-keras Functional model.

Every BatchNorm is folded into the convolution or InnerProduct before it (ncnn's BN eps is 0 and
tf-keras would silently raise it to 1e-3), convolutions pad explicitly (TF `same` pads stride-2
convs unevenly), and the input-scaling BinaryOps are folded into the first convolution so the
model takes the project's [-1, 1] input. The result has only Conv2D, DepthwiseConv2D, PReLU,
ZeroPadding2D, Add, Flatten and Dense layers: TF-MOT, the structured pruner and the TFLite
converter all take it as it is.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError
from edgeface.spec import PIXEL_MEAN, PIXEL_STD

MAGIC = 7767517
SUPPORTED = ("Input", "Convolution", "ConvolutionDepthWise", "BatchNorm", "PReLU", "BinaryOp", "Split",
             "InnerProduct", "Flatten", "Reshape", "Dropout", "Noop")
TAG_FLOAT16 = 0x01306B47
# BinaryOp op_type codes (ncnn/src/layer/binaryop.h)
OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_RSUB = 0, 1, 2, 3, 7


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    def p(self, key: int, default=0):
        return self.params.get(key, default)


def _value(text: str):
    try:
        return int(text)
    except ValueError:
        return float(text)


def parse_param(path: Path) -> list[Layer]:
    """The layers of an ncnn text `.param` file, in file order."""
    lines = [ln.strip() for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise EdgefaceError(f"{path}: not an ncnn .param file (first line is not the magic {MAGIC})")
    try:
        n_layers, _ = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise EdgefaceError(f"{path}: line 2 must be 'layer_count blob_count'") from None
    layers = []
    for lineno, ln in enumerate(lines[2:], start=3):
        tok = ln.split()
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
            ins, outs = tok[4:4 + n_in], tok[4 + n_in:4 + n_in + n_out]
            params = {}
            for kv in tok[4 + n_in + n_out:]:
                k, v = kv.split("=", 1)
                k = int(k)
                if k <= -23300:  # array parameter: count,v1,v2,...
                    params[-k - 23300] = [_value(x) for x in v.split(",")[1:]]
                else:
                    params[k] = _value(v)
        except (IndexError, ValueError):
            raise EdgefaceError(f"{path}:{lineno}: cannot parse layer line {ln[:80]!r}") from None
        if tok[0] not in SUPPORTED:
            raise EdgefaceError(f"{path}:{lineno}: unsupported ncnn layer type {tok[0]!r} ({tok[1]}); "
                                f"supported: {', '.join(SUPPORTED)}")
        layers.append(Layer(tok[0], tok[1], ins, outs, params))
    if len(layers) != n_layers:
        raise EdgefaceError(f"{path}: header says {n_layers} layers, the file has {len(layers)}")
    return layers


class _Bin:
    """Reads ncnn's model binary in layer order (ModelBinFromDataReader semantics)."""

    def __init__(self, path: Path):
        self.data = Path(path).read_bytes()
        self.pos = 0
        self.path = path

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise EdgefaceError(f"{self.path}: weights end early (need {n} bytes at offset {self.pos}, "
                                f"file has {len(self.data)}): .bin does not match the .param")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def raw(self, count: int) -> np.ndarray:
        return np.frombuffer(self._take(4 * count), "<f4").astype(np.float32)

    def tagged(self, count: int) -> np.ndarray:
        """A weight blob with its 4-byte storage tag (0 = float32, or float16)."""
        (tag,) = struct.unpack("<I", self._take(4))
        if tag == 0:
            return self.raw(count)
        if tag == TAG_FLOAT16:
            n = count * 2
            vals = np.frombuffer(self._take(n), "<f2").astype(np.float32)
            self._take((4 - n % 4) % 4)
            return vals
        raise EdgefaceError(f"{self.path}: weight storage tag {tag:#x} at offset {self.pos - 4} is not supported "
                            "(only float32 and float16 ncnn models; re-export without int8 quantisation)")


def read_weights(layers: list[Layer], bin_path: Path) -> None:
    b = _Bin(bin_path)
    for ly in layers:
        if ly.type in ("Convolution", "ConvolutionDepthWise"):
            ly.weights["w"] = b.tagged(int(ly.p(6)))
            if ly.p(5):
                ly.weights["b"] = b.raw(int(ly.p(0)))
        elif ly.type == "InnerProduct":
            ly.weights["w"] = b.tagged(int(ly.p(2)))
            if ly.p(1):
                ly.weights["b"] = b.raw(int(ly.p(0)))
        elif ly.type == "BatchNorm":
            c = int(ly.p(0))
            for key in ("slope", "mean", "var", "bias"):
                ly.weights[key] = b.raw(c)
        elif ly.type == "PReLU":
            ly.weights["slope"] = b.raw(int(ly.p(0)))
    if b.pos != len(b.data):
        raise EdgefaceError(f"{bin_path}: {len(b.data) - b.pos} bytes left after the last layer: "
                            ".bin does not match the .param")


def _safe(name: str) -> str:
    """A Keras layer name for an ncnn layer name (Keras names must start with a letter or digit)."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return name if name[:1].isalnum() else "n" + name


def build_keras(layers: list[Layer], input_size: int, mean: float, std: float, output: str | None = None):
    """The tf-keras model for `layers`, taking (x - mean) / std normalised RGB of input_size².

    `output`: the blob to return (default: the last layer's output).
    """
    import edgeface  # noqa: F401  (tf-keras before TensorFlow)
    import tf_keras as keras
    L = keras.layers

    consumers: dict[str, list[Layer]] = {}
    for ly in layers:
        for blob in ly.inputs:
            consumers.setdefault(blob, []).append(ly)

    # Pending per-blob affine on the *input* chain: blob = scale * x_norm + shift, not yet applied.
    tensors: dict[str, object] = {}
    affine: dict[str, tuple[float, float]] = {}
    folded_bn: set[str] = set()
    inp = None

    def bn_after(ly: Layer) -> Layer | None:
        """The BatchNorm that alone reads `ly`'s output (it is folded into ly's weights)."""
        nxt = consumers.get(ly.outputs[0], [])
        if len(nxt) == 1 and nxt[0].type == "BatchNorm" and nxt[0].outputs[0] != ly.outputs[0]:
            return nxt[0]
        return None

    def fold_bn(w_out_last: np.ndarray, bias: np.ndarray, bn: Layer) -> tuple[np.ndarray, np.ndarray]:
        eps = float(bn.p(1, 0.0))
        mul = bn.weights["slope"] / np.sqrt(bn.weights["var"] + eps)
        add = bn.weights["bias"] - bn.weights["mean"] * mul
        return w_out_last * mul, bias * mul + add

    def take(blob: str, ly: Layer):
        if blob in affine:  # a conv reads the still-unapplied input scaling: fold or apply it
            return None
        if blob not in tensors:
            raise EdgefaceError(f"ncnn layer {ly.name} reads blob {blob!r} that no earlier layer writes")
        return tensors[blob]

    for ly in layers:
        t = ly.type
        if t == "Input":
            size_w, size_h = int(ly.p(0, input_size) or input_size), int(ly.p(1, input_size) or input_size)
            if (size_w, size_h) not in ((input_size, input_size), (0, 0)):
                input_size = size_w
            inp = L.Input((input_size, input_size, 3), name="input")
            tensors[ly.outputs[0]] = inp
            # the host feeds x_norm = (raw - mean) / std; ncnn expects raw: raw = std * x_norm + mean
            affine[ly.outputs[0]] = (float(std), float(mean))
            continue
        if t in ("Split", "Dropout", "Noop"):
            for blob in ly.outputs:
                if ly.inputs[0] in affine:
                    affine[blob] = affine[ly.inputs[0]]
                tensors[blob] = tensors.get(ly.inputs[0])
            continue
        if t == "BinaryOp" and int(ly.p(1)) == 1:  # with a scalar
            op, s = int(ly.p(0)), float(ly.p(2, 0.0))
            src = ly.inputs[0]
            if src in affine:
                a, c = affine[src]
                new = {OP_ADD: (a, c + s), OP_SUB: (a, c - s), OP_MUL: (a * s, c * s),
                       OP_DIV: (a / s, c / s) if s else None, OP_RSUB: (-a, s - c)}.get(op)
                if new is None:
                    raise EdgefaceError(f"ncnn BinaryOp {ly.name}: op_type {op} with a scalar is not supported")
                affine[ly.outputs[0]] = new
                tensors[ly.outputs[0]] = tensors[src]
                continue
            raise EdgefaceError(f"ncnn BinaryOp {ly.name}: a scalar op inside the network is not supported "
                                "(only on the input, where it folds into the first convolution)")
        if t == "BinaryOp":
            op = int(ly.p(0))
            if op != OP_ADD or len(ly.inputs) != 2:
                raise EdgefaceError(f"ncnn BinaryOp {ly.name}: only the two-input add is supported, got op_type {op}")
            a, b = (take(x, ly) for x in ly.inputs)
            tensors[ly.outputs[0]] = L.Add(name=_safe(ly.name))([a, b])
            continue
        if t == "BatchNorm":
            if ly.name in folded_bn:
                continue
            # a BN that follows no conv: an exact per-channel affine as a 1x1 depthwise conv
            x = take(ly.inputs[0], ly)
            c = int(ly.p(0))
            scale, shift = fold_bn(np.ones(c, np.float32), np.zeros(c, np.float32), ly)
            dw = L.DepthwiseConv2D(1, name=_safe(ly.name))
            tensors[ly.outputs[0]] = dw(x)
            dw.set_weights([scale.reshape(1, 1, c, 1), shift])
            continue
        if t == "PReLU":
            x = take(ly.inputs[0], ly)
            slope = ly.weights["slope"]
            c = int(x.shape[-1])
            shared = [1, 2, 3] if slope.size == 1 else [1, 2]
            layer = L.PReLU(shared_axes=shared, name=_safe(ly.name))
            tensors[ly.outputs[0]] = layer(x)
            layer.set_weights([slope.reshape(1, 1, 1 if slope.size == 1 else c)])
            continue
        if t in ("Flatten", "Reshape"):
            x = take(ly.inputs[0], ly)
            if t == "Reshape" and int(ly.p(0, -233)) not in (-1, -233) and int(ly.p(1, -233)) not in (-233, 1):
                raise EdgefaceError(f"ncnn Reshape {ly.name}: only flattening reshapes are supported")
            if len(x.shape) == 4 and (x.shape[1] > 1 or x.shape[2] > 1):
                x = L.Permute((3, 1, 2), name=_safe(ly.name) + "_chw")(x)  # ncnn flattens channel-major
            tensors[ly.outputs[0]] = L.Flatten(name=_safe(ly.name))(x)
            continue
        # Convolution, ConvolutionDepthWise, InnerProduct (BN after them folded in)
        bn = bn_after(ly)
        out_blob = bn.outputs[0] if bn else ly.outputs[0]
        if bn:
            folded_bn.add(bn.name)
        src = ly.inputs[0]
        pre = affine.get(src)
        x = tensors[src] if pre is not None else take(src, ly)
        n_out = int(ly.p(0))
        w = ly.weights["w"]
        bias = ly.weights.get("b", np.zeros(n_out, np.float32))
        if t == "InnerProduct":
            if len(x.shape) == 4:
                if x.shape[1] > 1 or x.shape[2] > 1:
                    x = L.Permute((3, 1, 2), name=_safe(ly.name) + "_chw")(x)
                x = L.Flatten(name=_safe(ly.name) + "_flatten")(x)
            n_in = int(x.shape[-1])
            kernel = w.reshape(n_out, n_in).T
            if pre is not None:
                raise EdgefaceError(f"ncnn InnerProduct {ly.name} reads the raw input: not a supported embedder")
            if bn:
                kernel, bias = fold_bn(kernel, bias, bn)
            layer = L.Dense(n_out, name=_safe(ly.name))
            tensors[out_blob] = layer(x)
            layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
            continue
        kw, kh = int(ly.p(1)), int(ly.p(11, ly.p(1)))
        dw_, dh = int(ly.p(2, 1)), int(ly.p(12, ly.p(2, 1)))
        sw, sh = int(ly.p(3, 1)), int(ly.p(13, ly.p(3, 1)))
        pl, pt = int(ly.p(4, 0)), int(ly.p(14, ly.p(4, 0)))
        pr, pb = int(ly.p(15, pl)), int(ly.p(16, pt))
        if min(pl, pt, pr, pb) < 0:
            raise EdgefaceError(f"ncnn {t} {ly.name}: automatic 'same' padding (negative pad) is not supported")
        n_in = int(x.shape[-1])
        depthwise = t == "ConvolutionDepthWise"
        if depthwise:
            group = int(ly.p(7, 1))
            if not (group == n_in == n_out):
                raise EdgefaceError(f"ncnn ConvolutionDepthWise {ly.name}: grouped convolution with {group} groups "
                                    f"({n_in} -> {n_out} channels) is not supported, only depthwise")
            kernel = w.reshape(n_out, kh, kw).transpose(1, 2, 0)[..., None]  # (kh, kw, C, 1)
            out_axis_view = kernel[:, :, :, 0]
        else:
            kernel = w.reshape(n_out, n_in, kh, kw).transpose(2, 3, 1, 0)  # (kh, kw, in, out)
            out_axis_view = kernel
        if pre is not None:  # fold blob = a * x_norm + c into this conv
            a, c = pre
            if c != 0.0 and (pl or pt or pr or pb):
                raise EdgefaceError(f"ncnn {ly.name}: the input shift {c} cannot be folded into a padded convolution; "
                                    f"import with --mean/--std that match the model's own normalisation")
            bias = bias + c * (out_axis_view.sum(axis=(0, 1)) if depthwise else kernel.sum(axis=(0, 1, 2)))
            kernel = kernel * a
        if bn:
            if depthwise:
                k2, bias = fold_bn(kernel[:, :, :, 0], bias, bn)
                kernel = k2[..., None]
            else:
                kernel, bias = fold_bn(kernel, bias, bn)
        if pl or pt or pr or pb:
            x = L.ZeroPadding2D(((pt, pb), (pl, pr)), name=_safe(ly.name) + "_pad")(x)
        if depthwise:
            layer = L.DepthwiseConv2D((kh, kw), strides=(sh, sw), dilation_rate=(dh, dw_), padding="valid",
                                      name=_safe(ly.name))
        else:
            layer = L.Conv2D(n_out, (kh, kw), strides=(sh, sw), dilation_rate=(dh, dw_), padding="valid",
                             name=_safe(ly.name))
        tensors[out_blob] = layer(x)
        layer.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])

    if inp is None:
        raise EdgefaceError("the ncnn model has no Input layer")
    out_name = output or layers[-1].outputs[0]
    if out_name not in tensors:
        raise EdgefaceError(f"output blob {out_name!r} is not in the model")
    return keras.Model(inp, tensors[out_name], name="imported")


def load_ncnn(param: Path, bin_path: Path, input_size: int = 112, mean: float = PIXEL_MEAN, std: float = PIXEL_STD,
              output: str | None = None):
    """(tf-keras model, ncnn layer list) for an ncnn embedder."""
    layers = parse_param(param)
    read_weights(layers, bin_path)
    return build_keras(layers, input_size, mean, std, output), layers
