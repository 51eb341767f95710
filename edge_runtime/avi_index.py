"""Where each frame of an AVI file lies, from its index (``idx1``): a damaged stretch cannot renumber frames.

FFmpeg reads an AVI's chunks in file order. Where damage wipes chunk headers, it resyncs on the next header it
finds and hands out the frames after it as if nothing were missing: every later frame got the number of one
before it (a verdict pinned on the wrong part), and the run ended "at frame 38 of 40" though it had read the
file to its end. Matched against the index, a Motion-JPEG frame's own bytes tell which frame it is.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

_ENTRY = np.dtype([("ckid", "S4"), ("flags", "<u4"), ("offset", "<u4"), ("size", "<u4")])
COMPARED = 64  # leading bytes of a frame compared with the file
LOOK_AHEAD = 100_000  # frames searched past the expected one (a damaged stretch of about an hour at 30 FPS)
MAX_COMPARED = 256  # frames of the right size read from the file per lookup, at most
MAX_INDEX = 32 << 20  # bytes at the end of a file searched for its index where the movi list's size overshoots it


class AviIndex:
    """The video frames an AVI's ``idx1`` lists: where each frame's data starts in the file, and its size.

    >>> AviIndex.read(Path("no-such.avi")) is None
    True
    """

    def __init__(self, path: Path, starts: np.ndarray, sizes: np.ndarray, *, removed: int = 0) -> None:
        self.path, self.starts, self.sizes = path, starts, sizes
        self.removed = removed  # bytes the file lacks before its index, by the index's own offsets (a cut-out stretch)
        self.shift = 0  # bytes found missing before the frames now being read (0, or ``removed`` after the cut)
        self._fd = -1

    def __len__(self) -> int:
        return len(self.starts)

    @classmethod
    def read(cls, path: Path) -> AviIndex | None:
        """The index of ``path``, or None: not an AVI, no ``idx1`` (a cut-off file, OpenDML's own index) or one
        that does not fit the file."""
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if f.read(12)[:4] != b"RIFF":
                    return None
                movi = entries = None
                at = 12
                while at + 8 <= size and entries is None:
                    f.seek(at)
                    fourcc, length = struct.unpack("<4sI", f.read(8))
                    if fourcc == b"LIST" and f.read(4) == b"movi":
                        movi = at + 8  # where the "movi" tag lies: idx1 offsets count from here
                    elif fourcc == b"idx1":
                        entries = np.frombuffer(f.read(min(length, size - at - 8)), _ENTRY, count=length // 16)
                        break
                    at += 8 + length + (length & 1)
                if entries is None and movi is not None:  # the movi list's size says more than the file holds
                    at, entries = _last_idx1(f, size)
        except (OSError, struct.error, ValueError):
            return None
        if entries is None or movi is None:
            return None
        return cls._video_frames(path, entries, movi, size, idx1=at)

    @classmethod
    def _video_frames(cls, path: Path, entries: np.ndarray, movi: int, size: int, *, idx1: int) -> AviIndex | None:
        ckid = entries["ckid"].astype("S4").view(np.uint8).reshape(-1, 4)
        video = (ckid[:, 2] == ord("d")) & np.isin(ckid[:, 3], [ord("c"), ord("b")])  # "00dc", "00db"
        if not video.any():
            return None
        first = ckid[np.argmax(video), :2]
        chosen = entries[video & (ckid[:, 0] == first[0]) & (ckid[:, 1] == first[1])]  # that stream's frames
        # an empty entry repeats the last frame (FFmpeg's frame-rate conversion writes them): FFmpeg hands out no
        # packet for it, so it is no frame of the run's count (counted, an intact file failed its gate as damaged)
        chosen = chosen[chosen["size"] > 0]
        if not len(chosen):
            return None
        offsets = chosen["offset"].astype(np.int64)
        # offsets count from the "movi" tag (most writers) or from the file's start (a few)
        base = movi if offsets[0] < movi else 0
        starts = offsets + base + 8
        sizes = chosen["size"].astype(np.int64)
        # the index follows the movi list's last chunk: where it lies instead tells how many bytes were cut out
        ends = entries["offset"].astype(np.int64) + base + 8 + entries["size"].astype(np.int64)
        removed = max(0, int(ends.max() + (ends.max() & 1)) - idx1)
        if (starts + sizes > size + removed).any():
            return None
        return cls(path, starts, sizes, removed=removed)

    def frame_of(self, data: bytes, expected: int) -> int | None:
        """The number of the frame whose bytes are ``data``: ``expected`` or the first one after it that matches
        (frames whose chunk headers were lost); None where none does."""
        if self._fd < 0:
            try:
                self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:
                return None
        head = data[:COMPARED]
        if self._at(expected, data, head):  # the usual case, once per frame: no search
            return expected
        end = min(len(self.sizes), expected + LOOK_AHEAD)
        candidates = [int(j) for j in (np.flatnonzero(self.sizes[expected:end] == len(data)) + expected)]
        found = next((j for j in candidates[:MAX_COMPARED] if self._at(j, data, head)), None)
        if found is None and self.shift < self.removed:
            # after a cut-out stretch, the frames lie ``removed`` bytes before where the index says; frames from one
            # encoder begin with the same bytes, so the whole frame is compared
            found = next((j for j in candidates[:MAX_COMPARED] if self._at(j, data, data, shift=self.removed)), None)
            self.shift = self.removed if found is not None else self.shift
        return found

    def _at(self, j: int, data: bytes, head: bytes, *, shift: int | None = None) -> bool:
        """Whether frame ``j`` of the index is ``data`` (its size, and its leading bytes in the file, ``shift``
        bytes before where the index says)."""
        if not 0 <= j < len(self.sizes) or self.sizes[j] != len(data):
            return False
        try:
            at = int(self.starts[j]) - (self.shift if shift is None else shift)
            return at >= 0 and os.pread(self._fd, len(head), at) == head
        except OSError:
            return False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _last_idx1(f, size: int) -> tuple[int, np.ndarray | None]:  # noqa: ANN001 - a binary file
    """The ``idx1`` chunk that ends the file, found from its end: bytes cut out of the movi list leave its size
    pointing past the index. (position, entries), or (size, None) where the file does not end with one."""
    tail = min(size, MAX_INDEX)
    f.seek(size - tail)
    data = f.read(tail)
    at = data.rfind(b"idx1")
    while at >= 0:
        (length,) = struct.unpack("<I", data[at + 4 : at + 8]) if at + 8 <= len(data) else (-1,)
        if length >= 16 and length % 16 == 0 and at + 8 + length in (len(data), len(data) - 1):
            return size - tail + at, np.frombuffer(data[at + 8 : at + 8 + length], _ENTRY)
        at = data.rfind(b"idx1", 0, at)
    return size, None
