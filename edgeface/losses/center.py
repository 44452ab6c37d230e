"""Center loss (Wen et al., ECCV 2016): pull each embedding towards its class centre.

The centres are NOT trained by backprop: they are a non-trainable variable moved towards the
batch's features at rate alpha after each step (the paper's Eq. 4):
    delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j),   c_j <- c_j - alpha * delta_c_j
and the loss is 1/2 * sum_i ||x_i - c_{y_i}||^2 / batch. Joint loss: softmax + lambda * center.
"""
from __future__ import annotations

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

from edgeface.errors import EdgefaceError


class CenterLoss(tf.Module):
    def __init__(self, num_classes: int, dim: int, alpha: float = 0.5, name: str = "center_loss"):
        super().__init__(name=name)
        if not 0.0 < alpha <= 1.0:
            raise EdgefaceError(f"center loss alpha must be in (0, 1], got {alpha}")
        self.num_classes, self.dim, self.alpha = int(num_classes), int(dim), float(alpha)
        # Zero init as in the paper; a tf.Variable so checkpoints save and restore it.
        self.centers = tf.Variable(tf.zeros((self.num_classes, self.dim)), trainable=False, name="centers")

    def __call__(self, features, labels):
        """1/2 * mean over the batch of ||x_i - c_{y_i}||^2 (gradient flows to the features only)."""
        c = tf.gather(self.centers, tf.cast(labels, tf.int32))
        return 0.5 * tf.reduce_mean(tf.reduce_sum(tf.square(tf.cast(features, tf.float32) - c), axis=1))

    def update(self, features, labels):
        """One moving-average step of the centres of the classes present in the batch."""
        labels = tf.cast(labels, tf.int32)
        features = tf.stop_gradient(tf.cast(features, tf.float32))
        diff = tf.gather(self.centers, labels) - features                       # c_{y_i} - x_i
        sums = tf.math.unsorted_segment_sum(diff, labels, self.num_classes)      # sum over i with y_i = j
        counts = tf.math.unsorted_segment_sum(tf.ones_like(labels, tf.float32), labels, self.num_classes)
        delta = sums / (1.0 + counts)[:, None]                                   # zero for absent classes
        self.centers.assign_sub(self.alpha * delta)
        return delta
