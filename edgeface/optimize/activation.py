"""Swap PReLU for an activation XNNPACK runs fused or in one op, before recovery fine-tuning.

XNNPACK has no int8 PRELU; the exact rewrite (`equalize.split_prelu`, four ops per activation)
is delegated but costs as much time as the convolutions around it. One LeakyReLU per layer is a
single delegated op, ReLU fuses into the convolution before it:

    int8 MobileFaceNet, unpruned, 1 thread (benchmarks/activation_forms.py, compression.md):
    split PReLU 4.73 ms, LeakyReLU 2.65 ms, ReLU 2.42 ms (ncnn teacher about 5 ms)

Neither is the same function, so the swap is followed by self-distillation to the PReLU model
(`compress.fit_budget`). A cold swap loses the trained network; `SlopeAnneal` instead shrinks the
slopes to 0 during the distillation (`convert --fit-anneal-relu N`), and the ReLU swap is then exact.
Each LeakyReLU slope is the least-squares fit of its layer's channel slopes on the negative inputs
the layer sees: alpha = sum_c a_c E[x_c^2; x_c < 0] / sum_c E[x_c^2; x_c < 0].
"""
from __future__ import annotations

import numpy as np

import edgeface  # noqa: F401  (tf-keras before TensorFlow)
from edgeface.errors import EdgefaceError
from edgeface.optimize.equalize import is_map_prelu, rebuild

ACTIVATIONS = ("prelu", "leaky", "relu")


def _keras():
    import tf_keras as keras
    return keras


def prelu_layers(model) -> list:
    """The PReLU layers on feature maps (the ones the swap replaces)."""
    return [l for l in model.layers if is_map_prelu(l)]


def negative_energy(model, names: list[str], x: np.ndarray, batch_size: int = 32) -> dict[str, np.ndarray]:
    """Per channel of each named layer's input: mean of x^2 over the negative values (zeros elsewhere)."""
    keras = _keras()
    probe = keras.Model(model.inputs, [model.get_layer(n).input for n in names])
    sums: dict[str, np.ndarray] = {}
    count = 0
    for i in range(0, len(x), batch_size):
        outs = probe(x[i:i + batch_size], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        for n, o in zip(names, outs):
            o = np.asarray(o).reshape(-1, o.shape[-1])
            e = (np.minimum(o, 0.0) ** 2).sum(0)
            sums[n] = e if n not in sums else sums[n] + e
        count += int(np.prod(outs[0].shape[:-1]))
    return {n: s / max(count, 1) for n, s in sums.items()}


def leaky_alphas(model, x: np.ndarray) -> dict[str, float]:
    """One slope per PReLU layer: its channels' slopes weighted by their negative-input energy."""
    layers = prelu_layers(model)
    if not layers:
        raise EdgefaceError("the model has no PReLU layers to replace")
    energy = negative_energy(model, [l.name for l in layers], x)
    out = {}
    for l in layers:
        a = np.broadcast_to(np.asarray(l.get_weights()[0]).reshape(-1), (int(l.input_shape[-1]),))
        e = energy[l.name]
        out[l.name] = float((a * e).sum() / e.sum()) if e.sum() > 0 else float(np.median(a))
    return out


def swap_prelu(model, kind: str, x: np.ndarray | None = None, compact_names: bool = False):
    """(copy of `model` with every feature-map PReLU as `kind`, the slope used per layer).

    kind "leaky" fits each layer's slope on `x` (calibration inputs); "relu" uses 0; "prelu"
    returns the model unchanged.
    """
    if kind not in ACTIVATIONS:
        raise EdgefaceError(f"unknown activation {kind!r}; choose from {', '.join(ACTIVATIONS)}")
    if kind == "prelu":
        return model, {}
    if kind == "leaky":
        if x is None:
            raise EdgefaceError("a LeakyReLU swap needs calibration inputs to fit its slopes")
        alphas = leaky_alphas(model, x)
    else:
        alphas = {l.name: 0.0 for l in prelu_layers(model)}
    L = _keras().layers

    def replace(layer, arg, new_name):
        if layer.name not in alphas:
            return None
        a = alphas[layer.name]
        return (L.ReLU(name=new_name(layer.name)) if kind == "relu"
                else L.LeakyReLU(a, name=new_name(layer.name)))(arg)

    return rebuild(model, replace, compact_names, name=model.name), alphas


class SlopeAnneal:
    """Drives every feature-map PReLU's slopes linearly to 0 over `steps` training steps.

    A cold swap to ReLU loses the function (cosine about 0 to the PReLU model: insightface's slopes
    differ in sign and size within a layer); shrinking the slopes while distilling lets the weights
    follow, and at 0 `swap_prelu(model, "relu")` is exact. Call it after each step with the step index
    (0-based); `finished(n)` says whether the slopes are 0 after n steps.
    The slopes stop being trainable: build it before the training step collects its variables.
    start: the slopes at step 0 (default: the model's own), so a resumed run keeps its schedule.
    """

    def __init__(self, model, steps: int, start: list[np.ndarray] | None = None):
        if steps < 1:
            raise EdgefaceError("the slope anneal needs at least one step")
        self.layers = prelu_layers(model)
        if not self.layers:
            raise EdgefaceError("the model has no PReLU layers to anneal")
        self.start = [np.asarray(l.get_weights()[0]).copy() for l in self.layers] if start is None else start
        self.steps = steps
        for l in self.layers:
            l.trainable = False

    def factor(self, step: int) -> float:
        return max(0.0, 1.0 - (step + 1) / self.steps)

    def __call__(self, step: int) -> None:
        f = self.factor(step)
        for l, a0 in zip(self.layers, self.start):
            l.set_weights([a0 * f])

    def finished(self, steps_done: int) -> bool:
        return steps_done >= self.steps

    def keeps(self, steps_done: int, loss: float, best_loss: float, best_step: int) -> bool:
        """Whether the check after `steps_done` becomes the best model: only the ReLU function ships,
        so nothing before the anneal ends counts, and its first check after beats any earlier best."""
        return self.finished(steps_done) and (loss < best_loss or best_step < self.steps)
