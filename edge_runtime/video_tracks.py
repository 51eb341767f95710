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

import os
import struct
from collections.abc import Iterator

from edge_runtime.container_length import (
    EBML_HEADER,
    EBML_SEGMENT,
    MAX_BOXES,
    cut_short,
    ebml_elements,
    ebml_size,
    missing_bytes,
)

MAX_HEADER = 64 << 20  # bytes of an MP4 'moov' box or a Matroska track list read at most
MP4_FIRST_BOXES = (b"ftyp", b"moov", b"free", b"wide", b"mdat", b"skip")  # the box an MP4/QuickTime file starts with
_TRACKS, _TRACK_ENTRY, _TRACK_TYPE = b"\x16\x54\xae\x6b", b"\xae", b"\x83"


def video_tracks(path: str) -> int | None:
    """The number of video tracks the file declares; None where its container is not MP4/QuickTime, Matroska/WebM,
    AVI or MPEG-TS, or cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] == EBML_HEADER:
                return _matroska(f)
            if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
                return _avi(f)
            if head[4:8] in MP4_FIRST_BOXES:
                return _mp4(f)
            if head[:1] == b"\x47":  # MPEG-TS (an NVR's or camera's recording)
                return _mpeg_ts(f)
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


def _top_boxes(f) -> Iterator[tuple[bytes, int, int]]:  # noqa: ANN001 - a binary file
    """(type, payload start, end) of an MP4 file's top-level boxes; the last one's end may lie past the file's (cut)."""
    f.seek(0, 2)
    length = f.tell()
    at = 0
    for _ in range(MAX_BOXES):
        if at + 8 > length:
            return
        f.seek(at)
        size, kind = struct.unpack(">I4s", f.read(8))
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", f.read(8))[0], 16
        elif size == 0:
            size = length - at
        if size < header:
            return
        yield kind, at + header, at + size
        at += size


def _mp4(f) -> int | None:  # noqa: ANN001 - a binary file
    for kind, start, end in _top_boxes(f):  # to 'moov' (at the start or at the end of the file)
        if kind == b"moov":
            if end - start > MAX_HEADER:
                return None
            f.seek(start)
            moov = f.read(end - start)
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
    return None


# A recorder writes an MP4's index of its frames ('moov') when it stops: before that no reader can find a frame
NO_MP4_INDEX = ("the MP4/MOV file has no index ('moov' box), which its recorder writes when it stops: it is still "
                "recording, or was cut off (power lost, recorder killed); inspect it once the recording has ended, or "
                "have its index rebuilt with an MP4 repair tool")  # fmt: skip
HEADER_ONLY_BOXES = frozenset({b"ftyp", b"free", b"skip", b"wide"})
HEADER_ONLY = ("the MP4/MOV file holds its header alone ({size} bytes: no frame data, no index): a copy cut short, or "
               "a recording stopped before its first frame; copy it again")  # fmt: skip
SOUND_ONLY = "it holds no video track (sound or other data only); pass a video file"
# FFmpeg cannot open it, nor copy it into a new file (ffmpeg -c copy): only a whole copy or a repair tool helps
CUT_MP4_INDEX = ("the file is cut short inside its index ('moov' box; {missing} bytes of it missing), without which no "
                 "frame can be found: a copy that did not finish, or a recorder stopped while it wrote the index; copy "
                 "it again (if no whole copy is left, have the index rebuilt with an MP4 repair tool)")  # fmt: skip


