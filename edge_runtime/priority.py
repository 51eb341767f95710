"""Real-time CPU priority for the thread that inspects a live source (Linux; ``edge-infer --priority``).

A station computer often shows its own page (``--serve``) in a browser on the same cores. A frame then comes
in while the browser is drawing, and under the normal scheduler the inspection thread can wait a whole time
slice (4 ms here) for a CPU. Under ``SCHED_RR`` it takes a CPU at once: the p99 capture -> result latency with
the page open stays where it is without it (README, "The station").

Only the inspection loop runs at real-time priority: the thread that calls
:func:`~edge_runtime.infer.run_inference` for a live source, which takes the newest frame, runs the model and
writes the record. Threads it starts and child processes keep the normal policy (``SCHED_RESET_ON_FORK``);
onnxruntime's worker threads, if one is late, leave their share of the work to the loop.

A live source is paced by its camera, so the loop sleeps most of the time. When it does not (a camera faster
than the model), a real-time loop would keep a core from everything else on the computer, so a guard
watches the loop's own CPU time and puts it back to the normal policy once it is busy more than
:data:`GUARD_SHARE` of the time over :data:`GUARD_WINDOW_S` seconds.

>>> rt = RealTime.start(required=False)       # doctest: +SKIP
>>> rt.active                                  # doctest: +SKIP
True
>>> rt.tick()                                  # once per item; returns a message when the guard acts
>>> rt.close()                                 # back to the normal policy
"""

from __future__ import annotations

import contextlib
import os
import time
from enum import Enum

RT_PRIORITY = 10  # SCHED_RR priority 1..99: above every normal thread, below the kernel's own real-time threads
GUARD_WINDOW_S = 2.0
GUARD_SHARE = 0.5  # of one core: the loop's own CPU time over the window


class Priority(str, Enum):
    AUTO = "auto"  # real-time for live sources where the system allows it, normal otherwise
    NORMAL = "normal"
    REALTIME = "realtime"  # real-time for a live source, or an error


HOW_TO_ALLOW = (
    "allow it with CAP_SYS_NICE or an RLIMIT_RTPRIO of at least 1 (systemd: LimitRTPRIO=10; shell: ulimit -r 10)"
)


def supported() -> bool:
    return all(hasattr(os, name) for name in ("sched_setscheduler", "SCHED_RR", "SCHED_RESET_ON_FORK"))


def _allowed_priority() -> int:
    """The highest priority up to RT_PRIORITY this process may ask for without CAP_SYS_NICE (its RLIMIT_RTPRIO)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_RTPRIO)[0]
    except (ImportError, AttributeError, OSError, ValueError):
        return 0
    return RT_PRIORITY if soft == resource.RLIM_INFINITY else min(RT_PRIORITY, int(soft))


def _chosen_policy() -> str | None:
    """The calling thread's policy when it is not the normal one (``chrt -f 50 edge-infer ...``, a systemd unit's
    CPUSchedulingPolicy=): a choice the run respects. None for SCHED_OTHER."""
    names = {os.SCHED_RR: "SCHED_RR", os.SCHED_FIFO: "SCHED_FIFO"}
    names |= {getattr(os, n): n for n in ("SCHED_BATCH", "SCHED_IDLE") if hasattr(os, n)}
    try:
        policy = os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK
        prio = os.sched_getparam(0).sched_priority
    except OSError:
        return None
    if policy == os.SCHED_OTHER or policy not in names:
        return None
    return f"{names[policy]} {prio}" if policy in (os.SCHED_RR, os.SCHED_FIFO) else names[policy]


def _set_realtime() -> int:
    """Put the calling thread under SCHED_RR; the priority given, or 0 if not allowed."""
    policy = os.SCHED_RR | os.SCHED_RESET_ON_FORK
    for prio in dict.fromkeys((RT_PRIORITY, _allowed_priority())):
        if prio < 1:
            continue
        try:
            os.sched_setscheduler(0, policy, os.sched_param(prio))
            return prio
        except (PermissionError, OSError):
            continue
    return 0


class RealTime:
    """The real-time priority of one live run: started on the loop's thread before its first item, ticked once
    per item, closed at the end of the run (also on errors)."""

    def __init__(self, priority: int, reason: str, *, kept: str | None = None) -> None:
        self.priority = priority  # 0: not active
        self.reason = reason  # why not, when not active
        self.kept = kept  # the policy the caller had chosen (chrt, a systemd unit), left as it is
        self.dropped_by_guard = False
        self._t0 = time.monotonic()
        self._cpu0 = time.thread_time()

    @property
    def active(self) -> bool:
        return self.priority > 0

    @classmethod
    def start(cls, *, required: bool) -> RealTime:
        """Real-time priority for the calling thread alone (threads it starts stay normal). ``required``: raise
        :class:`~edge_runtime.errors.UsageError` when the system does not allow it, instead of running normally.
        A thread already under a policy of the caller's choosing keeps it."""
        from edge_runtime.errors import UsageError

        if not supported():
            reason = "this system has no real-time scheduling policy for threads"
        elif (chosen := _chosen_policy()) is not None:  # never lowered, changed or undone by the run
            return cls(0, "", kept=chosen)
        else:
            prio = _set_realtime()
            if prio:
                return cls(prio, "")
            reason = f"not allowed for this process; {HOW_TO_ALLOW}"
        if required:
            raise UsageError(f"--priority realtime: {reason}, or use --priority auto")
        return cls(0, reason)

    @property
    def label(self) -> str:
        """For the summary: realtime, normal, or the caller's own policy."""
        return "realtime" if self.active else self.kept or "normal"

    def describe(self) -> str:
        if self.kept:
            return f"priority: {self.kept}, as started (left as it is)"
        if self.active:
            return (
                f"priority: real-time (SCHED_RR {self.priority}) for the inspection loop; back to normal if it "
                f"keeps a core over {GUARD_SHARE:.0%} busy"
            )
        return f"priority: normal (real-time {self.reason})"

    def tick(self) -> str | None:
        """Once per item, from the loop: after each window, the loop's share of a core; above GUARD_SHARE it goes
        back to the normal policy and the message to report is returned (once)."""
        if not self.active:
            return None
        now = time.monotonic()
        wall = now - self._t0
        if wall < GUARD_WINDOW_S:
            return None
        share = (time.thread_time() - self._cpu0) / wall
        self._t0, self._cpu0 = now, time.thread_time()
        if share <= GUARD_SHARE:
            return None
        self.close()
        self.dropped_by_guard = True
        return (
            f"the inspection loop kept a CPU core {share:.0%} busy at real-time priority (the source brings frames "
            "faster than the model judges them); back to normal priority so the rest of the computer keeps its share"
        )

    def close(self) -> None:
        """Back to the normal policy; call it from the thread that started it."""
        if self.active:
            with contextlib.suppress(OSError):  # leaving a real-time policy is always allowed
                os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            self.priority = 0
            self.reason = "ended"
