"""Channel surgery on flat Functional tf-keras models: drop output units of a Conv2D/Dense and
everything that carries those channels to the next Conv2D/Dense, then rebuild a narrower model.

A "group" is a producer (Conv2D or Dense) whose output reaches exactly one consumer (Conv2D or
Dense) through per-channel layers only (BN, activations, depthwise conv, pooling, padding,
dropout). Removing unit j of the producer then removes channel j of every layer in between and
input row j of the consumer, and nothing else in the graph changes shape. In MobileNetV2 the
expand conv of each inverted residual is such a group (expand -> BN -> ReLU6 -> depthwise -> BN ->
ReLU6 -> project); a residual Add breaks the chain, so block outputs are never narrowed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError


def _keras():
    import tf_keras as keras
    return keras


def _per_channel_types():
    L = _keras().layers
    return (L.BatchNormalization, L.ReLU, L.Activation, L.ZeroPadding2D, L.GlobalAveragePooling2D,
            L.GlobalMaxPooling2D, L.AveragePooling2D, L.MaxPooling2D, L.Dropout, L.LeakyReLU, L.PReLU,
            L.DepthwiseConv2D)


def is_producer(layer) -> bool:
    L = _keras().layers
    if isinstance(layer, L.DepthwiseConv2D):
        return False
    if isinstance(layer, L.Conv2D):
        return type(layer) is L.Conv2D and getattr(layer, "groups", 1) == 1
    return type(layer) is L.Dense


def is_per_channel(layer) -> bool:
    L = _keras().layers
    if isinstance(layer, L.DepthwiseConv2D):
        return layer.depth_multiplier == 1
    if isinstance(layer, L.BatchNormalization):
        axis = layer.axis if isinstance(layer.axis, int) else (layer.axis[0] if len(layer.axis) == 1 else None)
        return axis in (-1, len(layer.input_shape) - 1)
    return isinstance(layer, _per_channel_types())


def consumers_map(model) -> dict[str, list[str]]:
    """layer name -> names of the layers that read its output (from the Functional config)."""
    out: dict[str, list[str]] = {layer.name: [] for layer in model.layers}
    for spec in model.get_config()["layers"]:
        for node in spec.get("inbound_nodes", []):
            items = node if isinstance(node, list) else node.get("args", [])
            for item in items:
                if isinstance(item, (list, tuple)) and item and isinstance(item[0], str):
                    out.setdefault(item[0], []).append(spec["name"])
    return out


def output_layer_names(model) -> set[str]:
    return {t._keras_history.layer.name for t in model.outputs}


@dataclass
class Group:
    producer: str
    chain: list[str]  # per-channel layers between producer and consumer, in order
    consumer: str
    units: int


def find_group(model, producer: str, consumers: dict | None = None) -> Group | None:
    """The channel group starting at `producer`, or None if its channels cannot be narrowed alone."""
    consumers = consumers if consumers is not None else consumers_map(model)
    outputs = output_layer_names(model)
    layer = model.get_layer(producer)
    if not is_producer(layer) or len(layer._inbound_nodes) != 1:
        return None
    chain, cur = [], producer
    while True:
        if cur in outputs or len(consumers.get(cur, [])) != 1:
            return None
        nxt = model.get_layer(consumers[cur][0])
        if len(nxt._inbound_nodes) != 1:
            return None  # a shared layer would be narrowed for its other uses too
        if is_producer(nxt):
            units = layer.filters if hasattr(layer, "filters") else layer.units
            return Group(producer, chain, nxt.name, int(units))
        if isinstance(nxt, _keras().layers.Flatten) and len(nxt.input_shape) == 4:
            # conv -> ... -> Flatten -> Dense: channel j owns Dense rows p*C + j for every position p
            after = consumers.get(nxt.name, [])
            if nxt.name in outputs or len(after) != 1 or type(model.get_layer(after[0])) is not _keras().layers.Dense:
                return None
            units = layer.filters if hasattr(layer, "filters") else layer.units
            return Group(producer, chain + [nxt.name], after[0], int(units))
        if not is_per_channel(nxt):
            return None
        chain.append(nxt.name)
        cur = nxt.name


def all_groups(model) -> list[Group]:
    consumers = consumers_map(model)
    found = (find_group(model, layer.name, consumers) for layer in model.layers if is_producer(layer))
    return [g for g in found if g is not None]


def _slice_weights(layer, weights: list[np.ndarray], in_keep, out_keep) -> list[np.ndarray]:
    L = _keras().layers
    w = [np.asarray(v) for v in weights]
    if isinstance(layer, L.DepthwiseConv2D):
        keep = out_keep if out_keep is not None else in_keep
        if keep is None:
            return w
        return [w[0][:, :, keep, :]] + [b[keep] for b in w[1:]]
    if isinstance(layer, (L.Conv2D, L.Dense)):
        k = w[0]
        if in_keep is not None:
            k = k[in_keep] if k.ndim == 2 else k[:, :, in_keep, :]
        if out_keep is not None:
            k = k[..., out_keep]
        rest = [b[out_keep] if out_keep is not None else b for b in w[1:]]
        return [k] + rest
    keep = out_keep if out_keep is not None else in_keep
    if keep is None or not w:
        return w
    return [v[..., keep] for v in w]  # BN gamma/beta/mean/var, PReLU alpha: per-channel on the last axis


def narrow(model, keeps: dict[str, np.ndarray], consumer_weights: dict[str, list[np.ndarray]] | None = None,
           consumer_bias: dict[str, np.ndarray] | None = None):
    """A new model where each producer in `keeps` has only the listed output units.

    consumer_weights: full-size replacement weights for a consumer (e.g. merged outgoing weights),
    sliced like the originals. consumer_bias: a bias to add to the consumer's output (a removed
    unit's constant contribution); a consumer without a bias gets one.
    """
    keras = _keras()
    consumer_weights = consumer_weights or {}
    consumer_bias = consumer_bias or {}
    consumers = consumers_map(model)
    in_keep, out_keep = {}, {}
    config = model.get_config()
    by_name = {spec["name"]: spec for spec in config["layers"]}
    for name, keep in keeps.items():
        keep = np.sort(np.asarray(keep, dtype=np.int64))
        group = find_group(model, name, consumers)
        if group is None:
            raise EdgefaceError(f"layer {name!r} cannot be narrowed on its own (its output does not reach a single "
                                "Conv2D/Dense through per-channel layers only)")
        if len(keep) == 0 or keep.min() < 0 or keep.max() >= group.units or len(set(keep.tolist())) != len(keep):
            raise EdgefaceError(f"invalid units to keep for {name!r} (it has {group.units})")
        key = "filters" if "filters" in by_name[name]["config"] else "units"
        by_name[name]["config"][key] = int(len(keep))
        out_keep[name] = keep
        for c in group.chain:
            in_keep[c] = out_keep[c] = keep
        in_keep[group.consumer] = keep
        flat = model.get_layer(group.chain[-1]) if group.chain else None
        if isinstance(flat, keras.layers.Flatten):
            _, h, w, c = flat.input_shape
            in_keep[group.consumer] = (np.arange(h * w)[:, None] * c + keep[None, :]).ravel()
    for name in consumer_bias:
        by_name[name]["config"]["use_bias"] = True
    try:
        new = keras.Model.from_config(config)
    except Exception as e:
        raise EdgefaceError(f"cannot rebuild the narrowed model: {str(e).splitlines()[0]}") from None
    for layer in model.layers:
        weights = consumer_weights.get(layer.name, layer.get_weights())
        if not weights:
            continue
        sliced = _slice_weights(layer, weights, in_keep.get(layer.name), out_keep.get(layer.name))
        if layer.name in consumer_bias:
            extra = np.asarray(consumer_bias[layer.name], np.float32)
            if len(sliced) == 1:  # the consumer had no bias: the rebuilt one has
                sliced.append(extra.copy())
            else:
                sliced[1] = sliced[1] + extra
        new.get_layer(layer.name).set_weights(sliced)
    return new


def count_params(model) -> int:
    return int(model.count_params())
