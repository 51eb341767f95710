"""Whether a video file is shorter than its own container says (a copy or a recording cut short), or was written
to while it was read (a recording still going on).

Why: FFmpeg reads a cut Matroska or MP4 file up to the cut and then reports a clean end. Their frame counts may be
estimates (from a longer audio track, or frames an edit list hides), so "fewer frames than counted" is only a
notice there, and a gate passed a Matroska file cut in half: 17 of 35 frames judged, the 5 defective ones after
the cut never seen, exit 0. The container's own structure says how long the file should be: the size of
Matroska's Segment element, and the sizes of MP4's top-level boxes. Only the headers are read.

>>> import tempfile, os
>>> box = (16).to_bytes(4, "big") + b"mdat" + bytes(8)
>>> with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as f:
...     _ = f.write(box[:-3])
>>> missing_bytes(f.name)
3
>>> os.unlink(f.name)
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

EBML_HEADER = b"\x1a\x45\xdf\xa3"
EBML_SEGMENT = b"\x18\x53\x80\x67"
MAX_BOXES = 10_000  # top-level MP4 boxes walked before giving up (a file has a handful)
# Matroska's Segment children, and a Cluster's (walked into where a live recording leaves a Cluster's size unknown)
_MATROSKA_IDS = frozenset(bytes.fromhex(h) for h in (
    "1f43b675", "1c53bb6b", "114d9b74", "1549a966", "1654ae6b", "1254c367", "1043a770", "1941a469", "ec", "bf",
    "e7", "a3", "a0", "a7", "ab", "5854", "af",
))  # fmt: skip
# MP4 / QuickTime top-level box types
_MP4_BOXES = frozenset(t.encode() for t in (
    "ftyp", "moov", "mdat", "free", "skip", "wide", "moof", "mfra", "sidx", "styp", "uuid", "pdin", "meta", "emsg",
    "prft", "ssix",
))  # fmt: skip


def ebml_size(data: bytes, at: int) -> tuple[int, int, bool] | None:
    """An EBML variable-length size at ``at``: (value, length in bytes, unknown size); None if malformed."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 8 - data[at].bit_length() + 1
    if at + length > len(data):
        return None
    value = int.from_bytes(data[at : at + length], "big") & ((1 << (7 * length)) - 1)
    return value, length, value == (1 << (7 * length)) - 1


def ebml_id_length(first: int) -> int:
    """The length of an EBML element ID from its first byte (1-4; 0: not an ID)."""
    return 8 - first.bit_length() + 1 if first >= 0x10 else 0


