import contextlib
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

BIN = Path(sys.executable).parent
TINY = ["experiment=cartpole_reinforce", "algo.iterations=3", "algo.games_per_iteration=4",
        "env.max_steps_per_game=60", "device=cpu"]


def run_cli(command: str, *args: str, cwd: Path | None = None, check: bool = True,
            env: dict | None = None, process: bool = False):
    """Run a console script's command line; return the CompletedProcess. In this process
    (the script's own `main`, without the seconds a new interpreter spends importing
    torch) unless the test is about a process boundary (`process=True`) or needs another
    working folder or environment."""
    if process or cwd is not None or env is not None:
        env = dict(env if env is not None else os.environ, SDL_VIDEODRIVER="dummy")
        result = subprocess.run([str(BIN / command), *args], capture_output=True, text=True,
                                cwd=cwd, env=env, timeout=300)
    else:
        result = run_script(command, list(args))
    if check and result.returncode != 0:
        raise AssertionError(f"{command} {args} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def run_script(command: str, args: list[str]) -> subprocess.CompletedProcess:
    """A console script (pyproject's [project.scripts]) run in this process with `args` as
    its command line; its output captured, its exit code kept."""
    from importlib.metadata import entry_points

    main = next(e for e in entry_points(group="console_scripts") if e.name == command).load()
    argv = sys.argv
    sys.argv = [str(BIN / command), *args]
    try:
        return run_in_process(lambda _: main(), args, command)
    finally:
        sys.argv = argv


def call_tool(command: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A key=value tool (rlgen-eval, -watch, -generate, ...) run in this process."""
    return run_cli(command, *args, check=check)


def run_in_process(main, argv: list[str], name: str | None = None
                   ) -> subprocess.CompletedProcess:
    """A command's `main(argv)` run in this process, its output captured; returns what
    `run_cli` does and never raises on a failed command."""
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            if not isinstance(stop.code, (int, type(None))):
                print(stop.code, file=sys.stderr)
    return subprocess.CompletedProcess([name or main.__module__, *argv], code, out.getvalue(),
                                       err.getvalue())


def call_train(*args: str) -> subprocess.CompletedProcess:
    """rlgen-train's command line run in this process (see `run_script`); never raises on
    a failed command."""
    return run_script("rlgen-train", list(args))


class TrainingProcess:
    """`rlgen-train ARGS` (or `command`) in a process of its own, for tests of what
    crosses a process boundary (signals, kills, locks), forked from the warm process
    `rlgen-search` starts its runs from (nn/tools/warm_runs.py): the command's own `main`,
    seconds sooner than a new interpreter. Answers what these tests ask of a
    subprocess.Popen."""

    def __init__(self, *args: str, command: str = "rlgen-train"):
        import tempfile

        from nn.tools.warm_runs import start_run

        folder = Path(tempfile.mkdtemp(prefix="rlgen-test-process-"))
        self.out, self.err = folder / "stdout", folder / "stderr"
        self.process = start_run(list(args), self.err, self.out, command)
        self.pid = self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return None if self.process.is_alive() else self.process.exitcode

    def send_signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.is_alive():
            raise subprocess.TimeoutExpired("rlgen-train", timeout)
        return self.process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        self.wait(timeout)
        return self.out.read_text(), self.err.read_text()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """One tiny real training run through the CLI, shared by the read-back tests."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    run_cli("rlgen-train", *TINY, f"hydra.run.dir={run_dir}")
    return run_dir


# one tiny trained run of every kind of network rlgen exports (Snake with the centred
# view on a 6x7 board, so the exports and the web page meet a view that is not the book's)
TINY_RUNS = {
    "policy": ["experiment=cartpole_reinforce", "algo.iterations=2",
               "algo.games_per_iteration=4", "env.max_steps_per_game=50"],
    "snake": ["experiment=snake_dqn_strong", "model.channels=[8,8]", "model.hidden_sizes=[16]",
              "algo.replay_size=300", "algo.replay_warmup=64", "algo.max_frames=200",
              "algo.max_seconds=null", "env.height=6", "env.width=7"],
    "gymnasium": ["experiment=acrobot_dqn", "model.hidden_sizes=[16]", "algo.replay_size=300",
                  "algo.replay_warmup=64", "algo.max_frames=200"],
    "classifier": ["experiment=mnist_cnn", "model.channels=[8,16]", "model.hidden=32",
                   "algo.epochs=1", "algo.batch_size=500"],  # the book's own sizes, narrower
    "vae": ["experiment=vae_mnist5k", "algo.epochs=1", "algo.batch_size=500"],
    "acgan": ["experiment=acgan_mnist5k", "model=acgan_light", "algo.epochs=1",
              "algo.epoch_images=100"],
    "text": ["experiment=lstm_text_fast", "model.embedding_dim=8", "model.hidden_sizes=[24,16]",
             "algo.sample_len=32", "algo.batch_size=8", "algo.examples_per_epoch=64",
             "algo.epochs=1", "algo.display_length=20", "algo.warmup_steps=2"],
}


def made_once(tmp_path_factory, worker_id, name: str, make) -> Path:
    """The folder `name`, filled by `make(folder)` once for the whole test session and
    shared by the test workers: a file lock, the first to ask makes it, the others wait."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    root = root if worker_id == "master" else root.parent
    shared = root / name
    with FileLock(str(root / f"{name}.lock")):
        if not (shared / ".made").exists():
            make(shared)
            (shared / ".made").touch()
    return shared


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory, worker_id) -> dict[str, Path]:
    """TINY_RUNS trained once for the whole test session. Tests read them and export
    them, never change what training wrote."""
    import importlib

    def train(shared: Path) -> None:
        for kind, overrides in TINY_RUNS.items():
            cfg = compose(*overrides, "device=cpu")
            importlib.import_module(cfg.trainer).train(cfg, shared / kind)

    shared = made_once(tmp_path_factory, worker_id, "tiny_runs", train)
    return {kind: shared / kind for kind in TINY_RUNS}


@pytest.fixture(scope="session")
def tiny_exports(tiny_runs, tmp_path_factory, worker_id) -> dict[str, Path]:
    """Each of TINY_RUNS exported once for the session (`rlgen-export web=true`: the
    networks, the manifest and, where the run has one, its web page); tests read an
    export or copy it, never change it."""
    from nn.config import parse_key_values
    from nn.tools.export import ExportArgs, export_run

    def export(shared: Path) -> None:
        for kind, run_dir in tiny_runs.items():
            web = ["web=true"] if kind != "gymnasium" else []  # no page for any env
            export_run(parse_key_values(ExportArgs, [f"run={run_dir}", *web,
                                                     f"out={shared / kind}"]))

    shared = made_once(tmp_path_factory, worker_id, "tiny_exports", export)
    return {kind: shared / kind for kind in tiny_runs}


def missing_tool(reason: str, allow_module_level: bool = False) -> None:
    """A test whose tool (chromium, PostgreSQL) this machine lacks: skipped with `reason`,
    except where every tool is meant to be installed (CI=true; .ci/run installs them),
    where the test fails instead, so a broken install is never a green run."""
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"CI=true, yet {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=allow_module_level)


def error_line(result) -> str:
    """The user-facing error: exactly one line on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    return lines[0]


def compose(*overrides: str):
    """The composed run config, as rlgen-train would build it."""
    from conf.compose import compose as compose_config

    return compose_config(list(overrides), job_name="test")


# pytest-xdist (--dist loadgroup) keeps a file whose tests share a fixture trained once
# per module on one worker (its `pytestmark = pytest.mark.xdist_group(...)`), and hands
# every other test, one at a time, to whichever worker is free; the longest files go
# first, so that neither worker is left with one of them at the end
MODULE_FIXTURES = {"judge_run", "gan_run", "sites", "browser", "snake_run", "runs",
                   "search_dir", "text_run", "vae_run", "postgres", "shakespeare", "digits",
                   "server"}
LONGEST_FIRST = ["test_acgan.py", "test_search_workers.py", "test_search_postgres.py",
                 "test_run_lock.py", "test_stop.py", "test_show.py", "test_cluster.py",
                 "test_dqn.py", "test_text.py", "test_preemption.py", "test_browser.py",
                 "test_export.py"]


# the inner loop (`make test-fast`, pytest -m "not slow") leaves out these files (processes
# killed, stopped, searched, served or run on a cluster), the tests that use a trained
# fixture, and the tests marked slow one by one
SLOW_FILES = {"test_search_workers.py", "test_search_postgres.py", "test_run_lock.py",
              "test_stop.py", "test_preemption.py", "test_cluster.py", "test_browser.py"}
TRAINED = MODULE_FIXTURES - {"shakespeare", "digits", "server"} | {"tiny_runs", "trained_run"}


def pytest_collection_modifyitems(items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if item.path.name in SLOW_FILES or TRAINED & fixtures:
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable within a file

