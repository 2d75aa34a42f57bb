"""SimpleCNN's speed/accuracy options: a flattened head and NHWC (channels_last) activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainlab.models.nets import SimpleCNN


def test_flattened_head_sees_the_whole_last_feature_map():
    net = SimpleCNN(in_channels=1, channels=[8, 16], num_classes=10, hidden_size=32, global_pool=False, input_size=(28, 28))
    first_linear = next(m for m in net.head if isinstance(m, nn.Linear))
    assert first_linear.in_features == 16 * 7 * 7
    assert net(torch.randn(4, 1, 28, 28)).shape == (4, 10)


def test_default_head_pools_globally_and_keeps_any_input_size():
    net = SimpleCNN(in_channels=3, channels=[8, 16], num_classes=5)
    assert net(torch.randn(2, 3, 28, 28)).shape == net(torch.randn(2, 3, 40, 36)).shape == (2, 5)


@pytest.mark.parametrize("input_size, fragment", [(None, "needs the input_size"), ((6, 6), "leave nothing")])
def test_flattened_head_needs_a_usable_input_size(input_size, fragment):
    with pytest.raises(ValueError, match=fragment):
        SimpleCNN(in_channels=1, channels=[8, 16, 32], num_classes=10, global_pool=False, input_size=input_size)


def test_channels_last_computes_the_same_function():
    torch.manual_seed(0)
    nchw = SimpleCNN(in_channels=1, channels=[8, 16], num_classes=10, global_pool=False, input_size=(28, 28))
    nhwc = SimpleCNN(in_channels=1, channels=[8, 16], num_classes=10, global_pool=False, input_size=(28, 28), channels_last=True)
    nhwc.load_state_dict(nchw.state_dict())
    assert nhwc.features[0].weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randn(6, 1, 28, 28)
    nchw.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc(x), nchw(x), rtol=1e-4, atol=1e-5)
