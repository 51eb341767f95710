"""Where verdicts go: JSON lines (stdout or file) and CSV, flushed per item, plus the run summary.

Every record has the same keys (:data:`RECORD_KEYS`); ``frame`` is ``null`` for image files, and an item
that could not be read has ``label``/``score``/``defective``/``latency_ms`` null and ``error`` set:

>>> record_for(Item("a.png"), Prediction("ok", 0.01, False, 0.4), time_s=0.0)["label"]
'ok'
"""

from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import io
import json
import os
import stat
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from edge_runtime.atomic import write_all
from edge_runtime.errors import OutputError, printable, stdout_remedy
from edge_runtime.inputs import Item
from edge_runtime.model import Prediction
from edge_runtime.stdout_file import StdoutFile, records_back
from edge_runtime.summary import LatencyReservoir, Summary, no_part, score_text

__all__ = ["RECORD_KEYS", "FileSink", "JsonLinesSink", "LatencyReservoir", "StdoutClosed", "Summary"]

RECORD_KEYS = (
    "source", "frame", "label", "score", "defective", "latency_ms", "error", "warning", "time", "defect_box",
    "unlike_training", "asymmetry",
)  # fmt: skip


def utf8_names(value: Any) -> Any:
    r"""``value`` (a record, or any of its strings, lists and dicts) with file names as a UTF-8 locale decodes them.

    Under a locale whose file names decode as ASCII (``LC_ALL=C`` with ``PYTHONUTF8=0``), a name's UTF-8 bytes
    came out as surrogate escapes, ``pi\udcc3\udca8ces`` for ``pièces``, which strict JSON parsers reject. Only
    bytes that are not UTF-8 stay escaped (``\udcff``), as in a UTF-8 locale: ``os.fsencode`` gives them back.

    >>> utf8_names({"source": "pi\udcc3\udca8ces/\udcff.png", "frame": None})
    {'source': 'pièces/\udcff.png', 'frame': None}
    """
    if isinstance(value, str):
        if value.isascii():  # nearly every string of every record: nothing to decode
            return value
        try:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a lone surrogate that no file name decodes to: left as it is
            return value
    if isinstance(value, (list, tuple)):
        return [utf8_names(v) for v in value]
    if isinstance(value, dict):
        return {k: utf8_names(v) for k, v in value.items()}
    return value


def csv_cell(value: Any) -> Any:
    """A CSV cell: empty for None; a list (the station check's reasons, a box) joined by "; ", as edge-log's CSV
    has them (it was Python's ``['no part found ...']``, quotes and brackets included).

    Text that a spreadsheet would read as a formula (``=cmd|'/c calc'!A1`` as a station name or a file name: Excel
    runs it when the rejects file is opened) starts with ``'``, which the spreadsheet shows as text.

    >>> csv_cell(None), csv_cell(["dark", "blurred"]), csv_cell([1, 2, 3, 4]), csv_cell(0.5), csv_cell(-0.5)
    ('', 'dark; blurred', '1; 2; 3; 4', 0.5, -0.5)
    >>> csv_cell("=SUM(A1)"), csv_cell("+1+1"), csv_cell("parts/=x.jpg")
    ("'=SUM(A1)", "'+1+1", 'parts/=x.jpg')
    """
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        value = "; ".join(map(str, value))
    if isinstance(value, str) and value[:1] in FORMULA_STARTS:
        return "'" + value
    return value


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # a cell a spreadsheet evaluates (OWASP's CSV injection list)


