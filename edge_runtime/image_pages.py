"""How many pictures an image file holds: a multi-page TIFF, an animated PNG, WebP or GIF, JPEG pictures one after
another (a stereo camera's MPO). OpenCV decodes only the first, so a defective later picture would pass unseen:
:func:`pages_note` gives the item its warning.

>>> pages_note(bytes.fromhex("ffd8 ffe000034a ffda000201 12ff0034 ffd9") * 2)[:40]
'the file holds 2 pages or frames and onl'
"""

from __future__ import annotations

import struct


def _tiff_pages(data: bytes) -> int | None:
    """Pages in a TIFF's chain of image directories (BigTIFF too); a pointer out of the file ends the count."""
    end = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    off, cnt, entry = ("Q", "Q", 20) if big else ("I", "H", 12)
    osz, csz = struct.calcsize(off), struct.calcsize(cnt)
    try:
        (ifd,) = struct.unpack(end + off, data[8:16] if big else data[4:8])
        seen: set[int] = set()
        while ifd and ifd not in seen and len(seen) < 1_000_000:
            (count,) = struct.unpack(end + cnt, data[ifd : ifd + csz])
            nxt = ifd + csz + entry * count
            if count == 0 or nxt + osz > len(data):  # not a directory: the chain is damaged, not longer
                break
            seen.add(ifd)
            (ifd,) = struct.unpack(end + off, data[nxt : nxt + osz])
    except struct.error:
        pass  # a chain cut short: the pages found so far
    return len(seen) or None


def _webp_frames(data: bytes) -> int:
    frames, at = 0, 12
    while at + 8 <= len(data):
        size = int.from_bytes(data[at + 4 : at + 8], "little")
        frames += data[at : at + 4] == b"ANMF"
        at += 8 + size + (size & 1)
    return frames


def _png_images(data: bytes) -> int:
    """Images in a PNG: its animation's frames, plus the default image when that is not one of them (no frame
    control before the pixels: a viewer shows the animation, the decoder the hidden default).

    The frames are the frame controls (fcTL) the file holds, counted over the whole file where it declares an
    animation (acTL, before the pixels), not the count acTL claims: a header claiming 4294967295 frames was
    reported with that number.
    """
    at, animated, pixels, framed, frames = 8, False, False, False, 0
    while at + 8 <= len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        kind = data[at + 4 : at + 8]
        if kind == b"IDAT" and not pixels:
            pixels, framed = True, frames > 0
            if not animated:
                break
        if kind == b"IEND":  # nothing after it is part of the image (3 fcTL appended after it counted as frames)
            break
        animated = animated or (kind == b"acTL" and not pixels)
        frames += kind == b"fcTL"
        at += 12 + size
    if not animated or frames == 0:
        return 1
    return frames + (0 if framed else 1)


