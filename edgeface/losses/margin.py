"""Classification heads over embeddings: plain softmax, ArcFace (additive angular margin, Deng et al.
2019) and CosFace (additive cosine margin, Wang et al. 2018). Training-only: never exported."""
from __future__ import annotations

import math

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tf_keras as keras

from edgeface.errors import EdgefaceError


def softmax_cross_entropy(labels, logits):
    """Mean sparse softmax cross-entropy (labels int (B,), logits (B, C))."""
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int32), logits=tf.cast(logits, tf.float32)))


class SoftmaxHead(keras.layers.Layer):
    """A linear classifier (W x + b); labels are ignored."""

    def __init__(self, num_classes: int, **kw):
        super().__init__(**kw)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.num_classes),
                                      initializer="glorot_uniform", trainable=True)
        self.bias = self.add_weight("bias", (self.num_classes,), initializer="zeros", trainable=True)
        super().build(input_shape)

    def call(self, embeddings, labels=None, training=None):
        return tf.matmul(embeddings, self.kernel) + self.bias

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class _CosineHead(keras.layers.Layer):
    """cos(theta) between L2-normalised embeddings and L2-normalised class weights, scaled by s."""

    def __init__(self, num_classes: int, scale: float = 32.0, margin: float = 0.5, **kw):
        super().__init__(**kw)
        if scale <= 0:
            raise EdgefaceError(f"margin head scale must be > 0, got {scale}")
        if margin < 0:
            raise EdgefaceError(f"margin must be >= 0, got {margin}")
        self.num_classes, self.scale, self.margin = int(num_classes), float(scale), float(margin)

    def build(self, input_shape):
        self.kernel = self.add_weight("kernel", (int(input_shape[-1]), self.num_classes),
                                      initializer="glorot_uniform", trainable=True)
        super().build(input_shape)

    def cosine(self, embeddings):
        x = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1, epsilon=1e-12)
        w = tf.math.l2_normalize(self.kernel, axis=0, epsilon=1e-12)
        return tf.clip_by_value(tf.matmul(x, w), -1.0, 1.0)  # float rounding can step past +-1

    def target_logit(self, cos):
        raise NotImplementedError

    def call(self, embeddings, labels=None, training=None):
        cos = self.cosine(embeddings)
        if labels is None:  # inference: plain scaled cosine
            return self.scale * cos
        onehot = tf.one_hot(tf.cast(labels, tf.int32), self.num_classes, dtype=cos.dtype)
        return self.scale * tf.where(onehot > 0, self.target_logit(cos), cos)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes, "scale": self.scale, "margin": self.margin}


class ArcFaceHead(_CosineHead):
    """Target logit s*cos(theta + m).

    cos(theta + m) stops decreasing monotonically once theta + m > pi, so beyond theta > pi - m the
    usual fallback is used: cos(theta) - m*sin(m) (insightface), or, with easy_margin, no margin at
    all while cos(theta) <= 0.
    """

    def __init__(self, num_classes: int, scale: float = 32.0, margin: float = 0.5, easy_margin: bool = False, **kw):
        super().__init__(num_classes, scale, margin, **kw)
        self.easy_margin = bool(easy_margin)
        self.cos_m, self.sin_m = math.cos(margin), math.sin(margin)
        self.threshold = math.cos(math.pi - margin)
        self.fallback = math.sin(math.pi - margin) * margin

    def target_logit(self, cos):
        # The floor keeps sqrt's gradient finite at cos = +-1 (where max() routes it to the constant).
        sin = tf.sqrt(tf.maximum(1.0 - tf.square(cos), 1e-12))
        phi = cos * self.cos_m - sin * self.sin_m
        if self.easy_margin:
            return tf.where(cos > 0.0, phi, cos)
        return tf.where(cos > self.threshold, phi, cos - self.fallback)

    def get_config(self):
        return {**super().get_config(), "easy_margin": self.easy_margin}


class CosFaceHead(_CosineHead):
    """Target logit s*(cos(theta) - m)."""

    def __init__(self, num_classes: int, scale: float = 32.0, margin: float = 0.35, **kw):
        super().__init__(num_classes, scale, margin, **kw)

    def target_logit(self, cos):
        return cos - self.margin


HEADS = {"softmax": SoftmaxHead, "center": SoftmaxHead, "arcface": ArcFaceHead, "cosface": CosFaceHead}


def make_head(loss: str, num_classes: int, scale: float = 32.0, margin: float | None = None,
              easy_margin: bool = False) -> keras.layers.Layer:
    """The classification head for a loss name (center loss trains with a softmax head)."""
    if loss not in HEADS:
        raise EdgefaceError(f"unknown loss {loss!r}; choose from {', '.join(HEADS)}")
    if num_classes < 2:
        raise EdgefaceError(f"a classification loss needs >= 2 identities, got {num_classes}")
    if loss in ("softmax", "center"):
        return SoftmaxHead(num_classes, name="head_softmax")
    if loss == "arcface":
        return ArcFaceHead(num_classes, scale, 0.5 if margin is None else margin, easy_margin, name="head_arcface")
    return CosFaceHead(num_classes, scale, 0.35 if margin is None else margin, name="head_cosface")
