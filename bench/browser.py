"""Headless chromium driving rlgen's web pages, for bench/web.py and tests/test_browser.py:
Debian's chromium through its chromium-driver (both from apt, paths from PATH, so
nothing is downloaded at run time), pages served by rlgen-serve's server on 127.0.0.1."""

import shutil
import threading
import time
from functools import partial
from http.server import ThreadingHTTPServer
from pathlib import Path

from nn.tools.web import make_server

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
MISSING = ("the browser tests need Debian's chromium and chromium-driver (apt-get install "
           "chromium chromium-driver); .ci/run installs them")


def chromium(width: int = 1200, height: int = 900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_script_timeout(300)
    return driver


def serve(folder: Path, handler=None) -> ThreadingHTTPServer:
    """rlgen-serve's server (or a given handler's) on a free port, in a thread."""
    server = (make_server(folder) if handler is None else
              ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(folder))))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def open_page(driver, folder: Path, handler=None, timeout: float = 30) -> ThreadingHTTPServer:
    """Serve the folder and load its page; wait until the page started or showed an
    error (`server.started`, `server.error`)."""
    server = serve(folder, handler)
    driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
    started = error = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        started, error = driver.execute_script(
            "const r = window.rlgen; return [!!(r && r.page), r ? r.error : null]")
        if started or error:
            break
        time.sleep(0.05)
    server.started, server.error = started, error
    return server


def page_call(driver, code: str, *args):
    """Await `code` (an expression over `page`, `rlgen` and args[0..]) in the page; a
    thrown error comes back as the string 'ERROR ...'."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1], args = arguments;"
        "const rlgen = window.rlgen, page = rlgen.page;"
        f"Promise.resolve().then(async () => {code}).then(done, (e) => done('ERROR ' + e));",
        *args)
