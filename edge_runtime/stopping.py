"""SIGTERM and Ctrl-C as a clean stop, from the first instant of a command to its last line.

The first signal raises :class:`KeyboardInterrupt` in the main thread, unless the main thread is inside
:meth:`StopSignals.atomic` (writing one record to every output and counting it): then it is deferred to the end
of that block, so a record is never written without being counted. Once the run is closing (summary, files),
and for any later signal, the handler only counts: a second SIGTERM does not cut the shutdown short (it is
bounded to a few seconds; SIGKILL remains the way to force it).

Standard library only: commands install it before importing anything heavy.

>>> stop = StopSignals().install()       # doctest: +SKIP
>>> with stop.atomic():                  # doctest: +SKIP
...     write_record_everywhere()
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

# SIGHUP too: a closed terminal or an SSH session that drops ends the run cleanly, with its summary.
# SIGTERM last: once its handler is seen (SigCgt in /proc/PID/status), all of them are in.
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGHUP", "SIGTERM") if hasattr(signal, name))


# Console scripts whose main() takes over the signals installed before their imports (install_early): only
# these, for a signal handler that only counts must never be left in place by a command that does not adopt it.
EARLY_COMMANDS = frozenset({"edge-infer", "train-model", "export-onnx", "edge-bench", "edge-log"})
# `make models`: a SIGTERM during its imports was a silent exit 143 (so were the benchmarks' at any time)
EARLY_MODULES = frozenset({"export.ship", "benchmarks.robustness", "benchmarks.localisation"})
_early: StopSignals | None = None


def started_as() -> tuple[str, str | None]:
    """This process's console script name and its ``python -m`` module (None without one), also while it imports."""
    command = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    orig = list(getattr(sys, "orig_argv", []))  # `python -m export.ship`: argv[0] is "-m" while it imports
    return command, orig[orig.index("-m") + 1] if "-m" in orig[1:-1] else None


def install_early() -> None:
    """Called first thing by ``import edge_runtime``: when the process is ``edge-infer`` (its console script),
    take the stop signals over before the imports (OpenCV, numpy, click: about 0.15 s), only counting them until
    ``main()`` adopts them (:meth:`StopSignals.for_command`). A Ctrl-C then gave a KeyboardInterrupt traceback,
    or click's "Aborted!" with exit 1, and SIGTERM killed the process without its summary. A library import does
    nothing here."""
    global _early
    command, module = started_as()
    early = command in EARLY_COMMANDS or module in EARLY_MODULES
    if _early is None and early and threading.current_thread() is threading.main_thread():
        _early = StopSignals()
        _early.counting_only = True
        _early.install()


@contextlib.contextmanager
def command_signals() -> Iterator[StopSignals]:
    """A command's ``main()`` body: the stop signals taken over before its imports adopted (one that came during
    them is a KeyboardInterrupt now: ``error: interrupted``, exit 130; it was a traceback from inside OpenCV's
    import, "unexpected ImportError", or a silent exit 143/129) and ignored once the command is done."""
    stop = StopSignals.for_command()
    try:
        if stop.requested:
            raise KeyboardInterrupt
        yield stop
    finally:
        stop.finish()


