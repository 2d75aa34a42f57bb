"""The nets: recurrent nets read variable-length sequences correctly, the U-Net keeps any image size,
and the per-layer parameter table counts what the course counts by hand."""

from __future__ import annotations

import csv
import io

import pytest
import torch

from trainlab.models import MLPClassifier
from trainlab.models.nets import RecurrentNet, UNet
from trainlab.tracking.parameters import parameter_table


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_packed_sequences_ignore_padding(cell, bidirectional):
    torch.manual_seed(0)
    net = RecurrentNet(input_size=3, out_features=4, cell=cell, hidden_size=8, num_layers=2, bidirectional=bidirectional)
    net.eval()
    lengths = torch.tensor([5, 2, 9])
    x = torch.randn(3, 9, 3)
    garbage = x.clone()
    garbage[0, 5:] = 1e3
    garbage[1, 2:] = -7.0

    out = net(x, lengths)
    assert out.shape == (3, 4)
    assert torch.allclose(out, net(garbage, lengths), atol=1e-6), "padding must never reach the hidden state"
    # Each sequence alone, unpadded, gives the same answer as inside the padded batch.
    for i, n in enumerate(lengths.tolist()):
        assert torch.allclose(out[i], net(x[i : i + 1, :n])[0], atol=1e-5)
    # Without lengths the padding is read as data and the answer changes.
    assert not torch.allclose(net(garbage), out, atol=1e-3)


def test_unet_keeps_the_image_size_for_any_side():
    net = UNet(in_channels=3, out_channels=5, width=4, depth=3)
    for size in [(28, 28), (64, 64), (30, 45)]:
        assert net(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_unet_depth_and_width_set_its_size():
    def count(**kwargs):
        return sum(p.numel() for p in UNet(in_channels=1, out_channels=1, **kwargs).parameters())

    assert count(width=8, depth=3) > count(width=8, depth=2)
    assert count(width=16, depth=2) > 3 * count(width=8, depth=2)


def test_unet_skip_connections_carry_fine_detail():
    # A one-pixel input change moves the output at that pixel even at depth 3 (via the top skip connection).
    torch.manual_seed(0)
    net = UNet(in_channels=1, out_channels=1, width=4, depth=3, batch_norm=False)
    x = torch.zeros(1, 1, 32, 32)
    poked = x.clone()
    poked[0, 0, 10, 10] = 5.0
    change = (net(poked) - net(x)).abs()[0, 0]
    assert change[10, 10] > 0 and change[0, 31] < change[10, 10]


def test_parameter_table_counts_the_course_example():
    # MNIST-sized MLP from the course: 784 inputs -> 1000 hidden -> 10 classes.
    model = MLPClassifier(hidden_sizes=[1000], num_classes=10, input_shape=[1, 28, 28])
    rows = list(csv.DictReader(io.StringIO(parameter_table(model))))

    first, head, total = rows[0], rows[1], rows[-1]
    assert first["layer"] == "net.layers.1" and first["type"] == "Linear"
    assert first["shapes"] == "weight 1000x784; bias 1000"
    assert int(first["params"]) == (784 + 1) * 1000
    assert int(head["params"]) == (1000 + 1) * 10
    assert total["layer"] == "total"
    assert int(total["params"]) == (784 + 1) * 1000 + (1000 + 1) * 10 == sum(p.numel() for p in model.parameters())


def test_parameter_table_separates_trainable_parameters():
    model = MLPClassifier(hidden_sizes=[16], batch_norm=True, num_classes=3, input_shape=[4])
    model.net.layers[1].requires_grad_(False)
    rows = {row["layer"]: row for row in csv.DictReader(io.StringIO(parameter_table(model)))}
    assert rows["net.layers.1"]["trainable"] == "0" and rows["net.layers.1"]["params"] == str(5 * 16)
    assert rows["net.layers.2"]["type"] == "BatchNorm1d" and rows["net.layers.2"]["params"] == "32"
    assert int(rows["total"]["params"]) - int(rows["total"]["trainable"]) == 5 * 16
