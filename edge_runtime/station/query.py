"""Reading the inspection log (read-only): rows, summaries, defect rate over time, stored images.

Shared by ``edge-log`` and the web view; never writes.

>>> con = open_reader(Path("station.db"))                          # doctest: +SKIP
>>> [r["score"] for r in rows(con, Filter(defective=True), limit=3)]  # doctest: +SKIP
[0.998, 0.97, 0.91]
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import DataError
from edge_runtime.metrics import nearest_rank_index
from edge_runtime.station.log_parts import storable
from edge_runtime.station.schema import connect, read_error, snapshot
from edge_runtime.station.stored import (
    Damaged,
    as_flag,
    as_json,
    as_names,
    as_number,
    as_text,
    as_time,
    damaged,
    log_name,
)
from edge_runtime.station.units import iso, parse_when  # noqa: F401 - parse_when: edge-log and the web view's
from edge_runtime.summary import NO_PART

ROW_SQL = (
    "SELECT i.id, i.time, r.station, i.source, i.frame, i.label, i.score, i.threshold, i.defective, i.latency_ms, "
    "i.error, i.warning, i.extra, r.model_version, r.model_file, r.providers, r.precision, "
    "EXISTS (SELECT 1 FROM thumbnails t WHERE t.inspection_id = i.id), {sha} "
    # NOT INDEXED: pages follow the ids (see rows); by an index on the verdict, each page sorted every match anew
    # (--ok of 171428 items: 66 s, from 20 s). LEFT: an item of no run is told, not left out
    "FROM inspections i NOT INDEXED LEFT JOIN runs r ON r.id = i.run_id"
)


def sha_column(con: sqlite3.Connection) -> str:
    """The runs' ``model_sha256`` column, or ``NULL`` in a log of schema 1 (read as it is, never migrated by a
    reader): its runs were logged without the model file's hash, which reads as unknown, not as a made-up one."""
    found = any(c[1] == "model_sha256" for c in con.execute("PRAGMA table_info(runs)"))
    return "r.model_sha256" if found else "NULL"


PAGE = 500  # rows read at a time (see rows)

# Keys a record may carry beside its verdict (edge-infer writes them when set).
ROW_EXTRAS = ("defect_box", "unlike_training", "asymmetry")


def open_reader(path: Path | str) -> sqlite3.Connection:
    """A read-only connection (raises :class:`~edge_runtime.errors.OutputError`, exit 7, for a bad file)."""
    return connect(path, readonly=True)


@dataclass(frozen=True)
class Filter:
    """Which rows: ``since``/``until`` are epoch seconds, ``after_id`` for polling, ``source`` a substring,
    ``station`` the ``--station`` name of the run that wrote them (stations may share one log)."""

    since: float | None = None
    until: float | None = None
    defective: bool | None = None
    source: str | None = None
    after_id: int | None = None
    station: str | None = None

    def where(self) -> tuple[str, list[Any]]:
        parts, args = [], []
        for cond, value in (("i.time >= ?", self.since), ("i.time < ?", self.until), ("i.id > ?", self.after_id)):
            if value is not None:
                parts.append(cond)
                args.append(value)
        if self.defective is not None:
            parts.append("i.defective = ?")
            args.append(int(self.defective))
        # as the log stores them: a name that is not UTF-8 (--source "$(ls)") was "unexpected UnicodeEncodeError",
        # exit 1, where its stored, escaped name matches it
        if self.source:
            parts.append("instr(i.source, ?) > 0")
            args.append(storable(self.source))
        if self.station is not None:
            parts.append("i.run_id IN (SELECT id FROM runs WHERE station = ?)")
            args.append(storable(self.station))
        return (" WHERE " + " AND ".join(parts)) if parts else "", args


def stations(con: sqlite3.Connection) -> list[str]:
    """The --station names of the runs the log holds."""
    try:
        return [str(s) for (s,) in con.execute("SELECT DISTINCT station FROM runs ORDER BY 1")]
    except sqlite3.Error as exc:
        raise read_error(log_name(con), exc, "reading it") from exc