def no_video_why(path: str) -> str | None:
    """Why a file FFmpeg cannot open holds no video it could read, as its container says: an empty file, an MP4/MOV
    with frame data and no index or cut inside its index, a file shorter than its container declares, or a whole
    file without a video track (sound only). None where it cannot tell: each was "corrupt, unsupported codec or not
    a video", and a recording in progress or a copy cut short was taken for a broken file."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return "the file is empty (0 bytes): a copy or recording that never got its data; copy it again"
            if f.read(8)[4:8] in MP4_FIRST_BOXES:
                boxes = list(_top_boxes(f))
                kinds = {kind for kind, _, _ in boxes}
                if b"mdat" in kinds and not kinds & {b"moov", b"moof"}:
                    return NO_MP4_INDEX
                if kinds and kinds <= HEADER_ONLY_BOXES:  # a 32-byte file of its 'ftyp' box had said "corrupt"
                    return HEADER_ONLY.format(size=size)
                if boxes and boxes[-1][0] == b"moov" and boxes[-1][2] > size:
                    return CUT_MP4_INDEX.format(missing=boxes[-1][2] - size)
    except (OSError, struct.error):
        return None
    if missing := missing_bytes(path):
        return cut_short(missing)
    # the track list read whole (not one cut off), and an MPEG-TS's streams all of sound: a stream type it does not
    # know may be video (AV1 travels as private data)
    if video_tracks(path) != 0:
        return None
    types = _ts_types(path)
    return SOUND_ONLY if types is None or types and types <= _TS_AUDIO else None


def no_frame_why(path: str, *, codec: str | None, decoder_said: str | None) -> str | None:
    """Why a video that opened gave no frame: cut short (its container says by how much), or its frames could not be
    decoded (FFmpeg's words; an AV1 file's, whose decoder OpenCV's FFmpeg lacks, said "an empty, truncated or
    corrupt video" of a healthy file); None where neither is known."""
    if missing := missing_bytes(path):
        return cut_short(missing)
    if decoder_said is not None:
        video = f"its {codec} video" if codec else "its video"
        return (
            f"FFmpeg could not decode {video} ({decoder_said}): a codec OpenCV's FFmpeg does not decode, or "
            "damaged data; convert it (ffmpeg -i IN -c:v libx264 -pix_fmt yuv420p OUT.mp4), or check the file"
        )
    return None


def _matroska(f) -> int | None:  # noqa: ANN001 - a binary file
    f.seek(0)
    data = f.read(MAX_HEADER)
    if (header := ebml_size(data, 4)) is None:
        return None
    at = 4 + header[1] + header[0]  # the Segment follows the EBML header
    for eid, a, b in ebml_elements(data, at, len(data)):
        if eid != EBML_SEGMENT:
            continue
        for child, c, d in ebml_elements(data, a, b):
            if child == b"\x1f\x43\xb6\x75":  # the first Cluster: the track list comes before it
                return None
            if child != _TRACKS:
                continue
            count = 0
            for entry, e, g in ebml_elements(data, c, d):
                if entry == _TRACK_ENTRY:
                    count += any(
                        k == _TRACK_TYPE and data[x:y] and int.from_bytes(data[x:y], "big") == 1
                        for k, x, y in ebml_elements(data, e, g)
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
    end = at - 4 + struct.unpack("<I", data[at - 4 : at])[0]
    if end > len(data):  # a header list cut off (or over a megabyte): its streams are not all known
        return None
    count, pos = 0, at + 4
    while pos + 8 <= end:
        kind, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if kind == b"LIST" and data[pos + 8 : pos + 12] == b"strl":
            inner = pos + 12
            if data[inner : inner + 4] == b"strh" and data[inner + 8 : inner + 12] == b"vids":
                count += 1
        pos += 8 + size + (size & 1)
    return count


# MPEG-TS stream types of video: MPEG-1/2, MPEG-4 Part 2, H.264, HEVC, AVS, Dirac, VC-1
_TS_VIDEO = frozenset({0x01, 0x02, 0x10, 0x1B, 0x24, 0x42, 0xD1, 0xEA})
# of sound: MPEG-1/2 audio, AAC (ADTS, LATM), AC-3, E-AC-3, DTS, LPCM (Blu-ray)
_TS_AUDIO = frozenset({0x03, 0x04, 0x0F, 0x11, 0x80, 0x81, 0x82, 0x87})


def _ts_sections(data: bytes, pid: int) -> Iterator[bytes]:
    """The payloads of the 188-byte packets of ``pid`` that start a section (pointer field applied)."""
    for at in range(0, len(data) - 187, 188):
        if data[at] != 0x47 or ((data[at + 1] & 0x1F) << 8 | data[at + 2]) != pid or not data[at + 1] & 0x40:
            continue
        body = at + 4
        if data[at + 3] & 0x20:  # an adaptation field first
            body += 1 + data[body]
        if body < at + 188:
            body += 1 + data[body]  # the pointer field
            yield data[body : at + 188]


def _mpeg_ts(f) -> int | None:  # noqa: ANN001 - a binary file
    types = _ts_stream_types(f)
    return None if types is None else sum(t in _TS_VIDEO for t in types)


def _ts_types(path: str) -> frozenset[int] | None:
    """The stream types of an MPEG-TS file's first program; None where it is not MPEG-TS or has no program map."""
    with open(path, "rb") as f:
        if f.read(1) != b"\x47":
            return None
        types = _ts_stream_types(f)
    return None if types is None else frozenset(types)


def _ts_stream_types(f) -> list[int] | None:  # noqa: ANN001 - a binary file
    """The stream types in the first program's map (PMT), read from the first megabyte."""
    f.seek(0)
    data = f.read(1 << 20)
    for pat in _ts_sections(data, 0):
        if len(pat) < 12 or pat[0] != 0x00:
            continue
        length = (pat[1] & 0x0F) << 8 | pat[2]
        for at in range(8, min(3 + length - 4, len(pat) - 3), 4):
            program, pmt_pid = pat[at] << 8 | pat[at + 1], (pat[at + 2] & 0x1F) << 8 | pat[at + 3]
            if program == 0:  # the network PID, not a program
                continue
            for pmt in _ts_sections(data, pmt_pid):
                if len(pmt) < 12 or pmt[0] != 0x02:
                    continue
                end = min(3 + ((pmt[1] & 0x0F) << 8 | pmt[2]) - 4, len(pmt))
                at2 = 12 + ((pmt[10] & 0x0F) << 8 | pmt[11])
                types = []
                while at2 + 5 <= end:
                    types.append(pmt[at2])
                    at2 += 5 + ((pmt[at2 + 3] & 0x0F) << 8 | pmt[at2 + 4])
                return types
            return None
    return None
