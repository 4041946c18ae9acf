"""The download path against a real HTTP server on 127.0.0.1: good file, mirror
fallback, wrong checksum, server down, partial transfer, corrupt cache."""

import hashlib
import http.server
import socket
import threading

import pytest

from generative.download import download, file_digest
from nn.errors import UserError

BODY = b"To be, or not to be, that is the question:\n" * 200


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/good.txt":
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY)
        elif self.path == "/short.txt":  # promises more than it sends, then hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(BODY)))
            self.end_headers()
            self.wfile.write(BODY[:100])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/good.txt"  # nothing listens there now


GOOD_SHA = hashlib.sha256(BODY).hexdigest()


def leftovers(folder):
    return [p.name for p in folder.iterdir() if ".part" in p.name]


def test_good_file_is_fetched_checked_and_then_served_from_cache(server, tmp_path):
    dest = tmp_path / "good.txt"
    assert download([f"{server}/good.txt"], dest, GOOD_SHA) == dest
    assert dest.read_bytes() == BODY
    # cached: no server needed the second time
    assert download([free_port_url()], dest, GOOD_SHA) == dest


def test_mirrors_are_tried_in_turn(server, tmp_path):
    dest = tmp_path / "good.txt"
    download([free_port_url(), f"{server}/missing.txt", f"{server}/good.txt"], dest, GOOD_SHA)
    assert file_digest(dest) == GOOD_SHA


def test_wrong_checksum_is_refused_and_nothing_is_left(server, tmp_path):
    dest = tmp_path / "good.txt"
    with pytest.raises(UserError, match="checksum"):
        download([f"{server}/good.txt"], dest, "0" * 64)
    assert not dest.exists() and not leftovers(tmp_path)


def test_server_down_gives_one_clear_error_with_the_offline_hint(tmp_path):
    with pytest.raises(UserError) as err:
        download([free_port_url()], tmp_path / "x.txt", None, offline_hint="use data.path=FILE")
    assert "could not download x.txt" in str(err.value)
    assert str(err.value).endswith("use data.path=FILE")
    assert "\n" not in str(err.value)


def test_partial_transfer_never_leaves_a_complete_looking_file(server, tmp_path):
    dest = tmp_path / "short.txt"
    with pytest.raises(UserError):
        download([f"{server}/short.txt"], dest, None)
    assert not dest.exists() and not leftovers(tmp_path)


def test_unpinned_file_records_its_checksum_and_a_corrupt_cache_is_fetched_again(server, tmp_path):
    dest = tmp_path / "good.txt"
    download([f"{server}/good.txt"], dest, None)
    assert (tmp_path / "good.txt.sha256").read_text().strip() == GOOD_SHA
    dest.write_bytes(BODY[:-10])  # damaged after the fact
    download([f"{server}/good.txt"], dest, None)
    assert dest.read_bytes() == BODY


def tiny_shakespeare_cfg(cache_dir, sha256=None):
    from omegaconf import OmegaConf

    return OmegaConf.create({"corpus": "tiny_shakespeare", "path": None, "sha256": sha256,
                             "cache_dir": str(cache_dir), "val_fraction": 0.1})


def test_tiny_shakespeare_preset_pins_its_checksum_and_refuses_a_wrong_file(server, tmp_path,
                                                                            monkeypatch):
    from generative import corpus as corpora

    published = corpora.PRESETS["tiny_shakespeare"]
    assert published.url.endswith("karpathy/char-rnn/master/data/tinyshakespeare/input.txt")
    assert published.sha256 == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    # the same preset served from 127.0.0.1: a body other than the pinned one is refused
    monkeypatch.setitem(corpora.PRESETS, "tiny_shakespeare",
                        corpora.Preset(f"{server}/good.txt", published.file, published.sha256))
    with pytest.raises(UserError, match="checksum .* is not the expected 86c4e6aa9db7"):
        corpora.load_corpus(tiny_shakespeare_cfg(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing cached, nothing half-written
    # a checksum that matches: fetched, cached, split 90/10
    monkeypatch.setitem(corpora.PRESETS, "tiny_shakespeare",
                        corpora.Preset(f"{server}/good.txt", published.file, GOOD_SHA))
    corpus = corpora.load_corpus(tiny_shakespeare_cfg(tmp_path))
    assert corpus.text == BODY.decode() and corpus.val_start == int(len(BODY) * 0.9)
    # a cached file that does not match is never used: fetched again, or refused offline
    cached = tmp_path / published.file
    cached.write_text("Not Shakespeare at all.\n" * 500)
    assert corpora.load_corpus(tiny_shakespeare_cfg(tmp_path)).text == BODY.decode()
    cached.write_text("Not Shakespeare at all.\n" * 500)
    monkeypatch.setitem(corpora.PRESETS, "tiny_shakespeare",
                        corpora.Preset(free_port_url(), published.file, GOOD_SHA))
    with pytest.raises(UserError, match="could not download tinyshakespeare.txt.*data.path=FILE"):
        corpora.load_corpus(tiny_shakespeare_cfg(tmp_path))
