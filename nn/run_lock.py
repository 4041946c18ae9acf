"""One writer per run folder.

Before anything is written into a run folder, the process that will write it takes an
exclusive lock on RUN_DIR/.rlgen.lock (filelock's `flock`) and records who it is in
RUN_DIR/.rlgen.holder (host, pid, start time, command). A second process, a new run or
a resume, gets one line naming the holder and writes nothing. The operating system
drops a lock when its process ends, however it ends (SIGKILL included), so a dead
holder never blocks a resume: the resume takes the lock and says whose it was.

What holds where: on a local disk, always. On NFS (v4, or v3 with lockd) `flock` is
carried out as a POSIX lock on the server, so it holds across machines; a node that is
lost keeps its locks until the server's lease runs out (about 90 s on NFSv4), after
which a resume can take them over. On file systems without working locks (some FUSE
mounts, NFS mounted with `nolock`), the lock holds between processes of one machine only.
"""

import atexit
import json
import os
import socket
import sys
import time
from pathlib import Path

from filelock import FileLock, Timeout

from nn.errors import UserError

LOCK, HOLDER = ".rlgen.lock", ".rlgen.holder"
_held: dict[Path, FileLock] = {}  # this process's locks, held until it exits


def holder(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / HOLDER).read_text())
    except (OSError, ValueError):
        return None


def describe(found: dict | None) -> str:
    if not found:
        return "another process"
    return (f"pid {found.get('pid')} on {found.get('host')} (since "
            f"{found.get('started', '?')})")


def take(run_dir: Path, what: str = "rlgen-train") -> str | None:
    """Hold `run_dir` for this process (again: nothing to do). Raises a one-line
    UserError when another live process holds it; returns a line to show when the lock
    was taken over from a holder that is gone, else None."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return None
    lock = FileLock(run_dir / LOCK, timeout=0)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        lock.acquire()
    except Timeout:
        found = holder(run_dir)
        for _ in range(40):  # a holder that just took the lock writes its name next
            if found:
                break
            time.sleep(0.05)
            found = holder(run_dir)
        raise UserError(f"{run_dir} is being written by {describe(found)}; wait for "
                        "it to end or stop it (then rlgen-train resume=... continues it), or "
                        "choose another hydra.run.dir") from None
    except OSError as err:  # permission denied, a read-only or full disk (not Timeout)
        raise UserError(f"cannot make the run dir {run_dir}: {err.strerror or err}; write "
                        "runs elsewhere (hydra.run.dir=... or hydra.sweep.dir=...)") from None
    _held[run_dir] = lock
    atexit.register(release, run_dir)  # a run that ends, however, leaves no holder behind
    earlier = holder(run_dir)
    me = {"host": socket.gethostname(), "pid": os.getpid(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join([what, *sys.argv[1:]])}
    try:
        (run_dir / HOLDER).write_text(json.dumps(me) + "\n")
    except OSError as err:
        release(run_dir)
        raise UserError(f"cannot write into the run dir {run_dir}: {err.strerror or err}; "
                        "free space or write runs elsewhere (hydra.run.dir=...)") from None
    if earlier:  # its holder died without letting go (SIGKILL, a lost node)
        return f"took over {run_dir} from {describe(earlier)}, which is no longer running"
    return None


def release(run_dir: Path) -> None:
    """Let go of a run folder before this process ends (tests, tools that write briefly)."""
    lock = _held.pop(Path(run_dir).resolve(), None)
    if lock is not None:
        (Path(run_dir) / HOLDER).unlink(missing_ok=True)
        lock.release()
