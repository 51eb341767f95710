"""What the web view's process does about clients that hold connections: a deadline for each request's head, the
file-descriptor limit raised to what the system allows, and one line, not a traceback per failed accept, when
connections run out all the same.

uvicorn keeps a connection that never completes its request for ever (its keep-alive timeout starts only after a
response, and any byte stops it). 1500 clients sending a header byte every 3 s (slowloris) took all 1024 file
descriptors of a view started under systemd's default limit: the page stopped answering, and asyncio wrote 115,000
lines of tracebacks to the station's stderr in 20 s. Inspection went on (the view is a process of its own).

>>> protocol = guarded_protocol(head_timeout_s=10.0)   # doctest: +SKIP
>>> uvicorn.Config(app, http=protocol)                 # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from typing import Any

from edge_runtime.station.admission import Admission

HEAD_TIMEOUT_S = 10.0  # a browser sends its request head at once; a slow or stalled client is not waited for longer
NOFILE_WANTED = 65536  # connections the view may hold at most, where the hard limit allows it
REFUSED_HEAD_TIMEOUT_S = 1.0  # a connection beyond its address's cap, not yet asking: not kept waiting longer
OUT_OF_FDS_EVERY_S = 60.0  # how often the line about exhausted connections is said again while it lasts


def guarded_protocol(*, head_timeout_s: float = HEAD_TIMEOUT_S, admission: Admission | None = None) -> type:
    """uvicorn's HTTP/1.1 protocol, closing a connection whose next request head is not complete ``head_timeout_s``
    after the connection opened or its last response ended (a response in progress is never cut). With
    ``admission``, connections are counted per client address; one beyond the cap gets a 503 for its request
    (:class:`~edge_runtime.station.admission.AdmissionGate`) and is not waited for beyond a second."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class Guarded(H11Protocol):  # type: ignore[misc]
        admitted = True

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            if admission is not None:
                self.admitted = admission.connect(self.client)
            self._arm_head()

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if admission is not None:
                admission.disconnect(self.client, admitted=self.admitted)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head()

        def _arm_head(self) -> None:
            # the cycle object changes when a new request head is complete: unchanged at the deadline, none came
            due = head_timeout_s if self.admitted else min(head_timeout_s, REFUSED_HEAD_TIMEOUT_S)
            self.loop.call_later(due, self._head_due, self.cycle)

        def _head_due(self, cycle: Any) -> None:
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()

    return Guarded


def raise_fd_limit(wanted: int = NOFILE_WANTED) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never above the hard limit; systemd's
    default is 1024 soft, 524288 hard). Returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class QuietAccept(logging.Filter):
    """For asyncio's logger: a failed accept (no file descriptor left) is said in one line, at most once a minute,
    without its traceback; the retries that asyncio left pending when the view closed are not said at all."""

    def __init__(self, *, every_s: float = OUT_OF_FDS_EVERY_S) -> None:
        super().__init__()
        self.every_s, self.last_said = every_s, -float("inf")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Exception in callback") and "_start_serving" in message:
            return False  # the listening socket was closed under a pending retry: the view is ending anyway
        if "out of system resource" not in message:
            return True
        now = time.monotonic()
        if now - self.last_said < self.every_s:
            return False
        self.last_said = now
        limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        record.msg = (
            f"station: the web view cannot accept more connections (all {limit} file descriptors in use): new "
            "clients wait; find the clients that hold them open, or raise LimitNOFILE (ulimit -n)"
        )
        record.args, record.exc_info, record.exc_text = None, None, None
        return True


def quiet_accept_errors() -> None:
    """Install :class:`QuietAccept` (once) on asyncio's logger, with a plain handler so the line reaches stderr."""
    log = logging.getLogger("asyncio")
    if not any(isinstance(f, QuietAccept) for f in log.filters):
        log.addFilter(QuietAccept())
        if not log.handlers:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            log.addHandler(handler)
            log.propagate = False
