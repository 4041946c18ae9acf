"""Graceful stops: SIGTERM, SIGINT and SIGUSR1 (what Slurm and submitit send before a
preemption) no longer kill a training run; the run finishes its current iteration or
epoch, writes its checkpoint (atomically) and returns, so `resume=RUN_DIR` continues
exactly where it stopped."""

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


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
        self._previous.clear()

    def message(self, where: str, run_dir) -> str:
        return (f"stopped by {self.requested} after {where}; checkpoint saved, continue with "
                f"rlgen-train resume={run_dir}")