class StopSignals:
    def __init__(self) -> None:
        self.count = 0
        self.closing = False
        self.pending = False
        self.counting_only = False  # installed before the command's main(): count, never raise (install_early)
        self.whole_process = False  # the console script's own: kept to the process's end (see finish)
        self._stall_s: float | None = None  # the innermost atomic block's stall limit (see atomic)
        self._nudging = False
        self._stalled = False
        self._raised = False
        self._retrying = False
        self._depth = 0
        self._previous: dict[int, Any] = {}

    @classmethod
    def for_command(cls) -> StopSignals:
        """The stop signals for a command's ``main()``: those installed before its imports (with any signal that
        came meanwhile; see :data:`requested`), else new ones, installed now."""
        global _early
        adopted, _early = _early, None
        if adopted is None:
            # Counting while the handlers go in: a signal between two of them raised inside install(), before the
            # caller's try, and the run ended "error: interrupted" with no summary. Counted, it is acted on as
            # ``requested`` in that try.
            fresh = cls()
            fresh.counting_only = True
            fresh.install()
            fresh.counting_only = False
            return fresh
        adopted.counting_only = False
        adopted.whole_process = True
        return adopted

    @property
    def requested(self) -> bool:
        """True once any stop signal arrived."""
        return self.count > 0

    @property
    def installed(self) -> bool:
        return bool(self._previous)

    def install(self) -> StopSignals:
        """Take over SIGTERM and SIGINT (only possible in the main thread; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread() and not self._previous:
            # Blocked while the handlers go in, one after another: a Ctrl-C that came once SIGTERM's handler was in
            # but before its own met Python's default, a KeyboardInterrupt traceback out of the import and a death
            # by the signal (exit -2; CI saw it once). Blocked, it waits for the new handler. That holds while this
            # is the only thread, as at install_early; with threads (numpy's), one of them may take the signal.
            mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS) if hasattr(signal, "pthread_sigmask") else None
            try:
                for sig in SIGNALS:
                    if signal.getsignal(sig) is signal.SIG_IGN:
                        continue  # ignored on purpose by whoever started us (nohup, a background job): keep it so
                    self._previous[sig] = signal.signal(sig, self._handle)
            finally:
                if mask is not None:
                    signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # as it was: one blocked by our parent stays so
        return self

    def finish(self) -> None:
        """The command is done and about to exit. The console script ignores stop signals from now on: a Ctrl-C
        or SIGTERM just after the summary killed the process by that signal (exit -2/-15 instead of its code).
        In-process callers (tests, a library) get their own handlers back."""
        if self.whole_process:
            # Ignored, not handled: Python puts the default actions back for the handlers it set when it shuts
            # down, and that shutdown (onnxruntime, OpenCV) takes tens of milliseconds.
            self.closing = True
            for sig in self._previous:
                signal.signal(sig, signal.SIG_IGN)
        else:
            self.uninstall(ignore_after_stop=True)

    def uninstall(self, *, ignore_after_stop: bool = False) -> None:
        """Give the signals back; with ``ignore_after_stop``, a command that is stopping ignores further
        SIGTERMs until it exits (a second SIGTERM must not kill it after its summary)."""
        for sig, previous in self._previous.items():
            ignore = ignore_after_stop and self.requested and sig == signal.SIGTERM
            signal.signal(sig, signal.SIG_IGN if ignore else previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._retrying:  # our own re-delivery (below), not a new signal
            self._retrying = False
        else:
            self.count += 1
        if self._raised or self.closing or self.counting_only:
            return
        if self._depth:
            if self._stalled:  # our own nudge: the block has not ended in stall_s (see atomic)
                self._raised = True
                raise KeyboardInterrupt
            self.pending = True
            if self._stall_s is not None and not self._nudging:
                self._nudging = True
                timer = threading.Timer(self._stall_s, self._nudge, (signum,))
                timer.daemon = True
                timer.start()
            return
        if _importing(frame):
            # An interrupt inside an import breaks the module for good (a C extension reports "initialization
            # failed"): deliver the signal again in a moment, once the import is done.
            self._retrying = True
            timer = threading.Timer(0.05, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
            return
        self._raised = True
        raise KeyboardInterrupt

    def _nudge(self, signum: int) -> None:
        """A stop came inside a block that has not ended since: deliver the signal again, now to be raised."""
        if self._depth and self.pending and not self._raised:
            self._stalled = self._retrying = True
            os.kill(os.getpid(), signum)

    @contextlib.contextmanager
    def atomic(self, *, stall_s: float | None = None) -> Iterator[None]:
        """A block that a stop signal does not interrupt: one that arrived meanwhile raises
        :class:`KeyboardInterrupt` right after it (also used around imports of C extensions, which turn an
        interrupt during their initialisation into an ImportError).

        ``stall_s``: a block that may wait on someone else (a write to a pipe whose reader stalled) is cut short
        when it has not ended ``stall_s`` after a stop signal: the stop raises inside it. Without it, edge-infer
        writing to a stalled reader ignored every SIGTERM and Ctrl-C; only SIGKILL ended it, summary lost."""
        self._depth += 1
        previous, self._stall_s = self._stall_s, stall_s if stall_s is not None else self._stall_s
        try:
            yield
        finally:
            self._depth -= 1
            self._stall_s = previous
        if self.pending and not self._depth and not self.closing and not self._raised:
            self.pending = False
            self._raised = True
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.uninstall()


def _importing(frame: FrameType | None) -> bool:
    """True when the interrupted code is inside an ``import`` (importlib's bootstrap is on the stack)."""
    depth = 0
    while frame is not None and depth < 200:
        if "importlib._bootstrap" in frame.f_code.co_filename:
            return True
        frame, depth = frame.f_back, depth + 1
    return False
