"""The key-frame times a Matroska/WebM file's own index (its Cues) lists for its video track.

Why: FFmpeg's Matroska reader drops a damaged block without a failed read, and the stream's start time is taken
from the first block it hands out. A damaged first block thus left no trace in the frame times: the video read
as if it began at the second frame, the defective part in the first was never judged, and the gate passed. The
Cues are written by the muxer from the blocks it wrote, apart from them: a key frame they list before the first
frame read was in the file once. Only the headers and the Cues are read.

>>> cue_times_ms("no-such.mkv") is None
True
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any

from edge_runtime.container_length import EBML_HEADER, EBML_SEGMENT, ebml_elements, ebml_size

MAX_CUES = 16 << 20  # bytes of a Cues element read at most (a 9-hour 30 FPS all-key-frame video needs about 12 MiB)
MAX_CHILDREN = 1_000_000  # Segment children walked at most where no SeekHead says where the Cues are
_SEEK_HEAD, _INFO, _TRACKS, _CUES = (bytes.fromhex(h) for h in ("114d9b74", "1549a966", "1654ae6b", "1c53bb6b"))
_TIMESTAMP_SCALE, _TRACK_ENTRY, _TRACK_NUMBER, _TRACK_TYPE = b"\x2a\xd7\xb1", b"\xae", b"\xd7", b"\x83"
_CUE_POINT, _CUE_TIME, _CUE_TRACK_POSITIONS, _CUE_TRACK = b"\xbb", b"\xb3", b"\xb7", b"\xf7"
_SEEK, _SEEK_ID, _SEEK_POSITION = b"\x4d\xbb", b"\x53\xab", b"\x53\xac"


def _uint(data: bytes) -> int:
    return int.from_bytes(data, "big") if 0 < len(data) <= 8 else -1


def cue_times_ms(path: str) -> list[float] | None:
    """The times (ms, sorted) of the first video track's key frames that the Cues list; None where the file is not
    Matroska, has no Cues (a live recording) or cannot be followed."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(4096)
            if not head.startswith(EBML_HEADER) or (ebml := ebml_size(head, 4)) is None:
                return None
            at = 4 + ebml[1] + ebml[0]
            if head[at : at + 4] != EBML_SEGMENT or (segment := ebml_size(head, at + 4)) is None:
                return None
            start = at + 4 + segment[1]
            children = _children(f, start, size)
            if _TRACKS not in children or _CUES not in children:
                return None
            track = _video_track(_read(f, *children[_TRACKS]))
            scale = _timestamp_scale(_read(f, *children[_INFO])) if _INFO in children else 1_000_000
            if track is None or scale <= 0:
                return None
            return _cue_times(_read(f, *children[_CUES]), track, scale)
    except (OSError, ValueError, struct.error):
        return None


def _read(f, at: int, length: int) -> bytes:  # noqa: ANN001 - a binary file
    f.seek(at)
    return f.read(min(length, MAX_CUES))


def _header(f, at: int) -> tuple[bytes, int, int] | None:  # noqa: ANN001 - a binary file
    """(ID, payload start, payload length) of the element at ``at``; None where none can be read."""
    f.seek(at)
    head = f.read(12)
    length = 8 - head[0].bit_length() + 1 if head and head[0] >= 0x10 else 0
    if not length or (found := ebml_size(head, length)) is None or found[2]:
        return None  # not an element, or one of unknown size (a live recording's Cluster)
    return head[:length], at + length + found[1], found[0]


def _children(f, start: int, size: int) -> dict[bytes, tuple[int, int]]:  # noqa: ANN001 - a binary file
    """Where the Segment's Info, Tracks and Cues lie: (payload start, length). The SeekHead says where the Cues are
    (after the Clusters, as FFmpeg writes them: a damaged Cluster header cannot hide them); else the children are
    walked by their sizes."""
    found: dict[bytes, tuple[int, int]] = {}
    at = start
    for _ in range(MAX_CHILDREN):
        if at >= size or (element := _header(f, at)) is None:
            break
        eid, body, length = element
        if eid in (_INFO, _TRACKS, _CUES):
            found.setdefault(eid, (body, length))
        elif eid == _SEEK_HEAD and _CUES not in found and (cues := _sought_cues(f, start, body, length)):
            found[_CUES] = cues
        if _INFO in found and _TRACKS in found and _CUES in found:
            break
        at = body + length
    return found


