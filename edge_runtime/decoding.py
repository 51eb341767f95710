"""Reading and decoding one image without letting it hurt the run.

- :func:`read_bytes` reads regular files only (a FIFO, socket or device is refused without blocking), at most
  :data:`MAX_IMAGE_BYTES`.
- :func:`decode` checks the size the header claims *before* decoding (PNG, JPEG, BMP, PNM, WebP, TIFF), so a
  100000x100000 header is an item error instead of a memory blow-up; anything OpenCV raises is an item error.
- libjpeg's warnings ("Corrupt JPEG data: ...") are caught instead of leaking to stderr and come back as the
  item's ``warning``; a JPEG without its end marker is flagged the same way.

>>> decoded = decode(Path("part.jpg").read_bytes(), source="part.jpg")   # doctest: +SKIP
>>> decoded.image.shape, decoded.warning                                 # doctest: +SKIP
((300, 300), None)
"""

from __future__ import annotations

import errno
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.decoder_messages import imdecode_checked
from edge_runtime.errors import ImageReadError, resource_error
from edge_runtime.preprocess import to_uint8_gray
from edge_runtime.webp_quality import compression_note

MAX_IMAGE_BYTES = 64 << 20  # 64 MiB per image file
MAX_IMAGE_PIXELS = 1 << 26  # 67 MP (8192 x 8192): far above any inspection camera, far below a memory bomb
# Decoder messages that say nothing about this image's integrity.
BENIGN = ("iCCP", "sRGB", "known incorrect", "profile")
# Bytes that may follow a JPEG's end marker without any damage: zero padding (AVI chunks, flash cards) and the
# CR/LF that an MJPEG-over-HTTP camera leaves in the part before its next boundary (counted in Content-Length).
JPEG_TRAILER_PADDING = b"\0\r\n\t "


