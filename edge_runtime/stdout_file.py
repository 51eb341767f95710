"""stdout redirected to a regular file (``edge-infer --json > verdicts.jsonl``, a service's
``StandardOutput=file:``): each record written whole, and the file's fate during the run checked as ``--output``'s
is.

>>> StdoutFile.of(io.StringIO()) is None      # not a file: written as a stream
True
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import IO, NoReturn

from edge_runtime.atomic import write_all, write_back
from edge_runtime.errors import OutputError, printable


class StdoutFile:
    """The regular file behind stdout: its descriptor, whether it appends (``>>``), and its path where ``/proc``
    tells it (None elsewhere)."""

    def __init__(self, fd: int, *, appends: bool, path: Path | None) -> None:
        self.fd, self.appends, self.path = fd, appends, path

    @classmethod
    def of(cls, stream: IO[str]) -> StdoutFile | None:
        """The file behind ``stream`` where it is a regular file still in a folder; else None."""
        try:
            fd = stream.fileno()
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            appends = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND)
        except (OSError, ValueError, io.UnsupportedOperation, AttributeError):
            return None
        path = None
        if st.st_nlink > 0:  # a file deleted before the run has no name to write it back to
            with contextlib.suppress(OSError):
                path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        return cls(fd, appends=appends, path=path)

    def write(self, data: bytes) -> None:
        """One record, cut back to the last complete line when the write fails: on a full disk `--json > v.jsonl`
        ended with a torn line, and that record was counted as written. A file emptied under the run (logrotate's
        copytruncate) is written from its new end: the records had followed a hole of NUL bytes as long as the
        file had been, and no JSON reader could read it. Raises ``OSError``."""
        if self.appends:
            start = os.fstat(self.fd).st_size
        else:
            start = os.lseek(self.fd, 0, os.SEEK_CUR)
            if (size := os.fstat(self.fd).st_size) < start:  # emptied, or cut, by another program
                start = os.lseek(self.fd, size, os.SEEK_SET)
        try:
            write_all(self.fd, data)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, start)
                os.lseek(self.fd, start, os.SEEK_SET)
            raise

    def check_still_there(self) -> None:
        """A file deleted during the run (a clean-up job, ``rm verdicts.jsonl``) took every record with it, exit 0,
        not a word. They are still readable through stdout's descriptor: written back under its name (beside it
        should another file have taken it), then :class:`OutputError` says so, as for a deleted ``--output``."""
        try:
            if self.path is None or os.fstat(self.fd).st_nlink > 0:
                return  # still there, or renamed (a rotation): complete where it went
        except OSError:
            return
        deleted = f"{printable(str(self.path))}: the file stdout is redirected to was deleted during the run"
        records_back(self.fd, self.path, deleted=deleted, keep="keep it until the run has ended", shown=printable)


def records_back(fd: int, path: Path, *, deleted: str, keep: str, shown: Callable[[str], str] = str) -> NoReturn:
    """A deleted output's records, still readable through ``fd``, written back at ``path`` (or beside it), then
    :class:`OutputError` saying ``deleted`` and where they went (or why they could not be written back)."""
    try:
        where = write_back(fd, path)
    except OSError as exc:
        raise OutputError(f"{deleted}, and its records could not be written back ({exc.strerror or exc})") from exc
    raise OutputError(f"{deleted}; its records were written back to {shown(str(where))}; {keep}")
