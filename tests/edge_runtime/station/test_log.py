"""The inspection log: schema and migrations, every record kept, thumbnails, retention, clear errors (exit 7)."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime.errors import ExitCode, OutputError
from edge_runtime.station import schema
from edge_runtime.station.log import InspectionLog, LogConfig
from edge_runtime.station.log_parts import thumbnail
from edge_runtime.station.query import Filter, open_reader, rows, summary, thumbnail_jpeg
from edge_runtime.station.units import parse_duration, parse_size
from tests.conftest import REPO
from tests.edge_runtime.station.conftest import RUN, part_picture, record, write_items


def test_new_log_is_versioned_in_wal_mode_with_indexes_on_time_and_defective(station_log: InspectionLog, log_path):
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexed = {r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    assert any("(time)" in s for s in indexed) and any("(defective" in s for s in indexed)


def test_every_record_comes_back_with_its_model_and_only_defects_keep_a_small_jpeg(station_log, log_path: Path):
    recs = write_items(station_log, 100)
    recs.append(record(100, defective=False, error="parts/x.png: cannot decode"))
    station_log.write(recs[-1:], [None])
    con = open_reader(log_path)
    got = list(rows(con, Filter()))
    assert len(got) == 101
    for rec, row in zip(recs, got, strict=True):
        for key in ("source", "frame", "label", "score", "defective", "latency_ms", "error", "time"):
            assert row[key] == rec[key], key
        assert row["model_version"] == RUN.model_version and row["providers"] == RUN.providers
        assert row["station"] == "line-3" and row["threshold"] == RUN.threshold
        assert row["has_image"] == bool(rec["defective"])
    jpeg = thumbnail_jpeg(con, got[0]["id"])
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_UNCHANGED)
    assert max(img.shape[:2]) <= 128 and len(jpeg) < 8000
    assert thumbnail_jpeg(con, got[1]["id"]) is None
    assert [r["defective"] for r in rows(con, Filter(defective=True))] == [True] * 25


def test_fields_the_schema_does_not_know_are_kept(station_log, log_path: Path):
    station_log.write([record(1, defective=True, defect_box=[10, 20, 40, 50], warning="background brighter")], [None])
    (row,) = rows(open_reader(log_path), Filter())
    assert row["defect_box"] == [10, 20, 40, 50] and row["warning"] == "background brighter"


def test_thumbnail_draws_the_defect_box_in_red():
    rec = record(1, defective=True, defect_box=[0, 0, 47, 47])
    img = cv2.imdecode(np.frombuffer(thumbnail(part_picture(size=96), rec), np.uint8), cv2.IMREAD_COLOR)
    b, g, r = (int(v) for v in img[10, 0])
    assert r > 150 and g < 100 and b < 100


def test_a_pinholes_box_is_drawn_big_enough_to_see_on_the_thumbnail():
    """A 4 x 4 px box on a 300 px picture is under 2 px on the 128 px thumbnail: it is drawn as a square of 10
    px about the same place (the record keeps the box itself)."""
    rec = record(1, defective=True, defect_box=[148, 148, 152, 152])
    img = cv2.imdecode(np.frombuffer(thumbnail(part_picture(size=300), rec), np.uint8), cv2.IMREAD_COLOR)
    red = (img[:, :, 2] > 150) & (img[:, :, 1] < 100) & (img[:, :, 0] < 100)
    ys, xs = np.nonzero(red)
    assert xs.max() - xs.min() >= 8 and ys.max() - ys.min() >= 8
    assert abs((xs.max() + xs.min()) / 2 - 64) <= 2 and abs((ys.max() + ys.min()) / 2 - 64) <= 2
    assert rec["defect_box"] == [148, 148, 152, 152]


def test_summary_counts_rate_latency_and_models(station_log, log_path: Path):
    write_items(station_log, 40, t0=time.time() - 100)
    s = summary(open_reader(log_path), Filter())
    assert (s["items"], s["defective"], s["errors"]) == (40, 10, 0)
    assert s["defect_rate"] == 0.25
    assert 0.4 <= s["latency_ms_p50"] <= s["latency_ms_p99"] <= 1.0
    assert [m["model_version"] for m in s["models"]] == [RUN.model_version] and s["models"][0]["items"] == 40
    assert sum(b["items"] for b in s["per_hour"]) == 40
    assert summary(open_reader(log_path), Filter(since=time.time() + 10))["items"] == 0


def test_retention_by_age_deletes_old_items_and_their_images(log_path: Path):
    log = InspectionLog(LogConfig(log_path, keep_s=3600.0))
    log.start_run(RUN)
    now = time.time()
    write_items(log, 64, t0=now - 7200)  # two hours old
    write_items(log, 64, t0=now - 60)
    assert log.apply_retention() == 64
    con = open_reader(log_path)
    assert con.execute("SELECT count(*) FROM inspections").fetchone()[0] == 64
    assert con.execute("SELECT count(*) FROM thumbnails").fetchone()[0] == 16


def test_retention_by_age_keeps_to_the_runs_own_station(log_path: Path):
    """Stations may share one log: station C's --log-keep 1s deleted every item of stations A and B (6633 items),
    exit 0, without a word. Age retention is the station's own; the run counts what it deleted."""
    now = time.time()
    other = InspectionLog(LogConfig(log_path, station="line-4"))
    other.start_run(RUN)
    write_items(other, 32, t0=now - 7200)
    other.close()
    log = InspectionLog(LogConfig(log_path, station="line-3", keep_s=3600.0))
    log.start_run(RUN)
    write_items(log, 32, t0=now - 7200)
    assert log.apply_retention() == 32 and log.retention_deleted == 32
    con = open_reader(log_path)
    left = con.execute("SELECT r.station, count(*) FROM inspections i JOIN runs r ON r.id = i.run_id GROUP BY 1")
    assert dict(left.fetchall()) == {"line-4": 32}


