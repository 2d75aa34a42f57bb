"""Segmentation data: stardist's nuclei image split by region, Fashion-MNIST's derived masks, and the
user's own PNG/TIFF images and masks from a folder (small real files written here)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import FASHION_DIR, all_runs, need
from trainlab.datamodules import FashionMNISTMasks, NucleiTiles, SegmentationFolder


def test_nuclei_tiles_come_from_disjoint_regions_of_the_image():
    need(importlib.util.find_spec("stardist") is not None, "stardist is not installed (pip install -e '.[data]')")
    from stardist.data import test_image_nuclei_2d

    image, labels = test_image_nuclei_2d(return_mask=True)
    data = NucleiTiles(tile=64, stride=32, augment=False, normalize=False)
    splits = data._loaded()

    assert data.describe() == {"input_shape": [1, 64, 64], "num_classes": 2}
    # Test region: the right quarter (x >= 384), cut into 2 x 8 non-overlapping tiles, masks = nuclei > 0.
    x_test, y_test = splits["test"]
    assert len(x_test) == 16
    # Tiles run row by row, 2 per row: tiles column::2 stacked vertically rebuild each 64 px column strip.
    rebuilt = torch.cat([torch.cat(list(x_test[column::2][:, 0]), dim=0) for column in range(2)], dim=1)
    assert torch.equal(rebuilt, torch.from_numpy(image[:, 384:].astype(np.float32)))
    assert torch.equal(torch.cat([torch.cat(list(y_test[column::2]), dim=0) for column in range(2)], dim=1), torch.from_numpy((labels[:, 384:] > 0).astype(np.int64)))
    # Validation: the 64 px band left of it; training tiles overlap (stride 32) but stay left of x = 320.
    assert len(splits["val"][0]) == 8
    assert len(splits["train"][0]) == 15 * 9
    right_edge = torch.from_numpy(image[:, 256:320].astype(np.float32))
    assert any(torch.equal(tile[0], right_edge[:64]) for tile in splits["train"][0])
    assert y_test.float().mean() > 0.05, "the test region holds nuclei"


def test_nuclei_augmentation_adds_the_eight_symmetries():
    need(importlib.util.find_spec("stardist") is not None, "stardist is not installed")
    plain = NucleiTiles(augment=False, normalize=False)._loaded()["train"]
    augmented = NucleiTiles(augment=True, normalize=False)._loaded()["train"]
    assert len(augmented[0]) == 8 * len(plain[0])
    first = plain[0][0, 0]
    variants = [tile[0] for tile in augmented[0][:: len(plain[0])]]
    assert torch.equal(variants[1], torch.rot90(first, 1)) and torch.equal(variants[4], first.flip(-1))


def test_fashion_mnist_masks_are_derived_from_the_image():
    need(FASHION_DIR.is_dir(), f"Fashion-MNIST IDX files missing at {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    binary = FashionMNISTMasks(limit_train=200, normalize=False, download=False)
    x, y = binary._loaded()["train"]
    assert binary.describe() == {"input_shape": [1, 28, 28], "num_classes": 2}
    assert torch.equal(y, (x[:, 0] > 0).long())

    garment = FashionMNISTMasks(masks="garment", limit_train=200, normalize=False, download=False)
    xg, yg = garment._loaded()["test"]
    assert garment.describe()["num_classes"] == 11
    # Each image's foreground carries exactly one class, background stays 0.
    for image, mask in zip(xg[:50], yg[:50]):
        classes = mask[image[0] > 0].unique()
        assert len(classes) == 1 and classes.item() >= 1
        assert (mask[image[0] == 0] == 0).all()


def _write_folder(root, count=6, size=(12, 16), tiff_every=2):
    """Grey images with a bright rectangle and its mask (255 inside), some as PNG, some as 16-bit TIFF."""
    need(importlib.util.find_spec("tifffile") is not None, "tifffile is not installed (pip install -e '.[data]')")
    import tifffile

    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        mask = np.zeros(size, dtype=np.uint8)
        mask[2 + i % 3 : 8, 3 : 9 + i % 4] = 255
        image = (rng.integers(0, 40, size) + (mask > 0) * 150).astype(np.uint8)
        if i % tiff_every == 0:
            tifffile.imwrite(root / "images" / f"cell{i}.tif", image.astype(np.uint16) * 100)
        else:
            Image.fromarray(image).save(root / "images" / f"cell{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"cell{i}.png")


def test_segmentation_folder_reads_png_and_tiff_pairs(tmp_path):
    _write_folder(tmp_path)
    data = SegmentationFolder(root=str(tmp_path), binary=True, normalize=False, test_fraction=0.2, val_fraction=0.2)
    splits = data._loaded()

    assert data.describe() == {"input_shape": [1, 12, 16], "num_classes": 2}
    assert {name: len(split[1]) for name, split in splits.items()} == {"train": 4, "val": 1, "test": 1}
    x = torch.cat([split[0] for split in splits.values()])
    y = torch.cat([split[1] for split in splits.values()])
    assert set(y.unique().tolist()) == {0, 1}
    # Masks line up with the bright pixels of their images, whether the image was PNG or TIFF.
    for image, mask in zip(x[:, 0], y):
        assert image[mask == 1].min() > image[mask == 0].max()


def test_segmentation_folder_without_binary_keeps_the_mask_values_as_classes(tmp_path):
    _write_folder(tmp_path)
    data = SegmentationFolder(root=str(tmp_path))
    assert data.describe()["num_classes"] == 256  # 0 and 255: binary: true is what such masks need


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: (root / "masks" / "cell1.png").unlink(), "unmatched: cell1"),
        (lambda root: Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "masks" / "cell1.png"), "but its mask is"),
        (lambda root: Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(root / "masks" / "cell1.png"), "one channel"),
    ],
)
def test_segmentation_folder_refuses_bad_pairs(tmp_path, damage, message):
    _write_folder(tmp_path)
    damage(tmp_path)
    with pytest.raises(ValueError, match=message):
        SegmentationFolder(root=str(tmp_path), binary=True).describe()


@pytest.mark.integration
def test_unet_trains_on_a_user_folder(cli, workdir, tracking_uri, mlflow_client):
    _write_folder(workdir / "cells", count=10, size=(16, 16))
    document = {
        "seed_everything": 1,
        "model": {"class_path": "UNetSegmenter", "init_args": {"width": 4, "depth": 2}},
        "data": {"class_path": "SegmentationFolder", "init_args": {"root": str(workdir / "cells"), "binary": True, "batch_size": 4}},
        "optimizer": {"class_path": "torch.optim.Adam", "init_args": {"lr": 0.01}},
        "trainer": {"max_epochs": 3, "enable_progress_bar": False},
        "tracking": {"experiment": "folder"},
    }
    path = workdir / "folder.yaml"
    path.write_text(yaml.safe_dump(document))

    result = cli("train", path)

    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert {"test/dice", "test/iou", "test/loss"} <= set(run.data.metrics)
    assert len(mlflow_client.get_metric_history(run.info.run_id, "val/dice")) == 3
