"""benchmarks.station's pieces: the page viewer runs in a process of its own and reports JSON; the slowest frames'
split between waiting for a CPU and the rest; the report renders. No timing is asserted (CONVENTIONS.md rule 11)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks.station_probe import slowest
from benchmarks.station_report import live_section
from benchmarks.station_viewer import HTTP_KIND, Viewer, scheduling


def test_slowest_takes_the_frames_at_or_above_p99():
    latencies = [2.0] * 99 + [9.0]
    waits = [0.1] * 99 + [6.5]
    got = slowest(latencies, waits)
    assert got["frames"] == 1 and got["latency_ms"] == 9.0
    assert got["cpu_wait_ms"] == 6.5 and got["rest_ms"] == 2.5 and got["all_cpu_wait_ms"] == 0.1


def test_scheduling_names_policy_and_nice():
    assert scheduling(os.getpid()).startswith(("normal, nice", "idle, nice", "batch, nice"))
    assert scheduling(2**22 + 12345) is None  # no such process


def test_the_live_section_renders_every_condition():
    row = {
        "p50": 1.6, "p90": 2.0, "p99": 2.4, "cpu_percent": 105.0, "dropped": 0, "station_us_p50": 13.0,
        "station_us_p99": 21.0, "webview_cpu_percent": 2.8, "browser_cpu_percent": 13.1,
        "slowest": {"latency_ms": 2.6, "cpu_wait_ms": 0.4, "rest_ms": 2.2},
        "scheduling": {"inspection": "normal, nice 0", "browser": "normal, nice 0"},
    }  # fmt: skip
    live = {"seconds": 15, "viewer": HTTP_KIND, "rounds": {"no station": [row], "--serve + open page": [row, row]}}
    text = "\n".join(live_section(live))
    assert "| --serve + open page | 1.6 / 1.6 |" in text and "| 2.60 / 2.60 | 0.40 / 0.40 | 2.20 / 2.20 |" in text
    assert "browser: normal, nice 0; inspection: normal, nice 0" in text
    assert "Inspection loop priority: normal (edge-infer's default" in text  # rows without a priority: older runs


def test_the_live_section_says_how_the_loop_was_scheduled():
    row = {
        "p50": 1.6, "p90": 2.0, "p99": 2.4, "cpu_percent": 9.0, "dropped": 0, "station_us_p50": 13.0,
        "station_us_p99": 21.0, "slowest": {}, "scheduling": {}, "priority": "realtime",
    }  # fmt: skip
    rounds = {"no station": [row], "no station, normal priority": [{**row, "priority": "normal"}]}
    live = {"seconds": 15, "viewer": HTTP_KIND, "priority": "both", "rounds": rounds}
    text = "\n".join(live_section(live))
    assert "edge-infer's default priority (normal / realtime in these runs)" in text
    live = {**live, "priority": "auto", "rounds": {"no station": [row]}}
    assert "Inspection loop priority: realtime (edge-infer's default" in "\n".join(live_section(live))


def test_the_viewer_opens_the_page_from_its_own_process():
    pytest.importorskip("starlette", reason="the web view needs the [station] extra")
    pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")
    from edge_runtime.station.feed import LiveFeed
    from edge_runtime.station.server import Bind, StationServer

    server = StationServer(LiveFeed(station="line-3"), bind=Bind("127.0.0.1", 0))
    url = server.start()
    try:
        viewer = Viewer(browser=False)
        proc = viewer.open(url, 1.0)
        assert proc.pid != os.getpid() and viewer.kind == HTTP_KIND
        report = viewer.finish(proc)
        assert report["seconds"] >= 1.0 and report["viewer_cpu_percent"] >= 0 and report["browser_cpu_percent"] is None
        assert viewer.viewer_cpu_percent == [report["viewer_cpu_percent"]] and viewer.cpu_percent == []
    finally:
        server.stop()


def test_latency_counts_from_when_the_camera_had_the_frame():
    # A capture thread that woke 5 ms late must not hide those 5 ms (TimedSource notes each frame's due time).
    import time
    from types import SimpleNamespace

    from benchmarks.live import PacedSource
    from benchmarks.station_probe import Probe, TimedSource

    probe = Probe()
    source = TimedSource(PacedSource([np.zeros((4, 4), np.uint8)], fps=100.0, count=1), probe)
    due = source.inner.due
    assert source.read()[0] and probe.due == [due]
    late = SimpleNamespace(frame=0, timestamp=due + 0.005)  # the reader's own stamp, 5 ms after the frame was due
    before = time.monotonic()
    probe.on_records([{}], [late])
    after = time.monotonic()
    assert (before - due) * 1000.0 <= probe.latencies_ms[0] <= (after - due) * 1000.0  # from the due time
    assert probe.latencies_ms[0] >= (after - late.timestamp) * 1000.0 + 4.9  # not from the reader's stamp
