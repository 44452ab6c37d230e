"""Recover a trainable Keras model from an edgeface .tflite whose card names its architecture.

The converter folds every BatchNorm into the convolution before it and (int8) quantises the
weights, so the TFLite file holds, per convolution, a kernel W and a bias b with y = W*x + b. The
registered architecture is rebuilt from the card (`source.model`), each Conv2D / DepthwiseConv2D
takes the file's kernel in execution order (int8 dequantised), and its BatchNorm is set so that

    inference:  gamma * (z - mean) / sqrt(var + eps) + beta = z + b   (exactly)
    training:   batch statistics ~ (mean, var), so the same function holds

with mean/var the per-channel statistics of z = W*x over real faces, gamma = sqrt(var + eps)
and beta = b + mean. Without the statistics, train-mode BatchNorm would renormalise every layer
and a warm start would begin far from the shipped function.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeface.errors import EdgefaceError

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
DENSE_OP = "FULLY_CONNECTED"


def _dequantized(interp, detail) -> np.ndarray:
    """A constant tensor as float32 (int8/int32 tensors scaled per channel or per tensor)."""
    value = interp.get_tensor(detail["index"])
    q = detail["quantization_parameters"]
    scales = np.asarray(q["scales"], np.float32)
    if value.dtype == np.float32 or scales.size == 0:
        return value.astype(np.float32)
    zeros = np.asarray(q["zero_points"], np.float32)
    shape = [1] * value.ndim
    if scales.size > 1:
        shape[q["quantized_dimension"]] = scales.size
    return ((value.astype(np.float32) - zeros.reshape(shape)) * scales.reshape(shape)).astype(np.float32)


def _op_weights(tflite_path, op_names) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(op name, file-layout weight, bias or None) of every op named in `op_names`, in execution order."""
    import tensorflow as tf

    interp = tf.lite.Interpreter(
        model_path=str(tflite_path),
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interp.allocate_tensors()
    details = {d["index"]: d for d in interp.get_tensor_details()}
    out = []
    for op in interp._get_ops_details():  # noqa: SLF001 - the only public view of the op list
        if op["op_name"] in op_names:
            _, w_idx, b_idx = op["inputs"][:3]
            bias = _dequantized(interp, details[b_idx]) if b_idx >= 0 else None
            out.append((op["op_name"], _dequantized(interp, details[w_idx]), bias))
    return out


def conv_weights(tflite_path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(op name, Keras-layout kernel, bias) of every convolution, in execution order."""
    out = []
    for name, w, b in _op_weights(tflite_path, CONV_OPS):
        if name == "CONV_2D":  # (O, H, W, I) -> (H, W, I, O)
            kernel = w.transpose(1, 2, 3, 0)
        else:  # (1, H, W, C) -> (H, W, C, 1)
            kernel = w[0][..., None]
        out.append((name, kernel, b if b is not None else np.zeros(kernel.shape[-1 if name == "CONV_2D" else 2], np.float32)))
    return out


def dense_weights(tflite_path) -> list[tuple[np.ndarray, np.ndarray]]:
    """(Keras-layout kernel (in, out), bias) of every fully-connected op, in execution order."""
    return [(w.T, b if b is not None else np.zeros(w.shape[0], np.float32))
            for _, w, b in _op_weights(tflite_path, (DENSE_OP,))]


def _dense_layers(model) -> list:
    """The trainable Dense layers in model order (a frozen pixel adapter has no file counterpart to check)."""
    import tf_keras as keras

    return [layer for layer in model.layers if isinstance(layer, keras.layers.Dense) and layer.trainable]


def _conv_bn_pairs(model):
    """(conv layer, its BatchNorm) in model order; every convolution must feed exactly one BN."""
    import tf_keras as keras

    pairs = []
    for layer in model.layers:
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            continue
        nxt = [n.outbound_layer for n in layer._outbound_nodes]  # noqa: SLF001
        if len(nxt) != 1 or not isinstance(nxt[0], keras.layers.BatchNormalization) or layer.use_bias:
            raise EdgefaceError(f"layer {layer.name}: recovery needs every convolution to feed one BatchNorm")
        pairs.append((layer, nxt[0]))
    return pairs


def _expected_kernel_shape(layer) -> tuple:
    k = layer.depthwise_kernel if hasattr(layer, "depthwise_kernel") else layer.kernel
    return tuple(k.shape)


def load_tflite_weights(model, tflite_path, images: np.ndarray, batch_size: int = 32) -> int:
    """Set `model`'s weights from the file (see the module doc); `images` are normalised inputs
    used for the BatchNorm statistics. Returns the number of convolutions loaded."""
    import tf_keras as keras

    convs = conv_weights(tflite_path)
    pairs = _conv_bn_pairs(model)
    if len(convs) != len(pairs):
        raise EdgefaceError(f"{Path(tflite_path).name} has {len(convs)} convolutions, the architecture "
                            f"{model.name} {len(pairs)}: the card does not describe this file")
    for (op, kernel, bias), (conv, bn) in zip(convs, pairs):
        if kernel.shape != _expected_kernel_shape(conv):
            raise EdgefaceError(f"{conv.name}: file kernel {kernel.shape} does not fit {_expected_kernel_shape(conv)}")
        conv.set_weights([kernel])
        eps = bn.epsilon
        n = bias.shape[0]
        # identity + bias in inference mode until the statistics are known
        bn.set_weights(_bn_weights(bn, np.ones(n), bias, np.zeros(n), np.full(n, 1.0 - eps)))
    # statistics of every pre-BN output z = W*x (exact: the model already computes the file's function)
    probe = keras.Model(model.input, [conv.output for conv, _ in pairs])
    sums = [np.zeros(len(b), np.float64) for _, _, b in convs]
    squares = [np.zeros_like(s) for s in sums]
    for start in range(0, len(images), batch_size):
        outs = probe(images[start:start + batch_size], training=False)
        for i, z in enumerate(outs):
            z = np.asarray(z, np.float64).reshape(-1, z.shape[-1])
            sums[i] += z.sum(0)
            squares[i] += (z * z).sum(0)
    for i, ((_, _, bias), (_, bn)) in enumerate(zip(convs, pairs)):
        rows = len(images) * int(np.prod(pairs[i][0].output_shape[1:3]))
        mean = sums[i] / rows
        var = np.maximum(squares[i] / rows - mean * mean, 0.0)
        bn.set_weights(_bn_weights(bn, np.sqrt(var + bn.epsilon), bias + mean, mean, var))
    return len(convs)


def load_tflite_dense(model, tflite_path) -> int:
    """Set every trainable Dense layer (a classifier head) from the file's FULLY_CONNECTED ops, in
    order. Returns the number loaded (0 for the face embedders, whose head is a convolution)."""
    dense, layers = dense_weights(tflite_path), _dense_layers(model)
    if len(dense) != len(layers):
        raise EdgefaceError(f"{Path(tflite_path).name} has {len(dense)} fully-connected ops, the architecture "
                            f"{model.name} {len(layers)} Dense layers: the card does not describe this file")
    for (kernel, bias), layer in zip(dense, layers):
        want = tuple(layer.kernel.shape)
        if kernel.shape != want:
            raise EdgefaceError(f"{layer.name}: file kernel {kernel.shape} does not fit {want}")
        layer.set_weights([kernel, bias] if layer.use_bias else [kernel])
    return len(layers)


def _bn_weights(bn, gamma, beta, mean, var) -> list[np.ndarray]:
    by_name = {"gamma": gamma, "beta": beta, "moving_mean": mean, "moving_variance": var}
    return [np.asarray(by_name[w.name.split("/")[-1].split(":")[0]], np.float32) for w in bn.weights]
