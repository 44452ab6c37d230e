"""The int8 time estimate that pruning to a speed ranks by: the network's cost counted layer by layer
by hand, and each channel's cost equal to what narrowing that one channel removes from the network."""
from __future__ import annotations

import numpy as np
import pytest

from test_optimize_compress import _faces, _net


def test_model_cost_counts_macs_and_activation_values_by_hand():
    from edgeface.optimize.cost import VALUE_MACS, model_cost

    # _net(48): stem 3x3x3 -> 32 at 24x24, 3 blocks (1x1 32->96, dw 3x3, 1x1 96->32), head 1x1 32->64,
    # a 24x24 global depthwise, Dense 64->16; PReLUs after the stem and twice per block
    pos = 24 * 24
    macs = (pos * 27 * 32 + 3 * (pos * 32 * 96 + pos * 9 * 96 + pos * 96 * 32) + pos * 32 * 64
            + 1 * pos * 64 + 64 * 16)
    values = pos * 32 + 3 * 2 * pos * 96
    assert model_cost(_net()) == pytest.approx(macs + VALUE_MACS * values)


def test_each_channel_cost_is_what_removing_it_saves():
    from edgeface.optimize.cost import channel_costs, model_cost
    from edgeface.optimize.surgery import all_groups, narrow

    model = _net()
    groups = all_groups(model)
    costs = channel_costs(model, groups)
    assert len(groups) >= 4
    for g in groups:
        thinner = narrow(model, {g.producer: np.arange(1, g.units)})
        assert model_cost(model) - model_cost(thinner) == pytest.approx(costs[g.producer], rel=1e-9)


def _two_resolution_net():
    """Two expand -> PReLU -> depthwise -> PReLU -> project groups of one width, at 24x24 and at 12x12."""
    import tf_keras as keras
    L = keras.layers
    keras.utils.set_random_seed(1)
    inp = L.Input((48, 48, 3))
    x = L.Conv2D(16, 3, strides=2, padding="same", name="stem")(inp)
    for name, stride in (("big", 2), ("small", 1)):
        y = L.PReLU(shared_axes=[1, 2])(L.Conv2D(64, 1, name=f"{name}_expand")(x))
        y = L.PReLU(shared_axes=[1, 2])(L.DepthwiseConv2D(3, strides=stride, padding="same")(y))
        x = L.Conv2D(16, 1, name=f"{name}_proj")(y)
    return keras.Model(inp, L.Dense(8)(L.Flatten()(x)))


def test_time_rank_takes_more_channels_where_they_cost_more(celeba_root):
    from edgeface.optimize.compress import prune_channels
    from edgeface.optimize.cost import channel_costs, model_cost
    from edgeface.optimize.surgery import all_groups

    x = _faces(celeba_root, 48)
    model = _two_resolution_net()
    costs = channel_costs(model, all_groups(model))
    assert costs["big_expand"] > 2 * costs["small_expand"]  # 24x24 expand and PReLU against 12x12
    plain, keep_plain = prune_channels(model, x, 24)
    timed, keep_timed = prune_channels(model, x, 24, rank="time")
    kept = lambda keeps, g: len(keeps.get(g, range(64)))  # noqa: E731
    assert kept(keep_timed, "big_expand") < kept(keep_plain, "big_expand")
    assert model_cost(timed) < model_cost(plain)  # the same number of channels buys more time
    with pytest.raises(Exception, match="rank"):
        prune_channels(model, x, 12, rank="bytes")


@pytest.mark.slow
def test_fit_budget_prunes_to_a_speed_budget_when_the_bytes_already_fit(celeba_root):
    from edgeface.optimize.compress import fit_budget
    from edgeface.optimize.cost import model_cost

    x = _faces(celeba_root)
    model = _net()
    result = fit_budget(model, x[:64], x[64:], 10 ** 9, step=0.1, max_rounds=4, finetune_steps=2, calib_count=32,
                        rank="time", max_cost=0.8, log=lambda *_: None)
    costs = [r["cost"] for r in result.rounds]
    assert costs[0] == 1.0 and costs[-1] <= 0.8 < costs[-2]  # stopped at the first round under the speed budget
    assert model_cost(result.model) / model_cost(model) == pytest.approx(costs[-1], abs=1e-4)
