"""How many video tracks a video file holds: OpenCV reads the first one only.

A recording of two cameras in one file (a Matroska or MP4 with two video tracks, an AVI with two video streams)
was judged on its first camera's frames alone, and a defective part seen only by the second passed the gate
(exit 0) without a word. The container's own track list says how many there are; only its headers are read.

>>> import tempfile, os
>>> def box(kind, payload): return (8 + len(payload)).to_bytes(4, "big") + kind + payload
>>> trak = box(b"trak", box(b"mdia", box(b"hdlr", bytes(8) + b"vide" + bytes(12))))
>>> with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
...     _ = f.write(box(b"ftyp", b"isom") + box(b"moov", trak + trak))
>>> video_tracks(f.name)
2
>>> os.unlink(f.name)
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

MAX_HEADER = 64 << 20  # bytes of an MP4 'moov' box or a Matroska track list read at most
_TRACKS, _TRACK_ENTRY, _TRACK_TYPE = b"\x16\x54\xae\x6b", b"\xae", b"\x83"


def video_tracks(path: str) -> int | None:
    """The number of video tracks the file declares; None where its container is not MP4/QuickTime, Matroska/WebM
    or AVI, or cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == b"\x1a\x45\xdf\xa3":
                return _matroska(f)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi(f)
            if head[4:8] in (b"ftyp", b"moov", b"free", b"wide", b"mdat", b"skip"):
                return _mp4(f)
    except (OSError, ValueError, struct.error):
        return None
    return None


def _boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, payload end) of the MP4 boxes in ``data[start:end]``."""
    end = len(data) if end is None else end
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif size == 0:
            size = end - at
        if size < header:
            return
        yield kind, at + header, min(at + size, end)
        at += size


def _mp4(f) -> int | None:  # noqa: ANN001 - a binary file
    f.seek(0, 2)
    length = f.tell()
    at = 0
    while at + 8 <= length:  # the top-level boxes, to 'moov' (at the start or at the end of the file)
        f.seek(at)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = length - at
        if size < header:
            return None
        if kind == b"moov":
            if size > MAX_HEADER:
                return None
            moov = f.read(size - header)
            count = 0
            for trak, a, b in _boxes(moov):
                if trak != b"trak":
                    continue
                for mdia, c, d in _boxes(moov, a, b):
                    if mdia != b"mdia":
                        continue
                    for hdlr, e, g in _boxes(moov, c, d):
                        if hdlr == b"hdlr" and g - e >= 12 and moov[e + 8 : e + 12] == b"vide":
                            count += 1
            return count
        at += size
    return None


def _vint(data: bytes, at: int) -> tuple[int, int]:
    """An EBML size at ``at``: (value, its length); ValueError where malformed."""
    if at >= len(data) or data[at] == 0:
        raise ValueError("not an EBML size")
    n = 8 - data[at].bit_length() + 1
    return int.from_bytes(data[at : at + n], "big") & ((1 << (7 * n)) - 1), n


def _elements(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(ID, payload start, payload end) of the EBML elements in ``data[start:end]``."""
    at = start
    while at < end:
        first = data[at]
        id_len = 8 - first.bit_length() + 1 if first >= 0x10 else 0
        if not id_len:
            return
        eid = data[at : at + id_len]
        size, n = _vint(data, at + id_len)
        body = at + id_len + n
        if size == (1 << (7 * n)) - 1:  # unknown size (a live recording's Segment or Cluster): to the end
            size = end - body
        yield eid, body, min(body + size, end)
        at = body + size


def _matroska(f) -> int | None:  # noqa: ANN001 - a binary file
    f.seek(0)
    data = f.read(MAX_HEADER)
    size, n = _vint(data, 4)
    at = 4 + n + size  # the Segment follows the EBML header
    for eid, a, b in _elements(data, at, len(data)):
        if eid != b"\x18\x53\x80\x67":
            continue
        for child, c, d in _elements(data, a, b):
            if child == b"\x1f\x43\xb6\x75":  # the first Cluster: the track list comes before it
                return None
            if child != _TRACKS:
                continue
            count = 0
            for entry, e, g in _elements(data, c, d):
                if entry == _TRACK_ENTRY:
                    count += any(
                        k == _TRACK_TYPE and data[x:y] and int.from_bytes(data[x:y], "big") == 1
                        for k, x, y in _elements(data, e, g)
                    )
            return count
        return None
    return None


def _avi(f) -> int | None:  # noqa: ANN001 - a binary file
    f.seek(0)
    data = f.read(1 << 20)  # the header list ('hdrl') comes first
    at = data.find(b"hdrl")
    if at < 8 or data[at - 8 : at - 4] != b"LIST":
        return None
    end = min(len(data), at - 4 + struct.unpack("<I", data[at - 4 : at])[0])
    count, pos = 0, at + 4
    while pos + 8 <= end:
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if kind == b"LIST" and data[pos + 8 : pos + 12] == b"strl":
            inner = pos + 12
            if data[inner : inner + 4] == b"strh" and data[inner + 8 : inner + 12] == b"vids":
                count += 1
        pos += 8 + size + (size & 1)
    return count
