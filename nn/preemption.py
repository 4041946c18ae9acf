"""Graceful stops: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (what Slurm and submitit send
before a time limit or a preemption) no longer kill a training run; the run finishes its
current iteration or epoch, writes its checkpoint (atomically) and returns, so
`resume=RUN_DIR` continues exactly where it stopped. A second Ctrl-C ends the process at
once, in one line naming the last checkpoint kept (checkpoints are written atomically,
so the one on disk is whole).

Under a scheduler that installed its own handler (submitit requeues the job on SIGUSR2),
`pass_on()` hands the signal to that handler once everything is written; the requeued
job finds its run dir stopped and continues it (see nn/tools/train.py)."""

import os
import signal
import sys
import threading
from pathlib import Path

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_pending: list[signal.Signals] = []  # stop signals whose displaced handler gets them next


class GracefulStop:
    def __init__(self, run_dir: Path | None = None):
        self.requested: str | None = None  # the name of the signal that asked to stop
        self.run_dir = run_dir
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            self._exit_now()
        self.requested = signal.Signals(signum).name

    def _exit_now(self) -> None:
        """A second Ctrl-C: out at once, as a shell expects (exit 130), without a traceback."""
        last = self.run_dir / "checkpoints" / "last.pt" if self.run_dir else None
        kept = (f"the last checkpoint kept is {last}; continue with rlgen-train "
                f"resume={self.run_dir}" if last and last.is_file()
                else "no checkpoint was written yet")
        sys.stderr.write(f"\nrlgen-train: interrupted twice, stopped at once: {kept}\n")
        sys.stderr.flush()
        os._exit(130)

    @classmethod
    def install(cls, run_dir: Path | None = None) -> "GracefulStop":
        stop = cls(run_dir)
        if threading.current_thread() is threading.main_thread():  # handlers need it
            for sig in SIGNALS:
                stop._previous[sig] = signal.signal(sig, stop._handle)
        return stop

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            # while the process winds down, a second Ctrl-C still ends it at once, whether
            # Ctrl-C had Python's handler before or was ignored (a job a shell started in
            # the background inherits SIGINT ignored)
            if sig == signal.SIGINT and self.requested == "SIGINT" and handler in (
                    signal.default_int_handler, signal.SIG_DFL, signal.SIG_IGN):
                continue
            signal.signal(sig, handler)
        if self.requested is not None:
            sig = signal.Signals[self.requested]
            handler = self._previous.get(sig)
            # a Python handler someone installed before us (not Ctrl-C's default)
            if callable(handler) and handler is not signal.default_int_handler:
                _pending.append(sig)
        self._previous.clear()

    def message(self, where: str, run_dir) -> str:
        return (f"stopped by {self.requested} after {where}; checkpoint saved, continue with "
                f"rlgen-train resume={run_dir}")


def pass_on() -> None:
    """Deliver a stop signal to the handler it displaced, after the run has saved and
    written its metrics: e.g. submitit's, which requeues the job and exits."""
    while _pending:
        signal.raise_signal(_pending.pop())
