"""Embedding distillation: make the student point where the teacher points."""
from __future__ import annotations

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf


def cosine_distill_loss(student, teacher):
    """Mean of 1 - cos(student_i, teacher_i); scale-free, so raw student embeddings are fine."""
    s = tf.math.l2_normalize(tf.cast(student, tf.float32), axis=1, epsilon=1e-12)
    t = tf.math.l2_normalize(tf.cast(teacher, tf.float32), axis=1, epsilon=1e-12)
    return tf.reduce_mean(1.0 - tf.reduce_sum(s * t, axis=1))
