"""Reading and decoding one image without letting it hurt the run.

- :func:`read_bytes` reads regular files only (a FIFO, socket or device is refused without blocking), at most
  :data:`MAX_IMAGE_BYTES`.
- :func:`decode` checks the size the header claims *before* decoding (PNG, JPEG, BMP, PNM, WebP, TIFF, and GIF,
  JPEG 2000, AVIF, Sun raster, PAM, PFM, HDR: OpenCV decodes them whatever the suffix), so a
  100000x100000 header is an item error instead of a memory blow-up; anything OpenCV raises is an item error.
- libjpeg's warnings ("Corrupt JPEG data: ...") are caught instead of leaking to stderr and come back as the
  item's ``warning``; a JPEG without its end marker is flagged the same way (and decoded: OpenCV 5 alone refuses it).

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
from edge_runtime.image_pages import pages_note
from edge_runtime.items import with_warning
from edge_runtime.other_headers import other_size
from edge_runtime.preprocess import not_finite_note, to_uint8_gray
from edge_runtime.webp_quality import compression_note

MAX_IMAGE_BYTES = 64 << 20  # 64 MiB per image file
MAX_IMAGE_PIXELS = 1 << 26  # 67 MP (8192 x 8192): far above any inspection camera, far below a memory bomb
# Scans in a JPEG file: an encoder's progressive script has 6-10, an optimised one a few dozen; every scan is a pass
# over the whole picture (17 ms at 67 MP), and a 99-byte scan repeated filled 64 MiB with hours of decoding.
MAX_JPEG_SCANS = 500
# Decoder messages that say nothing about this image's integrity. libtiff names each tag it does not know (ImageJ's
# 50838, GeoTIFF's 33550, a camera maker's private ones) and skips it: every such TIFF had failed the gate as damaged.
BENIGN = ("iCCP", "sRGB", "known incorrect", "profile", "Unknown field with tag")
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
    return other_size(data)  # formats OpenCV decodes whatever the suffix: a GIF named part.png


def _gray_flags(data: bytes) -> int:
    """The flags that decode ``data`` for the gray the model reads: a colour PNG (RGB, palette, RGBA) is decoded in
    colour and made gray by :func:`to_uint8_gray`, as a camera's frame and an array passed to ``predict`` are.
    libpng's own conversion truncates (half the pixels a level darker): ``edge-infer`` scored a colour PNG otherwise
    than ``model.predict(cv2.imread(path))`` (a tinted copy of the test set: 39 of 715 scores apart by over 0.01,
    one verdict flipped). JPEG's gray is its own luma plane, decoded without the colour planes (2-3x faster)."""
    colour_png = data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 25 and data[25] in (2, 3, 6)
    return (cv2.IMREAD_COLOR if colour_png else cv2.IMREAD_GRAYSCALE) | cv2.IMREAD_ANYDEPTH


