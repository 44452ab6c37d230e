"""MobileNetV2 face embedder as one flat Functional tf-keras model.

Flat on purpose: TF-MOT's quantize_model / prune_low_magnitude only walk the top-level layers, and
a nested keras.applications model, a Lambda or a UnitNormalization layer either breaks them or
leaves float ops in the int8 TFLite file. Every conv is followed by BatchNormalization so the
BN folds into the conv under QAT and post-training quantisation.

Layer names are stable (`block{i}_expand`, `block{i}_dw`, ...) so pruning and analysis tools can
find layers without guessing; the output `embedding_out` is the RAW embedding (normalise on the host).
"""
from __future__ import annotations

import logging
from typing import Sequence

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tf_keras as keras

from edgeface.align.transform import registered_template_for
from edgeface.errors import EdgefaceError
from edgeface.nets.registry import register_model
from edgeface.spec import TASK_EMBEDDING

log = logging.getLogger(__name__)

# (t expansion, c output channels, n repeats, s first stride): Sandler et al. 2018, Table 2.
DEFAULT_STAGES: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
# What every MobileNetV2 embedder expects: aligned 112x112 RGB crops, no pretrained weights.
FACE_ARCH = dict(task=TASK_EMBEDDING, input_size=112, channels=3, template=registered_template_for(112, 112),
                 license="none: random init (a teacher's terms pass on)")

