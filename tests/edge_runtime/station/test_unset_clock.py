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
