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


class AviIndex:
    """The video frames an AVI's ``idx1`` lists: where each frame's data starts in the file, and its size.

    >>> AviIndex.read(Path("no-such.avi")) is None
    True
    """

    def __init__(self, path: Path, starts: np.ndarray, sizes: np.ndarray) -> None:
        self.path, self.starts, self.sizes = path, starts, sizes
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
                    at += 8 + length + (length & 1)
        except (OSError, struct.error, ValueError):
            return None
        if entries is None or movi is None:
            return None
        return cls._video_frames(path, entries, movi, size)

    @classmethod
    def _video_frames(cls, path: Path, entries: np.ndarray, movi: int, size: int) -> AviIndex | None:
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
        if (starts + sizes > size).any():
            return None
        return cls(path, starts, sizes)

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
        candidates = np.flatnonzero(self.sizes[expected:end] == len(data)) + expected
        return next((int(j) for j in candidates[:MAX_COMPARED] if self._at(int(j), data, head)), None)

    def _at(self, j: int, data: bytes, head: bytes) -> bool:
        """Whether frame ``j`` of the index is ``data`` (its size, and its leading bytes in the file)."""
        if not 0 <= j < len(self.sizes) or self.sizes[j] != len(data):
            return False
        try:
            return os.pread(self._fd, len(head), int(self.starts[j])) == head
        except OSError:
            return False

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
