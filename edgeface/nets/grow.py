"""Grow a trained MobileNetV2 embedder into a wider and deeper one that computes the same function.

Net2WiderNet and Net2DeeperNet (Chen, Goodfellow & Shlens, ICLR 2016) for this package's flat
`mobilenetv2` graphs, so a student can gain capacity and keep its training (a restart costs days here):
- a widened channel space copies old channels (conv output, depthwise and BatchNorm per channel);
  every conv reading it splits each old input weight over its copies with random positive fractions
  that sum to one. Same output exactly, and the copies get different gradients from the first step
  (an even split would keep them identical forever);
- a stage made deeper gets residual blocks appended after its last one: expand and depthwise copied
  from that block, project kernel zero and its BatchNorm the identity, so the block adds nothing yet
  but its project kernel has a gradient (a zero BN gamma would not, with BatchNorm frozen).

The two models come from `mobilenetv2(...)` with the same strides and head; every width and stage
depth of the new one must be >= the old one's. Blocks are grouped into stages by their residual adds.
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tf_keras as keras

from edgeface.errors import EdgefaceError


def _layer(model: keras.Model, name: str):
    try:
        return model.get_layer(name)
    except ValueError:
        return None


def block_groups(model: keras.Model) -> list[list[int]]:
    """Block indices grouped by stage: a block without a residual add starts a new group."""
    groups: list[list[int]] = []
    i = 0
    while _layer(model, f"block{i}_dw") is not None:
        if _layer(model, f"block{i}_add") is None or not groups:
            groups.append([])
        groups[-1].append(i)
        i += 1
    return groups


class _Space:
    """One channel space widened from `old` to `new` channels: which old channel each new one copies,
    and the fraction of an old input weight each copy takes where a conv reads the space."""

    def __init__(self, old: int, new: int, rng: np.random.Generator, what: str):
        if new < old:
            raise EdgefaceError(f"{what}: the grown model has {new} channels where the trained one has {old}; "
                                "growing never narrows")
        self.src = np.concatenate([np.arange(old), rng.integers(0, old, new - old)])
        share = rng.uniform(0.5, 1.5, new)  # random, positive, then normalised over each channel's copies
        total = np.bincount(self.src, weights=share, minlength=old)
        self.frac = (share / total[self.src]).astype(np.float32)


def _grow_conv(kernel: np.ndarray, read: _Space | None, write: _Space | None) -> np.ndarray:
    """A (kh, kw, in, out) kernel: input channels split over their copies, output channels copied."""
    if read is not None:
        kernel = kernel[:, :, read.src, :] * read.frac[None, None, :, None]
    if write is not None:
        kernel = kernel[..., write.src]
    return kernel


def _copy_channels(values: list[np.ndarray], space: _Space, axis: int = -1) -> list[np.ndarray]:
    return [np.take(v, space.src, axis=axis) for v in values]


def _block_names(i: int) -> dict[str, str]:
    return {p: f"block{i}_{p}" for p in ("expand", "expand_bn", "dw", "dw_bn", "project", "project_bn")}


def grow_mobilenetv2(old: keras.Model, new: keras.Model, seed: int = 0) -> keras.Model:
    """Set `new`'s weights so that it computes what `old` does (see the module doc); returns `new`."""
    rng = np.random.default_rng(seed)
    g_old, g_new = block_groups(old), block_groups(new)
    if len(g_old) != len(g_new) or any(len(b) < len(a) for a, b in zip(g_old, g_new)):
        raise EdgefaceError(f"cannot grow stages {[len(g) for g in g_old]} into {[len(g) for g in g_new]}: "
                            "the same stages, each at least as deep")
    for name in ("stem_conv", "last_conv", "head_gdconv", "embedding"):
        if (_layer(old, name) is None) != (_layer(new, name) is None):
            raise EdgefaceError(f"cannot grow: layer {name} is in one model and not the other")
    if old.output_shape != new.output_shape or old.input_shape != new.input_shape:
        raise EdgefaceError(f"cannot grow {old.input_shape}->{old.output_shape} into {new.input_shape}->{new.output_shape}")
    for a, b in zip(g_old, g_new):  # the kept blocks at the same strides (added ones are residual: stride 1)
        for i_old, i_new in zip(a, b):
            s_old, s_new = (m.get_layer(f"block{i}_dw").strides for m, i in ((old, i_old), (new, i_new)))
            if s_old != s_new:
                raise EdgefaceError(f"cannot grow: block{i_new} has stride {s_new[0]} where the trained block{i_old} "
                                    f"has {s_old[0]}; growing keeps the strides")

    def width(model, name):
        return int(model.get_layer(name).output.shape[-1])

    def space(name_old, name_new=None):
        name_new = name_new or name_old
        return _Space(width(old, name_old), width(new, name_new), rng, name_new)

    def put(name, weights):
        layer = new.get_layer(name)
        shapes = [w.shape for w in layer.get_weights()]
        if [w.shape for w in weights] != shapes:
            raise EdgefaceError(f"grow: {name} came out {[w.shape for w in weights]}, the model wants {shapes}")
        layer.set_weights([np.asarray(w, np.float32) for w in weights])

    def conv_bn(conv, bn, read, write, src=None):
        """A conv (+ its BN) reading `read` and writing `write`; src: the old block's names."""
        s_conv, s_bn = (src or (conv, bn))
        put(conv, [_grow_conv(old.get_layer(s_conv).get_weights()[0], read, write)])
        put(bn, _copy_channels(old.get_layer(s_bn).get_weights(), write))

    def dw_bn(dw, bn, sp, src=None):
        s_dw, s_bn = (src or (dw, bn))
        put(dw, [old.get_layer(s_dw).get_weights()[0][:, :, sp.src, :]])
        put(bn, _copy_channels(old.get_layer(s_bn).get_weights(), sp))

    stream = space("stem_conv")
    conv_bn("stem_conv", "stem_bn", None, stream)
    for blocks_old, blocks_new in zip(g_old, g_new):
        first_old, first_new = blocks_old[0], blocks_new[0]
        out = space(f"block{first_old}_project", f"block{first_new}_project")  # the stage's stream
        for k, i_new in enumerate(blocks_new):
            i_old = blocks_old[min(k, len(blocks_old) - 1)]
            added = k >= len(blocks_old)
            read = stream if k == 0 else out
            n_new, n_old = _block_names(i_new), _block_names(i_old)
            if _layer(new, n_new["expand"]) is not None:
                inner = space(n_old["expand"], n_new["expand"])
                conv_bn(n_new["expand"], n_new["expand_bn"], read, inner, (n_old["expand"], n_old["expand_bn"]))
            else:  # expansion 1: the depthwise runs on the block's input space
                inner = read
            dw_bn(n_new["dw"], n_new["dw_bn"], inner, (n_old["dw"], n_old["dw_bn"]))
            if added:  # identity block: zero project kernel, BN(0) = 0 with unit statistics
                kernel = np.zeros(new.get_layer(n_new["project"]).get_weights()[0].shape, np.float32)
                put(n_new["project"], [kernel])
                c = kernel.shape[-1]
                put(n_new["project_bn"], [np.ones(c), np.zeros(c), np.zeros(c), np.ones(c)])
            else:
                conv_bn(n_new["project"], n_new["project_bn"], inner, out, (n_old["project"], n_old["project_bn"]))
        stream = out
    if _layer(new, "last_conv") is not None:
        last = space("last_conv")
        conv_bn("last_conv", "last_bn", stream, last)
        stream = last
    if _layer(new, "head_gdconv") is not None:
        dw_bn("head_gdconv", "head_gdconv_bn", stream)
    put("embedding", [_grow_conv(old.get_layer("embedding").get_weights()[0], stream, None)])
    put("embedding_bn", old.get_layer("embedding_bn").get_weights())
    return new


def distinct_weights(model: keras.Model, seed: int = 0) -> keras.Model:
    """A copy of `model` whose weight tensors all differ, each moved by 1e-4 of its largest magnitude. The TFLite
    converter stores equal buffers once, and a grown model's copied blocks and zero projections stay equal until
    training moves them, so its file measures small; this copy measures what the trained file will."""
    rng = np.random.default_rng(seed)
    copy = keras.models.clone_model(model)
    copy.set_weights([w + (1e-4 * (np.abs(w).max() + 1e-3) * rng.standard_normal(w.shape)).astype(w.dtype)
                      for w in model.get_weights()])
    return copy
