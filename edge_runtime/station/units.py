"""Durations (``30d``, ``8h``), times (``8h`` ago, ISO, epoch seconds) and sizes (``2GB``, ``500MiB``) as users type
them on the command line.

>>> parse_duration("30d"), parse_duration("90m"), parse_size("2GB"), parse_size("1.5MiB")
(2592000.0, 5400.0, 2000000000, 1572864)
"""

from __future__ import annotations

import math
import re
import time
from datetime import datetime, timezone

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with s, m, h, d or w (``30d``). Raises ValueError with a readable message.

    The unit is lower case: ``1M`` was read as 1 minute, where a user meant a month (and lost the month's items).

    >>> parse_duration("1M")
    Traceback (most recent call last):
    ValueError: '1M' is not a duration like 45s, 90m, 8h, 30d or 2w (units s m h d w, lower case: m is minutes)
    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    # 400 digits parse as infinity: no duration, and a size of infinity cannot become a byte count
    if not m or not 0 < float(m.group(1)) < math.inf:
        raise ValueError(
            f"{text!r} is not a duration like 45s, 90m, 8h, 30d or 2w (units s m h d w, lower case: m is minutes)"
        )
    return float(m.group(1)) * _DURATION[m.group(2)]


def duration_text(seconds: float) -> str:
    """``seconds`` as ``parse_duration`` reads it back, in the largest unit it is a whole number of.

    >>> duration_text(2592000.0), duration_text(5400.0), duration_text(1.5)
    ('30d', '90m', '1.5s')
    """
    for unit, size in sorted(_DURATION.items(), key=lambda kv: -kv[1]):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


def size_text(n: int) -> str:
    """``n`` bytes as ``parse_size`` reads it back, in the largest unit it is a whole number of.

    >>> size_text(1_000_000), size_text(2 * 1024**3), size_text(1500)
    ('1MB', '2GiB', '1.5kB')
    """
    for unit, size in (("TB", 10**12), ("TiB", 1024**4), ("GB", 10**9), ("GiB", 1024**3), ("MB", 10**6),
                       ("MiB", 1024**2), ("kB", 1000), ("KiB", 1024)):  # fmt: skip
        if n >= size and n % size == 0:
            return f"{n // size}{unit}"
    return f"{n / 1000:g}kB" if n >= 1000 else f"{n}B"


def parse_size(text: str) -> int:
    """Bytes in ``text``: ``2GB`` (powers of 1000) or ``2GiB`` (powers of 1024). Raises ValueError."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*", text.lower())
    size = float(m.group(1)) * _SIZE[m.group(2)] if m and m.group(2) in _SIZE else math.nan
    if not 0 < size < math.inf:  # the number may overflow only once multiplied by its unit (300 digits and TB)
        raise ValueError(f"{text!r} is not a size like 500MB, 2GB or 1GiB")
    return int(size)


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_when(text: str, *, now: float | None = None) -> float:
    """``8h`` (that long ago), an ISO time (``2026-11-25T06:00``, UTC unless it says otherwise) or epoch seconds.

    >>> parse_when("1h", now=7200.0), parse_when("1970-01-01T01:00:00Z"), parse_when("60")
    (3600.0, 3600.0, 60.0)
    """
    now = time.time() if now is None else now
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds) and seconds > now + 86400 * 366:  # milliseconds matched nothing, in silence
            raise ValueError(f"{text!r} lies more than a year ahead; epoch times are in seconds, not milliseconds")
        if math.isfinite(seconds):  # nan matches no row and inf every row or none: neither is a time
            return _not_a_date(text, seconds)
        raise ValueError(f"{text!r} is not a time: give a duration (8h, 30m), an ISO time or epoch seconds")
    try:
        stamp = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time: give a duration (8h, 30m), an ISO time or epoch seconds") from None
    seconds = (stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)).timestamp()
    try:
        iso(seconds)  # 9999-12-31T23:00-05:00 is in the year 10000 in UTC: "unexpected ValueError", exit 1
    except (OverflowError, OSError, ValueError):
        raise ValueError(f"{text!r} lies outside the years 1 to 9999 in UTC; give a time within them") from None
    return seconds


def _not_a_date(text: str, seconds: float) -> float:
    """``seconds``, unless ``text`` is also a date written without dashes: ``--since 20261129`` read as epoch
    seconds, a day in August 1970, listed every item as "since" the 29th of November."""
    digits = text.strip()
    if re.fullmatch(r"(19|20|21)\d{6}", digits):
        try:
            day = datetime.strptime(digits, "%Y%m%d").date().isoformat()
        except ValueError:
            return seconds
        raise ValueError(f"{text!r} reads as epoch seconds ({iso(seconds)[:10]}), not as the date {day}; write "
                         f"{day} for the date, or {digits}.0 for epoch seconds")  # fmt: skip
    return seconds
