"""Graceful stops: SIGTERM, SIGINT, SIGUSR1 and SIGUSR2 (what Slurm and submitit send
before a time limit or a preemption) no longer kill a training run; the run finishes its
current iteration or epoch, writes its checkpoint (atomically) and returns, so
`resume=RUN_DIR` continues exactly where it stopped.

Under a scheduler that installed its own handler (submitit requeues the job on SIGUSR2),
`pass_on()` hands the signal to that handler once everything is written; the requeued
job finds its run dir stopped and continues it (see nn.cli)."""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)
_pending: list[signal.Signals] = []  # stop signals whose displaced handler gets them next


class GracefulStop:
    def __init__(self):
        self.requested: str | None = None  # the name of the signal that asked to stop
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.requested = signal.Signals(signum).name

    @classmethod
    def install(cls) -> "GracefulStop":
        stop = cls()
        if threading.current_thread() is threading.main_thread():  # handlers need it
            for sig in SIGNALS:
                stop._previous[sig] = signal.signal(sig, stop._handle)
        return stop

    def restore(self) -> None:
        for sig, handler in self._previous.items():
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