def record_for(item: Item, pred: Prediction | None, *, time_s: float | None = None) -> dict[str, Any]:
    """The output record of one item (``pred`` None when the item has an error)."""
    stamp = datetime.fromtimestamp(time.time() if time_s is None else time_s, tz=timezone.utc)
    rec: dict[str, Any] = {"source": item.source, "frame": item.frame}
    if pred is None:
        rec |= {"label": None, "score": None, "defective": None, "latency_ms": None, "error": item.error}
    else:
        verdict = pred.to_dict()  # four keys here, the others below in RECORD_KEYS' order
        rec |= {k: verdict[k] for k in ("label", "score", "defective", "latency_ms")} | {"error": None}
    rec["warning"] = item.warning
    rec["time"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    # edge-infer --heatmap: [x0, y0, x1, y1] in source pixels where the map is hottest; null when OK or without it
    box = None if pred is None else pred.defect_box
    rec["defect_box"] = None if box is None else [int(v) for v in box]
    # station check: why the item looks unlike the training images (null when it looks like them, or unchecked)
    rec["unlike_training"] = item.unlike_training or None
    # the symmetry look: the part's asymmetry peak where it was measured (items just below the threshold), else null
    rec["asymmetry"] = None if pred is None or pred.asymmetry is None else round(pred.asymmetry, 2)
    return rec


class StdoutClosed(Exception):
    """The reader of stdout went away (``edge-infer --json | head -1``): the run ends quietly."""


def _silence_stdout(stream: IO[str]) -> None:
    """After stdout failed, point fd 1 at /dev/null so the interpreter's final flush cannot print an error."""
    try:
        fd = stream.fileno()
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, fd)
        os.close(null)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass


class JsonLinesSink:
    """One JSON object per line on a text stream (stdout), flushed after each, so a crash loses nothing written.

    Non-UTF-8 file names stay exact: JSON escapes them (``\\udcff``), and ``os.fsencode`` gives the bytes back.
    """

    def __init__(self, stream: IO[str], *, human: bool = False) -> None:
        self.stream, self.human = stream, human
        self.file = StdoutFile.of(stream)  # where stdout is a regular file, else None

    @staticmethod
    def human_line(rec: dict[str, Any]) -> str:
        where = rec["source"] if rec["frame"] is None else f"{rec['source']} frame {rec['frame']}"
        if rec["error"] is not None:
            line = f"ERROR      {rec['error']}"
        else:
            line = f"{rec['label']:<10} {score_text(rec['score']):<9} {where}"
            if rec.get("warning"):
                line += f"  (warning: {rec['warning']})"
            if no_part(rec):  # the whole frame was judged: an empty tray, a lens cap, an unreadable exposure
                line += "  (no part found: the whole frame was judged)"
            elif unlike := rec.get("unlike_training"):  # said only in the end's summary: a live run never ends
                more = f"; +{len(unlike) - 1} more" if len(unlike) > 1 else ""
                line += f"  (unlike the training images: {unlike[0]}{more})"
        # one item, one line: a newline or other control character in a file name is shown escaped, never obeyed
        line = printable(line)
        return line.encode("utf-8", "backslashreplace").decode("utf-8")

    def write(self, rec: dict[str, Any]) -> None:
        text = self.human_line(rec) if self.human else json.dumps(utf8_names(rec), allow_nan=False)
        try:
            if self.file is not None:
                encoding = getattr(self.stream, "encoding", None) or "utf-8"
                self.stream.flush()  # nothing of ours is left in the text layer's buffer
                self.file.write((text + "\n").encode(encoding, "backslashreplace"))
            else:
                self.stream.write(text + "\n")
                self.stream.flush()
        except BrokenPipeError as exc:
            _silence_stdout(self.stream)
            raise StdoutClosed() from exc
        except OSError as exc:
            _silence_stdout(self.stream)
            why = stdout_remedy(exc)
            raise OutputError(f"stdout: cannot write ({exc.strerror or exc}); {why}") from exc

    def close(self) -> None:
        """The end of the run: a file stdout is redirected to that was deleted meanwhile gets its records back."""
        try:
            if self.file is not None:
                self.file.check_still_there()
        finally:
            if self.stream not in (sys.stdout, sys.stderr):
                self.stream.close()


