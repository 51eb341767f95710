"""Values read back from the inspection log, checked: a record that does not read as defect-edge wrote it (a text
where a score belongs, a verdict of 2, a providers list that is not JSON) is told as a damaged record, naming the
log, not as an "unexpected TypeError" (exit 1).

>>> as_number(0.97, "the score", "item 1"), as_flag(1, "item 1")
(0.97, True)
"""

from __future__ import annotations

import json
import math
import sqlite3
from typing import Any

from edge_runtime.errors import DataError
from edge_runtime.station.units import iso


def log_name(con: sqlite3.Connection) -> str:
    """The file a connection reads, for messages."""
    try:
        return str(con.execute("PRAGMA database_list").fetchone()[2]) or "inspection log"
    except (sqlite3.Error, TypeError, IndexError):
        return "inspection log"


class Damaged(Exception):
    """A stored record that does not read as defect-edge wrote it; the caller names the log (see :func:`damaged`)."""


def as_names(value: list, item: object) -> list:
    if not all(isinstance(v, str) for v in value):  # [1] failed at the CSV's join: "unexpected TypeError", exit 1
        raise Damaged(f"the providers of {item} are not names")
    return value


def as_json(text: str, what: str, item: object, kind: type) -> Any:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:  # query and show said "unexpected JSONDecodeError", exit 1
        raise Damaged(f"{what} of {item} is not JSON") from exc
    if not isinstance(value, kind):  # '[1]' as the extra fields was "unexpected AttributeError", exit 1
        raise Damaged(f"{what} of {item} is not a JSON {'object' if kind is dict else 'list'}")
    return value


def damaged(con: sqlite3.Connection, exc: Damaged) -> DataError:
    return DataError(f"{log_name(con)}: inspection log holds a damaged record ({exc}); restore the log from a backup")


def as_number(value: Any, what: str, item: object, *, required: bool = False) -> Any:
    """A stored number as it is, or :class:`Damaged` ('abc' as a score made the table's format fail, exit 1)."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Damaged(f"{what} of {item} is not a number")
    return value


def as_time(value: Any, item: object) -> str:
    try:
        return iso(as_number(value, "the time", item, required=True))
    except (OverflowError, OSError, ValueError) as exc:
        raise Damaged(f"the time of {item} is out of range") from exc


def as_text(value: Any, what: str, item: object, *, required: bool = False) -> Any:
    """A stored text as it is, or :class:`Damaged` (bytes where a label belongs failed the table and JSON, exit 1)."""
    if (value is None and not required) or isinstance(value, str):
        return value
    raise Damaged(f"{what} of {item} is not text")


def as_flag(value: Any, item: object) -> bool | None:
    if value is None:
        return None
    if isinstance(value, bool) or value not in (0, 1):  # 'yes' read as true, 2 counted twice in the summary
        raise Damaged(f"the verdict of {item} is neither 0 nor 1")
    return bool(value)