def _row(r: tuple) -> dict[str, Any]:
    item = f"item {r[0]}"
    if r[2] is None and r[13] is None:  # counted by the summary, yet never listed: "no item with id 1"
        raise Damaged(f"{item} belongs to no run in the log")
    out = {
        "id": r[0],
        "time": as_time(r[1], item),
        "station": as_text(r[2], "the station", item, required=True),
        "source": as_text(r[3], "the source", item, required=True),
        "frame": as_number(r[4], "the frame", item),
        "label": as_text(r[5], "the label", item),
        "score": as_number(r[6], "the score", item),
        "threshold": as_number(r[7], "the threshold", item),
        "defective": as_flag(r[8], item),
        "latency_ms": as_number(r[9], "the latency", item),
        "error": as_text(r[10], "the error", item),
        "warning": as_text(r[11], "the warning", item),
        "model_version": as_text(r[13], "the model version", item, required=True),
        "model_file": as_text(r[14], "the model file", item, required=True),
        "providers": as_names(as_json(r[15], "the providers", item, list), item),
        "precision": as_text(r[16], "the precision", item),
        "has_image": bool(r[17]),
        "model_sha256": as_text(r[18], "the model file's hash", item),  # None: logged before the log kept it
    }
    if out["error"] is not None and not out["error"].strip():  # an error of no words: no verdict and no reason
        raise Damaged(f"the error of {item} is empty")
    if out["error"] is None and None in (out["label"], out["score"], out["defective"]):
        # a NULL label failed the table's format ("unexpected TypeError", exit 1); a NULL verdict was listed as ok
        raise Damaged(f"{item} has neither a verdict nor an error")
    extra = as_json(r[12], "the extra fields", f"item {r[0]}", dict) if r[12] else {}
    out |= {k: extra.get(k) for k in ROW_EXTRAS}  # every row has these keys (None when unset), as the CSV has
    out |= {k: v for k, v in extra.items() if k not in out}
    return out


def rows(
    con: sqlite3.Connection,
    flt: Filter,
    *,
    limit: int | None = None,
    newest_first: bool = False,
    damaged_out: list[str] | None = None,
) -> Iterator[dict]:
    """Matching rows as dicts (oldest first unless ``newest_first``), of the items in the log when it is called.
    A damaged row raises :class:`DataError`, or, with ``damaged_out``, is left out and its description appended
    there (the station page's gallery: one damaged record among the last defects had made it read "no defective
    part yet").

    Read :data:`PAGE` rows at a time, each page a read of its own: one statement over the whole log held its
    reader's snapshot for as long as the reader was paused (``edge-log query station.db | less``), and the
    station's write-ahead file could not start over meanwhile: it grew by every item written (72 MB in 15 s
    against ``--log-max 4MB``, 5.6 MB without the reader), bounded by the disk alone. Items that retention
    deletes before their page is read are left out, as they are from the log."""
    where, args = flt.where()
    step = f"{' AND' if where else ' WHERE'} i.id BETWEEN ? AND ? ORDER BY i.id {'DESC' if newest_first else 'ASC'}"
    left = None if limit is None else int(limit)
    try:
        sql = ROW_SQL.format(sha=sha_column(con)) + where + step + " LIMIT ?"
        low, high = -(2**63), con.execute("SELECT max(id) FROM inspections").fetchone()[0]
        while high is not None and (page := PAGE if left is None else min(PAGE, left)) > 0:
            batch = con.execute(sql, [*args, low, high, page]).fetchall()  # read whole: its snapshot is let go
            yield from _checked(batch, damaged_out)
            if len(batch) < page:
                return
            left = None if left is None else left - page
            low, high = (low, batch[-1][0] - 1) if newest_first else (batch[-1][0] + 1, high)
    except sqlite3.Error as exc:
        raise read_error(log_name(con), exc, "reading it") from exc
    except Damaged as exc:
        raise damaged(con, exc) from exc


def _checked(batch: list[tuple], damaged_out: list[str] | None) -> Iterator[dict]:
    for r in batch:
        try:
            yield _row(r)
        except Damaged as exc:
            if damaged_out is None:
                raise
            damaged_out.append(str(exc))


