"""MNIST and Fashion-MNIST from the standard IDX files: found on disk, else downloaded and verified.

Where the files are looked for, in order (the first directory holding all four wins):
``data_dir`` when given (then only there); else ``$TRAINLAB_DATA/<name>``, ``$TRAINLAB_DATA``,
``$XDG_CACHE_HOME/trainlab/<name>`` (default ``~/.cache/trainlab/<name>``) and system directories
(Debian's ``dataset-fashion-mnist`` installs ``/usr/share/datasets/fashion-mnist``).
Missing files are downloaded into ``data_dir`` or the cache directory when ``download`` is true.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Optional

import torch

from trainlab.datamodules.download import download_file, parse_checksum
from trainlab.datamodules.idx import IdxFormatError, read_idx
from trainlab.datamodules.in_memory import InMemoryDataModule, Split
from trainlab.types import PositiveInt

# split part -> standard file stem; each may be stored raw or as .gz.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


class MnistFormatDataModule(InMemoryDataModule):
    """28×28 grey images with integer labels in the four MNIST-layout IDX files; official train/test split.

    A validation split (``val_fraction``) is carved from the training images by ``split_seed``;
    ``limit_train`` keeps only that many training images (drawn by ``split_seed``) for quick runs.
    Subclasses name the dataset and where to get it.
    """

    name: str = ""  # directory name under $TRAINLAB_DATA and the cache
    title: str = ""  # how messages call it
    mirrors: tuple[str, ...] = ()
    checksums: dict[str, str] = {}  # .gz file name -> "md5:..." / "sha256:..."
    system_dirs: tuple[str, ...] = ()
    install_hint: str = ""

    def __init__(
        self,
        data_dir: Optional[str] = None,
        download: bool = True,
        mirrors: Optional[list[str]] = None,
        checksums: Optional[dict[str, str]] = None,
        limit_train: Optional[PositiveInt] = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.data_dir = data_dir
        self.download = download
        if mirrors is not None:
            if not mirrors:
                raise ValueError("mirrors must list at least one base URL")
            self.mirrors = tuple(mirrors)
        if checksums is not None:
            unknown = sorted(set(checksums) - {f"{stem}.gz" for stem in FILES.values()})
            if unknown:
                raise ValueError(f"checksums: unknown file names {unknown}; expected {sorted(self.checksums)}")
            self.checksums = {**self.checksums, **checksums}
        for checksum in self.checksums.values():
            parse_checksum(checksum)  # a malformed checksum is a config error now, not after a download
        if limit_train is not None and limit_train < 1:
            raise ValueError(f"limit_train must be >= 1, got {limit_train}")
        self.limit_train = limit_train

    # -- where the files are -----------------------------------------------------------------------
    def search_dirs(self) -> list[Path]:
        if self.data_dir is not None:
            return [Path(self.data_dir).expanduser()]
        dirs = []
        if os.environ.get("TRAINLAB_DATA"):
            root = Path(os.environ["TRAINLAB_DATA"]).expanduser()
            dirs += [root / self.name, root]
        return dirs + [self.cache_dir(), *map(Path, self.system_dirs)]

    def cache_dir(self) -> Path:
        """Where downloads go: ``data_dir`` when given, else the user cache."""
        if self.data_dir is not None:
            return Path(self.data_dir).expanduser()
        cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(cache) / "trainlab" / self.name

    def locate(self) -> dict[str, Path] | None:
        """The four files from the first directory holding all of them, or None."""
        for directory in self.search_dirs():
            found = {part: _existing(directory / stem) for part, stem in FILES.items()}
            if all(found.values()):
                return found  # type: ignore[return-value]
        return None

    def fetch(self) -> dict[str, Path]:
        """Download the files missing from the cache directory, trying each mirror in turn."""
        target = self.cache_dir()
        found: dict[str, Path] = {}
        for part, stem in FILES.items():
            existing = _existing(target / stem)
            if existing is not None:
                found[part] = existing
                continue
            name = f"{stem}.gz"
            failures = []
            for mirror in self.mirrors:
                url = mirror.rstrip("/") + "/" + name
                try:
                    found[part] = download_file(url, target / name, self.checksums[name])
                    break
                except (OSError, ValueError) as exc:  # URLError, HTTPError and timeouts are OSErrors
                    failures.append(f"{url}: {_reason(exc)}")
            else:
                raise FileNotFoundError("; ".join(failures) or "no mirrors configured")
        return found

    # -- loading -----------------------------------------------------------------------------------
    def load_splits(self) -> dict[str, Split]:
        files = self.locate()
        if files is None:
            files = self._download_or_explain()
        train = _images_and_labels(files["train_images"], files["train_labels"])
        test = _images_and_labels(files["test_images"], files["test_labels"])
        if self.limit_train is not None and self.limit_train < len(train[1]):
            keep = torch.randperm(len(train[1]), generator=torch.Generator().manual_seed(self.split_seed))[: self.limit_train]
            train = (train[0][keep], train[1][keep])
        return {"train": train, "test": test}

    def _download_or_explain(self) -> dict[str, Path]:
        where = ", ".join(str(d) for d in self.search_dirs())
        fixes = [self.install_hint] if self.install_hint and self.data_dir is None else []
        fixes += ["set TRAINLAB_DATA to a directory holding them", "set data.init_args.data_dir"]
        if not self.download:
            why = "download is disabled (data.init_args.download: false)"
        else:
            try:
                return self.fetch()
            except FileNotFoundError as exc:
                why = f"download failed: {exc}"
        raise FileNotFoundError(
            f"{self.title} IDX files ({', '.join(FILES.values())}, raw or .gz) not found in {where}; "
            f"{why}; to fix: {', or '.join(fixes)}"
        )


class MNIST(MnistFormatDataModule):
    """LeCun's handwritten digits: 60,000 training and 10,000 test images, 28×28, 10 classes.

    Example::

        data:
          class_path: MNIST
          init_args: {batch_size: 128, data_dir: ~/data/mnist}
    """

    name = "mnist"
    title = "MNIST"
    mirrors = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
    checksums = {
        "train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c",
    }


class FashionMNIST(MnistFormatDataModule):
    """Zalando's Fashion-MNIST: 60,000 training and 10,000 test images of clothing, 28×28, 10 classes.

    Debian's ``dataset-fashion-mnist`` package provides the files without a download.

    Example::

        data:
          class_path: FashionMNIST
          init_args: {batch_size: 128, val_fraction: 0.1}
    """

    name = "fashion-mnist"
    title = "Fashion-MNIST"
    mirrors = (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    )
    checksums = {
        "train-images-idx3-ubyte.gz": "md5:8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "md5:25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "md5:bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "md5:bb300cfdad3c16e7a12a480ee83cd310",
    }
    system_dirs = ("/usr/share/datasets/fashion-mnist",)
    install_hint = "install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"


def _existing(stem_path: Path) -> Path | None:
    for candidate in (stem_path, stem_path.with_name(stem_path.name + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def _images_and_labels(images_path: Path, labels_path: Path) -> Split:
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.dim() != 3:
        raise IdxFormatError(f"{images_path}: expected images of shape (N, H, W), got {tuple(images.shape)}")
    if labels.dim() != 1 or len(labels) != len(images):
        raise IdxFormatError(f"{labels_path}: expected {len(images)} labels to match {images_path.name}, got shape {tuple(labels.shape)}")
    return images.unsqueeze(1).float(), labels.long()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None)  # URLError wraps the socket error
    return str(reason if reason is not None else exc)