def _sought_cues(f, start: int, at: int, length: int) -> tuple[int, int] | None:  # noqa: ANN001 - a binary file
    """Where the SeekHead at ``at`` says the Cues are: (payload start, length), checked to be Cues."""
    data = _read(f, at, length)
    for seek, a, b in ebml_elements(data, 0, len(data)):
        fields = {k: data[x:y] for k, x, y in ebml_elements(data, a, b)} if seek == _SEEK else {}
        if fields.get(_SEEK_ID) != _CUES or (to := _uint(fields.get(_SEEK_POSITION, b""))) < 0:
            continue
        cues = _header(f, start + to)
        return cues[1:] if cues is not None and cues[0] == _CUES else None
    return None


def _video_track(data: bytes) -> int | None:
    """The track number of the first video track in a Tracks element (the one OpenCV reads)."""
    for entry, a, b in ebml_elements(data, 0, len(data)):
        if entry != _TRACK_ENTRY:
            continue
        fields = {k: data[x:y] for k, x, y in ebml_elements(data, a, b)}
        if _uint(fields.get(_TRACK_TYPE, b"")) == 1:
            number = _uint(fields.get(_TRACK_NUMBER, b""))
            return number if number > 0 else None
    return None


def _timestamp_scale(data: bytes) -> int:
    for eid, a, b in ebml_elements(data, 0, len(data)):
        if eid == _TIMESTAMP_SCALE:
            return _uint(data[a:b])
    return 1_000_000  # Matroska's default: 1 ms


def _cue_times(data: bytes, track: int, scale: int) -> list[float] | None:
    times = []
    for point, a, b in ebml_elements(data, 0, len(data)):
        if point != _CUE_POINT:
            continue
        time, tracks = -1, set()
        for eid, x, y in ebml_elements(data, a, b):
            if eid == _CUE_TIME:
                time = _uint(data[x:y])
            elif eid == _CUE_TRACK_POSITIONS:
                tracks.update(_uint(data[p:q]) for k, p, q in ebml_elements(data, x, y) if k == _CUE_TRACK)
        if time >= 0 and track in tracks:
            times.append(time * scale / 1e6)
    return sorted(times) or None


class CuedStart:
    """A Matroska video's first frames checked against its Cues: frames lost before the first frame read, or
    between it and the second (the frame times alone cannot tell those from a change of frame rate).

    >>> class Capture:  # OpenCV's capture after its first frame, the third key frame (in whole frames)
    ...     def get(self, prop): return 2.0
    >>> cues = CuedStart([0.0, 100.0, 200.0, 300.0], fps=10.0)
    >>> cues.lost_before(Capture(), at_ms=0.0)[0]
    2
    >>> cues.first_ms, cues.cued_between(0.0, 100.0), cues.cued_between(0.0, 200.0)   # the next, or 300 ms lost
    (200.0, False, True)
    """

    def __init__(self, times_ms: list[float], *, fps: float) -> None:
        self.times, self.fps = times_ms, fps
        self.offset: float | None = None  # the first frame's time in the file less OpenCV's (from its start)
        self.first_ms: float | None = None  # the key frame's time the first frame read has

    def lost_before(self, cap: Any, *, at_ms: float) -> tuple[int, str] | None:
        """Frames before the first one read (``at_ms``: its time from the stream's start, as OpenCV gives it), and
        how the Cues tell them; None where none are missing, or where that frame is no key frame the Cues list
        (leading frames of an open GOP): nothing is told then, and the Cues are not used again."""
        import cv2

        try:  # the frame's time in the file, which OpenCV gives in whole frames (rounded)
            pts = float(cap.get(cv2.CAP_PROP_PTS))
        except (cv2.error, TypeError, ValueError):
            pts = math.nan
        near = [t for t in self.times if abs(t * self.fps / 1000.0 - pts) <= 0.5 + 1e-6]
        if len(near) != 1:
            self.times = []
            return None
        self.first_ms, self.offset = near[0], near[0] - at_ms  # the key frame it is says its time to the ms
        if (lost := round((near[0] - self.times[0]) * self.fps / 1000.0)) < 1:
            return None
        t0, t1 = self.times[0] / 1000.0, near[0] / 1000.0
        return lost, (f"the file's index lists a frame at {t0:.3f} s, and the first frame read is at {t1:.3f} s: "
                      "frames lost in a damaged file")  # fmt: skip

    def cued_between(self, before_ms: float, at_ms: float) -> bool:
        """Whether the Cues list a key frame between two frames read one after the other (times from the start, as
        OpenCV gives them): it was in the file, and was not read."""
        if self.offset is None:
            return False
        a, b = before_ms + self.offset + 0.5, at_ms + self.offset - 0.5  # Matroska keeps times to the millisecond
        return any(a < t < b for t in self.times)