def zero_tail_note(data: bytes) -> str | None:
    """A note for a file whose last bytes are a long run of zeros: a picture written into a file made at its full size
    first (a camera, an SMB or rsync copy that pre-allocates) and read before the writer was done. A BMP or WebP so
    cut decoded without a word, the rows not yet written black, and a part was judged "ok" on 90% of its picture.

    >>> zero_tail_note(b"BM" + bytes(510)) is not None, zero_tail_note(b"BM" + bytes(10) + b"x" * 500)
    (True, None)
    """
    zeros = len(data) - len(data.rstrip(b"\0"))
    if zeros < max(256, len(data) // 128):
        return None
    return (f"the file ends in {zeros} zero bytes (still being written, or a copy cut short?); "
            "the verdict may be wrong, inspect it again once written")  # fmt: skip


def _has_end_marker(data: bytes) -> bool:
    return data.rstrip(JPEG_TRAILER_PADDING).endswith(b"\xff\xd9")


def _pixels(data: bytes, buf: np.ndarray, *, colour: bool) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` of ``buf`` (``data``'s bytes) as :func:`decode` wants it, plus the decoder's messages.

    A JPEG cut before its end marker (a camera or a copy cut off in its last bytes, an upload not finished) is
    decoded again with the marker put back: OpenCV 5 refuses such a file whole, "not a readable image", where
    OpenCV 4's libjpeg put the marker back itself. Every byte that came is decoded, the rest concealed; the caller's
    warning says so (the decoder's own message, or "no end marker" where nothing but the marker was missing).
    """
    # ANYDEPTH: a 16-bit or float image keeps its depth, for to_uint8_gray to scale by its own bits (OpenCV's
    # 8-bit gray shifts 16 bits right by 8, so 12-bit camera data came out near black; float TIFF failed)
    flags = cv2.IMREAD_COLOR if colour else _gray_flags(data)
    tiff = data[:4] in TIFF_MAGIC  # libtiff tells damage only through OpenCV's log
    image, messages = imdecode_checked(buf, flags, logged=tiff)
    if image is None and not colour and tiff:  # a colour float TIFF: OpenCV cannot make it
        image, messages = imdecode_checked(buf, cv2.IMREAD_UNCHANGED, logged=True)  # gray in the same read
    if image is None and data[:2] == b"\xff\xd8" and not _has_end_marker(data):
        # appended as it is, nothing stripped: trailing bytes that look like padding may be the scan's last ones
        image, messages = imdecode_checked(np.frombuffer(data + b"\xff\xd9", np.uint8), flags)
    return image, messages


def _check_cost(data: bytes, *, source: str, max_pixels: int) -> None:
    """Raises :class:`ImageReadError` for a file whose decoding would cost more than any part's picture: a header
    claiming over ``max_pixels``, a JPEG of over :data:`MAX_JPEG_SCANS` scans."""
    size = header_size(data)
    if size is not None:
        w, h = size
        if w <= 0 or h <= 0 or w * h > max_pixels:
            raise ImageReadError(
                f"{source}: header claims {w}x{h} pixels (limit {max_pixels} pixels); corrupt or not a part image"
            )
    # Counted as bytes, in C: a start-of-scan marker cannot occur in entropy-coded data (an FF there is followed by
    # 00 or a restart marker), so only stray bytes in metadata can add to the count, and never hundreds.
    if data[:2] == b"\xff\xd8" and (scans := data.count(b"\xff\xda")) > MAX_JPEG_SCANS:
        raise ImageReadError(f"{source}: JPEG holds {scans} scans (limit {MAX_JPEG_SCANS}; a picture has a few "
                             "dozen at most), crafted or damaged; not decoded")  # fmt: skip


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
    _check_cost(data, source=source, max_pixels=max_pixels)
    is_jpeg = data[:2] == b"\xff\xd8"
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        image, messages = _pixels(data, buf, colour=colour)
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
    elif is_jpeg and not _has_end_marker(data):
        warning = "JPEG has no end marker (truncated file); the verdict may be wrong"
    elif not is_jpeg:  # a JPEG's zero padding after its end marker is harmless, before it is "no end marker"
        warning = zero_tail_note(data)
    if pages:
        warning = with_warning(warning, pages_note(data))
    if data[:4] == b"RIFF":
        warning = with_warning(warning, compression_note(data))
    if colour:
        return Decoded(image, warning)
    gray = to_uint8_gray(image, source=source)
    warning = with_warning(warning, not_finite_note(image))  # a float TIFF's NaN pixels: drawn black, without a word
    if image.dtype != np.uint8 and _tiff_min_is_white(data):
        gray = _white_is_zero_fixed(gray, buf, deep_int=image.dtype.kind in "iu")
    return Decoded(gray, warning)


def read_image_checked(path: str | bytes | os.PathLike[str]) -> Decoded:
    """:func:`read_bytes` then :func:`decode`: the safe way to load one image file."""
    path = image_path(path)
    return decode(read_bytes(path), source=str(path))


def image_path(path: object) -> Path:
    """``path`` (a str, a Path or bytes, as ``os.listdir(b".")`` gives a name that is not UTF-8) as a Path; anything
    else, an image's own bytes included, is an :class:`ImageReadError` saying what to pass. Bytes had been a
    TypeError from pathlib, ``None`` or an open file Python's "expected str, bytes or os.PathLike object"."""
    if isinstance(path, (str, bytes, os.PathLike)):
        text = os.fsdecode(os.fspath(path))
        if "\0" not in text:  # no path holds a NUL; an image file's contents nearly always do
            return Path(text)
    what = (
        "an image file's contents" if isinstance(path, (bytes, bytearray, memoryview))
        else "a path holding a NUL character" if isinstance(path, (str, os.PathLike))
        else type(path).__name__
    )  # fmt: skip
    raise ImageReadError(f"read_image takes a file's path (str, Path or bytes), not {what}; decode an image's bytes "
                         "with decode_image(data), pass an array to predict as it is")  # fmt: skip
