"""One export at a time per output file: two ``export-onnx --out m.onnx`` started together both said "wrote
m.onnx", and the file held whichever finished last (an FP32 export's user was left with the INT8 model).

>>> with held_output(Path("runs/s3.onnx")):     # doctest: +SKIP
...     ...                                     # a second export to runs/s3.onnx is refused (exit 7) meanwhile
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from edge_runtime.errors import OutputError

_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


def lock_path_for(dst: Path) -> Path:
    """The hidden lock file beside ``dst``'s real file (a link and its target are one output); a short name where
    ``dst``'s own is near the 255-byte limit.

    >>> lock_path_for(Path("/no-such/m.onnx")).as_posix()
    '/no-such/.m.onnx.export-lock'
    """
    real = Path(os.path.realpath(dst))
    name = f".{real.name}.export-lock"
    if len(os.fsencode(name)) > 255:
        name = f".defect-edge-{hashlib.sha1(os.fsencode(real.name)).hexdigest()[:16]}.export-lock"
    return real.with_name(name)


def _lock(lock: Path, dst: Path) -> int | None:
    """An open descriptor holding ``lock`` (``flock``); None where the file system cannot lock (exported unlocked,
    as before). The file locked must still be the one under the name: an export ending removes its lock file, and
    one that had opened it meanwhile would hold a lock nobody else sees."""
    for _ in range(20):
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            return None  # ensure_writable has written beside dst: a folder this rejects is not one to refuse for
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in _BUSY:
                raise OutputError(
                    f"{dst}: another export-onnx is writing this file now; wait for it to finish, or pass another --out"
                ) from exc
            return None
        try:
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # removed or replaced by an export that just ended: take the new one
    return None


@contextlib.contextmanager
def held_output(dst: Path) -> Iterator[None]:
    """Hold ``dst`` for this export (an :class:`OutputError`, exit 7, where another export holds it); the lock file
    is removed again when the export ends, well or not."""
    lock = lock_path_for(dst)
    fd = _lock(lock, dst)
    try:
        yield
    finally:
        if fd is not None:
            with contextlib.suppress(OSError):
                lock.unlink()  # while still held: a waiting export then finds the name gone and makes its own
            os.close(fd)
