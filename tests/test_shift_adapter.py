from __future__ import annotations

import pytest
import torch
from sdmad.networks import ShiftAdapter


def test_hand_computed_output():
    adapter = ShiftAdapter(dim=2, bottleneck=1, activation="leaky_relu", lam=0.5)
    with torch.no_grad():
        adapter.down.weight.copy_(torch.tensor([[1.0, -1.0]]))
        adapter.up.weight.copy_(torch.tensor([[2.0], [0.5]]))
    # h = [3, 1]: W1 h = 2 -> 2 -> W2 -> [4, 1] -> [4, 1]; 0.5 * h + 0.5 * a = [3.5, 1]
    # h = [1, 3]: W1 h = -2 -> -0.02 -> [-0.04, -0.01] -> [-0.0004, -0.0001]; -> [0.4998, 1.49995]
    out = adapter(torch.tensor([[3.0, 1.0], [1.0, 3.0]]))
    torch.testing.assert_close(out, torch.tensor([[3.5, 1.0], [0.4998, 1.49995]]))


def test_lambda_one_is_identity_exactly():
    adapter = ShiftAdapter(dim=16, lam=1.0)
    h = torch.randn(4, 7, 16)
    assert torch.equal(adapter(h), h)


def test_default_bottleneck_is_half_width_and_bias_free():
    adapter = ShiftAdapter(dim=64)
    assert adapter.down.weight.shape == (32, 64) and adapter.up.weight.shape == (64, 32)
    assert adapter.down.bias is None and adapter.up.bias is None


@pytest.mark.parametrize("kwargs, message", [({"lam": 1.5}, "lam must lie in"), ({"activation": "tanh"}, "unknown")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ShiftAdapter(dim=8, **kwargs)
