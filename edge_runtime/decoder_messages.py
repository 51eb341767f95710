"""Decoder messages: libjpeg's and libpng's warnings ("Corrupt JPEG data: ...") go to file descriptor 2 from C, not
through Python. :func:`imdecode_checked` decodes with fd 2 pointed at a scratch file and hands back the lines that
belong to the image, so that they become the item's warning instead of leaking to stderr.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

import cv2
import numpy as np

from edge_runtime.errors import resource_error


def _scratch_fd() -> int:
    """A file descriptor of an unnamed scratch file: a temporary file, else (no writable temporary folder: a
    read-only root, ``docker --read-only``) one in memory. Without it every image had failed with "No usable
    temporary directory found" and the run blamed the source."""
    try:
        with tempfile.TemporaryFile() as f:
            return os.dup(f.fileno())
    except OSError as exc:
        if resource_error(exc) is not None or not hasattr(os, "memfd_create"):
            raise
        return os.memfd_create("defect-edge-decoder-messages", getattr(os, "MFD_CLOEXEC", 0))


class _StderrCapture:
    """File descriptor 2 pointed at a temporary file while any decode runs, shared by concurrent decodes.

    Decodes on several threads overlap; the text written during one decode's window is then not necessarily its
    own. A decode that saw decoder messages while others overlapped is therefore decoded again alone
    (``exclusive``) to know whether the messages were its own. Damaged images are rare, so decoding stays
    parallel. Lines that do not look like a decoder's are passed on to the real stderr when the last decode
    leaves.
    """

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.active = 0
        self.entries = 0  # decodes started so far (to see overlaps)
        self.exclusive = False
        self.sink = -1
        self.saved = -1

    @contextlib.contextmanager
    def window(self, *, exclusive: bool = False, drop: bool = False) -> Iterator[tuple[list[str], list[bool]]]:
        """``drop`` (with ``exclusive``): whatever was written in the window is discarded, not passed on."""
        lines: list[str] = []
        overlapped = [False]
        with self.cond:
            while self.exclusive or (exclusive and self.active):
                self.cond.wait()
            if self.sink < 0:
                self.sink = _scratch_fd()
                python_stderr_aside()
            if self.active == 0:
                self.saved = os.dup(2)
                os.dup2(self.sink, 2)
            self.exclusive = exclusive
            self.active += 1
            self.entries += 1
            start, first_entry = os.fstat(self.sink).st_size, self.entries
            overlapped[0] = self.active > 1
        try:
            yield lines, overlapped
        finally:
            with self.cond:
                end = os.fstat(self.sink).st_size
                overlapped[0] = overlapped[0] or self.active > 1 or self.entries != first_entry
                text = os.pread(self.sink, min(end - start, 65536), start).decode("utf-8", "replace")
                lines += [ln for ln in (x.strip() for x in text.splitlines()) if ln and _from_decoder(ln)]
                if drop and exclusive:  # alone in the window: the text after ``start`` is all its own
                    os.ftruncate(self.sink, start)
                    os.lseek(self.sink, start, os.SEEK_SET)
                self.active -= 1
                if self.active == 0:
                    self._restore()
                self.exclusive = False
                self.cond.notify_all()

    def _restore(self) -> None:
        os.dup2(self.saved, 2)
        os.close(self.saved)
        size = os.fstat(self.sink).st_size
        if size:
            text = os.pread(self.sink, min(size, 65536), 0).decode("utf-8", "replace")
            os.ftruncate(self.sink, 0)
            others = [ln for ln in (x.strip() for x in text.splitlines()) if ln and not _from_decoder(ln)]
            if others:
                os.write(2, ("\n".join(others) + "\n").encode())
        os.lseek(self.sink, 0, os.SEEK_SET)


class _Diagnostics(io.TextIOWrapper):
    """This tool's stderr: a message that cannot be written (``2>/dev/full``) is lost, the run is not."""

    def write(self, text: str) -> int:
        try:
            return super().write(text)
        except OSError:
            return len(text)

    def flush(self) -> None:
        with contextlib.suppress(OSError):
            super().flush()


def python_stderr_aside() -> None:
    """Python's own messages (this tool's warnings, from any thread) must not fall into a decode's window: they
    would vanish from stderr and be taken for that image's damage. Where ``sys.stderr`` writes to fd 2, it is
    re-pointed, once, at a copy of fd 2 that the windows leave alone (unbuffered, as Python's own stderr)."""
    stream = sys.stderr
    try:
        if stream is None or stream.fileno() != 2:
            return  # a test harness or an embedding program already holds stderr elsewhere
    except (AttributeError, OSError, ValueError):
        return
    with contextlib.suppress(OSError):
        stream.flush()
    # closefd=False: the copy lives as long as the process (as fd 2 does); closed by the OS at exit, not by Python's
    # shutdown, which had warned "ResourceWarning: unclosed file <_io.TextIOWrapper name=3>" under -X dev / -W
    raw = io.FileIO(os.dup(2), "w", closefd=False)
    sys.stderr = _Diagnostics(raw, encoding=stream.encoding, errors=stream.errors, line_buffering=True,
                              write_through=True)  # fmt: skip


_capture = _StderrCapture()


def imdecode_checked(
    buf: np.ndarray, flags: int = cv2.IMREAD_GRAYSCALE, *, logged: bool = False
) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` (to gray by default), plus the decoder messages that belong to this image.

    ``logged``: the decoder reports damage only through OpenCV's log (libtiff), which edge-infer silences without
    --debug: there, a TIFF whose strips were damaged was judged without a warning, and with --debug failed the
    gate. Such a decode runs alone with the log at its warning level, so that its messages are the image's."""
    if logged and cv2.utils.logging.getLogLevel() < cv2.utils.logging.LOG_LEVEL_WARNING:
        with _capture.window(exclusive=True) as (messages, _):
            level = cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
            try:
                image = cv2.imdecode(buf, flags)
            finally:
                cv2.utils.logging.setLogLevel(level)
        return image, messages
    with _capture.window() as (messages, overlapped):
        image = cv2.imdecode(buf, flags)
    if messages and overlapped[0]:  # maybe another image's: decode again, alone
        with _capture.window(exclusive=True) as (messages, _):
            image = cv2.imdecode(buf, flags)
    return image, messages


@contextlib.contextmanager
def stderr_dropped() -> Iterator[None]:
    """What C code writes to file descriptor 2 meanwhile is discarded: OpenCV's own AVI parser printed "Unexpected
    element. Expected: LIST. Got: JUNK." (the file's own bytes) before edge-infer's one line for a damaged video."""
    with _capture.window(exclusive=True, drop=True):
        yield


def _from_decoder(line: str) -> bool:
    low = line.lower()
    # libjpeg's warning of a progressive file's scans out of order names no "JPEG": "Inconsistent progression
    # sequence for component 0 coefficient 1" went to stderr as it was, and the item had no warning
    keys = ("jpeg", "libpng", "[error", "[ warn", "warning", "corrupt", "premature", "marker", "progression sequence")
    return any(k in low for k in keys)
