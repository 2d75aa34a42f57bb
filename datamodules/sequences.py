"""Sequence classification sets: JapaneseVowels (variable length, shipped by sktime) and digits read row by row."""

from __future__ import annotations

import numpy as np
import torch

from trainlab.datamodules.data_packages import import_data_package
from trainlab.datamodules.digits import Digits
from trainlab.datamodules.in_memory import InMemoryDataModule, Split


def pad_sequences(sequences: list[torch.Tensor], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (time, channels) tensors to one (N, length, channels) tensor; also return their lengths."""
    x = torch.zeros(len(sequences), length, sequences[0].shape[1])
    for i, sequence in enumerate(sequences):
        x[i, : len(sequence)] = sequence
    return x, torch.tensor([len(s) for s in sequences], dtype=torch.long)


class VariableLengthSequences(InMemoryDataModule):
    """Splits are ``(x, lengths, y)``: ``x`` zero-padded ``(N, max_time, channels)``; batches have the same form.

    Normalisation is per channel over the real time steps only, and padding stays zero, so the padding
    cannot shift the statistics (and the packed RNN never reads it anyway).
    """

    def _normalized(self, splits: dict[str, Split]) -> dict[str, Split]:
        x, lengths, _ = splits["train"]
        valid = torch.arange(x.shape[1]) < lengths[:, None]  # (N, time)
        steps = x[valid]  # (valid steps, channels)
        mean, std = steps.mean(0), steps.std(0).clamp_min(1e-8)
        result = {}
        for name, (xs, ls, ys) in splits.items():
            mask = (torch.arange(xs.shape[1]) < ls[:, None]).unsqueeze(-1)
            result[name] = (((xs - mean) / std) * mask, ls, ys)
        return result


class JapaneseVowels(VariableLengthSequences):
    """Nine speakers saying 'ae': 12 LPC cepstrum channels, 7 to 29 steps, 270 training / 370 test utterances.

    The UEA archive's train/test split, as sktime ships it (no download); labels 1..9 become 0..8; a
    validation split is carved from train by ``split_seed``. Needs the ``data`` extra (sktime).

    Example::

        data:
          class_path: JapaneseVowels
          init_args: {batch_size: 32, val_fraction: 0.15}
    """

    def load_splits(self) -> dict[str, Split]:
        datasets = import_data_package("sktime.datasets", "JapaneseVowels")
        loaded = {}
        for split in ("train", "test"):
            # "nested_univ": one pandas Series per (utterance, channel) cell, each as long as its utterance.
            frame, labels = datasets.load_japanese_vowels(split=split, return_type="nested_univ")
            sequences = [torch.from_numpy(np.stack([cell.to_numpy() for cell in row], axis=1)).float() for row in frame.itertuples(index=False)]
            loaded[split] = (sequences, torch.tensor([int(label) - 1 for label in labels], dtype=torch.long))
        longest = max(len(s) for sequences, _ in loaded.values() for s in sequences)
        splits = {}
        for split, (sequences, y) in loaded.items():
            x, lengths = pad_sequences(sequences, longest)
            splits[split] = (x, lengths, y)
        return splits


class DigitsSequence(Digits):
    """scikit-learn's 8×8 digits read row by row: 8 time steps of 8 channels, 10 classes. A quick RNN check.

    Same splits as :class:`Digits`; only the image channel is dropped so each row is one time step.

    Example::

        data:
          class_path: DigitsSequence
          init_args: {batch_size: 64}
    """

    def load_splits(self) -> dict[str, Split]:
        return {name: (x.squeeze(1), y) for name, (x, y) in super().load_splits().items()}
