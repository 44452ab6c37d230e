"""Exact rewrites that make a float model quantise well and run delegated, before int8 conversion.

equalize_channels: cross-layer range equalisation. PReLU(s*x) = s*PReLU(x) for s > 0, so an
output channel of a convolution can be divided by s and the next layer's matching input channel
multiplied by it without changing the float function. Choosing s from the measured activation
range and the next layer's weight range gives every channel of a tensor a similar range, so a
single int8 scale per tensor no longer spends its levels on one outlier channel (insightface's
MobileFaceNet has a channel at 36 where most stay under 1.7).

split_prelu: PReLU(x) = c1*x + c2*|x| (c1 = (1 + a)/2, c2 = (1 - a)/2), written as two 1x1
depthwise convolutions, a LeakyReLU with slope -1 and an Add. XNNPACK runs none of TFLite's int8 PRELU, so an int8 graph with PReLU falls apart
into one delegate partition per activation (4x slower than its float32 file); the rewritten graph
is delegated whole.

residual_relu_prelu: PReLU(x) = x + relu((a - 1) * x) for a <= 1, two delegatable ops (a 1x1
depthwise convolution with a fused ReLU, and an Add) instead of four. A channel with a > 1 is
first flipped exactly: PReLU_a(y) = -a * PReLU_(1/a)(-y), the sign going into the producing
convolution and -a into the next layer's input channel.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.optimize.surgery import all_groups


def _keras():
    import tf_keras as keras
    return keras


def scale_points(model) -> list[tuple[str, str]]:
    """(source, sink) pairs along every channel group: source's output channel c reaches sink's
    input channel c through per-channel, positively homogeneous layers only (PReLU, LeakyReLU, ReLU, padding)."""
    L = _keras().layers
    pairs = []
    for g in all_groups(model):
        src = g.producer
        for name in g.chain + [g.consumer]:
            layer = model.get_layer(name)
            if isinstance(layer, L.DepthwiseConv2D) or name == g.consumer:
                pairs.append((src, name))
                src = name
            elif not (isinstance(layer, (L.PReLU, L.LeakyReLU, L.ZeroPadding2D, L.Flatten, L.Dropout))
                      or (isinstance(layer, L.ReLU) and layer.max_value is None and not layer.threshold)):
                break  # BN, ReLU6 and the like are not homogeneous: stop this group here
    return pairs


def _in_channel_range(layer, c: int) -> np.ndarray:
    """Max |weight| of each input channel of a Conv2D / DepthwiseConv2D / Dense."""
    k = np.abs(np.asarray(layer.get_weights()[0]))
    L = _keras().layers
    if isinstance(layer, L.DepthwiseConv2D):
        return k[:, :, :, 0].reshape(-1, k.shape[2]).max(axis=0)
    if k.ndim == 2:
        rows = k.shape[0] // c  # Dense after Flatten: rows p*C + c
        return k.reshape(rows, c, -1).max(axis=(0, 2))
    return k.reshape(-1, k.shape[2], k.shape[3]).max(axis=(0, 2))


def _scale(model, src: str, sink: str, s: np.ndarray) -> None:
    """Divide src's output channels by s, multiply sink's input channels by s (in place)."""
    L = _keras().layers
    a = model.get_layer(src)
    w = [np.array(v) for v in a.get_weights()]
    if isinstance(a, L.DepthwiseConv2D):
        w[0] = w[0] / s[None, None, :, None]
    else:
        w[0] = w[0] / s
    if len(w) > 1:
        w[1] = w[1] / s
    a.set_weights(w)
    _scale_input(model, sink, s)


def _scale_input(model, sink: str, s: np.ndarray) -> None:
    """Multiply sink's input channels by s (in place)."""
    L = _keras().layers
    b = model.get_layer(sink)
    w = [np.array(v) for v in b.get_weights()]
    if isinstance(b, L.DepthwiseConv2D):
        w[0] = w[0] * s[None, None, :, None]
    elif w[0].ndim == 2:
        rows = w[0].shape[0] // len(s)
        w[0] = (w[0].reshape(rows, len(s), -1) * s[None, :, None]).reshape(w[0].shape)
    else:
        w[0] = w[0] * s[None, None, :, None]
    b.set_weights(w)


