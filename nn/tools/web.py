"""The book's demos as static web pages, and `rlgen-serve DIR [port=N]` to open them.

`rlgen-export run=RUN_DIR web=true` calls `write_site` on the export it is building: the
page's sources (nn/tools/web/: index.html, app.js, envs.js, pages/*.js, style.css) and
the three files of ONNX Runtime Web it needs (the wasm build, from the npm package that
`make install` puts in nn/tools/web/node_modules) go beside the models, all with
relative paths, so the folder works from any static host. No bundler: the page is a
handful of ES modules a browser loads as they are.

`rlgen-serve` serves such a folder on 127.0.0.1 only (over http: browsers refuse to fetch
wasm from file://), on a free port unless told one, and prints the URL.
"""

import functools
import http.server
import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from nn.config import describe_keys, parse_key_values
from nn.errors import UserError
from nn.schema import between
from nn.tools.checks import fail

SOURCES = Path(__file__).parent / "web"
ORT_DIST = SOURCES / "node_modules" / "onnxruntime-web" / "dist"
# the wasm build alone (about 14 MB): the loader script and the runtime it fetches
ORT_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE_FILES = ("index.html", "style.css", "app.js", "envs.js", "pages/game.js",
              "pages/cartpole.js", "pages/snake.js", "pages/text.js", "pages/vae.js",
              "pages/acgan.js", "pages/classifier.js")


def check_runtime() -> None:
    """Refuse before anything is written if ONNX Runtime Web is not installed."""
    missing = [name for name in ORT_FILES if not (ORT_DIST / name).is_file()]
    if missing:
        raise UserError(f"web=true needs onnxruntime-web in {SOURCES / 'node_modules'} (missing "
                        f"{missing[0]}); run make install (or npm ci --prefix {SOURCES})")


def write_site(folder: Path) -> list[str]:
    """Copy the page and the runtime into an export folder; the files written."""
    check_runtime()
    written = []
    for name in PAGE_FILES:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SOURCES / name, folder / name)
        written.append(name)
    (folder / "ort").mkdir(exist_ok=True)
    for name in ORT_FILES:
        shutil.copyfile(ORT_DIST / name, folder / "ort" / name)
        written.append(f"ort/{name}")
    return written


@dataclass
class ServeArgs:
    dir: str = MISSING  # an export folder written with web=true
    port: int = between(0, 65535, default=0)  # 0: a free port


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; a request that fails is one line on stderr, the rest is silent."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".mjs": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def log_message(self, format, *args):
        pass

    def log_error(self, format, *args):
        sys.stderr.write(f"rlgen-serve: {self.path}: {format % args}\n")


def site_folder(path: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder; pass an export folder written by rlgen-export "
                        "run=RUN_DIR web=true")
    try:
        json.loads((folder / "manifest.json").read_text())["networks"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{folder} is not an rlgen export (no readable manifest.json); write one "
                        "with rlgen-export run=RUN_DIR web=true") from None
    if not (folder / "index.html").is_file():
        raise UserError(f"{folder} is an export without its web page; export again with web=true")
    return folder


def make_server(folder: Path, port: int = 0) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(QuietHandler, directory=str(folder))
    try:
        return http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as err:
        raise UserError(f"cannot serve on 127.0.0.1:{port}: {err.strerror}; pick another "
                        "port= (0 finds a free one)") from None


def serve_main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(f"usage: rlgen-serve DIR [port=N]\n\nkeys:\n{describe_keys(ServeArgs)}")
        return
    argv = [a if "=" in a else f"dir={a}" for a in argv]  # DIR alone names the folder
    try:
        args = parse_key_values(ServeArgs, argv)
        server = make_server(site_folder(args.dir), args.port)
    except UserError as err:
        fail("rlgen-serve", str(err))
    print(f"serving {args.dir} at http://127.0.0.1:{server.server_address[1]}/ "
          "(Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