# 0.999 (the Keras default for some MobileNets) makes the moving statistics lag badly in short runs.
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor`, never dropping more than 10% (as in the paper's code)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return int(new_v)


def block_plan(stages: Sequence[Sequence[int]] = DEFAULT_STAGES, alpha: float = 1.0,
               expand_channels: Sequence[int | None] | None = None) -> list[dict]:
    """The per-block channel plan: [{in, expand (None = no expand conv), out, stride, residual}].

    Exposed so structured pruning can read the plan, narrow `expand` per block and rebuild.
    """
    stem = make_divisible(32 * alpha)
    plan, in_ch = [], stem
    for t, c, n, s in stages:
        out_ch = make_divisible(c * alpha)
        for r in range(n):
            stride = s if r == 0 else 1
            plan.append({"in": in_ch, "expand": None if t == 1 else make_divisible(in_ch * t),
                         "out": out_ch, "stride": stride, "t": t})
            in_ch = out_ch
    if expand_channels is not None:
        if len(expand_channels) != len(plan):
            raise EdgefaceError(f"expand_channels has {len(expand_channels)} entries; the net has {len(plan)} blocks")
        for i, (b, e) in enumerate(zip(plan, expand_channels)):
            if e is None:
                continue
            if b["expand"] is None:
                raise EdgefaceError(f"block {i} has expansion 1 (no expand conv); its expand_channels must be null")
            if int(e) < 1:
                raise EdgefaceError(f"expand_channels[{i}] must be >= 1, got {e}")
            b["expand"] = int(e)
    for b in plan:
        b["residual"] = b["stride"] == 1 and b["in"] == b["out"]
    return plan


def _bn(x, name):
    return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)(x)


def _conv_bn(x, filters, kernel, stride, name, bn_name, relu_name=None):
    """Conv (no bias: BN supplies it) + BN (+ ReLU6 when relu_name is given)."""
    x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = _bn(x, bn_name)
    return keras.layers.ReLU(6.0, name=relu_name)(x) if relu_name else x


def _inverted_residual(x, i: int, b: dict):
    inp = x
    if b["expand"] is not None:
        x = _conv_bn(x, b["expand"], 1, 1, f"block{i}_expand", f"block{i}_expand_bn", f"block{i}_expand_relu")
    x = keras.layers.DepthwiseConv2D(3, strides=b["stride"], padding="same", use_bias=False, name=f"block{i}_dw")(x)
    x = _bn(x, f"block{i}_dw_bn")
    x = keras.layers.ReLU(6.0, name=f"block{i}_dw_relu")(x)
    x = _conv_bn(x, b["out"], 1, 1, f"block{i}_project", f"block{i}_project_bn")  # linear bottleneck
    if b["residual"]:
        x = keras.layers.Add(name=f"block{i}_add")([inp, x])
    return x


@register_model("mobilenetv2", **FACE_ARCH,
                description="MobileNetV2 face embedder (flat, GDConv head, raw embedding); widths by keyword")
def mobilenetv2(input_size: int = 112, alpha: float = 1.0, embedding_dim: int = 128,
                stages: Sequence[Sequence[int]] | None = None, last_channels: int | None = 1280,
                expand_channels: Sequence[int | None] | None = None, head: str = "gdconv",
                dropout: float = 0.0, name: str = "mobilenetv2") -> keras.Model:
    """Build the embedder. Input: (input_size, input_size, 3) float in [-1, 1]; output: raw embedding.

    last_channels: width of the final 1x1 conv (None or 0 drops it; 1280 dominates the int8 size).
    head: "gdconv" (global depthwise conv, linear + BN: keeps spatial weighting, all-conv so BN folds)
          or "gap" (global average pooling).
    """
    if input_size < 32 or input_size % 8:
        raise EdgefaceError(f"input_size must be a multiple of 8 and >= 32, got {input_size}")
    if alpha <= 0:
        raise EdgefaceError(f"alpha must be > 0, got {alpha}")
    if head not in ("gdconv", "gap"):
        raise EdgefaceError(f"head must be 'gdconv' or 'gap', got {head!r}")
    if not 0.0 <= dropout < 1.0:
        raise EdgefaceError(f"dropout must be in [0, 1), got {dropout}")
    stages = [tuple(int(v) for v in s) for s in (stages or DEFAULT_STAGES)]
    if any(len(s) != 4 for s in stages):
        raise EdgefaceError("each stage must be (t, c, n, s)")
    plan = block_plan(stages, alpha, expand_channels)

    inputs = keras.Input((input_size, input_size, 3), name="image")
    x = _conv_bn(inputs, make_divisible(32 * alpha), 3, 2, "stem_conv", "stem_bn", "stem_relu")
    for i, b in enumerate(plan):
        x = _inverted_residual(x, i, b)
    if last_channels:
        x = _conv_bn(x, int(last_channels), 1, 1, "last_conv", "last_bn", "last_relu")

    if head == "gdconv":
        h, w = int(x.shape[1]), int(x.shape[2])
        x = keras.layers.DepthwiseConv2D((h, w), padding="valid", use_bias=False, name="head_gdconv")(x)
        x = _bn(x, "head_gdconv_bn")
    else:
        x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="head_gap")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    x = keras.layers.Conv2D(int(embedding_dim), 1, use_bias=False, name="embedding")(x)
    x = _bn(x, "embedding_bn")
    outputs = keras.layers.Flatten(name="embedding_out")(x)
    model = keras.Model(inputs, outputs, name=name)
    log.info("built %s", describe(model))
    return model


# Int8 TFLite cost per conv output channel: an int32 bias plus per-channel scales (float32) and
# zero points (int64) of the weight and bias tensors: ~25 bytes, which is why narrow-but-deep nets
# cost more than their int8 weights. Constants least-squares fitted on 6 real conversions
# (alpha 0.35-1.0, input 96/112, last_channels 256/512; rms error ~0.2 kB).
_INT8_BYTES_PER_OUT_CHANNEL = 25
_INT8_BYTES_PER_OP = 400       # operator, tensor and activation-quantisation records
_INT8_FIXED_BYTES = 5000       # flatbuffer header, signature, metadata


def estimate_int8_bytes(model: keras.Model) -> int:
    """Predict the int8 TFLite file size (BN folded into the convs), within a few percent.

    Fitted against real conversions of this family; the converter is the judge, this is for
    choosing widths without converting every candidate.
    """
    total, ops = _INT8_FIXED_BYTES, 0
    for layer in model.layers:
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)):
            kernel = layer.weights[0]
            out_ch = int(layer.output.shape[-1])
            total += int(kernel.shape.num_elements()) + out_ch * _INT8_BYTES_PER_OUT_CHANNEL
            ops += 1
        elif isinstance(layer, (keras.layers.Add, keras.layers.Flatten, keras.layers.GlobalAveragePooling2D)):
            ops += 1
    return total + ops * _INT8_BYTES_PER_OP


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of the conv layers for one image (what dominates on-device latency)."""
    macs = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            h, w, c = layer.output.shape[1:]
            macs += h * w * c * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, keras.layers.Conv2D):
            h, w, c = layer.output.shape[1:]
            macs += h * w * c * layer.kernel_size[0] * layer.kernel_size[1] * int(layer.input.shape[-1])
    return int(macs)


def describe(model: keras.Model) -> str:
    """One line for logs: parameters, estimated int8 size, MACs, input and output shapes."""
    n_res = sum(isinstance(layer, keras.layers.Add) for layer in model.layers)
    return (f"{model.name}: {model.count_params():,} params, est. int8 {estimate_int8_bytes(model) / 1000:,.0f} kB, "
            f"{count_macs(model) / 1e6:,.1f} M MACs, input {tuple(model.input_shape[1:])}, "
            f"output {tuple(model.output_shape[1:])}, {n_res} residual adds")


# Presets: widths chosen with estimate_int8_bytes and checked by real int8 conversion in
# tests/test_nets_mobilenetv2.py. Any keyword overrides the preset.
PRESETS: dict[str, dict] = {
    # ~0.88 MB int8: the phone / Raspberry Pi model under the 1,000,000-byte budget.
    "mobilenetv2_face": dict(input_size=112, alpha=0.5, last_channels=512, embedding_dim=128, head="gdconv"),
    # ~0.26 MB int8: the microcontroller model (<= 300 kB). The seed table without the 320 stage and
    # with one 160 block: at alpha 0.35 the per-channel quantisation records cost as much as weights.
    "mobilenetv2_micro": dict(input_size=112, alpha=0.35, last_channels=192, embedding_dim=128, head="gdconv",
                              stages=[(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                                      (6, 96, 3, 1), (6, 160, 1, 2)]),
}


PRESET_NOTES = {
    "mobilenetv2_face": "MobileNetV2 alpha 0.5, last conv 512: ~0.88 MB int8, the phone / Raspberry Pi tier",
    "mobilenetv2_micro": "MobileNetV2 alpha 0.35, no 320 stage: ~0.26 MB int8, the microcontroller tier",
}


def _register_preset(preset: str) -> None:
    @register_model(preset, **FACE_ARCH, description=PRESET_NOTES[preset])
    def build(**overrides) -> keras.Model:
        kw = {**PRESETS[preset], "name": preset}
        kw.update(overrides)
        return mobilenetv2(**kw)
    build.__name__ = preset
    build.__doc__ = f"mobilenetv2 with {PRESETS[preset]}"


for _preset in PRESETS:
    _register_preset(_preset)
