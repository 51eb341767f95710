"""Identical history queries within a second: the log is read once and every client gets the same answer."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest

from tests.edge_runtime.station.conftest import running_view, write_items

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")

from edge_runtime.station import answer_cache, query  # noqa: E402


def test_identical_history_queries_read_the_log_once(station_log, log_path: Path, monkeypatch):
    """300 clients asking for the same 1000 records had the view read and encode them 300 times (40-80 ms of its
    CPU each), while the page's polls waited for that CPU."""
    write_items(station_log, 40)
    reads: list[int] = []

    def counted(con: object, flt: query.Filter, *, limit: int, **kw: object):
        reads.append(limit)
        return real(con, flt, limit=limit, **kw)

    real = query.rows
    monkeypatch.setattr(query, "rows", counted)
    monkeypatch.setattr(answer_cache, "KEEP_S", 60.0)  # "within a second" on a machine of any speed

    def ask(path: str) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            assert r.headers["Content-Type"] == "application/json"
            return json.loads(r.read())

    with running_view(log_path=log_path) as port:
        answers = [ask("/api/inspections?limit=1000") for _ in range(5)]
        other = ask("/api/inspections?limit=10")
    assert reads == [1000, 10]  # old code: [1000, 1000, 1000, 1000, 1000, 10]
    assert all(a == answers[0] for a in answers) and len(answers[0]["items"]) == 40
    assert [r["id"] for r in other["items"]] == [r["id"] for r in answers[0]["items"][:10]]
