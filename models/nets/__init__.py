"""Plain ``nn.Module`` nets, kept apart from the training task (loss, metrics, optimisation)."""

from models.nets.cnn import SimpleCNN
from models.nets.mlp import MLP
from models.nets.rnn import RecurrentNet
from models.nets.unet import UNet

__all__ = ["MLP", "RecurrentNet", "SimpleCNN", "UNet"]
