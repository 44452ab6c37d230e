"""Label-free fine-tuning: the model being compressed learns to reproduce the float model.

Embedders minimise 1 - cos(student(x), teacher(x)); classifiers minimise KL(teacher || student)
on softmax outputs. Teacher outputs are computed once, up front, for every image and its
horizontal mirror (faces are left-right symmetric enough that the flip is a free augmentation).
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.spec import TASK_CLASSIFICATION, infer_task
from edgeface.utils.progress import progress


def _keras():
    import tf_keras as keras
    return keras


def with_flips(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise EdgefaceError(f"fine-tune images must be a non-empty (N, H, W, C) array, got shape {images.shape}")
    return np.concatenate([images, images[:, :, ::-1, :]], axis=0)


def predict(model, x: np.ndarray, batch_size: int = 64) -> np.ndarray:
    import tensorflow as tf
    run = tf.function(lambda b: model(b, training=False))  # a graph: ~2x faster than eager calls on deep nets
    return np.concatenate([np.asarray(run(tf.constant(x[i:i + batch_size])))
                           for i in range(0, len(x), batch_size)], axis=0)


def cosine_loss(y_true, y_pred):
    import tensorflow as tf
    t = tf.math.l2_normalize(tf.reshape(y_true, [tf.shape(y_true)[0], -1]), axis=-1)
    p = tf.math.l2_normalize(tf.reshape(y_pred, [tf.shape(y_pred)[0], -1]), axis=-1)
    return 1.0 - tf.reduce_sum(t * p, axis=-1)


def kl_loss(y_true, y_pred):
    import tensorflow as tf
    eps = 1e-7
    t = tf.clip_by_value(y_true, eps, 1.0)
    p = tf.clip_by_value(y_pred, eps, 1.0)
    return tf.reduce_sum(t * tf.math.log(t / p), axis=-1)


def loss_for(task: str):
    return kl_loss if task == TASK_CLASSIFICATION else cosine_loss


def distill_loss(student, teacher_outputs: np.ndarray, x: np.ndarray, task: str, batch_size: int = 64) -> float:
    """Mean distillation loss of `student` against precomputed teacher outputs (the validation loss)."""
    fn = loss_for(task)
    y = predict(student, x, batch_size)
    return float(np.mean(np.asarray(fn(teacher_outputs.astype(np.float32), y.astype(np.float32)))))


def mean_cosine(a: np.ndarray, b: np.ndarray, reduce=np.mean) -> float:
    """Row-wise cosine of a and b, reduced (mean by default; np.min for the worst row)."""
    a = a.reshape(len(a), -1)
    b = b.reshape(len(b), -1)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return float(reduce(np.sum(a * b, axis=1)))


def freeze_batchnorm(model) -> None:
    """BN in inference mode while fine-tuning: small batches would otherwise drag the moving
    statistics away from the ones the float model was trained with."""
    keras = _keras()
    for layer in model.layers:
        inner = getattr(layer, "layer", layer)  # TF-MOT wrappers keep the real layer in .layer
        if isinstance(inner, keras.layers.BatchNormalization):
            inner.trainable = False


def _bar_callback(steps: int, desc: str):
    keras = _keras()

    class Bar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = progress(total=steps, desc=desc, unit="step")

        def on_train_batch_end(self, batch, logs=None):
            self.bar.update(1)
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, logs=None):
            self.bar.close()
    return Bar()


def self_distill(student, x: np.ndarray, targets: np.ndarray, steps: int, task: str, batch_size: int = 32,
                 lr: float = 1e-4, callbacks=(), seed: int = 0, desc: str = "fine-tune") -> list[float]:
    """Fit `student` to `targets` (teacher outputs for `x`) for `steps` batches; returns the loss curve."""
    import tensorflow as tf
    keras = _keras()
    if steps <= 0:
        return []
    tf.random.set_seed(seed)
    ds = (tf.data.Dataset.from_tensor_slices((x.astype(np.float32), targets.astype(np.float32)))
          .shuffle(len(x), seed=seed, reshuffle_each_iteration=True).repeat().batch(batch_size))
    student.compile(optimizer=keras.optimizers.Adam(lr), loss=loss_for(task))
    losses, running = [], []

    class Record(keras.callbacks.Callback):
        # Keras logs the running mean over the epoch: undo it to get each batch's own loss.
        def on_train_batch_end(self, batch, logs=None):
            running.append(float((logs or {}).get("loss", np.nan)))
            k = len(running)
            losses.append(running[-1] if k == 1 else k * running[-1] - (k - 1) * running[-2])
    student.fit(ds, steps_per_epoch=steps, epochs=1, verbose=0,
                callbacks=[*callbacks, Record(), _bar_callback(steps, desc)])
    return losses


def teacher_data(teacher, images: np.ndarray, task: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(inputs with flips, teacher outputs for them, task) for a self-distillation fine-tune."""
    task = task or infer_task(teacher)
    x = with_flips(images)
    return x, predict(teacher, x), task


def clone_with_weights(model):
    """An independent copy: TF-MOT wrappers share the wrapped layers' variables, and the caller's
    float model must stay the untouched teacher."""
    keras = _keras()
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def recalibrate_batchnorm(model, images: np.ndarray, batch_size: int = 64) -> None:
    """Set every BN's moving mean/variance to the statistics of `images` (one training-mode pass
    with momentum 0). Re-estimates BN after surgery changed what flows into it; also gives an
    untrained net realistic activation ranges."""
    keras = _keras()
    bns = [getattr(l, "layer", l) for l in model.layers]
    bns = [l for l in bns if isinstance(l, keras.layers.BatchNormalization)]
    saved = [(l.momentum, l.trainable) for l in bns]
    try:
        for l in bns:
            l.momentum, l.trainable = 0.0, True
        x = np.asarray(images, np.float32)[:batch_size]
        model(x, training=True)
    finally:
        for l, (mom, tr) in zip(bns, saved):
            l.momentum, l.trainable = mom, tr
