"""The size claimed by the headers of the formats OpenCV decodes whatever a file's name says (GIF, JPEG 2000, AVIF,
Sun raster, PAM, PFM, Radiance HDR): ``part.png`` holding any of them is decoded as what it is. Without their size
the pixel limit was never checked, and a 35-byte GIF claiming a 30000x30000 screen took 23 s and 4.3 GB to decode
(a 226-byte JPEG 2000 file claiming 20000x20000: 12 s, 2 GB), on each decoding thread at once.

>>> gif_screen = b"GIF89a" + (30000).to_bytes(2, "little") * 2
>>> other_size(gif_screen + bytes(8))
(30000, 30000)
"""

from __future__ import annotations

import re
import struct

JP2_SIGNATURE = b"\0\0\0\x0cjP  \r\n\x87\n"
J2K_SIZ = b"\xff\x4f\xff\x51"  # a codestream's start marker, then its image and tile size segment
SUN_MAGIC = b"\x59\xa6\x6a\x95"
HEAD = 4096  # a text header (PAM, HDR) longer than this is not one OpenCV reads either


def _largest(sizes: list[tuple[int, int]]) -> tuple[int, int] | None:
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


def _jpeg2000_size(data: bytes) -> tuple[int, int] | None:
    """The larger of a JP2 file's image header box and its codestream's own size: the decoder allocates what the
    codestream says, and a file that holds no codestream where it should is checked by its box."""
    sizes = []
    if data.startswith(JP2_SIGNATURE) and (at := data.find(b"ihdr", 0, HEAD)) >= 0 and at + 12 <= len(data):
        h, w = struct.unpack(">II", data[at + 4 : at + 12])
        sizes.append((w, h))
    if (at := data.find(J2K_SIZ, 0, HEAD)) >= 0 and at + 24 <= len(data):
        x1, y1, x0, y0 = struct.unpack(">IIII", data[at + 8 : at + 24])
        sizes.append((x1 - x0, y1 - y0))
    return _largest(sizes)


def _avif_size(data: bytes) -> tuple[int, int] | None:
    """The largest image spatial extent ('ispe') an AVIF declares: a grid image has one per tile and one whole."""
    sizes, at = [], data.find(b"ispe", 0, 1 << 16)
    while at >= 0 and at + 16 <= len(data):
        sizes.append(struct.unpack(">II", data[at + 8 : at + 16]))
        at = data.find(b"ispe", at + 4, 1 << 16)
    return _largest(sizes)


def _pam_size(data: bytes) -> tuple[int, int] | None:
    head = data[: data.find(b"ENDHDR", 0, HEAD)]
    w, h = re.search(rb"\bWIDTH\s+(\d+)", head), re.search(rb"\bHEIGHT\s+(\d+)", head)
    return (int(w.group(1)), int(h.group(1))) if w and h else None


def _hdr_size(data: bytes) -> tuple[int, int] | None:
    """Radiance's resolution line, ``-Y 300 +X 400`` (or X first, for a picture stored turned)."""
    line = re.search(rb"\n\s*([-+])([XY])\s+(\d+)\s+([-+])([XY])\s+(\d+)", data[:HEAD])
    if line is None:
        return None
    first, second = int(line.group(3)), int(line.group(6))
    return (second, first) if line.group(2) == b"Y" else (first, second)


def other_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the header of a GIF, JPEG 2000, AVIF, Sun raster, PAM, PFM or HDR file claims; None for
    any other file, or where the header cannot be read (the decoder then refuses the file itself)."""
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        return struct.unpack("<HH", data[6:10])  # the logical screen: the canvas OpenCV decodes every frame onto
    if data.startswith(JP2_SIGNATURE) or data.startswith(J2K_SIZ):
        return _jpeg2000_size(data)
    if data[4:12] == b"ftypavif" or data[4:12] == b"ftypavis":
        return _avif_size(data)
    if data[:4] == SUN_MAGIC and len(data) >= 12:
        return struct.unpack(">II", data[4:12])
    if data[:2] == b"P7":
        return _pam_size(data)
    if data[:2] in (b"PF", b"Pf"):  # PFM: "width height" after its magic, as PNM has them
        tokens = data[2:HEAD].split()[:2]
        return (int(tokens[0]), int(tokens[1])) if len(tokens) == 2 and all(t.isdigit() for t in tokens) else None
    if data[:2] == b"#?":  # "#?RADIANCE", "#?RGBE"
        return _hdr_size(data)
    return None
