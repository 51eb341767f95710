"""Pages an inspection log has lost to a cut (``truncate -s 8192 station.db``), told from SQLite's own WAL index.

A healthy WAL-mode database may be shorter than the page count its latest commit names, for seconds or for good:
pages a commit added stay in the write-ahead file until a checkpoint copies them, and one that a reader's older
snapshot stops part-way copies no further. Checked against its header's size, healthy stations were stopped.
What holds for every healthy log is stronger: each page past the file's end has a frame in the write-ahead file
that no checkpoint has copied yet (a checkpoint truncates the file only once it has copied every frame, and
grows it before it says so). The WAL index (``station.db-shm``) lists, for each frame, its page; a page past the
end with no such frame was cut away. Read before a checkpoint copies anything: once copied, the pages past the
cut are holes of zeros, and the file's length looks whole again.

Format: https://www.sqlite.org/walformat.html ("The WAL-Index Format"); native byte order.

>>> missing_pages(os.open("station.db", os.O_RDONLY), os.open("station.db-shm", os.O_RDONLY))  # doctest: +SKIP
(8192, 1146880)
"""

from __future__ import annotations

import os
import struct

import numpy as np

HEADER_BYTES = 136  # two copies of the 48-byte index header, then the checkpoint information (40 bytes)
VERSION = 3007000
FIRST_FRAMES = 4062  # frames whose pages the first 32 KiB block lists (after the header)
BLOCK_BYTES, BLOCK_FRAMES = 32768, 4096
LOCK_BYTE_OFFSET = 0x40000000  # the page holding this byte is never written: SQLite skips it


class Unsettled(Exception):
    """The index changed under every look (commits, checkpoints of other stations): look again before copying."""


_CHANGING = "changing"  # the index was being written while it was read


def _state(shm: int) -> tuple[bytes, int, int, int, int] | str | None:
    """(header, page size, frames in the WAL, pages of the latest commit, frames copied); :data:`_CHANGING` where
    the index is being written (SQLite's own readers retry then too); None where it is not one this code reads."""
    raw = os.pread(shm, HEADER_BYTES, 0)
    if len(raw) < HEADER_BYTES:
        return None
    if raw[:48] != raw[48:96]:  # a writer copies the header twice, the second copy last
        return _CHANGING
    version, _, _, init, _, page = struct.unpack_from("=IIIBBH", raw, 0)
    frames, pages = struct.unpack_from("=II", raw, 16)
    (copied,) = struct.unpack_from("=I", raw, 96)
    page = 65536 if page == 1 else page
    if version != VERSION or not init or page < 512 or page & (page - 1):
        return None
    if copied > frames:  # the write-ahead file starting over: its frames are reset before the count copied
        return _CHANGING
    return raw[:48], page, frames, pages, copied


def _frame_pages(shm: int, first: int, last: int) -> np.ndarray | None:
    """The page numbers of frames ``first`` to ``last`` (1-based), as the index lists them."""
    parts, frame = [], first
    while frame <= last:
        if frame <= FIRST_FRAMES:
            at, room = HEADER_BYTES + 4 * (frame - 1), FIRST_FRAMES - frame + 1
        else:
            k = frame - FIRST_FRAMES - 1
            at, room = (1 + k // BLOCK_FRAMES) * BLOCK_BYTES + 4 * (k % BLOCK_FRAMES), BLOCK_FRAMES - k % BLOCK_FRAMES
        n = min(room, last - frame + 1)
        raw = os.pread(shm, 4 * n, at)
        if len(raw) < 4 * n:
            return None
        parts.append(np.frombuffer(raw, dtype=np.uint32))
        frame += n
    return np.concatenate(parts) if parts else np.zeros(0, np.uint32)


def _look(db: int, shm: int) -> tuple[int, int] | str | None:
    before = _state(shm)
    if not isinstance(before, tuple):
        return before
    header, page, frames, pages, copied = before
    size = os.fstat(db).st_size
    whole = size // page  # a page cut in the middle is lost too
    if whole >= pages:
        return None
    past = np.arange(whole + 1, pages + 1, dtype=np.int64)
    past = past[past != LOCK_BYTE_OFFSET // page + 1]
    gone = past.size > frames - copied  # more pages past the end than frames to hold them: no need to look
    if not gone:
        listed = _frame_pages(shm, copied + 1, frames)
        if listed is None:
            return None
        gone = bool(np.setdiff1d(past, listed.astype(np.int64)).size)
    after = _state(shm)
    if not isinstance(after, tuple) or after[0] != header or after[4] != copied:  # a commit or checkpoint meanwhile
        return _CHANGING
    return (size, pages * page) if gone else None


def missing_pages(db: int, shm: int, *, tries: int = 5) -> tuple[int, int] | None:
    """(file size, bytes its latest commit's pages take) for a database file (descriptor ``db``) that lost pages
    past its end, else None (also where the index is not one this code reads). Raises :class:`Unsettled` where a
    commit or checkpoint changed the index during each of ``tries`` looks: a checkpoint copied then hid a cut. A
    stat and a 136-byte read; the frames' pages only for a file shorter than its latest commit."""
    for _ in range(tries):
        try:
            found = _look(db, shm)
        except OSError:
            return None
        if found != _CHANGING:
            return found if isinstance(found, tuple) else None
    raise Unsettled