def write_advice(exc: OSError) -> str:
    """What to do about a failed write of an ``--output`` file, by its cause.

    >>> write_advice(OSError(errno.EFBIG, "File too large"))
    "over this process's file-size limit (ulimit -f): raise it or choose another --output"
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space or choose another --output"
    if exc.errno == errno.EFBIG:
        return "over this process's file-size limit (ulimit -f): raise it or choose another --output"
    if exc.errno == errno.EPIPE:
        return "the program reading it went away: keep it reading, or choose another --output"
    if exc.errno == errno.ENXIO:
        return "no program is reading this FIFO: start its reader first, or choose another --output"
    return "choose another --output"


class FileSink:
    """``--output``: records appended with one ``write()`` each, straight to the file (nothing buffered).

    The file is locked (``flock``) for the run: a second ``edge-infer`` on the same file is refused instead of
    interleaving lines. A failed write (full disk) is cut back to the last complete line and raises
    :class:`OutputError` (exit 7). CSV cells hold non-UTF-8 file names as their original bytes.

    ``json_array`` (``--output FILE.json``): one JSON document, an array with a record per line. The closing
    bracket is written after each record and overwritten by the next, so the file parses after every item, also
    when the run is killed. Onto a pipe or FIFO the bracket is written once, at :meth:`close`.
    """

    def __init__(self, path: Path, *, csv_format: bool, json_array: bool = False, keep: bool = False) -> None:
        # keep (--append): this run's records follow the file's own; it is never emptied
        self.path, self.csv_format, self.json_array, self.keep = path, csv_format, json_array, keep
        self.records = 0
        self.end = 0  # a .json file's size after this run's last write (see _closing_at)
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        # Lines are appended wherever the file ends: emptied under a run (logrotate's copytruncate, `: > r.jsonl`),
        # the next line starts it again instead of following a hole of NUL bytes. A .json file's array is closed
        # in place instead (write).
        self.append = not json_array
        flags |= os.O_APPEND if self.append else 0
        self.created = False  # made by this run: removed again if the run never began (its source did not open)
        try:
            try:
                self.fd = os.open(path, flags | os.O_EXCL, 0o644)
                self.created = True
            except FileExistsError:
                self.fd = os.open(path, flags, 0o644)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); {write_advice(exc)}") from exc
        try:
            st = os.fstat(self.fd)
            self.regular = stat.S_ISREG(st.st_mode)
            self._lock()
            fcntl.fcntl(self.fd, fcntl.F_SETFL, fcntl.fcntl(self.fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            if json_array and self.regular and st.st_size == 0:
                self._write(b"[\n]\n")  # a new file parses too, should the run stop before its source opens
                os.lseek(self.fd, 0, os.SEEK_SET)
            self.rfd = -1  # a .json file read back after each record (see write); -1: not read back
            if json_array and self.regular:
                with contextlib.suppress(OSError):
                    self.rfd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except BaseException:
            os.close(self.fd)
            raise
        self.begun = False

    def begin(self) -> None:
        """Empty the file and write the CSV header: once the run's source is open. A run that fails to start (a
        video that cannot be opened, a missing camera) leaves the last run's records as they were."""
        if self.begun:
            return
        self.begun = True
        kept = self.keep and self.regular and os.fstat(self.fd).st_size > 0  # its header is there (run_outputs)
        if self.regular and not self.keep:
            try:
                os.ftruncate(self.fd, 0)
            except OSError as exc:
                why = exc.strerror or exc
                raise OutputError(f"{self.path}: cannot write ({why}); choose another --output") from exc
        if self.csv_format and not kept:
            self._write(self._csv_row(list(RECORD_KEYS)))
        elif self.json_array:
            self._write(b"[\n]\n" if self.regular else b"[\n")
            self.end = 4

    def _lock(self) -> None:
        if not self.regular:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise OutputError(
                    f"{self.path}: another process is writing this file (it is locked); choose another --output"
                ) from exc
            # a file system without locks (some network mounts): write unlocked rather than not at all

    @staticmethod
    def _csv_row(cells: list[Any]) -> bytes:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\r\n").writerow(cells)
        return buf.getvalue().encode("utf-8", "surrogateescape")

    def encode(self, rec: dict[str, Any]) -> bytes:
        if self.csv_format:
            return self._csv_row([csv_cell(rec.get(k)) for k in RECORD_KEYS])
        return (json.dumps(utf8_names(rec), allow_nan=False) + "\n").encode("ascii")

    def _write(self, data: bytes, *, restore: bytes = b"") -> None:
        start = 0
        if self.regular:
            start = os.fstat(self.fd).st_size if self.append else os.lseek(self.fd, 0, os.SEEK_CUR)
        try:
            write_all(self.fd, data)
        except OSError as exc:
            if self.regular:
                try:  # leave no torn line behind; a JSON array gets its closing bracket back
                    os.ftruncate(self.fd, start)
                    os.lseek(self.fd, start, os.SEEK_SET)
                    if restore:
                        os.write(self.fd, restore)
                except OSError:
                    pass
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc}); {write_advice(exc)}") from exc

    def write(self, rec: dict[str, Any]) -> None:
        self.begin()
        if not self.json_array:
            data = self.encode(rec)
            self._write(data)
            if self.csv_format and self.regular and os.fstat(self.fd).st_size == len(data):
                # the row landed first in a file emptied under the run: the header goes before it again
                os.ftruncate(self.fd, 0)
                self._write(self._csv_row(list(RECORD_KEYS)) + data)
            return
        data = self.encode(rec)[:-1]
        if not self.regular:
            self._write((b",\n" if self.records else b"") + data)
        elif (at := self._closing_at()) is None:
            os.lseek(self.fd, 0, os.SEEK_SET)  # emptied under the run: the array starts again with this record
            self._write(b"[\n" + data + b"\n]\n", restore=b"[\n]\n")
            self.records = 0
        else:  # over the closing bracket, "[\n]\n" or "...}\n]\n" (_write puts it back on a failure)
            closing = b"]\n" if self.records == 0 else b"\n]\n"
            os.lseek(self.fd, at - len(closing), os.SEEK_SET)
            self._write((b",\n" if self.records else b"") + data + b"\n]\n", restore=closing)
            if self.rfd >= 0 and os.pread(self.rfd, 1, 0) == b"\0":
                # emptied between the size check and the write: the record landed after a hole of NUL bytes
                os.ftruncate(self.fd, 0)
                os.lseek(self.fd, 0, os.SEEK_SET)
                self._write(b"[\n" + data + b"\n]\n", restore=b"[\n]\n")
                self.records = 0
        self.records += 1
        self.end = os.lseek(self.fd, 0, os.SEEK_CUR) if self.regular else 0

    def _closing_at(self) -> int | None:
        """Where this run's .json file ends (its closing bracket just before); None for a file emptied under the
        run. A file changed some other way (cut short, written by another program) is :class:`OutputError`:
        records written there would not make one JSON document."""
        try:
            size = os.fstat(self.fd).st_size
        except OSError as exc:
            raise OutputError(f"{self.path}: cannot write ({exc.strerror or exc}); choose another --output") from exc
        if size == 0:
            return None
        if size == self.end:
            return size
        raise OutputError(
            f"{self.path}: changed by another program during the run (it no longer ends with this run's records); "
            "give each program its own --output"
        )

    def close(self) -> None:
        if self.fd >= 0:
            try:
                if self.json_array and self.begun and not self.regular:
                    self._write(b"\n]\n" if self.records else b"]\n")
                if self.created and self.regular and not self.begun:
                    self._remove_unused()
                if self.regular and self.begun:
                    self._check_still_there()
            finally:
                os.close(self.fd)
                self.fd = -1
                if self.rfd >= 0:
                    os.close(self.rfd)
                    self.rfd = -1

    def _check_still_there(self) -> None:
        """A file deleted during the run (a clean-up job, ``rm`` to "reset" it) took every record with it, and the
        run said nothing, exit 0. Its records are still readable through this run's descriptor: they are written
        back under the same name (or beside it, should another file have taken the name), and the run ends
        with :class:`OutputError` saying so."""
        try:
            if os.fstat(self.fd).st_nlink > 0:
                return
        except OSError:
            return
        records_back(self.fd, self.path, deleted=f"{self.path}: deleted during the run",
                     keep="keep --output files until the run has ended")  # fmt: skip

    def _remove_unused(self) -> None:
        """A file this run made and never began (its source did not open): left, it read as a run that judged
        nothing. Only while it is still the file this run opened."""
        with contextlib.suppress(OSError):
            mine, there = os.fstat(self.fd), os.stat(self.path)
            if (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino):
                os.unlink(self.path)
