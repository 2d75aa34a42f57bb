"""Plain ``nn.Module`` nets, kept apart from the training task (loss, metrics, optimisation)."""

from models.nets.cnn import SimpleCNN
from models.nets.mlp import MLP

__all__ = ["MLP", "SimpleCNN"]