def activation_ranges(model, names: list[str], x: np.ndarray, percentile: float = 99.99,
                      batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per-channel |activation| range of each named layer's output over `x`: the largest
    per-batch percentile (a few outlier pixels per batch do not set the int8 scale)."""
    keras = _keras()
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out: dict[str, np.ndarray] = {}
    for i in range(0, len(x), batch_size):
        outs = probe(x[i:i + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            o = np.abs(np.asarray(o))
            r = np.percentile(o.reshape(-1, o.shape[-1]), percentile, axis=0)
            out[n] = r if n not in out else np.maximum(out[n], r)
    return out


def equalize_channels(model, x: np.ndarray, iterations: int = 2, max_scale: float = 64.0) -> list[dict]:
    """Equalise every (source, sink) pair of `model` in place on calibration inputs `x`.

    s_c = sqrt(act_c / w_c): afterwards channel c's activation range and its weight range in the
    next layer are both sqrt(act_c * w_c), the balance that cross-layer equalisation seeks.
    Returns one record per pair (spread of channel ranges before/after).
    """
    pairs = scale_points(model)
    report = []
    for it in range(iterations):
        # A pair leaves its sink's output unchanged, so one pass measures every source.
        acts = activation_ranges(model, [src for src, _ in pairs], x)
        for src, sink in pairs:
            act = acts[src]
            w = _in_channel_range(model.get_layer(sink), len(act))
            s = np.sqrt(np.maximum(act, 1e-8) / np.maximum(w, 1e-8))
            s = s / np.exp(np.mean(np.log(s)))  # geometric mean 1: the tensor keeps its overall scale
            s = np.clip(s, 1.0 / max_scale, max_scale).astype(np.float32)
            _scale(model, src, sink, s)
            if it == iterations - 1:
                after = act / s
                report.append({"source": src, "sink": sink, "act_max_over_median_before": float(act.max() / np.median(act)),
                               "act_max_over_median_after": float(after.max() / np.median(after))})
    return report


def rebuild(model, replace=None, compact_names: bool = True, name: str | None = None):
    """A copy of a flat Functional model, layer by layer (one inbound node per layer).

    replace(layer, inputs, new_name) may return an output tensor built from new layers, or None to
    clone the layer with its weights. new_name(base) names a new layer. compact_names: layers named
    l0, l1, ...: the .tflite stores every tensor's name, and long fused names cost tens of KB in a
    1 MB file.
    """
    keras = _keras()
    L = keras.layers
    counter = iter(range(10 ** 6))

    def new_name(original: str) -> str:
        return f"l{next(counter)}" if compact_names else original

    tensors = {}
    inp = L.Input(model.inputs[0].shape[1:], name="input")
    tensors[model.layers[0].name] = inp
    for layer in model.layers[1:]:
        node = layer._inbound_nodes[0]
        parents = node.inbound_layers if isinstance(node.inbound_layers, list) else [node.inbound_layers]
        args = [tensors[p.name] for p in parents]
        arg = args if len(args) > 1 else args[0]
        out = replace(layer, arg, new_name) if replace else None
        if out is None:
            cfg = layer.get_config()
            cfg["name"] = new_name(layer.name)
            new = layer.__class__.from_config(cfg)
            out = new(arg)
            if layer.get_weights():
                new.set_weights(layer.get_weights())
        tensors[layer.name] = out
    return keras.Model(inp, tensors[model.layers[-1].name],
                       name=name or ("m" if compact_names else model.name))


def is_map_prelu(layer) -> bool:
    """A PReLU on a feature map (N, H, W, C): the activations the int8 rewrites replace."""
    return isinstance(layer, _keras().layers.PReLU) and len(layer.input_shape) == 4


def split_prelu(model, alpha: float = -1.0, compact_names: bool = True):
    """A copy of `model` with every PReLU as c1*x + c2*leaky_relu(x, alpha) (delegatable int8 ops).

    x > 0: c1 + c2 = 1; x < 0: c1 + c2*alpha = a. alpha = -1 (|x|) keeps both coefficients
    at most (1 + |a|) / 2, so neither branch widens the int8 range much.
    """
    L = _keras().layers
    kernels = []

    def replace(layer, arg, new_name):
        if not is_map_prelu(layer):
            return None
        return _split_one(layer, arg, new_name, kernels, alpha)

    return _set_kernels(rebuild(model, replace, compact_names), kernels)


def _slopes(layer) -> np.ndarray:
    a = np.asarray(layer.get_weights()[0]).reshape(-1)
    return np.broadcast_to(a, (int(layer.input_shape[-1]),)).astype(np.float32)


def _split_one(layer, arg, new_name, kernels: list, alpha: float = -1.0):
    """c1*x + c2*leaky_relu(x, alpha) for one PReLU; its 1x1 kernels are queued in `kernels`."""
    L = _keras().layers
    c2 = (1.0 - _slopes(layer)) / (1.0 - alpha)
    lin = L.DepthwiseConv2D(1, use_bias=False, name=new_name(layer.name + "_lin"))
    bent = L.LeakyReLU(alpha, name=new_name(layer.name + "_leaky"))
    rel = L.DepthwiseConv2D(1, use_bias=False, name=new_name(layer.name + "_bent"))
    kernels += [(lin, 1.0 - c2), (rel, c2)]
    return L.Add(name=new_name(layer.name))([lin(arg), rel(bent(arg))])


def _set_kernels(model, kernels: list):
    """Weights of the new layers of a rebuild (they exist only once the graph is built)."""
    for layer, k in kernels:
        layer.set_weights([np.asarray(k, np.float32).reshape(1, 1, -1, 1)])
    return model


def _prelu_between(model, src: str, sink: str):
    """The one PReLU on the path src -> sink of a scale_points pair (None if there is none)."""
    L = _keras().layers
    found, layer = [], model.get_layer(src)
    while layer.name != sink:
        if len(layer._outbound_nodes) != 1:
            return None
        nxt = layer._outbound_nodes[0].outbound_layer
        if isinstance(nxt, L.PReLU):
            found.append(nxt)
        layer = nxt
    return found[0] if len(found) == 1 else None


def flip_steep_slopes(model) -> int:
    """In place: every PReLU channel with slope a > 1 becomes slope 1/a on the negated input,
    PReLU_a(y) = -a * PReLU_(1/a)(-y), exactly. Returns the number of channels flipped; a PReLU
    without a (producer, next linear layer) pair keeps its slopes."""
    flipped = 0
    for src, sink in scale_points(model):
        prelu = _prelu_between(model, src, sink)
        if prelu is None or not is_map_prelu(prelu):
            continue
        a = np.asarray(prelu.get_weights()[0])
        flat = a.reshape(-1)
        steep = flat > 1.0
        if not steep.any():
            continue
        sign = np.where(steep, -1.0, 1.0).astype(np.float32)
        _scale(model, src, sink, sign)  # src output -y, sink input x(-1)
        _scale_input(model, sink, np.where(steep, flat, 1.0).astype(np.float32))  # and x a
        prelu.set_weights([np.where(steep, 1.0 / flat, flat).reshape(a.shape).astype(np.float32)])
        flipped += int(steep.sum())
    return flipped


def residual_relu_prelu(model, compact_names: bool = True):
    """A copy of `model` with every PReLU as x + relu((a - 1) * x) (exact for slopes <= 1: run
    flip_steep_slopes first); a layer that still has a slope above 1 keeps the four-op split."""
    L = _keras().layers
    kernels = []

    def replace(layer, arg, new_name):
        if not is_map_prelu(layer):
            return None
        a = _slopes(layer)
        if (a > 1.0).any():
            return _split_one(layer, arg, new_name, kernels)
        bent = L.DepthwiseConv2D(1, use_bias=False, activation="relu", name=new_name(layer.name + "_neg"))
        kernels.append((bent, a - 1.0))
        return L.Add(name=new_name(layer.name))([arg, bent(arg)])

    return _set_kernels(rebuild(model, replace, compact_names), kernels)
