"""fit_budget on a small MobileFaceNet-shaped net (conv -> PReLU -> depthwise -> PReLU -> conv blocks):
the int8 file it returns fits the budget, is delegated whole, and every round is recorded.

Inputs are real CelebA photos (resized): the activation statistics that pruning and equalisation
use come from real images, not noise.
"""
from __future__ import annotations

import numpy as np
import pytest


def _faces(celeba_root, n: int = 96, size: int = 48) -> np.ndarray:
    import cv2

    from edgeface.utils.images import read_image

    files = sorted(celeba_root.rglob("*.jpg"))[:n]
    return np.stack([(cv2.resize(read_image(f), (size, size)).astype(np.float32) - 127.5) / 127.5 for f in files])


def _net(size: int = 48):
    import tf_keras as keras
    L = keras.layers
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    inp = L.Input((size, size, 3))
    x = L.Conv2D(32, 3, strides=2, name="stem")(L.ZeroPadding2D(1)(inp))
    x = L.PReLU(shared_axes=[1, 2], alpha_initializer=keras.initializers.Constant(0.25))(x)
    for i in range(3):
        y = L.Conv2D(96, 1, name=f"b{i}_expand")(x)
        y = L.PReLU(shared_axes=[1, 2])(y)
        y = L.DepthwiseConv2D(3, padding="same", name=f"b{i}_dw")(y)
        y = L.PReLU(shared_axes=[1, 2])(y)
        y = L.Conv2D(32, 1, name=f"b{i}_proj")(y)
        x = L.Add()([x, y])
    x = L.Conv2D(64, 1, name="head")(x)
    x = L.DepthwiseConv2D(int(x.shape[1]), name="gdc")(x)
    out = L.Dense(16, name="fc")(L.Flatten()(x))
    model = keras.Model(inp, out)
    for layer in model.layers:  # PReLU slopes as a trained net has them: mixed signs, not all 0.25
        if isinstance(layer, L.PReLU):
            layer.set_weights([rng.uniform(-0.5, 1.2, layer.get_weights()[0].shape).astype(np.float32)])
    return model


@pytest.mark.slow
def test_fit_budget_reaches_the_budget_and_records_rounds(celeba_root):
    from ai_edge_litert.interpreter import Interpreter

    from edgeface.optimize.compress import deploy_form, fit_budget, int8_bytes

    x = _faces(celeba_root)
    model = _net()
    start = len(int8_bytes(deploy_form(model, x[:32]), x[:32], per_channel=False))
    budget = int(start * 0.93)
    result = fit_budget(model, x[:64], x[64:], budget, step=0.1, max_rounds=4, finetune_steps=2, calib_count=32,
                        log=lambda *_: None)
    assert len(result.int8) <= budget
    # tensor names differ between conversions in one process (graph name scopes), so sizes by a few %
    assert abs(result.rounds[0]["bytes"] - start) < 0.03 * start and all(r["accepted"] for r in result.rounds)
    assert len(result.rounds) >= 2
    assert result.rounds[-1]["bytes"] < result.rounds[0]["bytes"]
    assert result.model.count_params() < model.count_params()
    it = Interpreter(model_content=result.int8, num_threads=1)
    it.allocate_tensors()
    ops = [o["op_name"] for o in it._get_ops_details()]
    assert "PRELU" not in ops and ops.count("DELEGATE") == 1
    # the deploy form computes what the pruned float model computes (PReLU split is exact)
    np.testing.assert_allclose(np.asarray(result.deploy(x[64:])), np.asarray(result.model(x[64:])),
                               rtol=1e-3, atol=1e-3)
