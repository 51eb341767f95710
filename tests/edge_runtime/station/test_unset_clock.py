"""--log-keep and items an unset clock stamped: a station booted without a clock (1970) logged its inspections,
the clock was then set, and the next pass of --log-keep 30d deleted every one of them as 56 years old."""

from __future__ import annotations

import time
from pathlib import Path

from edge_runtime.station.log import InspectionLog, LogConfig
from edge_runtime.station.query import open_reader
from tests.edge_runtime.station.conftest import RUN, write_items


def test_log_keep_leaves_the_items_an_unset_clock_stamped(log_path: Path):
    log = InspectionLog(LogConfig(log_path, keep_s=3600.0))
    log.start_run(RUN)
    write_items(log, 32, t0=3600.0)  # the clock said 1970-01-01T01:00Z
    write_items(log, 32, t0=time.time() - 7200)  # really two hours old
    assert log.apply_retention() == 32
    left = open_reader(log_path).execute("SELECT min(time), count(*) FROM inspections").fetchone()
    assert left[0] < 86400 and left[1] == 32


def test_uptime_does_not_jump_when_the_clock_is_set(monkeypatch):
    """A box without a clock battery starts at 1970 and NTP sets the clock a minute later: /api/status and the
    defect_edge_uptime_seconds gauge then said the station had been up 56 years (and negative after a step back)."""
    from edge_runtime.station import live as live_module
    from edge_runtime.station.live import LiveState

    state = LiveState(station="line-3")
    wall = time.time()
    monkeypatch.setattr(live_module.time, "time", lambda: wall + 1.8e9)  # the clock set, far ahead
    assert 0 <= state.status()["uptime_s"] < 60