def row(con: sqlite3.Connection, item_id: int) -> dict[str, Any]:
    """One row by id; :class:`DataError` (exit 3) when there is none."""
    try:
        found = con.execute(ROW_SQL.format(sha=sha_column(con)) + " WHERE i.id = ?", (int(item_id),)).fetchone()
        oldest, newest = con.execute("SELECT min(id), max(id) FROM inspections").fetchone()
    except sqlite3.Error as exc:
        raise read_error(log_name(con), exc, "reading it") from exc
    if found is None:
        # an id from an earlier export, its item deleted since: it read as if the log had lost it
        why = (f": its oldest item now is {oldest}, the older ones were deleted by the station's --log-keep or "
               "--log-max" if oldest is not None and item_id < oldest else
               f": its newest item is {newest}" if newest is not None and item_id > newest else "")  # fmt: skip
        raise DataError(f"no item with id {item_id} in the inspection log{why} (edge-log query lists the ids)")
    try:
        return _row(found)
    except Damaged as exc:
        raise damaged(con, exc) from exc


def thumbnail_jpeg(con: sqlite3.Connection, item_id: int, *, station: str | None = None) -> bytes | None:
    """The stored picture of item ``item_id``; None where there is none (also for an id SQLite cannot hold) or,
    with ``station``, where another station's run made the item (stations may share one log)."""
    if not 0 < int(item_id) < 2**63:
        return None
    sql, args = "SELECT jpeg FROM thumbnails WHERE inspection_id = ?", [int(item_id)]
    if station is not None:
        sql += " AND inspection_id IN (SELECT i.id FROM inspections i JOIN runs r ON r.id = i.run_id WHERE station = ?)"
        args.append(station)
    try:
        found = con.execute(sql, args).fetchone()
    except sqlite3.Error as exc:
        raise read_error(log_name(con), exc, "reading it") from exc
    if found is not None and not isinstance(found[0], bytes):  # text stored as the picture: exit 1 in show
        raise DataError(f"{log_name(con)}: inspection log holds a damaged picture for item {item_id}; restore it")
    return None if found is None else found[0]


def percentile_sql(con: sqlite3.Connection, where: str, args: list, q: float, count: int) -> float | None:
    """The ``q``-th percentile of latency_ms without loading every row (nearest rank)."""
    if count == 0:
        return None
    k = nearest_rank_index(count, q)  # as metrics.nearest_rank, in SQL
    extra = " AND " if where else " WHERE "
    found = con.execute(
        f"SELECT i.latency_ms FROM inspections i{where}{extra}i.latency_ms IS NOT NULL "
        "ORDER BY i.latency_ms LIMIT 1 OFFSET ?",
        [*args, k],
    ).fetchone()
    return None if found is None else round(float(found[0]), 3)


def rate_bucket(start: float, items: int, defective: int, errors: int) -> dict[str, Any]:
    """One bucket of the defect rate: defective items among those judged (unreadable items have no verdict, as
    in the summary's own rate; they were counted in the hour's but not in the headline's)."""
    judged = items - errors
    rate = round(defective / judged, 4) if judged else None
    return {"start": iso(start), "items": items, "defective": defective, "errors": errors, "rate": rate}


def rate_buckets(con: sqlite3.Connection, flt: Filter, bucket_s: float = 3600.0) -> list[dict[str, Any]]:
    """Items, defective, errors and defect rate per ``bucket_s`` (UTC-aligned), oldest first."""
    where, args = flt.where()
    sql = (
        "SELECT CAST(i.time / ? AS INTEGER) AS b, count(*), coalesce(sum(i.defective), 0), count(i.error) "
        f"FROM inspections i{where} GROUP BY b ORDER BY b"
    )
    return [rate_bucket(b * bucket_s, n, d, e) for b, n, d, e in con.execute(sql, [bucket_s, *args])]


# Rows the summary's counts would misread, each with what is wrong with it ({} is the item's id).
_ODD_ROWS = (
    # 'yes' summed as 0.0 (counts came out as floats), 2 counted as two defective items
    (
        "(i.defective NOT IN (0, 1) OR typeof(i.defective) NOT IN ('integer', 'null'))",
        "the verdict of item {} is neither 0 nor 1",
    ),
    # counted as "ok": a defective part's record, its verdict wiped, read as a good one
    (
        "((i.error IS NULL AND (i.defective IS NULL OR i.label IS NULL OR i.score IS NULL)) "
        "OR (typeof(i.error) = 'text' AND trim(i.error) = ''))",
        "item {} has neither a verdict nor an error (or one of no words)",
    ),
    # counted here, and never listed by query or show
    ("NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = i.run_id)", "item {} belongs to no run in the log"),
)


