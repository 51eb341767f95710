"""What the web view admits: at most so many connections from one client address, and at most so many log reads
at a time; beyond either, a 503 with Retry-After at once, not a wait.

300 clients asking ``/api/inspections?limit=1000`` (480 KB each) at once took every thread of the view: the page's
own polls (``/api/status`` every second) waited behind them, timed out, and the page said the station was lost
while it inspected on. One address could also hold thousands of connections. Like nginx's ``limit_conn`` and a
server's cap on expensive requests, the view now answers what is beyond its caps with a one-line JSON error at
once, and the page's polls, which read the live state or their own small lane, are answered meanwhile.

>>> admission = Admission()
>>> app = AdmissionGate(TokenGate(build_app(...), token), admission)        # doctest: +SKIP
>>> protocol = guarded_protocol(admission=admission)                         # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections import Counter, deque
from enum import Enum
from typing import Any

CONNECTIONS_PER_CLIENT = 100  # a browser holds 6 and its stream; a control room behind one address, a few of those
RETRY_AFTER_S = 2  # what a client turned away is told to wait, at least
RETRY_AFTER_MAX_S = 60
CROWD_WINDOW_S = 10.0  # the refusals counted for Retry-After: 1 s more for each CROWD_STEP of them in this window
CROWD_STEP = 5


class Lane(str, Enum):
    """Routes that read the log, each lane with its own cap: a flood of history queries never fills the page's."""

    HISTORY = "history"  # /api/inspections: up to 1000 records an answer
    PAGE = "page"  # the page's own reads of the log: the defects gallery, the rate chart, thumbnails


LANE_CAPS = {Lane.HISTORY: 2, Lane.PAGE: 8}  # answers in progress at once (the view has 40 threads, little CPU)


def lane_of(path: str) -> Lane | None:
    """The lane of a request path; None for what reads only the live state (status, metrics, frame, stream, page).

    >>> lane_of("/api/inspections"), lane_of("/thumb/12.jpg"), lane_of("/api/status")
    (<Lane.HISTORY: 'history'>, <Lane.PAGE: 'page'>, None)
    """
    if path == "/api/inspections":
        return Lane.HISTORY
    if path in ("/api/defects", "/api/rate") or path.startswith("/thumb/"):
        return Lane.PAGE
    return None


class Admission:
    """The counts behind the caps. Used from the view's event loop only (the protocol's callbacks and the ASGI
    middleware before it hands a request to a thread), so it needs no lock."""

    def __init__(self, *, per_client: int = CONNECTIONS_PER_CLIENT, lane_caps: dict[Lane, int] | None = None) -> None:
        self.per_client, self.lane_caps = per_client, dict(LANE_CAPS if lane_caps is None else lane_caps)
        self.held: Counter[str] = Counter()  # admitted connections per client address
        self.refused: set[tuple[str, int]] = set()  # connections beyond the cap: their requests get a 503
        self.busy: Counter[Lane] = Counter()  # answers in progress per lane
        self.turned_away: deque[float] = deque()  # when the recent refusals were, oldest first

    def retry_after(self, now: float | None = None) -> int:
        """Seconds to tell a client turned away now. It grows with the crowd: told a fixed 2 s, 300 clients came
        back 150 times a second, more than the niced view could refuse while inspection ran, and the page's polls
        waited behind the refusals. With 300 clients it settles near 25 s, with 10 near 6 s.

        >>> a = Admission()
        >>> [a.retry_after(now=0.0) for _ in range(12)][::5]
        [2, 3, 4]
        """
        now = time.monotonic() if now is None else now
        while self.turned_away and self.turned_away[0] < now - CROWD_WINDOW_S:
            self.turned_away.popleft()
        self.turned_away.append(now)
        return min(RETRY_AFTER_MAX_S, RETRY_AFTER_S + (len(self.turned_away) - 1) // CROWD_STEP)

    def connect(self, client: tuple[str, int] | None) -> bool:
        """Count a new connection; False (and remembered as refused) when its address holds its cap already."""
        if client is None:  # not an IP connection (a Unix socket): nothing to count by
            return True
        if self.held[client[0]] >= self.per_client:
            self.refused.add(client)
            return False
        self.held[client[0]] += 1
        return True

    def disconnect(self, client: tuple[str, int] | None, *, admitted: bool) -> None:
        if client is None:
            return
        if not admitted:
            self.refused.discard(client)
            return
        self.held[client[0]] -= 1
        if self.held[client[0]] <= 0:
            del self.held[client[0]]


class AdmissionGate:
    """ASGI middleware: 503 + Retry-After for a request on a refused connection or beyond its lane's cap."""

    def __init__(self, app: Any, admission: Admission) -> None:
        self.app, self.admission = app, admission

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        adm, client = self.admission, scope.get("client")
        lane = lane_of(scope.get("path", ""))
        crowded = client is not None and tuple(client) in adm.refused
        if crowded or (lane is not None and adm.busy[lane] >= adm.lane_caps[lane]):
            wait_s = adm.retry_after()
            await _busy(self.why(client, lane, wait_s, crowded=crowded), wait_s, close=crowded)(scope, receive, send)
            return
        if lane is None:
            await self.app(scope, receive, send)
            return
        adm.busy[lane] += 1
        try:
            await self.app(scope, receive, send)  # returns once the answer is handed to the connection
        finally:
            adm.busy[lane] -= 1

    def why(self, client: Any, lane: Lane | None, wait_s: int, *, crowded: bool) -> str:
        """The one line a client turned away reads: what was too many, and what to do."""
        if crowded or lane is None:
            return (
                f"too many connections from {client[0]} (at most {self.admission.per_client} at a time): close the "
                f"ones left open, then retry in {wait_s} s"
            )
        fewer = ", or ask for fewer records (limit=)" if lane is Lane.HISTORY else ""
        busy = self.admission.busy[lane]
        return f"the station is busy answering {busy} other {lane.value} queries: retry in {wait_s} s{fewer}"


def _busy(error: str, wait_s: int, *, close: bool) -> Any:
    from starlette.responses import JSONResponse

    headers = {"Retry-After": str(wait_s), "Cache-Control": "no-store"}
    if close:  # h11 closes the connection after an answer that says so
        headers["Connection"] = "close"
    return JSONResponse({"error": error}, 503, headers)
