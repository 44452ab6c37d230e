"""Facial-expression classifiers: a pretrained base (frozen) + a small new head, or a small CNN.

Every builder takes the same keyword arguments:

    num_classes   classes of the new softmax head
    input_size    square input side in pixels (small: 48-96 px on this project's CPUs)
    weights       "imagenet" (keras.applications download; needs internet),
                  a local .h5 weights file for the keras.applications base,
                  a face model (.keras file or a training RUN_DIR): transfer from edgeface's own face backbone,
                  or None (random init: train from scratch)
    head_units    hidden units of the head (GAP -> Dense(head_units, relu) -> Dropout -> Dense(softmax))
    dropout       dropout rate of the head
    channels      input channels (3 for the backbones: grayscale faces are replicated; 1 for the small CNN)

The input is always pixels standardised as (x - 127.5) / 127.5 (the project-wide convention, so the
card's normalisation is the same for every model); ImageNet bases get a fixed, non-trainable layer that
maps [-1, 1] to whatever their weights expect. Models are flat Functional graphs (no nested Model),
so TF-MOT and the TFLite converter see every layer. Head layers are named `head_*`; everything else
is the base.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

import edgeface  # noqa: F401  (legacy tf-keras before TensorFlow loads)
from edgeface.errors import EdgefaceError
from edgeface.nets.registry import register_model
from edgeface.spec import PIXEL_MEAN, PIXEL_STD, TASK_CLASSIFICATION

HEAD_PREFIX = "head_"
FEATURE_LAYER = "head_features"  # the pooled base features the frozen-base trainer precomputes
HIDDEN_LAYER = "head_dense"  # the hidden units pruned by distinctiveness
OUTPUT_LAYER = "head_predictions"

# keras.applications constructor name and the pixel convention its ImageNet weights were trained with.
_APPLICATIONS = {
    "mobilenetv2": ("MobileNetV2", "tf"),
    "resnet50": ("ResNet50", "caffe"),
    "vgg16": ("VGG16", "caffe"),
    "densenet121": ("DenseNet121", "torch"),
}
_MIN_SIZE = 32  # keras.applications refuse smaller inputs
# Small inputs on purpose: CK+/FER are 48x48 and the CPUs are tiny. A face model sets its own size.
DEFAULT_INPUT = {"mobilenetv2": 96, "resnet50": 64, "vgg16": 64, "densenet121": 64, "cnn": 48, "vgg": 48}


def _keras():
    import tf_keras as keras
    return keras


def is_face_model_path(weights) -> bool:
    """A face model to transfer from: a .keras file or a run directory holding model.keras."""
    if not isinstance(weights, (str, os.PathLike)):
        return False
    p = Path(weights)
    return p.suffix == ".keras" or (p.is_dir() and (p / "model.keras").is_file())


def _imagenet_adapter(x, mode: str, channels: int):
    """A frozen Dense on the channel axis mapping [-1, 1] pixels to the weights' expected input.

    One exact affine map covers every convention (incl. caffe's RGB->BGR swap) and converts to TFLite
    as a plain FULLY_CONNECTED, unlike a Lambda layer.
    """
    keras = _keras()
    if mode == "tf" or channels != 3:  # mobilenetv2 already expects [-1, 1]
        return x
    w = np.zeros((3, 3), np.float32)
    b = np.zeros(3, np.float32)
    if mode == "caffe":  # BGR, 0..255, minus the ImageNet BGR mean
        mean = np.array([103.939, 116.779, 123.68], np.float32)
        for out_c, in_c in enumerate((2, 1, 0)):
            w[in_c, out_c] = PIXEL_STD  # the model's [-1, 1] input back to 0..255
            b[out_c] = PIXEL_MEAN - mean[out_c]
    elif mode == "torch":  # RGB in 0..1, standardised by the ImageNet mean/std
        mean = np.array([0.485, 0.456, 0.406], np.float32)
        std = np.array([0.229, 0.224, 0.225], np.float32)
        for c in range(3):
            w[c, c] = 0.5 / std[c]
            b[c] = (0.5 - mean[c]) / std[c]
    layer = keras.layers.Dense(3, name="imagenet_preprocess", trainable=False)
    y = layer(x)
    layer.set_weights([w, b])
    return y


def add_head(features, num_classes: int, head_units: int = 100, dropout: float = 0.5, flatten: bool = False):
    """GAP (or Flatten for the LeNet-like CNN) -> Dense(head_units, relu) -> Dropout -> Dense(softmax)."""
    keras = _keras()
    if len(features.shape) == 4:
        pool = keras.layers.Flatten if flatten else keras.layers.GlobalAveragePooling2D
        features = pool(name=FEATURE_LAYER)(features)
    x = keras.layers.Dense(head_units, activation="relu", name=HIDDEN_LAYER)(features)
    x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    return keras.layers.Dense(num_classes, activation="softmax", name=OUTPUT_LAYER)(x)


def _check_common(num_classes, input_size, channels, head_units, dropout):
    if int(num_classes) < 2:
        raise EdgefaceError(f"num_classes must be >= 2, got {num_classes}")
    if int(head_units) < 1:
        raise EdgefaceError(f"head_units must be >= 1, got {head_units}")
    if not 0.0 <= float(dropout) < 1.0:
        raise EdgefaceError(f"dropout must be in [0, 1), got {dropout}")
    if channels not in (1, 3):
        raise EdgefaceError(f"channels must be 1 or 3, got {channels}")
    if int(input_size) < _MIN_SIZE:
        raise EdgefaceError(f"input_size must be >= {_MIN_SIZE}, got {input_size}")


def _load_face_model(weights):
    """The face embedder to transfer from (edgeface's own loader when present, else tf-keras)."""
    p = Path(weights)
    if p.is_dir():
        p = p / "model.keras"
    if not p.is_file():
        raise EdgefaceError(f"face model to transfer from not found: {p}")
    from edgeface.nets import load_model  # the project loader (knows any custom layers)
    try:
        return load_model(p)
    except EdgefaceError:
        raise
    except Exception as e:  # corrupt / foreign file: one line
        raise EdgefaceError(f"cannot load face model {p}: {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}") from None


def face_feature_tensor(face_model):
    """The face embedder's last feature map, before its own pooling/embedding head.

    edgeface's embedders name that head `head_*` / `embedding*`; for foreign models fall back to
    the last 4-D output that still has spatial extent (a 1x1 map is already the pooled head).
    """
    prev = None
    for layer in face_model.layers:
        if layer.name.startswith(("head_", "embedding")) and prev is not None:
            return prev
        out = layer.output
        if not isinstance(out, (list, tuple)) and len(out.shape) == 4:
            prev = out
    for layer in reversed(face_model.layers):
        out = layer.output
        if not isinstance(out, (list, tuple)) and len(out.shape) == 4 and (out.shape[1] or 0) > 1:
            return out
    raise EdgefaceError(f"face model {face_model.name!r} has no 4-D feature map to transfer from")


def _from_face_model(backbone, weights, num_classes, input_size, head_units, dropout, channels):
    keras = _keras()
    face = _load_face_model(weights)
    shape = tuple(face.input_shape[1:])
    if channels != shape[-1]:
        raise EdgefaceError(f"face model {weights} takes {shape[-1]} channels, asked for {channels}")
    if input_size is not None and int(input_size) != int(shape[0]):
        raise EdgefaceError(f"face model {weights} takes {shape[0]}x{shape[1]} inputs, asked for {input_size}; "
                            f"use --input-size {shape[0]}")
    out = add_head(face_feature_tensor(face), num_classes, head_units, dropout)
    return keras.Model(face.input, out, name=f"expr_{backbone}_face")


def _application(backbone: str, num_classes=7, input_size=None, weights=None, head_units=100, dropout=0.5, channels=3):
    keras = _keras()
    if isinstance(weights, str) and weights.lower() in ("none", ""):
        weights = None
    if is_face_model_path(weights):
        return _from_face_model(backbone, weights, num_classes, input_size, head_units, dropout, channels)
    input_size = DEFAULT_INPUT[backbone] if input_size is None else int(input_size)
    _check_common(num_classes, input_size, channels, head_units, dropout)
    ctor_name, mode = _APPLICATIONS[backbone]
    if weights not in (None, "imagenet"):
        if not Path(weights).is_file():
            raise EdgefaceError(f"weights file not found: {weights} (expected 'imagenet', none, an .h5 file or a face model)")
    if weights is not None and channels != 3:
        raise EdgefaceError(f"pretrained {backbone} weights need channels=3, got {channels}")
    inp = keras.Input((input_size, input_size, channels), name="image")
    x = _imagenet_adapter(inp, mode, channels) if weights is not None else inp
    ctor = getattr(keras.applications, ctor_name)
    try:
        # input_tensor builds the base's layers straight onto our graph: one flat Functional model.
        base = ctor(include_top=False, weights=weights, input_tensor=x)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if weights == "imagenet":
            raise EdgefaceError(f"cannot get ImageNet weights for {backbone} (needs internet to download): {first}; "
                                "use --weights FILE (a face model or an .h5) or --weights none") from None
        raise EdgefaceError(f"cannot build {backbone} with weights {weights}: {first}") from None
    if weights is None:
        _set_bn_momentum(base, SCRATCH_BN_MOMENTUM)
    out = add_head(base.output, num_classes, head_units, dropout)
    return keras.Model(inp, out, name=f"expr_{backbone}")


# keras.applications use 0.999 (tuned for ImageNet's millions of steps); a from-scratch run on a few
# hundred faces takes ~25 steps an epoch, and with 0.999 the moving statistics lag the weights for
# tens of epochs, so validation (inference-mode BN) sits at the majority class.
SCRATCH_BN_MOMENTUM = 0.9


def _set_bn_momentum(model, momentum: float) -> None:
    keras = _keras()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


# The terms of the ImageNet weights keras.applications downloads (weights="imagenet").
IMAGENET_LICENSES = {
    "mobilenetv2": "Apache-2.0",
    "resnet50": "MIT (Kaiming He's release)",
    "vgg16": "CC BY 4.0 (VGG, Oxford)",
    "densenet121": "BSD-3-Clause",
}
SCRATCH = "none: random init"


def _register_application(backbone: str) -> None:
    @register_model(f"expr_{backbone}", task=TASK_CLASSIFICATION, input_size=DEFAULT_INPUT[backbone], channels=3,
                    template=None, license=f"imagenet: {IMAGENET_LICENSES[backbone]}; a face model: its card's",
                    description=f"keras.applications {backbone} base + dense softmax head (gray faces replicated)")
    def build(num_classes=7, input_size=None, weights=None, head_units=100, dropout=0.5, channels=3):
        return _application(backbone, num_classes, input_size, weights, head_units, dropout, channels)

    build.__name__ = f"expr_{backbone}"
    build.__doc__ = f"keras.applications {backbone} base (frozen) + GAP -> Dense(head_units) -> Dropout -> softmax."


# The seeds' transfer-learning backbones, one uniform factory each.
for _backbone in ("mobilenetv2", "resnet50", "vgg16", "densenet121"):
    _register_application(_backbone)


@register_model("expr_cnn", task=TASK_CLASSIFICATION, input_size=DEFAULT_INPUT["cnn"], channels=1, template=None,
                license=SCRATCH, description="the seed's LeNet-like baseline: two 5x5 conv + max-pool, dense softmax head")
def expr_cnn(num_classes=7, input_size=None, weights=None, head_units=100, dropout=0.5, channels=1, filters=(32, 64)):
    """The seed's small from-scratch baseline: LeNet-like, two 5x5 conv + two 2x2 max-pool layers."""
    keras = _keras()
    input_size = DEFAULT_INPUT["cnn"] if input_size is None else int(input_size)
    _check_common(num_classes, max(input_size, _MIN_SIZE), channels, head_units, dropout)
    if weights not in (None, "none", ""):
        if weights == "imagenet":
            raise EdgefaceError("expr_cnn is the from-scratch baseline: it has no ImageNet weights (use --weights none)")
    inp = keras.Input((input_size, input_size, channels), name="image")
    x = inp
    for i, f in enumerate(filters, 1):
        x = keras.layers.Conv2D(f, 5, activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    out = add_head(x, num_classes, head_units, dropout, flatten=True)
    model = keras.Model(inp, out, name="expr_cnn")
    if weights not in (None, "none", ""):  # a local .h5/.keras of the same architecture
        p = Path(weights)
        if not p.is_file():
            raise EdgefaceError(f"weights file not found: {weights}")
        try:
            model.load_weights(p)
        except Exception as e:
            raise EdgefaceError(f"cannot load expr_cnn weights from {p}: {str(e).strip().splitlines()[0]}") from None
    return model


VGG_FILTERS = ((32,), (64,), (128, 128), (256,))


@register_model("expr_vgg", task=TASK_CLASSIFICATION, input_size=DEFAULT_INPUT["vgg"], channels=1, template=None,
                license=SCRATCH, description="small VGG-style CNN (3x3 conv-BN-ReLU blocks) for 48x48 gray faces")
def expr_vgg(num_classes=7, input_size=None, weights=None, head_units=128, dropout=0.5, channels=1,
             filters=VGG_FILTERS, block_dropout=0.0):
    """A small VGG-style CNN from scratch for 48x48 gray faces (FER2013-sized): blocks of
    (3x3 conv -> BatchNorm -> ReLU) x len(block), each block ending in 2x2 max-pool (+ optional
    dropout); then GAP -> Dense(head_units) -> Dropout -> softmax (the shared head, so the head can
    be pruned by distinctiveness like the other models). `filters` is one tuple of widths per block."""
    keras = _keras()
    input_size = DEFAULT_INPUT["vgg"] if input_size is None else int(input_size)
    _check_common(num_classes, max(input_size, _MIN_SIZE), channels, head_units, dropout)
    if weights not in (None, "none", ""):
        raise EdgefaceError("expr_vgg trains from scratch: it takes no pretrained weights (use --weights none)")
    blocks = [tuple(int(f) for f in (b if isinstance(b, (list, tuple)) else (b,))) for b in filters]
    if not blocks or any(not b or min(b) < 1 for b in blocks):
        raise EdgefaceError(f"filters must be a non-empty list of non-empty lists of positive widths, got {filters!r}")
    if input_size >> len(blocks) < 1:
        raise EdgefaceError(f"{len(blocks)} pooling blocks are too many for a {input_size}-pixel input")
    inp = keras.Input((input_size, input_size, channels), name="image")
    x = inp
    for i, block in enumerate(blocks, 1):
        for j, f in enumerate(block, 1):
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = keras.layers.BatchNormalization(momentum=SCRATCH_BN_MOMENTUM, name=f"block{i}_bn{j}")(x)
            x = keras.layers.ReLU(name=f"block{i}_relu{j}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        if block_dropout > 0:
            x = keras.layers.Dropout(float(block_dropout), name=f"block{i}_dropout")(x)
    out = add_head(x, num_classes, head_units, dropout)
    return keras.Model(inp, out, name="expr_vgg")


# ---- freezing / fine-tuning -------------------------------------------------------------

_BLOCK_RE = re.compile(r"^(.*?block_?\d+)")


def base_layers(model) -> list:
    """Layers of the base (everything but the input, the ImageNet adapter and the head)."""
    keras = _keras()
    return [l for l in model.layers
            if not l.name.startswith(HEAD_PREFIX) and l.name != "imagenet_preprocess"
            and not isinstance(l, keras.layers.InputLayer)]


def base_blocks(model) -> list[list]:
    """The base's layers grouped into blocks (keras.applications naming: block_3_*, conv4_block2_*, block5_*).

    Layers that do not name a block join the block before them (the final 1x1 conv, out_relu...),
    and layers before the first block form the stem.
    """
    blocks: list[list] = []
    key = None
    for layer in base_layers(model):
        m = _BLOCK_RE.match(layer.name)
        k = m.group(1) if m else key
        if k != key or not blocks:
            blocks.append([])
            key = k if k is not None else "stem"
        blocks[-1].append(layer)
    return blocks


def set_base_trainable(model, trainable_blocks: int | None) -> int:
    """Freeze the base except its top `trainable_blocks` blocks (None: the whole base trains).

    BatchNorm layers of a pretrained base stay frozen (inference mode) while fine-tuning, the
    standard practice: their statistics on a few hundred faces would be noisier than ImageNet's.
    Returns the number of trainable base layers.
    """
    keras = _keras()
    blocks = base_blocks(model)
    if trainable_blocks is None:
        for layer in base_layers(model):
            layer.trainable = True
        return len(base_layers(model))
    for layer in base_layers(model):
        layer.trainable = False
    n = 0
    for block in blocks[len(blocks) - trainable_blocks:] if trainable_blocks > 0 else []:
        for layer in block:
            if not isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = True
                n += 1
    return n


def feature_extractor(model):
    """The frozen part as its own model: image -> pooled base features (the head's input)."""
    keras = _keras()
    return keras.Model(model.input, model.get_layer(FEATURE_LAYER).output, name=f"{model.name}_features")


def head_model(model):
    """The trainable head alone (pooled features -> class probabilities), sharing the full model's layers."""
    keras = _keras()
    feat = model.get_layer(FEATURE_LAYER).output
    inp = keras.Input(tuple(feat.shape[1:]), name="features")
    x = inp
    for name in (HIDDEN_LAYER, "head_dropout", OUTPUT_LAYER):
        x = model.get_layer(name)(x)
    return keras.Model(inp, x, name=f"{model.name}_head")