def _check_rows(con: sqlite3.Connection, where: str, args: list) -> None:
    """:class:`Damaged` for the first of the :data:`_ODD_ROWS` found among the filtered items."""
    for condition, problem in _ODD_ROWS:
        odd = con.execute(
            f"SELECT i.id FROM inspections i{where}{' AND' if where else ' WHERE'} {condition} LIMIT 1", args
        ).fetchone()
        if odd is not None:
            raise Damaged(problem.format(odd[0]))


def _models(con: sqlite3.Connection, where: str, args: list) -> list[dict[str, Any]]:
    """The models that judged the filtered items, each with its item count and first and last time. A file
    replaced at the same path is another model: its hash differs (None for runs logged without one)."""
    return [
        {
            "model_version": as_text(v, "the model version", f"a run of {f}", required=True),
            "model_file": as_text(f, "the model file", "a run", required=True),
            "model_sha256": as_text(h, "the model file's hash", f"a run of {f}"),
            "precision": as_text(p, "the precision", f"a run of {f}"),
            "providers": as_names(as_json(pr, "the providers", f"a run of {f}", list), f"a run of {f}"),
            "items": c,
            "first": as_time(a, f"a run of {f}"),
            "last": as_time(b, f"a run of {f}"),
        }
        for v, f, h, p, pr, c, a, b in con.execute(
            f"SELECT r.model_version, r.model_file, {sha_column(con)}, r.precision, r.providers, count(*), "
            f"min(i.time), max(i.time) FROM inspections i JOIN runs r ON r.id = i.run_id{where} GROUP BY 1, 2, 3, 4, 5 "
            "ORDER BY 7",
            args,
        )
    ]


def summary(con: sqlite3.Connection, flt: Filter) -> dict[str, Any]:
    """What ``edge-log summary`` prints: counts, defect rate per hour, errors, latency, models and stations."""
    where, args = flt.where()
    with snapshot(con):
        return _summary(con, flt, where, args)


def _summary(con: sqlite3.Connection, flt: Filter, where: str, args: list) -> dict[str, Any]:
    try:
        _check_rows(con, where, args)
        n, d, e, first, last = con.execute(
            "SELECT count(*), coalesce(sum(i.defective), 0), count(i.error), min(i.time), max(i.time) "
            f"FROM inspections i{where}",
            args,
        ).fetchone()
        lat_n, warned, unlike, no_part = con.execute(
            "SELECT count(i.latency_ms), count(i.warning), count(json_extract(i.extra, '$.unlike_training')), "
            "count(CASE WHEN json_extract(i.extra, '$.unlike_training') LIKE ? THEN 1 END) "
            f"FROM inspections i{where}",
            [f"%{NO_PART}%", *args],
        ).fetchone()
        models = _models(con, where, args)
        stations = [
            as_text(s, "the station", "a run", required=True)
            for (s,) in con.execute(
                f"SELECT DISTINCT r.station FROM inspections i JOIN runs r ON r.id = i.run_id{where} ORDER BY 1", args
            )
        ]
        return {
            "items": n,
            "defective": d,
            "ok": n - d - e,
            "errors": e,
            "warnings": warned,
            "unlike_training": unlike,
            "no_part": no_part,  # of those, frames in which no part was found (the whole frame was judged)
            "defect_rate": round(d / (n - e), 4) if n - e else None,
            "first": as_time(first, "the first item") if first is not None else None,
            "last": as_time(last, "the last item") if last is not None else None,
            "latency_ms_p50": as_number(percentile_sql(con, where, args, 50, lat_n), "a latency", "an item"),
            "latency_ms_p99": as_number(percentile_sql(con, where, args, 99, lat_n), "a latency", "an item"),
            "per_hour": rate_buckets(con, flt, 3600.0),
            "models": models,
            "stations": stations,
        }
    except sqlite3.Error as exc:
        raise read_error(log_name(con), exc, "summarising it") from exc
    except Damaged as exc:
        raise damaged(con, exc) from exc
    except (TypeError, ValueError, OverflowError) as exc:  # a text where SQL sums or ranks numbers
        raise damaged(con, Damaged(f"a stored value does not read: {exc}")) from exc