def test_a_deleted_items_picture_never_goes_to_the_item_that_takes_its_id(log_path: Path):
    """Retention that deletes the newest items (here a clock that jumped 2 h ahead past --log-keep 1h; also a tiny
    --log-max) lets SQLite give their ids again: the deleted defects' pictures, made on the helper thread, were
    stored for the new items of those ids, OK parts among them (and a second picture failed the run, exit 7)."""
    log = InspectionLog(LogConfig(log_path, station="line-3", keep_s=3600, retention_every_s=0.0))
    try:
        log.start_run(RUN)
        for batch in range(6):
            stamped = time.time() - (7200 if batch < 3 else 0)  # the first three: before the clock jumped
            recs = [record(10 * batch + i, defective=i % 2 == batch % 2, t=stamped) for i in range(4)]
            log.write(recs, [part_picture() for _ in recs])
            time.sleep(0.05)  # their pictures are made meanwhile
        log.flush()
    finally:
        log.close()
    con = open_reader(log_path)
    try:
        found = list(rows(con, Filter()))
    finally:
        con.close()
    assert len(found) == 12 and found[0]["id"] == 1  # the ids came again
    assert [r["has_image"] for r in found] == [r["defective"] for r in found]


def test_retention_by_size_is_applied_while_running_and_keeps_the_newest(log_path: Path):
    log = InspectionLog(LogConfig(log_path, max_bytes=300_000, retention_every_s=0.0))
    log.start_run(RUN)
    write_items(log, 3000, defective_every=2)
    assert log.used_bytes() <= 300_000
    con = open_reader(log_path)
    ids = [r[0] for r in con.execute("SELECT id FROM inspections ORDER BY id")]
    assert ids[-1] == 3000 and len(ids) < 3000  # the oldest went, the newest stayed
    log.close()
    assert os.path.getsize(log_path) <= 700_000  # the file stays bounded too (3000 rows would take ~6.7 MB)


def test_retention_gives_the_space_back_to_the_disk_also_for_an_older_log(log_path: Path):
    """Auto-vacuum was set after WAL mode, where SQLite ignores it, and the incremental vacuum was stepped once
    (one page): ``--log-max 1MB`` on a 2 MB log deleted items but the file stayed 2 MB, 407 of its 489 pages free.
    A new log now has it on; an older one is rewritten with it on when retention first deletes."""
    log = InspectionLog(LogConfig(log_path))
    log.start_run(RUN)
    write_items(log, 3000, defective_every=2)
    log.close()
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental, in a new log
    con.execute("PRAGMA auto_vacuum=NONE")
    con.execute("VACUUM")  # as older versions made every log
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    con.close()
    assert os.path.getsize(log_path) > 1_000_000
    for max_bytes in (600_000, 300_000):  # the older log rewritten once, then the incremental vacuum
        log = InspectionLog(LogConfig(log_path, max_bytes=max_bytes))
        assert log.used_bytes() <= 0.9 * max_bytes  # room to grow until the next retention (it stopped at 99.7%)
        log.close()
        assert max_bytes // 2 <= os.path.getsize(log_path) <= max_bytes + 100_000, os.path.getsize(log_path)
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("SELECT max(id) FROM inspections").fetchone()[0] == 3000  # the newest kept


def made_log(path: Path) -> None:
    """A log with one run and one item in it (a new log that no item was written to is removed when closed)."""
    log = InspectionLog(LogConfig(path))
    log.start_run(RUN)
    log.write([record(0, defective=False)])
    log.close()


