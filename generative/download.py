"""Fetch a data file once into a cache dir: several mirrors tried in turn, checked
against a pinned digest (MD5, SHA-256, or a registry's `sha512-BASE64` integrity),
written to a temporary name and renamed only when complete, so an interrupted or
corrupt transfer never leaves a file that looks finished."""

import base64
import binascii
import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from nn.errors import UserError

CHUNK = 1 << 16


SRI_ALGORITHMS = ("sha256", "sha384", "sha512")


def split_checksum(checksum: str | None) -> tuple[str, str | None]:
    """`md5:HEX`, `sha256:HEX` (bare HEX means SHA-256), or a subresource-integrity string
    `sha512-BASE64` as npm's registry publishes -> (algorithm, hex)."""
    if checksum is None:
        return "sha256", None
    algorithm, dash, value = checksum.partition("-")
    if dash and algorithm in SRI_ALGORITHMS:
        try:
            return algorithm, base64.b64decode(value, validate=True).hex()
        except binascii.Error as err:
            raise ValueError(f"integrity {checksum!r} is not valid base64") from err
    algorithm, _, value = checksum.rpartition(":")
    return algorithm or "sha256", value.lower()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(url: str, tmp: Path, timeout: float, algorithm: str) -> str:
    """Copy `url` into `tmp`; return its digest. Raises OSError on a short transfer."""
    digest = hashlib.new(algorithm)
    size = 0
    with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
        expected = response.headers.get("Content-Length")
        for block in iter(lambda: response.read(CHUNK), b""):
            out.write(block)
            digest.update(block)
            size += len(block)
    if expected is not None and size != int(expected):
        raise OSError(f"transfer ended after {size} of {expected} bytes")
    return digest.hexdigest()


def download(urls: list[str], dest: Path, checksum: str | None, *, timeout: float = 30.0,
             offline_hint: str = "") -> Path:
    """Return `dest`, downloading it from the first mirror that delivers the right bytes.

    `checksum` is `md5:HEX`, `sha256:HEX` (or bare SHA-256 HEX) or `sha512-BASE64`. A
    cached file is trusted only if it matches; with no pinned checksum the first download records its
    SHA-256 beside it (`dest.sha256`) and later reads are checked against that record.
    """
    dest = Path(dest)
    record = dest.with_name(dest.name + ".sha256")
    algorithm, expected = split_checksum(checksum)
    if expected is None and record.is_file():
        expected = record.read_text().strip()
    if dest.is_file() and (expected is None or file_digest(dest, algorithm) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    problems = []
    for url in urls:
        try:
            digest = _fetch(url, tmp, timeout, algorithm)
            if expected is not None and digest != expected:
                problems.append(f"{url}: checksum {digest[:12]}... is not the expected "
                                f"{expected[:12]}...")
                continue
            os.replace(tmp, dest)
            if expected is None:
                record.write_text(digest + "\n")
            return dest
        except (urllib.error.URLError, OSError, ValueError) as err:
            reason = getattr(err, "reason", None) or err
            problems.append(f"{url}: {reason}")
        finally:
            if tmp.exists():
                tmp.unlink()
    hint = f"; {offline_hint}" if offline_hint else ""
    raise UserError(f"could not download {dest.name} ({'; '.join(problems)}){hint}")