def ebml_elements(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(ID, payload start, payload end) of the EBML elements in ``data[start:end]``, up to a malformed one."""
    at = start
    while at < end:
        id_len = ebml_id_length(data[at])
        if not id_len or (found := ebml_size(data, at + id_len)) is None:
            return
        size, n, unknown = found
        body = at + id_len + n
        if unknown:  # a live recording's Segment or Cluster: to the end
            size = end - body
        yield data[at : at + id_len], body, min(body + size, end)
        at = body + size


def _matroska_missing(f, size: int) -> int | None:  # noqa: ANN001 - a binary file
    head = f.read(4096)
    if not head.startswith(EBML_HEADER) or (ebml := ebml_size(head, 4)) is None:
        return None
    at = 4 + ebml[1] + ebml[0]  # the Segment follows the EBML header
    if head[at : at + 4] != EBML_SEGMENT or (segment := ebml_size(head, at + 4)) is None:
        return None  # no Segment where expected: nothing to compare
    start = at + 4 + segment[1]
    if not segment[2]:
        return max(0, start + segment[0] - size)
    return _children_missing(f, start, size)


def _children_missing(f, at: int, size: int) -> int | None:  # noqa: ANN001 - a binary file
    """A Segment of unknown size (a live recording): its children's own sizes, walked to the file's end. A cut
    recording's last Cluster declares more than the file holds; one of unknown size leaves nothing to compare."""
    for _ in range(MAX_BOXES * 100):
        if at >= size:
            return at - size
        f.seek(at)
        head = f.read(12)
        id_length = ebml_id_length(head[0]) if head else 0
        known = bool(id_length) and head[:id_length] in _MATROSKA_IDS
        if not known or (found := ebml_size(head, id_length)) is None:
            return 0 if len(head) < 12 else None  # a few bytes of padding; or not Matroska we can follow
        value, length, unknown = found
        # a Cluster of unknown size (a browser's recorder) is walked into: its blocks have sizes
        at += id_length + length + (0 if unknown else value)
    return None


def _mp4_missing(f, size: int) -> int | None:  # noqa: ANN001 - a binary file
    at = 0
    for _ in range(MAX_BOXES):
        if at >= size:
            return at - size  # 0: the last box ends with the file
        f.seek(at)
        head = f.read(16)
        if len(head) < 8:
            return 0  # fewer bytes than a box header after the last box: padding, not a cut box
        (length,) = struct.unpack(">I", head[:4])
        if head[4:8] not in _MP4_BOXES:
            return None  # not a box (text appended after the last one): not an MP4 we can follow
        if length == 1:  # a 64-bit size follows the type
            if len(head) < 16:
                return 0
            (length,) = struct.unpack(">Q", head[8:16])
        elif length == 0:  # the last box runs to the end of the file
            return 0
        if length < 8:
            return None
        at += length
    return None


def _avi_missing(f, size: int) -> int | None:  # noqa: ANN001 - a binary file
    """An AVI's RIFF chunks ('AVI ', then 'AVIX' past 1 GB), walked by their sizes to the file's end. The size
    FFmpeg leaves when it writes to a pipe and cannot go back to set it (0xFFFFFFFF) leaves nothing to compare."""
    at = 0
    for _ in range(MAX_BOXES):
        if at >= size:
            return at - size
        f.seek(at)
        head = f.read(12)
        if len(head) < 12:
            return 0  # a few bytes of padding after the last chunk
        if head[:4] != b"RIFF" or head[8:12] not in (b"AVI ", b"AVIX"):
            return None
        (length,) = struct.unpack("<I", head[4:8])
        if length < 4 or length == 0xFFFFFFFF:
            return None
        at += 8 + length + (length & 1)
    return None


def cut_short(missing: int) -> str:
    """What a user is told of a file ``missing`` bytes shorter than its container declares."""
    return (f"the file ends {missing} bytes before its container says it does (cut short: a copy that did not "
            "finish, or a recording stopped before it was closed); copy it again")  # fmt: skip


def file_stamp(path: str | Path) -> tuple[int, int] | None:
    """The file's size and modification time (ns), None where it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def written_since(path: str | Path, stamp: tuple[int, int] | None) -> str | None:
    """How the file changed since ``stamp`` ("grew by N bytes"), None where it did not or cannot tell. Why: FFmpeg
    reads a recording still being written (Matroska, MPEG-TS, fragmented MP4) to its current end and reports a
    clean end there; the frames recorded after it went unseen, and the run read as the whole video."""
    now = file_stamp(path)
    if stamp is None or now is None or now == stamp:
        return None
    grew = now[0] - stamp[0]
    return f"grew by {grew} bytes" if grew > 0 else "was written to"


def missing_bytes(path: str | Path) -> int | None:
    """How many bytes the file lacks of what its Matroska/WebM, MP4/MOV or AVI container declares (0: none); None
    when it cannot tell (another format, a live recording of unknown size, a structure it cannot follow)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            first = f.read(12)
            f.seek(0)
            if first.startswith(EBML_HEADER):
                return _matroska_missing(f, size)
            if first[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return _mp4_missing(f, size)
            if first.startswith(b"RIFF") and first[8:12] == b"AVI ":
                return _avi_missing(f, size)
    except OSError:
        return None
    return None
