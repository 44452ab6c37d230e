"""Embedding distillation: make the student point where the teacher points."""
from __future__ import annotations

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf


def cosine_distill_loss(student, teacher):
    """Mean of 1 - cos(student_i, teacher_i); scale-free, so raw student embeddings are fine."""
    s = tf.math.l2_normalize(tf.cast(student, tf.float32), axis=1, epsilon=1e-12)
    t = tf.math.l2_normalize(tf.cast(teacher, tf.float32), axis=1, epsilon=1e-12)
    return tf.reduce_mean(1.0 - tf.reduce_sum(s * t, axis=1))


def similarity_distill_loss(student, teacher):
    """Relational distillation: mean squared difference of the student's and the teacher's
    cosine-similarity matrices over the batch's pairs (i != j).

    Verification only ever compares two embeddings, so this matches what is measured; it is
    invariant to any rotation of the student's space, so it works for any embedding width."""
    s = tf.math.l2_normalize(tf.cast(student, tf.float32), axis=1, epsilon=1e-12)
    t = tf.math.l2_normalize(tf.cast(teacher, tf.float32), axis=1, epsilon=1e-12)
    diff = tf.matmul(s, s, transpose_b=True) - tf.matmul(t, t, transpose_b=True)
    n = tf.cast(tf.shape(s)[0], tf.float32)
    # the diagonal is 1 - 1 = 0 in both, so summing over all entries and dividing by n(n-1) is the
    # off-diagonal mean
    return tf.reduce_sum(tf.square(diff)) / tf.maximum(n * (n - 1.0), 1.0)
