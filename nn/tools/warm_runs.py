"""Training runs started from a warm process, for `rlgen-search`.

A search's runs are often short (a pruned trial may train for a second), and a fresh
`rlgen-train` spends seconds importing torch before its first step: on a 2-core machine
that start costs more than many trials train. So a search starts one fork server
(multiprocessing's "forkserver", a clean process that imports torch, the trainer and
`rlgen-train` once) and each run is forked from it: the same command line, in a process
of its own, as `rlgen-train` would run it. Its own process still matters: the worker
stops a pruned run with SIGTERM (rlgen's graceful stop), a run that crashes cannot take
the worker down, and each run has its own threads and memory.
"""

import atexit
import functools
import multiprocessing
import os
import select
import signal
import sys
import tempfile
import threading
from importlib.metadata import entry_points
from multiprocessing import forkserver
from pathlib import Path

# what every run imports: torch, its _dynamo (the first optimizer imports it, a second),
# TensorBoard's writer, the command, the config schemas and every trainer (the schemas
# import them all)
PRELOAD = ["torch", "torch._dynamo", "torch.utils.tensorboard", "nn.tools.train", "conf.schemas"]


@functools.cache
def preload() -> list[str]:
    from conf.schemas import trainers

    return [*PRELOAD, *trainers()]


def warm_up() -> None:
    """Start the fork server (once per process; again only if it died), so its imports
    overlap with what the caller does next."""
    forkserver.set_forkserver_preload(preload())
    forkserver.ensure_running()


def start_run(args: list[str], errors: Path | None = None, output: Path | None = None,
              command: str = "rlgen-train") -> multiprocessing.Process:
    """`rlgen-train ARGS` (or another of rlgen's commands) forked from the warm process,
    its stderr written to `errors` (else a temporary file: `stderr_of` reads it), its
    stdout to `output` (else dropped). Poll it with `is_alive()`, read `exitcode`
    (negative: the signal that ended it), stop it gracefully with `terminate()` (SIGTERM)."""
    if errors is None:
        handle, name = tempfile.mkstemp(prefix=f"{command}-", suffix=".err")
        os.close(handle)
        errors = Path(name)
    warm_up()
    run = multiprocessing.get_context("forkserver").Process(
        target=run_in_child, name=command,
        args=(command, list(args), str(errors), str(output or os.devnull), os.getcwd(),
              os.getpid()))
    run.errors = errors
    run.start()
    return run


def stderr_of(run: multiprocessing.Process) -> str:
    """What a run started without an `errors` file wrote to stderr, once it has ended;
    the temporary file is removed."""
    run.join()
    text = run.errors.read_text(errors="replace")
    run.errors.unlink()
    return text


def stop_with(requester: int) -> None:
    """SIGTERM to this run (rlgen's graceful stop) as soon as the process that asked for
    it ends, even by SIGKILL, rather than running on with no one to report it. A forked
    run is the fork server's child, not the requester's, so the kernel's parent-death
    signal cannot tell; a pidfd can (Linux 5.3+: it turns readable when its process has
    ended). Elsewhere the run goes on alone."""
    try:
        watched = os.pidfd_open(requester)
    except ProcessLookupError:  # gone before this run was forked
        sys.exit(f"the process that started this run ({requester}) has ended")
    except (AttributeError, OSError):
        return

    def watch() -> None:
        select.select([watched], [], [])
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="stop-with-requester", daemon=True).start()


def run_in_child(command: str, args: list[str], errors: str, output: str, cwd: str,
                 requester: int) -> None:
    stop_with(requester)
    os.chdir(cwd)
    os.environ["OMP_NUM_THREADS"] = "1"
    for fd, path in ((1, output), (2, errors)):
        os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
    sys.argv = [command, *args]
    # the installed command's entry point, as its console script calls it
    main = next(entry for entry in entry_points(group="console_scripts")
                if entry.name == command).load()
    code = 0
    try:
        main()
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    finally:
        # a forked process leaves through os._exit, past the atexit handlers that flush
        # logs and event files: run them here, as a process of its own would on its exit
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    sys.exit(code)
