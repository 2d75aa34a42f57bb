"""Plain ``nn.Module`` nets, kept apart from the training task (loss, metrics, optimisation)."""

from trainlab.models.nets.cnn import SimpleCNN
from trainlab.models.nets.mlp import MLP
from trainlab.models.nets.rnn import RecurrentNet
from trainlab.models.nets.unet import UNet

__all__ = ["MLP", "RecurrentNet", "SimpleCNN", "UNet"]
