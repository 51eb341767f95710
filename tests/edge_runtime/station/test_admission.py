"""What the web view admits: history queries beyond their cap and connections beyond a client address's cap get a
503 with Retry-After at once, and the page's own polls are answered meanwhile."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.edge_runtime.station.conftest import running_view as view
from tests.edge_runtime.station.conftest import write_items

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")

from edge_runtime.station import query  # noqa: E402
from edge_runtime.station.admission import LANE_CAPS, Lane  # noqa: E402


def get(port: int, path: str, *, source: str = "127.0.0.1", timeout_s: float = 5.0) -> tuple[int, dict, dict]:
    """One request on a connection of its own from ``source`` (any 127.x address is this computer)."""
    con = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s, source_address=(source, 0))
    try:
        con.request("GET", path)
        r = con.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, json.loads(r.read())
    finally:
        con.close()


class HeldRows:
    """``query.rows`` for history queries (limit=1000) held until released: the slow answers a flood makes."""

    def __init__(self) -> None:
        self.real, self.release, self.entered = query.rows, threading.Event(), threading.Semaphore(0)

    def __call__(self, con: object, flt: query.Filter, *, limit: int, **kw: object) -> Iterator[dict]:
        if limit == 1000:
            self.entered.release()
            assert self.release.wait(30.0)
        return self.real(con, flt, limit=limit, **kw)


def test_history_queries_beyond_the_cap_get_503_and_the_page_is_answered(station_log, log_path: Path, monkeypatch):
    """300 clients asking for 1000 records each took every thread of the view: the page's polls timed out and the
    page said contact was lost. Beyond the cap a history query is told to retry; the page's polls are answered."""
    write_items(station_log, 40)
    held = HeldRows()
    monkeypatch.setattr(query, "rows", held)
    cap, flood = LANE_CAPS[Lane.HISTORY], 45  # more than the view's 40 threads
    with view(log_path=log_path) as port, ThreadPoolExecutor(flood) as pool:
        try:
            slow = [pool.submit(get, port, "/api/inspections?limit=1000", timeout_s=30.0) for _ in range(cap)]
            for _ in range(cap):
                assert held.entered.acquire(timeout=10.0), "the history queries never reached the log"
            told = list(pool.map(lambda _: get(port, "/api/inspections?limit=1000"), range(flood - cap)))
            page = [get(port, path) for path in ("/api/status", "/api/defects?limit=20", "/api/rate?hours=8")]
        finally:
            held.release.set()
        answered = [f.result() for f in slow]
    for status, headers, body in told:  # old code: each waited, and timed out
        assert status == 503
        assert body["error"].startswith("the station is busy answering")
        assert f"retry in {headers['retry-after']} s" in body["error"]
    waits = sorted(int(headers["retry-after"]) for _, headers, _ in told)
    assert 0 < waits[0] < waits[-1]  # the larger the crowd turned away, the longer each is told to wait
    assert [status for status, _, _ in page] == [200, 200, 200]
    assert page[0][2]["station"] == "line-3" and len(page[1][2]["items"]) == 10  # 40 items, every 4th defective
    assert [(status, len(body["items"])) for status, _, body in answered] == [(200, 40)] * cap


def test_connections_beyond_a_clients_cap_get_503_and_others_are_served():
    """One address could hold thousands of connections. Beyond its cap, its next request is told to close some and
    retry (and the connection closed); another address is served meanwhile, and that one again once it closes."""
    with view(connections_per_client=8, head_timeout_s=30.0) as port, ExitStack() as stack:
        for _ in range(8):
            stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
        status, headers, body = get(port, "/api/status")
        assert status == 503, body  # old code: 200, as for the thousands after it
        assert int(headers["retry-after"]) > 0 and headers["connection"] == "close"
        assert body["error"].startswith("too many connections from 127.0.0.1 (at most 8 at a time)")
        assert get(port, "/api/status", source="127.0.0.2")[0] == 200
        stack.close()  # the client closes the connections it held
        for _ in range(50):  # the view sees the closes a moment later
            if get(port, "/api/status")[0] == 200:
                break
            time.sleep(0.05)
        assert get(port, "/api/status")[0] == 200
