"""Image datasets: mnist_5k, IDX files read from a folder or downloaded from a local
HTTP server, and every way the data can be bad."""

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest
from omegaconf import OmegaConf

from generative import datasets
from nn.errors import UserError
from tests.conftest import error_line, run_cli


@pytest.fixture(scope="module")
def digits():
    return datasets.mnist_5k()


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(folder, digits, n_train=60, n_test=20, gz=True):
    """Real mnist_5k digits written as the four standard IDX files."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train_images": digits.train_images[:n_train].numpy(),
              "train_labels": digits.train_labels[:n_train].numpy(),
              "test_images": digits.test_images[:n_test].numpy(),
              "test_labels": digits.test_labels[:n_test].numpy()}
    for key, stem in datasets.IDX_FILES.items():
        raw = idx_bytes(arrays[key])
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


def data_cfg(**overrides):
    base = {"name": "mnist", "path": None, "cache_dir": "/nonexistent", "timeout": 2}
    return OmegaConf.create({**base, **overrides})


def test_mnist_5k_is_real_digits_split_per_class(digits):
    assert digits.train_images.shape == (4000, 28, 28) and digits.test_images.shape == (1000, 28, 28)
    assert np.bincount(digits.test_labels.numpy()).tolist() == [100] * 10
    ink = [digits.train_images[digits.train_labels == d].float().mean().item() for d in range(10)]
    assert ink[1] == min(ink) and ink[0] > 1.5 * ink[1]  # ones use the least ink, as real digits
    assert digits.train_images.max() == 255 and digits.train_images.min() == 0


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_roundtrip(digits, tmp_path, gz):
    arrays = write_idx_folder(tmp_path / "idx", digits, gz=gz)
    data = datasets.load_images(data_cfg(path=str(tmp_path / "idx")))
    assert np.array_equal(data.train_images.numpy(), arrays["train_images"])
    assert np.array_equal(data.test_labels.numpy(), arrays["test_labels"])


def test_bad_idx_files_each_get_a_clear_error(digits, tmp_path):
    folder = tmp_path / "idx"
    write_idx_folder(folder, digits)
    images = folder / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(b"\x00\x00\x0d\x03garbage"))
    with pytest.raises(UserError, match="bad magic number"):
        datasets.load_images(data_cfg(path=str(folder)))
    good = idx_bytes(digits.train_images[:60].numpy())
    images.write_bytes(gzip.compress(good[:-100]))
    with pytest.raises(UserError, match="truncated"):
        datasets.load_images(data_cfg(path=str(folder)))
    images.write_bytes(gzip.compress(idx_bytes(np.zeros((60, 32, 32)))))
    with pytest.raises(UserError, match="expected 28x28"):
        datasets.load_images(data_cfg(path=str(folder)))
    images.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(UserError, match="cannot read IDX file"):
        datasets.load_images(data_cfg(path=str(folder)))
    images.unlink()
    with pytest.raises(UserError, match="holds no train-images-idx3-ubyte"):
        datasets.load_images(data_cfg(path=str(folder)))


@pytest.fixture
def idx_server(digits, tmp_path):
    served = tmp_path / "served"
    write_idx_folder(served, digits)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def serve_as_mnist(monkeypatch, served, mirrors):
    md5 = {key: hashlib.md5((served / (stem + ".gz")).read_bytes()).hexdigest()
           for key, stem in datasets.IDX_FILES.items()}
    source = {**datasets.SOURCES["mnist"], "mirrors": mirrors, "md5": md5}
    monkeypatch.setitem(datasets.SOURCES, "mnist", source)
    return md5


def test_download_from_a_local_mirror_after_a_dead_one(idx_server, tmp_path, monkeypatch):
    served, url = idx_server
    serve_as_mnist(monkeypatch, served, ["http://127.0.0.1:9/", url])
    data = datasets.load_images(data_cfg(cache_dir=str(tmp_path / "cache")))
    assert len(data.train_images) == 60 and len(data.test_images) == 20
    assert sorted(p.name for p in (tmp_path / "cache" / "mnist").iterdir()) == sorted(
        stem + ".gz" for stem in datasets.IDX_FILES.values())


def test_wrong_checksum_or_no_server_fails_with_the_offline_hint(idx_server, tmp_path,
                                                                  monkeypatch):
    served, url = idx_server
    md5 = serve_as_mnist(monkeypatch, served, [url])
    monkeypatch.setitem(datasets.SOURCES["mnist"]["md5"], "train_images", "0" * 32)
    with pytest.raises(UserError, match="checksum") as err:
        datasets.load_images(data_cfg(cache_dir=str(tmp_path / "cache")))
    assert "data=mnist_5k" in str(err.value)
    assert not (tmp_path / "cache" / "mnist" / "train-images-idx3-ubyte.gz").exists()
    monkeypatch.setitem(datasets.SOURCES["mnist"]["md5"], "train_images", md5["train_images"])
    monkeypatch.setitem(datasets.SOURCES["mnist"], "mirrors", ["http://127.0.0.1:9/"])
    with pytest.raises(UserError, match="could not download"):
        datasets.load_images(data_cfg(cache_dir=str(tmp_path / "cache2")))


def test_half_written_or_damaged_cache_files_are_never_used(idx_server, tmp_path, monkeypatch):
    served, url = idx_server
    serve_as_mnist(monkeypatch, served, [url])
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    good = (served / "train-images-idx3-ubyte.gz").read_bytes()
    (cache / ".train-images-idx3-ubyte.gz.part-4242").write_bytes(good[:50])  # interrupted
    (cache / "train-images-idx3-ubyte.gz").write_bytes(good[:len(good) // 2])  # damaged
    data = datasets.load_images(data_cfg(cache_dir=str(tmp_path / "cache")))
    assert len(data.train_images) == 60
    assert (cache / "train-images-idx3-ubyte.gz").read_bytes() == good


def test_fashion_offline_is_one_line_that_says_what_to_do(tmp_path):
    result = run_cli("rlgen-train", "experiment=vae", "data.timeout=2",
                     f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
                     check=False)
    line = error_line(result)
    assert "could not download train-images-idx3-ubyte.gz" in line
    assert "data.path=DIR" in line and "data=mnist_5k" in line
