"""A system clock that was never set. A cheap edge box has no battery-backed clock: booted without a network it says
1970 (or the last shutdown's time). Its records were then stamped "1970-01-01T01:00:00Z" without a word, and once
the clock was set, the next run's --log-keep deleted every one of them as decades old: inspection records lost."""

from __future__ import annotations

import time
from datetime import datetime, timezone

# Before this code existed, so a clock below it is certainly wrong; a date, not the release, so it never goes stale.
EARLIEST = 1767225600.0  # 2026-01-01T00:00:00Z


def clock_warning(now: float | None = None) -> str | None:
    """The warning for a clock before :data:`EARLIEST`, or None for a plausible one.

    >>> clock_warning(3600.0)[:50]
    'warning: the system clock says 1970-01-01T01:00Z, '
    >>> clock_warning(EARLIEST + 1) is None
    True
    """
    now = time.time() if now is None else now
    if now >= EARLIEST:
        return None
    said = datetime.fromtimestamp(now, tz=timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    return (
        f"warning: the system clock says {said}, before 2026: every record's time is wrong, and a log's "
        "--log-keep deletes such items as old once the clock is right; set the clock (timedatectl set-ntp true, "
        "or date -s)"
    )
