"""Estimated single-thread int8 time of a network and of each prunable channel, for pruning to a speed.

XNNPACK runs a convolution at a near-constant cost per multiply-accumulate and an elementwise
activation (the two-op PReLU) at a near-constant cost per value, so the estimate is
MACs + VALUE_MACS x activation values. Measured on the pruned MobileFaceNet (189.8M MACs, 2.38M
PReLU values; benchmarks/compression.md, session 12): the PReLUs take 1.38 ms of 3.80, the rest
1.2 ms of fixed cost plus 1.22 ms of convolution, i.e. one activation value costs about 90 MACs
(45 if the fixed part were convolution too). 64 sits between; only the ranking depends on it, and the
speed that counts is measured side by side after conversion.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)

VALUE_MACS = 64.0


def _keras():
    import tf_keras as keras
    return keras


def _positions(layer) -> int:
    shape = layer.output_shape
    return int(np.prod(shape[1:3])) if len(shape) == 4 else 1


def _per_channel(layer) -> float:
    """MAC-equivalents one output channel of `layer` costs (its kernel per channel x positions)."""
    L = _keras().layers
    if isinstance(layer, L.DepthwiseConv2D):
        return _positions(layer) * float(np.prod(layer.kernel_size))
    if isinstance(layer, L.Conv2D):
        return _positions(layer) * float(np.prod(layer.kernel_size)) * int(layer.input_shape[-1])
    if isinstance(layer, L.Dense):
        return float(layer.input_shape[-1])
    if isinstance(layer, L.PReLU):
        return _positions(layer) * VALUE_MACS
    return 0.0


def model_cost(model) -> float:
    """The whole network's estimated time in MAC-equivalents (convolutions, dense, PReLU values)."""
    total = 0.0
    for layer in model.layers:
        units = layer.output_shape[-1] if isinstance(layer.output_shape, tuple) else 0
        total += _per_channel(layer) * int(units or 0)
    return total


def channel_costs(model, groups) -> dict[str, float]:
    """Per group (by producer): what removing one of its channels saves, in MAC-equivalents: the
    producer's filter, every per-channel layer after it, and the consumer's input row."""
    L = _keras().layers
    out = {}
    for g in groups:
        cost = _per_channel(model.get_layer(g.producer)) + sum(_per_channel(model.get_layer(n)) for n in g.chain)
        consumer = model.get_layer(g.consumer)
        if isinstance(consumer, L.Conv2D) and not isinstance(consumer, L.DepthwiseConv2D):
            cost += _positions(consumer) * float(np.prod(consumer.kernel_size)) * int(consumer.filters)
        elif isinstance(consumer, L.Dense):
            cost += float(consumer.units) * max(1, int(consumer.input_shape[-1]) // g.units)
        out[g.producer] = float(cost)
    return out
