"""MNIST-format data: IDX reading, the directory search, verified downloads from a loopback HTTP server.

Small real-format IDX files are written by the tests; the `fashion` test reads Debian's real files.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import FASHION_DIR, STUDIES, all_runs, need
from trainlab.datamodules import MNIST, FashionMNIST
from trainlab.datamodules.idx import IdxFormatError, read_idx, write_idx
from trainlab.datamodules.mnist import FILES

N_TRAIN, N_TEST = 60, 20


def write_mnist_files(directory: Path, compress: bool = True, seed: int = 0) -> dict[str, bytes]:
    """Four small MNIST-layout IDX files (every class present); returns {file name: bytes written}."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train_labels": (np.arange(N_TRAIN) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": (np.arange(N_TEST) % 10).astype(np.uint8),
    }
    written = {}
    for part, stem in FILES.items():
        path = write_idx(directory / (f"{stem}.gz" if compress else stem), arrays[part])
        written[path.name] = path.read_bytes()
    return written


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def isolated_dirs(tmp_path, monkeypatch) -> Path:
    """Point $TRAINLAB_DATA and the user cache at empty directories, so only what the test writes is found."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("TRAINLAB_DATA", raising=False)
    return tmp_path


@contextlib.contextmanager
def serve(directory: Path):
    """A real HTTP server on 127.0.0.1 (free port) serving ``directory``; yields (base URL, requested paths)."""
    requested: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requested.append(self.path)
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", requested
    finally:
        server.shutdown()
        server.server_close()


# -- IDX format --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_idx_round_trip(tmp_path, dtype, compress):
    array = (np.arange(2 * 3 * 4) - 7).reshape(2, 3, 4).astype(dtype)
    if dtype == np.uint8:
        array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a.idx", array, compress=compress)

    tensor = read_idx(path)

    assert tuple(tensor.shape) == (2, 3, 4)
    np.testing.assert_array_equal(tensor.numpy(), array)


def test_idx_reads_big_endian_values(tmp_path):
    # Hand-written bytes: type 0x0B (int16), rank 1, length 2, values 258 and -2 big-endian.
    path = tmp_path / "v.idx"
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE]))
    assert read_idx(path).tolist() == [258, -2]


@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"PK\x03\x04 zip archive", "not an IDX file"),
        (bytes([0, 0, 0x08, 3, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 0x08, 1, 0, 0, 0, 5, 1, 2]), "needs 13"),
        (b"\x1f\x8b\x08\x00garbage", "corrupt gzip"),
    ],
)
def test_idx_rejects_malformed_files_naming_the_file(tmp_path, content, fragment):
    path = tmp_path / "broken-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(IdxFormatError, match=fragment) as info:
        read_idx(path)
    assert str(path) in str(info.value)


# -- the datamodule on files in a directory ----------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_loads_images_as_normalised_float_and_labels_as_long(tmp_path, compress):
    write_mnist_files(tmp_path / "mnist", compress=compress)
    dm = MNIST(data_dir=str(tmp_path / "mnist"), val_fraction=0.25, download=False)
    dm.prepare_data()

    x_train, y_train = dm.splits["train"]
    assert x_train.dtype == torch.float32 and tuple(x_train.shape[1:]) == (1, 28, 28)
    assert y_train.dtype == torch.long
    assert [len(dm.splits[s][1]) for s in ("train", "val", "test")] == [45, 15, 20]
    assert abs(float(x_train.mean())) < 1e-4 and abs(float(x_train.std()) - 1) < 1e-3
    assert dm.describe() == {"input_shape": [1, 28, 28], "num_classes": 10}
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape[1:] == (1, 28, 28) and yb.dtype == torch.long


def test_split_is_a_function_of_split_seed_and_limit_train_subsets(tmp_path):
    write_mnist_files(tmp_path)

    def val_labels_and_train_size(**kwargs):
        dm = MNIST(data_dir=str(tmp_path), download=False, normalize=False, val_fraction=0.2, **kwargs)
        dm.prepare_data()
        return dm.splits["val"][0].sum().item(), len(dm.splits["train"][1]) + len(dm.splits["val"][1])

    assert val_labels_and_train_size(split_seed=1) == val_labels_and_train_size(split_seed=1)
    assert val_labels_and_train_size(split_seed=1) != val_labels_and_train_size(split_seed=2)
    assert val_labels_and_train_size(limit_train=30)[1] == 30
    dm = MNIST(data_dir=str(tmp_path), download=False, limit_train=30)
    dm.prepare_data()
    assert len(dm.splits["test"][1]) == N_TEST, "limit_train leaves the official test split whole"


def test_mismatched_image_and_label_files_are_reported(tmp_path):
    write_mnist_files(tmp_path, compress=False)
    write_idx(tmp_path / FILES["test_labels"], np.zeros(N_TEST - 1, dtype=np.uint8))
    with pytest.raises(IdxFormatError, match=f"expected {N_TEST} labels"):
        MNIST(data_dir=str(tmp_path), download=False).prepare_data()


def test_search_finds_trainlab_data_subdirectory_before_the_cache(isolated_dirs, monkeypatch):
    data_root = isolated_dirs / "data"
    write_mnist_files(data_root / "mnist", seed=1)
    write_mnist_files(isolated_dirs / "cache" / "trainlab" / "mnist", seed=2)
    monkeypatch.setenv("TRAINLAB_DATA", str(data_root))

    dm = MNIST(download=False)

    assert dm.locate()["train_images"].parent == data_root / "mnist"
    monkeypatch.delenv("TRAINLAB_DATA")
    assert dm.locate()["train_images"].parent == isolated_dirs / "cache" / "trainlab" / "mnist"


def test_missing_files_without_download_name_the_directories_and_the_fixes(isolated_dirs, monkeypatch):
    monkeypatch.setenv("TRAINLAB_DATA", str(isolated_dirs / "data"))
    with pytest.raises(FileNotFoundError) as info:
        MNIST(download=False).prepare_data()
    message = str(info.value)
    assert "\n" not in message
    for fragment in [str(isolated_dirs / "data" / "mnist"), str(isolated_dirs / "cache" / "trainlab" / "mnist"),
                     "download is disabled", "TRAINLAB_DATA", "data.init_args.data_dir"]:
        assert fragment in message, (fragment, message)


# -- downloads from a loopback HTTP server -----------------------------------------------------------


def test_download_verifies_caches_and_loads(isolated_dirs):
    served = write_mnist_files(isolated_dirs / "www")
    checksums = {name: sha256(data) for name, data in served.items()}
    with serve(isolated_dirs / "www") as (url, requested):
        dm = MNIST(mirrors=[url], checksums=checksums, val_fraction=0.1)
        dm.prepare_data()
        again = MNIST(mirrors=[url], checksums=checksums)
        again.prepare_data()

    cache = isolated_dirs / "cache" / "trainlab" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(served)
    for name, data in served.items():
        assert (cache / name).read_bytes() == data
    assert sorted(requested) == sorted(f"/{name}" for name in served), "the second load must come from the cache"
    assert len(dm.splits["test"][1]) == N_TEST and len(dm.splits["train"][1]) == N_TRAIN - 6


def test_download_falls_through_to_the_next_mirror(isolated_dirs):
    served = write_mnist_files(isolated_dirs / "www")
    (isolated_dirs / "empty").mkdir()
    checksums = {name: sha256(data) for name, data in served.items()}
    with serve(isolated_dirs / "empty") as (dead, _), serve(isolated_dirs / "www") as (alive, requested):
        dm = MNIST(mirrors=[dead, alive], checksums=checksums)
        dm.prepare_data()
    assert len(requested) == 4 and len(dm.splits["test"][1]) == N_TEST


def test_checksum_mismatch_is_reported_and_leaves_no_file(isolated_dirs):
    served = write_mnist_files(isolated_dirs / "www")
    checksums = {name: sha256(data) for name, data in served.items()}
    checksums["train-images-idx3-ubyte.gz"] = sha256(b"what the publisher released")
    with serve(isolated_dirs / "www") as (url, _), pytest.raises(FileNotFoundError) as info:
        MNIST(mirrors=[url], checksums=checksums).prepare_data()

    message = str(info.value)
    assert "download failed" in message and "train-images-idx3-ubyte.gz: sha256 is" in message, message
    cache = isolated_dirs / "cache" / "trainlab" / "mnist"
    assert not (cache / "train-images-idx3-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if p.name.endswith(".part")], "no partial download may remain"


def test_file_missing_on_the_mirror_is_reported(isolated_dirs):
    (isolated_dirs / "empty").mkdir()
    with serve(isolated_dirs / "empty") as (url, _), pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.gz: HTTP 404"):
        MNIST(mirrors=[url]).prepare_data()


def test_unreachable_mirror_is_reported(isolated_dirs):
    with socket.socket() as probe:  # a loopback port nobody listens on: the connection is refused at once
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    with pytest.raises(FileNotFoundError, match=f"download failed: {url}train-images-idx3-ubyte.gz: .*refused"):
        MNIST(mirrors=[url]).prepare_data()


@pytest.mark.parametrize(
    "init_args, fragment",
    [
        ({"checksums": {"train-images-idx3-ubyte.gz": "crc32:1234"}}, "sha256:<64 hex digits>"),
        ({"checksums": {"images.gz": "md5:" + "0" * 32}}, "unknown file names"),
    ],
)
def test_bad_download_settings_fail_at_construction(init_args, fragment):
    with pytest.raises(ValueError, match=fragment):
        MNIST(**init_args)


# -- through the CLI ---------------------------------------------------------------------------------


def _fashion_experiment(workdir: Path, **init_args) -> Path:
    document = {
        "seed_everything": 0,
        "model": {"class_path": "CNNClassifier", "init_args": {"channels": [4], "hidden_size": 8}},
        "data": {"class_path": "FashionMNIST", "init_args": {"batch_size": 32, **init_args}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False},
        "tracking": {"experiment": "fashion"},
    }
    path = workdir / "fashion.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def test_cli_reports_missing_data_in_one_line_and_creates_no_run(cli, workdir):
    path = _fashion_experiment(workdir, data_dir=str(workdir / "nowhere"), download=False)

    result = cli("train", path)

    assert result.code == 2, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("trainlab: error: data"), result.err
    assert str(workdir / "nowhere") in lines[0] and "data.init_args.data_dir" in lines[0]
    assert not (workdir / "mlflow.db").exists()


def test_cli_reports_a_failed_download_in_one_line(cli, workdir):
    (workdir / "empty").mkdir()
    with serve(workdir / "empty") as (url, requested):
        result = cli("train", _fashion_experiment(workdir, data_dir=str(workdir / "data"), mirrors=[url]))
    assert result.code == 2, result
    assert len(result.err.strip().splitlines()) == 1 and "download failed" in result.err, result.err
    assert requested, "the download was attempted"
    assert not (workdir / "mlflow.db").exists()


@pytest.mark.integration
def test_cli_trains_on_downloaded_files(cli, workdir, tracking_uri):
    served = write_mnist_files(workdir / "www")
    checksums = {name: sha256(data) for name, data in served.items()}
    with serve(workdir / "www") as (url, _):
        path = _fashion_experiment(workdir, data_dir=str(workdir / "data"), mirrors=[url], checksums=checksums)
        result = cli("train", path, "trainer.max_epochs=2")
    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.init_args.num_classes"] == "10"
    assert "test/acc" in run.data.metrics


# -- the real Fashion-MNIST files (Debian's dataset-fashion-mnist) -----------------------------------


@pytest.mark.fashion
def test_real_fashion_mnist_files(monkeypatch, tmp_path):
    need(FASHION_DIR.exists(), f"Fashion-MNIST files missing from {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    monkeypatch.delenv("TRAINLAB_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    dm = FashionMNIST(download=False, normalize=False, val_fraction=0.1)
    dm.prepare_data()

    assert dm.locate()["train_images"].parent == FASHION_DIR
    sizes = {name: len(y) for name, (_, y) in dm.splits.items()}
    assert sizes == {"train": 54_000, "val": 6_000, "test": 10_000}
    x_test, y_test = dm.splits["test"]
    assert tuple(x_test.shape) == (10_000, 1, 28, 28) and x_test.dtype == torch.float32
    assert float(x_test.min()) == 0.0 and float(x_test.max()) == 255.0
    assert torch.bincount(y_test).tolist() == [1000] * 10
    all_train = torch.cat([dm.splits["train"][1], dm.splits["val"][1]])
    assert torch.bincount(all_train).tolist() == [6000] * 10


@pytest.mark.fashion
@pytest.mark.integration
def test_fashion_cnn_experiment_trains_and_tests_on_the_full_test_set(cli, workdir, tracking_uri, mlflow_client):
    need(FASHION_DIR.exists(), f"Fashion-MNIST files missing from {FASHION_DIR} (apt-get install dataset-fashion-mnist)")
    # The shipped experiment, shortened: 1 epoch on 6,000 training images; the test split stays whole.
    result = cli("train", STUDIES / "fashion_cnn.yaml", "trainer.max_epochs=1", "data.init_args.limit_train=6000")

    assert result.code == 0, result
    (run,) = all_runs(tracking_uri)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/acc"] > 0.6  # chance is 0.1
    fingerprint = json.loads(Path(mlflow_client.download_artifacts(run.info.run_id, "data_fingerprint.json", str(workdir))).read_text())
    assert fingerprint["test"]["samples"] == 10_000