def test_a_log_is_migrated_step_by_step(log_path: Path, monkeypatch: pytest.MonkeyPatch):
    made_log(log_path)
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, "ALTER TABLE inspections ADD COLUMN operator TEXT"])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", len(schema.MIGRATIONS))
    log = InspectionLog(LogConfig(log_path))
    cols = [r[1] for r in log.con.execute("PRAGMA table_info(inspections)")]
    assert "operator" in cols and log.con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION


def test_a_log_from_a_newer_tool_or_another_sqlite_file_is_refused_with_exit_7(tmp_path: Path, log_path: Path):
    made_log(log_path)
    con = sqlite3.connect(log_path)
    con.execute(f"PRAGMA user_version={schema.SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(OutputError, match="newer") as err:
        InspectionLog(LogConfig(log_path))
    assert err.value.exit_code == ExitCode.OUTPUT_ERROR
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)")
    with pytest.raises(OutputError, match="not an inspection log"):
        InspectionLog(LogConfig(other))
    (tmp_path / "text.db").write_text("hello, not a database at all" * 100)
    with pytest.raises(OutputError, match="not a defect-edge inspection log or is damaged"):
        InspectionLog(LogConfig(tmp_path / "text.db"))


def test_a_locked_log_is_a_clear_error_not_a_gap(log_path: Path):
    log = InspectionLog(LogConfig(log_path, busy_timeout_s=0.2))
    log.start_run(RUN)
    other = sqlite3.connect(log_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    with pytest.raises(OutputError, match="locked by another program") as err:
        log.write([record(1, defective=False)])
    assert err.value.exit_code == ExitCode.OUTPUT_ERROR
    other.execute("ROLLBACK")
    log.write([record(2, defective=False)])  # the lock is gone: writing works again
    assert [r["source"] for r in rows(open_reader(log_path), Filter())] == ["parts/p00002.png"]


def test_a_full_log_is_a_clear_error(log_path: Path):
    log = InspectionLog(LogConfig(log_path))
    log.start_run(RUN)
    pages = log.con.execute("PRAGMA page_count").fetchone()[0]
    log.con.execute(f"PRAGMA max_page_count={pages + 2}")  # what a full disk looks like to SQLite
    with pytest.raises(OutputError, match="full"):
        for i in range(0, 5000, 50):
            log.write([record(i + k, defective=True) for k in range(50)], [part_picture()] * 50)


def test_a_read_only_log_is_a_clear_error(log_path: Path):
    made_log(log_path)
    ro = sqlite3.connect(f"{log_path.as_uri()}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as raw:
        ro.execute("INSERT INTO runs (started) VALUES (1)")
    err = schema.log_error(log_path, raw.value, "writing")
    assert "read-only" in str(err) and str(log_path) in str(err) and err.exit_code == ExitCode.OUTPUT_ERROR


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_log_in_a_read_only_folder_is_a_clear_error(tmp_path: Path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="use another --log"):
            InspectionLog(LogConfig(folder / "station.db"))
    finally:
        folder.chmod(0o700)


def test_durations_and_sizes_as_typed():
    assert parse_duration("30d") == 30 * 86400 and parse_duration("12h") == 43200
    assert parse_size("2GB") == 2_000_000_000 and parse_size("500MiB") == 500 * 2**20
    for bad in ("30", "-1d", "3 days", "", "1M", "30D"):  # 1M was 1 minute, where a month was meant
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    with pytest.raises(ValueError, match="size"):
        parse_size("2 gallons")
    with pytest.raises(ValueError, match="size"):  # 400 digits are infinity as a float: no byte count
        parse_size("9" * 400 + "GB")
    with pytest.raises(ValueError, match="size"):  # finite, but not once multiplied by its unit (was a traceback)
        parse_size("1" * 300 + "TB")
    with pytest.raises(ValueError, match="duration"):
        parse_duration("9" * 400 + "s")


def test_the_hourly_rate_and_latency_agree_with_the_headline_and_the_station_page(station_log, log_path: Path):
    """edge-log printed "defective 455 (63.6%)" over an hourly "63.5%": the hour counted unreadable items in its
    denominator. Its p99 (7.085 ms) was not the page's (7.38 ms) on the same records: not the nearest rank."""
    from edge_runtime.metrics import nearest_rank
    from edge_runtime.station.live import LiveState

    t0 = time.time() // 3600 * 3600 - 1800  # half past the last hour: the 45 items fall in one hour
    recs = write_items(station_log, 40, t0=t0)
    broken = [record(40 + i, defective=False, t=t0 + 40 + i, error="parts/x.png: cannot decode") for i in range(5)]
    station_log.write(broken, [None] * 5)
    s = summary(open_reader(log_path), Filter())
    (hour,) = s["per_hour"]
    assert s["defect_rate"] == hour["rate"] == 0.25 and (hour["items"], hour["errors"]) == (45, 5)
    latencies = [r["latency_ms"] for r in recs]
    assert s["latency_ms_p99"] == round(nearest_rank(latencies, 99), 3)
    assert s["latency_ms_p50"] == round(nearest_rank(latencies, 50), 3)
    live = LiveState(station="line-3")
    try:
        live.add(recs + broken, [None] * 45, at=(time.monotonic(), t0))
        (bucket,) = live.rate(3.0)
        st = live.status()
    finally:
        live.stop()
    assert bucket["rate"] == st["defect_rate"] == 0.25 and bucket["errors"] == 5
    assert st["latency_ms_p99"] == s["latency_ms_p99"]


def test_a_quiet_live_sources_last_defect_gets_its_thumbnail_at_the_next_event(log_path: Path):
    """The thumbnails are stored with the log's next write: when a camera dropped after a defect, its picture stayed
    "pending" on the station page for the whole outage. The drop's event now stores what is ready."""
    from edge_runtime.station.listener import StationListener

    log = InspectionLog(LogConfig(log_path))
    log.start_run(RUN)
    listener = StationListener(log=log)
    try:
        (rid,) = log.write([record(0, defective=True)], [part_picture()])
        deadline = time.monotonic() + 10
        while not all(f.done() for f in log.pending):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        stored = sqlite3.connect(log_path).execute("SELECT count(*) FROM thumbnails").fetchone()[0]
        assert stored == 0  # made, not yet stored: no write since
        listener.on_event("camera: source dropped after 1 frame; reconnecting")
        reader = sqlite3.connect(log_path)
        assert reader.execute("SELECT inspection_id FROM thumbnails").fetchall() == [(rid,)]
    finally:
        listener.close()


def test_the_write_ahead_file_stays_bounded_under_steady_writing(log_path: Path):
    """A passive checkpoint never catches up with a writer that never pauses, and SQLite starts the WAL over only
    after one that did: the WAL grew to 1.7 GB in a long video run with --log-max 2MB. Past its limit (an eighth of
    --log-max, at least 1 MB) the checkpoint now truncates it."""
    import threading

    log = InspectionLog(LogConfig(log_path, max_bytes=1_000_000))
    log.start_run(RUN)
    wal = Path(f"{log_path}-wal")
    biggest, stop = [0], threading.Event()

    def watch() -> None:
        while not stop.wait(0.02):
            biggest[0] = max(biggest[0], wal.stat().st_size if wal.exists() else 0)

    watcher = threading.Thread(target=watch)
    watcher.start()
    deadline = time.monotonic() + 4.0
    while time.monotonic() < deadline:
        write_items(log, 50, defective_every=2)
    stop.set()
    watcher.join()
    log.close()
    assert biggest[0] < 8 * 2**20, f"the WAL reached {biggest[0] / 2**20:.1f} MB"
    assert os.path.getsize(log_path) <= 1_000_000  # and the log ends within --log-max (retention at close)


def test_a_log_deleted_during_the_run_is_written_back(station_log, log_path: Path):
    """`rm station.db*` under a running station: the run went on writing into the unlinked file, and at its end
    every record was gone, exit 0, no word."""
    write_items(station_log, 40)
    station_log.check_still_there()  # still there: nothing to do
    for leftover in (log_path, Path(f"{log_path}-wal"), Path(f"{log_path}-shm")):
        if leftover.exists():
            os.unlink(leftover)
    write_items(station_log, 10)
    with pytest.raises(OutputError, match="deleted during the run; its records were written back"):
        station_log.check_still_there()
    con = open_reader(log_path)
    try:
        assert len(list(rows(con, Filter(), limit=1000))) == 50
        assert summary(con, Filter())["items"] == 50
    finally:
        con.close()


def test_a_log_whose_folder_was_deleted_during_the_run_is_written_back(tmp_path: Path):
    """`rm -rf logs/` under a running station: the write-back failed ("unable to open database"), exit 7, and every
    record was lost; the folder is made again for it."""
    import shutil

    log_path = tmp_path / "logs" / "station.db"
    log_path.parent.mkdir()
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(RUN)
    try:
        write_items(log, 30)
        shutil.rmtree(log_path.parent)
        write_items(log, 5)
        with pytest.raises(OutputError, match=f"deleted during the run; its records were written back to {log_path}"):
            log.check_still_there()
    finally:
        with contextlib.suppress(OutputError):
            log.close()
    con = open_reader(log_path)
    try:
        assert summary(con, Filter())["items"] == 35
    finally:
        con.close()


def test_a_log_emptied_in_place_during_the_run_stops_the_run(station_log, log_path: Path):
    """`: > station.db` (logrotate's copytruncate) under a running station: the run went on writing into a damaged
    file and ended "interrupted; everything above was written", while edge-log could read none of its items."""
    write_items(station_log, 40)
    station_log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the records are in the file, as after 10 s
    os.truncate(log_path, 0)
    with pytest.raises(OutputError, match="inspection log emptied during the run by another program"):
        station_log.write([record(99, defective=False)], [None])
    with pytest.raises(OutputError, match="emptied during the run"):
        station_log.check_still_there()  # and at the end of the run, for a run that wrote nothing more


def test_a_log_cut_short_during_the_run_stops_the_run_before_a_checkpoint_hides_the_cut(tmp_path: Path):
    """`truncate -s 8192 station.db` under a running station: the run went on writing, its next checkpoint filled
    the cut with zeros, and it ended exit 0 while edge-log could read none of its items ("damaged"). The checkpoint
    thread finds the cut first, copies nothing, and the next write stops the run (exit 7)."""
    for cut in (8192, 0.5):  # near the start; half the file
        path = tmp_path / f"cut{cut}.db"
        log = InspectionLog(LogConfig(path, station="line-3", checkpoint_every_s=0.02))
        try:
            log.start_run(RUN)
            write_items(log, 400)
            with log.checkpointer.copying:  # no checkpoint between these items and the cut
                log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the records are in the file, as after 10 s
                write_items(log, 40)  # and these in the write-ahead file, for the next checkpoint to copy
                os.truncate(path, cut if cut > 1 else int(path.stat().st_size * cut))
            left = path.stat().st_size
            with pytest.raises(OutputError, match=rf"inspection log cut to {left} bytes of its \d+ during the run "
                                                  "by another program"):  # fmt: skip
                deadline = time.monotonic() + 5.0
                while time.monotonic() < deadline:
                    log.write([record(999, defective=False)], [None])
                    time.sleep(0.01)
            assert path.stat().st_size == left  # no checkpoint wrote past the cut: zeros there read as a whole log
            with pytest.raises(OutputError, match="cut to .* bytes of its"):
                log.check_still_there()  # and at the end of the run
        finally:
            log.close()


def test_a_cut_since_the_last_checkpoint_is_told_at_the_end_of_the_run(station_log, log_path: Path):
    write_items(station_log, 400)
    station_log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    os.truncate(log_path, 8192)
    with pytest.raises(OutputError, match=r"station.db: inspection log cut to 8192 bytes of its \d+ during the run"):
        station_log.check_still_there()


def test_a_cut_is_told_for_a_log_given_through_a_link(tmp_path: Path):
    """SQLite keeps the write-ahead files beside the file a link names, not beside the link."""
    (tmp_path / "disk").mkdir()
    (tmp_path / "station.db").symlink_to(tmp_path / "disk" / "line3.db")
    log = InspectionLog(LogConfig(tmp_path / "station.db", station="line-3"))
    try:
        log.start_run(RUN)
        write_items(log, 400)
        log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        os.truncate(tmp_path / "disk" / "line3.db", 8192)
        with pytest.raises(OutputError, match="station.db: inspection log cut to 8192 bytes"):
            log.check_still_there()
    finally:
        log.close()


def test_a_log_shorter_than_its_header_says_while_a_reader_holds_a_checkpoint_back_is_whole(log_path: Path):
    """A checkpoint that a reader's older snapshot stops part-way copies page 1, which names the size of a commit
    it copied, but not a later version of that commit's last page: the file stays shorter than its header says for
    as long as the reader reads. A check of the file's size against its header had stopped healthy stations."""
    import struct

    for extra in range(20, 40):  # enough items to add a page; one of these counts leaves the state below
        path = log_path.with_name(f"r{extra}.db")
        log = InspectionLog(LogConfig(path, station="line-3"))
        reader = None
        try:
            log.start_run(RUN)
            log.write([record(i, defective=False) for i in range(300)])
            log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            log.write([record(1000 + i, defective=False) for i in range(extra)])  # the log grows by a page
            reader = sqlite3.connect(path, isolation_level=None)
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM inspections").fetchone()  # a snapshot: the checkpoint stops there
            log.write([record(2000, defective=False)], [None])  # into that new last page again
            log.con.execute("PRAGMA wal_checkpoint(PASSIVE)")
            named = struct.unpack_from(">I", path.read_bytes(), 28)[0] * 4096
            if named <= path.stat().st_size:
                continue
            log.check_still_there()  # whole: no error
            log.write([record(3000, defective=False)], [None])
            break
        finally:
            if reader is not None:
                reader.close()
            log.close()
    else:
        pytest.fail("no count of items left the file shorter than its header says; the test needs another")


def test_stations_sharing_a_log_with_retention_and_readers_are_never_taken_for_a_cut_one(log_path: Path):
    """Two stations writing one log (their checkpoints copy each other's pages), --log-max and --log-keep giving
    pages back, readers holding snapshots that stop checkpoints part-way, and a checkpoint every 5 ms: the file is
    shorter than its latest commit most of the time, and none may be stopped as cut."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from edge_runtime.station.log import InspectionLog, LogConfig\n"
        "from tests.edge_runtime.station.conftest import RUN, part_picture, record\n"
        "keep = float(sys.argv[3]) if sys.argv[3] != '-' else None\n"
        "log = InspectionLog(LogConfig(Path(sys.argv[1]), station=sys.argv[2], keep_s=keep, max_bytes=300_000,\n"
        "                              retention_every_s=0.05, checkpoint_every_s=0.005))\n"
        "log.start_run(RUN)\n"
        "end, i = time.monotonic() + 3.0, 0\n"
        "while time.monotonic() < end:\n"
        "    recs = [record(i + k, defective=(i + k) % 3 == 0, t=time.time()) for k in range(8)]\n"
        "    log.write(recs, [part_picture() for _ in recs])\n"
        "    i += 8\n"
        "log.check_still_there()\n"
        "log.close()\n"
    )
    seed = InspectionLog(LogConfig(log_path, station="line-2"))  # both open an existing log
    seed.start_run(RUN)
    write_items(seed, 100)
    seed.close()
    stations = [
        subprocess.Popen([sys.executable, "-c", code, str(log_path), name, keep], cwd=REPO, stderr=subprocess.PIPE)
        for name, keep in (("line-3", "1"), ("line-4", "-"))
    ]
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:  # a reader as the station page's: snapshots held a moment
        with contextlib.suppress(sqlite3.OperationalError), contextlib.closing(open_reader(log_path)) as con:
            con.execute("BEGIN")
            con.execute("SELECT count(*) FROM inspections").fetchone()
            time.sleep(0.2)
            con.execute("COMMIT")
    for proc in stations:
        err = proc.communicate(timeout=60)[1].decode()
        assert proc.returncode == 0 and "cut to" not in err, err


def test_a_deleted_log_whose_name_was_taken_meanwhile_is_written_back_beside_it(station_log, log_path: Path):
    """`rm station.db*` and a second run making a new station.db: the first run's records could not be written back
    ("output file already exists"), and the line said they "were written"."""
    write_items(station_log, 12)
    for leftover in (log_path, Path(f"{log_path}-wal"), Path(f"{log_path}-shm")):
        if leftover.exists():
            os.unlink(leftover)
    other = InspectionLog(LogConfig(log_path, station="line-4"))
    other.start_run(RUN)
    write_items(other, 3)
    other.close()
    with pytest.raises(OutputError, match=r"written back to .*station\.recovered-\d+\.db"):
        station_log.check_still_there()
    (recovered,) = log_path.parent.glob("station.recovered-*.db")
    for db, items in ((recovered, 12), (log_path, 3)):
        con = open_reader(db)
        try:
            assert summary(con, Filter())["items"] == items
        finally:
            con.close()


def test_a_log_renamed_during_the_run_is_left_where_it_went(log_path: Path):
    """logrotate's rename (station.db -> station.db.1): the records are in the renamed log, which is not a loss;
    the deletion check took it for one, wrote a second copy under the old name and ended exit 7."""
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(RUN)
    write_items(log, 20)
    moved = log_path.with_name("station.db.1")
    os.rename(log_path, moved)
    for side in ("-wal", "-shm"):
        if Path(f"{log_path}{side}").exists():
            os.rename(f"{log_path}{side}", f"{moved}{side}")
    write_items(log, 5)
    log.check_still_there()  # no error: nothing was lost
    log.close()
    assert not log_path.exists()
    con = open_reader(moved)
    try:
        assert summary(con, Filter())["items"] == 25
    finally:
        con.close()


def test_retention_runs_while_no_item_comes(log_path: Path):
    """--log-keep was applied only with a write: a station whose camera was away kept every item past its
    retention for as long as it stood (643 items of a 1-minute log, 189 s old)."""
    log = InspectionLog(LogConfig(log_path, station="line-3", keep_s=30, retention_every_s=0.2,
                                  checkpoint_every_s=0.1))  # fmt: skip
    try:
        log.start_run(RUN)
        write_items(log, 10, t0=time.time() - 25)  # kept now, past --log-keep within seconds
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            con = open_reader(log_path)
            try:
                left = summary(con, Filter())["items"]
            finally:
                con.close()
            if left < 10:
                break
            time.sleep(0.2)
        assert left < 10, "retention never ran without a write"
    finally:
        log.close()


def test_a_log_whose_checkpoints_grow_and_shrink_it_is_never_taken_for_a_cut_one(log_path: Path):
    """A checkpoint writes page 1, which names the new size, before the pages that make the file that long: read
    between the two, a whole log looks cut (0.2% of reads in a video run). Checkpoints every 5 ms and retention
    that gives pages back (the file shrinks) must not stop the run: a check of the file's size against its header
    stopped healthy stations (exit 7), and was taken out."""
    log = InspectionLog(LogConfig(log_path, station="line-3", max_bytes=300_000, retention_every_s=0.05,
                                  checkpoint_every_s=0.005))  # fmt: skip
    try:
        log.start_run(RUN)
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            write_items(log, 64, defective_every=3)
        log.check_still_there()
    finally:
        log.close()
    assert log.retention_deleted > 0


def test_a_log_that_another_process_is_still_checkpointing_is_not_taken_for_a_cut_one(station_log, log_path: Path):
    """Another station writing the same log checkpoints it too: the file grows to the size its header names a
    moment after the header says so."""
    import threading

    write_items(station_log, 400)
    station_log.con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    whole = log_path.read_bytes()
    os.truncate(log_path, len(whole) // 2)  # page 1 copied, the pages after it not yet

    def copy_the_rest() -> None:
        time.sleep(0.06)
        with open(log_path, "r+b") as f:
            f.seek(len(whole) // 2)
            f.write(whole[len(whole) // 2 :])

    copier = threading.Thread(target=copy_the_rest)
    copier.start()
    station_log.write([record(999, defective=False)], [None])  # no error: the file grew while it looked
    copier.join()
    station_log.check_still_there()


def _count_in_another_process(path: Path) -> int | None:
    """Items as edge-log, another process, reads them (one in this process would share the writer's files); None
    where the log has no items table."""
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute('SELECT count(*) FROM " \
           "sqlite_master WHERE name = ?', ('inspections',)).fetchone()[0] and c.execute('SELECT count(*) FROM " \
           "inspections').fetchone()[0] or -1)"  # fmt: skip
    found = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    return None if int(found.stdout) < 0 else int(found.stdout)


LISTS_LOCKS = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="the system does not list its locks")


@LISTS_LOCKS
def test_write_ahead_files_deleted_during_the_run_are_made_anew_with_every_item_in_the_log(log_path: Path):
    """`rm station.db-wal station.db-shm` under a running station: the run went on writing into the deleted files,
    edge-log read the log without their items, and a SIGKILL lost them. The next write copies them into the log
    and opens it anew; one line says so."""
    said: list[str] = []
    log = InspectionLog(LogConfig(log_path, station="line-3", checkpoint_every_s=3600), say=said.append)
    try:
        log.start_run(RUN)
        write_items(log, 40)
        wal, shm = Path(f"{log_path}-wal"), Path(f"{log_path}-shm")
        os.unlink(wal)
        os.unlink(shm)
        assert not _count_in_another_process(log_path)  # the symptom: edge-log reads an older copy, without them
        write_items(log, 10)
        assert len(said) == 1 and "write-ahead files (station.db-wal, station.db-shm" in said[0]
        assert "were deleted during the run by another program" in said[0] and "nothing is lost" in said[0]
        assert wal.exists() and shm.exists()
        assert _count_in_another_process(log_path) == 50  # the 10 went to the new files, where edge-log reads
        alone = log_path.with_name("alone.db")
        alone.write_bytes(log_path.read_bytes())  # the log file alone: what a SIGKILL now would leave of the 40
        assert _count_in_another_process(alone) >= 40
        write_items(log, 5)
        assert len(said) == 1
    finally:
        log.close()
    assert _count_in_another_process(log_path) == 55


@LISTS_LOCKS
def test_deleted_write_ahead_files_are_made_anew_only_once_no_other_process_has_the_log_open(log_path: Path):
    """Another station writing the same log still writes the deleted files, and a reader that opened the log since
    (edge-log, the station page) made new ones of its own: joined by this run, either would damage the log. The run
    waits until it has the log alone, and says so when that takes long."""
    said: list[str] = []
    log = InspectionLog(LogConfig(log_path, station="line-3", checkpoint_every_s=3600), say=said.append)
    code = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('SELECT * FROM sqlite_master')" \
           ".fetchall(); print('open', flush=True); sys.stdin.readline()"  # fmt: skip
    try:
        log.start_run(RUN)
        write_items(log, 20)
        os.unlink(f"{log_path}-wal")
        os.unlink(f"{log_path}-shm")
        reader = subprocess.Popen([sys.executable, "-c", code, str(log_path)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert reader.stdout is not None and reader.stdout.readline() == "open\n"
        write_items(log, 10)
        assert said == []  # a reader is done within a second or so: not a word yet
        assert log.side_files_since is not None
        log.side_files_since -= 6.0  # as if it had kept the log open for 6 s
        log.next_renewal = 0.0
        write_items(log, 10)
        assert len(said) == 1 and "another program has the log open" in said[0] and "never delete" in said[0]
        reader.communicate("\n", timeout=10)
        log.next_renewal = 0.0  # not a second later: now
        write_items(log, 10)
        assert len(said) == 2 and "nothing is lost" in said[1]
        assert _count_in_another_process(log_path) == 50
    finally:
        log.close()
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


# The schema edge-infer wrote before the log kept the model file's hash (schema 1), as it was released.
SCHEMA_1 = """
CREATE TABLE runs (id INTEGER PRIMARY KEY, started REAL NOT NULL, station TEXT NOT NULL, source TEXT NOT NULL,
    model_version TEXT NOT NULL, model_file TEXT NOT NULL, providers TEXT NOT NULL, precision TEXT NOT NULL,
    threshold REAL NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE inspections (id INTEGER PRIMARY KEY, time REAL NOT NULL, run_id INTEGER NOT NULL REFERENCES runs(id),
    source TEXT NOT NULL, frame INTEGER, label TEXT, score REAL, threshold REAL NOT NULL, defective INTEGER,
    latency_ms REAL, error TEXT, warning TEXT, extra TEXT);
CREATE INDEX inspections_time ON inspections(time);
CREATE INDEX inspections_defective ON inspections(defective, time);
CREATE TABLE thumbnails (inspection_id INTEGER PRIMARY KEY REFERENCES inspections(id) ON DELETE CASCADE,
    jpeg BLOB NOT NULL);
INSERT INTO runs VALUES (1, 1780000000.0, 'line-3', 'parts/', 'ab12cd34ef56', '/models/defectnet_int8.onnx',
    '["CPUExecutionProvider"]', 'int8', 0.41, 'box', 4242);
INSERT INTO inspections VALUES (1, 1780000001.0, 1, 'parts/p1.png', NULL, 'defective', 0.97, 0.41, 1, 0.5, NULL,
    NULL, NULL);
PRAGMA user_version = 1;
"""


def test_a_log_of_the_schema_before_the_model_hash_is_read_as_it_is_then_migrated_once(log_path: Path):
    """The log named the model's path only. A log made before it kept the hash is read by edge-log unchanged,
    its run with no hash (not a made-up one), and migrated by the next edge-infer --log, once."""
    from click.testing import CliRunner

    from edge_runtime.station.log_cli import main

    con = sqlite3.connect(log_path)
    con.executescript(SCHEMA_1)
    con.close()
    result = CliRunner().invoke(main, ["summary", str(log_path)])
    assert result.exit_code == 0, result.output
    assert "defectnet_int8.onnx" in result.output and "sha256 not logged" in result.output
    (row,) = rows(open_reader(log_path), Filter())
    assert row["model_sha256"] is None and row["score"] == 0.97
    assert sqlite3.connect(log_path).execute("PRAGMA user_version").fetchone()[0] == 1  # a reader never migrates
    for i, sha in enumerate(("a" * 64, "b" * 64), start=2):  # the second open finds the column: no second ALTER
        log = InspectionLog(LogConfig(log_path, station="line-3"))
        log.start_run(replace(RUN, model_sha256=sha))
        log.write([record(i, defective=False)])
        log.close()
    con = sqlite3.connect(log_path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION == 2
    assert con.execute("SELECT id, model_sha256 FROM runs").fetchall() == [(1, None), (2, "a" * 64), (3, "b" * 64)]
    got = CliRunner().invoke(main, ["summary", str(log_path), "--json"])
    assert [m["model_sha256"] for m in json.loads(got.output)["models"]] == [None, "a" * 64, "b" * 64]


@pytest.mark.parametrize("old", [True, False], ids=["schema-1 log", "new log"])
def test_a_log_another_station_migrates_meanwhile_is_not_migrated_twice(log_path: Path, old: bool):
    """Two stations sharing a log, started together: each read the log's version, then the second ran the first's
    migration again once it got the lock ("duplicate column name: model_sha256", or "table runs already exists"
    for a new log), exit 7. The other station's migration is made here at that moment, on its own connection."""
    if old:
        sqlite3.connect(log_path).executescript(SCHEMA_1)
    done: list[str] = []

    def other_station_first(sql: str) -> None:
        if sql.startswith("BEGIN IMMEDIATE") and not done:  # this station has read the version, not yet locked
            done.append(sql)
            other = sqlite3.connect(log_path, isolation_level=None)
            other.execute("PRAGMA journal_mode=WAL")
            schema.migrate(other, log_path)
            other.close()

    con = sqlite3.connect(log_path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.set_trace_callback(other_station_first)
    schema.migrate(con, log_path)
    con.set_trace_callback(None)
    assert done and con.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION
    con.close()
    log = InspectionLog(LogConfig(log_path, station="line-3"))
    log.start_run(replace(RUN, model_sha256="c" * 64))
    log.write([record(5, defective=True)])
    log.close()
    assert [r["model_sha256"] for r in rows(open_reader(log_path), Filter())][-1] == "c" * 64