def page_count(data: bytes) -> int | None:
    """How many pages or frames an image file holds, for the formats that can hold several (multi-page TIFF,
    animated PNG and WebP, JPEG pictures one after another); None when unknown. Decoding reads only the first.

    >>> one_page = b"II*\\0" + (8).to_bytes(4, "little") + (1).to_bytes(2, "little") + bytes(12) + bytes(4)
    >>> page_count(one_page), page_count(one_page[:-4] + (8).to_bytes(4, "little"))  # a loop is one page
    (1, 1)
    """
    if data[:4] in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"):
        return _tiff_pages(data)
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return _png_images(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        animated = data[12:16] == b"VP8X" and len(data) > 20 and data[20] & 0x02
        return (_webp_frames(data) or 1) if animated else 1
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_images(data)
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return _gif_images(data)
    return None


def _gif_images(data: bytes, limit: int = 64) -> int:
    """How many pictures a GIF holds (up to ``limit``): OpenCV decodes a GIF whatever its suffix, an animated one
    saved as ``part.png`` was judged on its first frame, without a word, and a defective later frame passed.

    >>> head = b"GIF89a" + bytes([2, 0, 2, 0, 0x80, 0, 0]) + bytes(6)  # 2x2, a 2-colour global table
    >>> frame = bytes([0x2C, *bytes(8), 0, 2, 2, 0x44, 1, 0])  # descriptor, LZW code size, one sub-block, end
    >>> gce = bytes([0x21, 0xF9, 4, *bytes(4), 0])  # a graphic control extension before each frame
    >>> _gif_images(head + frame + b";"), _gif_images(head + (gce + frame) * 3 + b";")
    (1, 3)
    """
    pos, count = 13, 0
    if len(data) > 10 and data[10] & 0x80:  # the global colour table
        pos += 3 << ((data[10] & 7) + 1)
    while pos < len(data) and count < limit:
        kind = data[pos]
        if kind == 0x3B:  # the trailer
            break
        if kind == 0x21:  # an extension: its label, then sub-blocks
            pos += 2
        elif kind == 0x2C:  # a picture: its descriptor, its own colour table, the LZW code size, then sub-blocks
            count += 1
            if pos + 9 >= len(data):
                break
            packed = data[pos + 9]
            pos += 10 + ((3 << ((packed & 7) + 1)) if packed & 0x80 else 0) + 1
        else:
            break  # not a GIF block: what came before is what the file holds
        while pos < len(data) and data[pos]:  # sub-blocks up to the empty one
            pos += data[pos] + 1
        pos += 1
    return max(count, 1)


def _jpeg_images(data: bytes, limit: int = 64) -> int:
    """How many complete JPEG pictures follow one another in ``data``: a stereo camera's MPO file, or a camera
    that appends a frame, holds a second one after the first's end marker, and only the first was judged (a
    defective second picture passed, without a word). A thumbnail inside the first picture's EXIF segment is
    not another picture.

    >>> one = bytes.fromhex("ffd8 ffe000034a ffda000201 12ff0034 ffd9")
    >>> _jpeg_images(one), _jpeg_images(one + bytes(2) + one), _jpeg_images(one[:-2]), _jpeg_images(one + b"ab" + one)
    (1, 2, 1, 2)
    >>> _jpeg_images(one + one[:-4])  # a second picture cut short
    2
    """
    if data.find(b"\xff\xd8\xff", 3) < 0:  # most files: no second start marker at all (a quick answer)
        return 1
    count, pos = 0, 0
    while count < limit and data[pos : pos + 3] == b"\xff\xd8\xff":
        end = _jpeg_end(data, pos + 2)
        if end is None:
            return count + 1  # a picture cut short (decoding warns of it) is still a picture: the first, or another
        count += 1
        # the next picture may follow padding, fill bytes or a length prefix: any start marker after this one's end
        # (none can be inside a complete picture's data) begins another
        pos = data.find(b"\xff\xd8\xff", end)
        if pos < 0:
            break
    return max(count, 1)


def _jpeg_end(data: bytes, pos: int) -> int | None:
    """Where the JPEG picture whose markers start at ``pos`` ends (just after its EOI), None if it does not."""
    n = len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:
            pos += 1  # fill byte
            continue
        if marker == 0xD9:
            return pos + 2
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 2
            continue
        if pos + 4 > n:
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker != 0xDA:  # a segment; after a scan header, entropy-coded data runs to the next real marker
            continue
        while True:
            pos = data.find(b"\xff", pos)
            if pos < 0 or pos + 1 >= n:
                return None
            nxt = data[pos + 1]
            if nxt == 0x00 or 0xD0 <= nxt <= 0xD7 or nxt == 0xFF:
                pos += 1 if nxt == 0xFF else 2  # stuffed byte, restart marker, or fill
                continue
            break
    return None


def pages_note(data: bytes) -> str | None:
    """The warning for a file that holds more pictures than the first, which alone is judged (None: one)."""
    pages = page_count(data)
    if pages is None or pages <= 1:  # the others were never looked at: a gate must not pass them unseen
        return None
    return (f"the file holds {pages} pages or frames and only the first was inspected; save each as its own "
            "image (or the frames as a video)")  # fmt: skip