@dataclass(frozen=True)
class Decoded:
    image: np.ndarray  # 8-bit gray
    warning: str | None = None  # the decoder concealed damage: the verdict may be wrong


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _open_reason(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "symbolic link loop"
    if exc.errno == errno.ENOENT and os.path.lexists(path):
        return "dangling symbolic link"
    if exc.errno == errno.ENXIO:
        return "a socket or device without a reader"
    return exc.strerror or str(exc)


def read_bytes(path: str | Path, *, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """The bytes of an image file; raises :class:`ImageReadError` for anything but a regular file of
    at most ``max_bytes`` (never blocks on a FIFO, never reads a device)."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if (exhausted := resource_error(exc)) is not None:  # the machine's limit, not this file: stop the run
            raise exhausted from exc
        raise ImageReadError(f"{path}: cannot read file ({_open_reason(path, exc)})") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageReadError(f"{path}: not an image file ({_kind(st.st_mode)}); only regular files are read")
        if st.st_size > max_bytes:
            raise ImageReadError(f"{path}: {st.st_size >> 20} MiB is over the {max_bytes >> 20} MiB per-image limit")
        chunks, total = [], 0
        while chunk := os.read(fd, min(1 << 20, max_bytes + 1 - total)):
            chunks.append(chunk)
            total += len(chunk)
            if total > max_bytes:
                raise ImageReadError(f"{path}: grew past the {max_bytes >> 20} MiB per-image limit while read")
        return b"".join(chunks)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    finally:
        os.close(fd)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    pos = 2
    for _ in range(10_000):
        while pos < len(data) - 1 and data[pos] == 0xFF and data[pos + 1] == 0xFF:
            pos += 1  # fill bytes
        if pos + 4 > len(data) or data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:
            pos += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[pos + 5 : pos + 9])
            return w, h
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return None


def _pnm_size(data: bytes) -> tuple[int, int] | None:
    tokens: list[bytes] = []
    for line in data[2:4096].split(b"\n"):
        tokens += line.split(b"#", 1)[0].split()
        if len(tokens) >= 2:
            break
    try:
        return int(tokens[0]), int(tokens[1])
    except (IndexError, ValueError):
        return None


TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, little and big endian


def _tiff_tags(data: bytes, wanted: tuple[int, ...]) -> dict[int, int]:
    """The ``wanted`` SHORT/LONG tags of a TIFF's (or BigTIFF's) first directory; those not found are left out."""
    end = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\0", b"\0+")
    # BigTIFF: 8-byte directory offset and entry count, 20-byte entries with an 8-byte count and value
    first, count_fmt, entry_fmt, entry_size = ("Q", "Q", "HHQ8s", 20) if big else ("I", "H", "HHI4s", 12)
    found: dict[int, int] = {}
    try:
        (ifd,) = struct.unpack(end + first, data[8:16] if big else data[4:8])
        head = struct.calcsize(end + count_fmt)
        (count,) = struct.unpack(end + count_fmt, data[ifd : ifd + head])
        for i in range(min(count, 512)):
            at = ifd + head + entry_size * i
            tag, typ, _, value = struct.unpack(end + entry_fmt, data[at : at + entry_size])
            if tag in wanted and typ in (3, 4, 16):  # SHORT, LONG, LONG8
                size = {3: 2, 4: 4, 16: 8}[typ]
                found[tag] = int.from_bytes(value[:size], "little" if end == "<" else "big")
    except (struct.error, OverflowError):
        pass
    return found


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    size = _tiff_tags(data, (256, 257))
    return (size[256], size[257]) if len(size) == 2 else None


def _tiff_min_is_white(data: bytes) -> bool:
    """A TIFF (or BigTIFF) whose photometric interpretation is 0: its pixel value 0 is white."""
    return data[:4] in TIFF_MAGIC and _tiff_tags(data, (262,)).get(262) == 0


def _white_is_zero_fixed(gray: np.ndarray, buf: np.ndarray, *, deep_int: bool) -> np.ndarray:
    """``gray`` (from a deeper than 8-bit decode of a white-is-zero TIFF) the right way up.

    OpenCV turns such a file's 8-bit pixels the right way up but hands 16-bit and float ones over as stored,
    so a dark defect came out bright on a dark part: judged as the negative, with no note. For 16 bits the 8-bit
    decode says which way is up where it can (it lacks only the depth), so this holds whichever way OpenCV goes;
    where it cannot (no 8-bit decode of float samples or of a BigTIFF; 8-bit values in 16-bit samples come out
    flat at 8 bits) the file is turned over, as its tag says.
    """
    if not deep_int:
        return 255 - gray
    ref = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if ref is None or ref.shape != gray.shape or ref.std() == 0 or gray.std() == 0:
        return 255 - gray
    if float(np.corrcoef(ref.ravel().astype(np.float32), gray.ravel().astype(np.float32))[0, 1]) < 0:
        return 255 - gray
    return gray


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the file's header claims, for the common formats; None when unknown.

    >>> header_size(bytes.fromhex("89504e470d0a1a0a0000000d49484452000186a0000186a0"))
    (100000, 100000)
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    if data[:2] == b"BM" and len(data) >= 26:
        (dib,) = struct.unpack("<I", data[14:18])
        if dib == 12:
            return struct.unpack("<HH", data[18:22])
        w, h = struct.unpack("<ii", data[18:26])
        return w, abs(h) if h != -(2**31) else 2**31
    if data[:1] == b"P" and data[1:2] in b"123456" and len(data) > 2:
        return _pnm_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP" and len(data) >= 30:
        chunk = data[12:16]
        if chunk == b"VP8X":
            return 1 + int.from_bytes(data[24:27], "little"), 1 + int.from_bytes(data[27:30], "little")
        if chunk == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if chunk == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if data[:4] in TIFF_MAGIC:
        return _tiff_size(data)
    return None


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


def decode(
    data: bytes, *, source: str = "image", max_pixels: int = MAX_IMAGE_PIXELS, colour: bool = False, pages: bool = True
) -> Decoded:
    """Encoded image bytes -> 8-bit gray (``colour``: 8-bit BGR, for a video frame that is also shown) plus a
    warning when the decoder had to conceal damage.

    Raises :class:`ImageReadError` for anything that is not a decodable image within ``max_pixels``. ``pages``
    False: the caller looks at further pictures itself (an interlaced Motion-JPEG frame's second field).
    """
    if not data:
        raise ImageReadError(f"{source}: empty file")
    size = header_size(data)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise ImageReadError(
                f"{source}: header claims {w}x{h} pixels (limit {max_pixels} pixels); corrupt or not a part image"
            )
    is_jpeg = data[:2] == b"\xff\xd8"
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        # ANYDEPTH: a 16-bit or float image keeps its depth, for to_uint8_gray to scale by its own bits (OpenCV's
        # 8-bit gray shifts 16 bits right by 8, so 12-bit camera data came out near black; float TIFF failed)
        flags = cv2.IMREAD_COLOR if colour else cv2.IMREAD_GRAYSCALE | cv2.IMREAD_ANYDEPTH
        image, messages = imdecode_checked(buf, flags)
    except (cv2.error, MemoryError, OverflowError, ValueError) as exc:
        if isinstance(exc, MemoryError) or "Insufficient memory" in str(exc):  # the machine's memory, not the file
            raise ImageReadError(f"{source}: too large to decode in the memory this process may use (out of "
                                 "memory); free memory or raise the limit (ulimit -v)") from exc  # fmt: skip
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:120]
        raise ImageReadError(f"{source}: cannot decode ({first})") from exc
    if image is None:
        raise ImageReadError(f"{source}: not a readable image (corrupt, truncated or not an image format)")
    notes = [m for m in messages if not any(b in m for b in BENIGN)]
    warning = None
    if notes:
        warning = f"decoder reported damage: {notes[0][:160]}"
    elif is_jpeg and not data.rstrip(JPEG_TRAILER_PADDING).endswith(b"\xff\xd9"):
        warning = "JPEG has no end marker (truncated file); the verdict may be wrong"
    if pages and (several := pages_note(data)) is not None:
        warning = f"{warning}; {several}" if warning else several
    if data[:4] == b"RIFF" and (coarse := compression_note(data)) is not None:
        warning = f"{warning}; {coarse}" if warning else coarse
    if colour:
        return Decoded(image, warning)
    gray = to_uint8_gray(image, source=source)
    if image.dtype != np.uint8 and _tiff_min_is_white(data):
        gray = _white_is_zero_fixed(gray, buf, deep_int=image.dtype.kind in "iu")
    return Decoded(gray, warning)


def pages_note(data: bytes) -> str | None:
    """The warning for a file that holds more pictures than the first, which alone is judged (None: one)."""
    pages = page_count(data)
    if pages is None or pages <= 1:  # the others were never looked at: a gate must not pass them unseen
        return None
    return (f"the file holds {pages} pages or frames and only the first was inspected; save each as its own "
            "image (or the frames as a video)")  # fmt: skip


def read_image_checked(path: str | Path) -> Decoded:
    """:func:`read_bytes` then :func:`decode`: the safe way to load one image file."""
    return decode(read_bytes(path), source=str(path))
