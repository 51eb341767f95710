"""Image files as users bring them: formats OpenCV decodes whatever the name says, and files named unlike images."""

from __future__ import annotations

import struct
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_runtime import read_image
from edge_runtime.decoding import decode, header_size
from edge_runtime.errors import ExitCode, ImageReadError
from tests.edge_runtime.conftest import write_parts
from tests.edge_runtime.faults_common import GOOD_LEVELS, check, invoke, no_hang  # noqa: F401 - fixture

BOMB_SIDE = 9000  # 81 MP: over the 67 MP limit, and small enough that the old code decoded it in seconds


def gif_screen(width: int, height: int) -> bytes:
    """A 35-byte GIF: a 1x1 picture on a logical screen of ``width`` x ``height``, the canvas OpenCV decodes to."""
    head = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    picture = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    return head + picture + b"\x3b"


def jp2_claiming(side: int) -> bytes:
    """A JPEG 2000 file of a 64x64 gray picture whose header, codestream and one tile claim ``side`` x ``side``."""
    data = bytearray(cv2.imencode(".jp2", np.full((64, 64), 90, np.uint8))[1].tobytes())
    siz = data.find(b"\xff\x4f\xff\x51") + 2
    data[siz + 6 : siz + 14] = struct.pack(">II", side, side)  # image size
    data[siz + 22 : siz + 30] = struct.pack(">II", side, side)  # tile size: one tile, decoded whole
    box = data.find(b"ihdr")
    data[box + 4 : box + 12] = struct.pack(">II", side, side)
    return bytes(data)


def test_a_gif_or_jpeg2000_named_like_a_part_is_refused_by_its_header_before_decoding(tmp_path, tiny_model):
    """A 35-byte GIF saved as part.png claiming a 30000x30000 screen was decoded whole: 23 s and 4.3 GB, on every
    decoding thread at once (a 226-byte JPEG 2000 file claiming 20000x20000: 12 s, 2 GB). The header check knew PNG,
    JPEG, BMP, PNM, WebP and TIFF only, though OpenCV decodes a file by its content, not its name."""
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "bomb_gif.png").write_bytes(gif_screen(BOMB_SIDE, BOMB_SIDE))
    (folder / "bomb_jp2.jpg").write_bytes(jp2_claiming(BOMB_SIDE))
    started = time.monotonic()
    recs = check(invoke(["--model", str(tiny_model), "--source", str(folder)]), ExitCode.OK, error_lines=0)
    assert len(recs) == 4
    for rec in recs[:2]:
        assert rec["label"] is None and f"header claims {BOMB_SIDE}x{BOMB_SIDE} pixels" in rec["error"], rec
    assert [r["defective"] for r in recs[2:]] == [False, True]
    with pytest.raises(ImageReadError, match="header claims 30000x30000 pixels"):  # the Python API, as quickly
        read_image_bytes(tmp_path / "screen.png", gif_screen(30000, 30000))
    assert time.monotonic() - started < 20


def read_image_bytes(path: Path, data: bytes) -> np.ndarray:
    path.write_bytes(data)
    return read_image(path)


def _encoded(ext: str) -> bytes:
    picture = np.random.default_rng(1).integers(0, 255, (64, 80), dtype=np.uint8)
    if ext in (".pfm", ".hdr"):
        picture = cv2.cvtColor(picture.astype(np.float32) / 255, cv2.COLOR_GRAY2BGR)
    elif ext == ".gif":
        picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)  # OpenCV's GIF writer takes colour only
    ok, buf = cv2.imencode(".jp2" if ext == ".j2c" else ext, picture)
    assert ok, ext
    data = buf.tobytes()
    return data[data.find(b"\xff\x4f\xff\x51") :] if ext == ".j2c" else data  # a bare codestream, as cameras write


@pytest.mark.parametrize("ext", [".gif", ".jp2", ".j2c", ".avif", ".ras", ".pam", ".pfm", ".hdr"])
def test_the_other_formats_opencv_decodes_still_decode_with_their_header_read(ext: str):
    """The header sizes read for the pixel limit are the pictures' own: such a file is still judged."""
    data = _encoded(ext)
    assert header_size(data) == (80, 64)
    assert decode(data, source=ext).image.shape == (64, 80)


def test_a_picture_saved_without_an_image_suffix_is_judged_not_passed_over(tmp_path, tiny_model):
    """A defective part a camera saved as ``part_0002`` (or an upload as ``part.png.1``) was listed among the files
    "not inspected, not images" and the gate passed, exit 0. A FIFO, notes, a raw Motion-JPEG video and a camera raw
    file (TIFF inside) beside them stay not inspected, and nothing blocks."""
    import os

    folder = tmp_path / "lot"
    write_parts(folder, [10])  # one OK part
    bright = np.full((48, 48), 220, np.uint8)  # defective with the tiny model
    (folder / "part_0002").write_bytes(cv2.imencode(".jpg", bright)[1].tobytes())
    (folder / "part.png.1").write_bytes(cv2.imencode(".png", bright)[1].tobytes())
    (folder / "part_0003.BMP_").write_bytes(cv2.imencode(".bmp", bright)[1].tobytes())
    (folder / "line.mjpeg").write_bytes(cv2.imencode(".jpg", bright)[1].tobytes() * 2)
    (folder / "part_0001.nef").write_bytes(cv2.imencode(".tif", bright)[1].tobytes())
    (folder / "notes").write_text("lot 3, shift 2\n")
    os.mkfifo(folder / "pipe")
    result = invoke(["--model", str(tiny_model), "--source", str(folder), "--fail-on-defect"])
    recs = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    judged = {Path(r["source"]).name: r["defective"] for r in recs}
    assert judged == {"part_00.png": False, "part_0002": True, "part.png.1": True, "part_0003.BMP_": True}
    assert "lot: 4 images (4 files not inspected, not images or hidden: line.mjpeg, notes, part_0001.nef, ...)" in (
        result.stderr
    )


def progressive_jpeg(side: int) -> tuple[bytes, list[int]]:
    """A flat progressive JPEG (its AC scans a few dozen bytes each) and where each of its scans begins."""
    data = cv2.imencode(".jpg", np.full((side, side), 40, np.uint8), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    scans, at = [], data.find(b"\xff\xda")
    while at >= 0:
        scans.append(at)
        at = data.find(b"\xff\xda", at + 2)
    return data, scans


def test_a_jpeg_of_endless_scans_is_refused_before_decoding(tmp_path, tiny_model):
    """Every scan of a progressive JPEG is a pass over the whole picture: one 99-byte scan repeated 1000 times took
    17 s to decode at 8192x8192, and the 64 MiB file limit let it take hours, with no word (only libjpeg's own
    "Inconsistent progression sequence" line on stderr)."""
    data, scans = progressive_jpeg(1024)
    last = data[scans[-1] : -2]  # the last scan, repeated before the end marker
    folder = tmp_path / "parts"
    write_parts(folder, GOOD_LEVELS)
    (folder / "scans.jpg").write_bytes(data[:-2] + last * 600 + b"\xff\xd9")
    result = invoke(["--model", str(tiny_model), "--source", str(folder)])
    recs = check(result, ExitCode.OK, error_lines=0)
    assert [r["defective"] for r in recs[:2]] == [False, True]
    assert recs[2]["label"] is None and "JPEG holds 606 scans (limit 500" in recs[2]["error"], recs[2]


def test_a_progressive_jpeg_with_a_damaged_scan_header_gets_a_warning_and_fails_the_gate(tmp_path, tiny_model):
    """A flipped bit in a scan header (a refinement pass out of sequence) was decoded in silence, "ok" and exit 0
    under --fail-on-defect, while libjpeg's "Inconsistent progression sequence for component 0 coefficient 0" went
    to stderr as it was: the warning named no JPEG, so it was not taken for the decoder's."""
    data, scans = progressive_jpeg(64)
    flipped = bytearray(data)
    flipped[scans[-1] + 9] ^= 0x10  # the last scan's successive-approximation byte: Ah 1 -> 0, a first pass again
    path = tmp_path / "part.jpg"
    path.write_bytes(bytes(flipped))
    result = invoke(["--model", str(tiny_model), "--source", str(path), "--fail-on-defect"])
    (rec,) = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert not rec["defective"] and rec["warning"].startswith("decoder reported damage: Inconsistent progression")


@pytest.fixture
def opencv_warnings():
    """OpenCV's log at its WARNING level, as in a user's program (edge-infer silences it for the process)."""
    before = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_WARNING)
    yield
    cv2.utils.logging.setLogLevel(before)


@pytest.mark.parametrize("tag", [50838, 33550, 65000])  # ImageJ's metadata, GeoTIFF's pixel scale, a private tag
def test_a_tiff_with_a_tag_libtiff_does_not_know_is_not_called_damaged(tmp_path, opencv_warnings, tag: int):
    """libtiff's "Unknown field with tag 50838 (0xc696) encountered" (a TIFF saved by ImageJ/Fiji, a GeoTIFF, a
    camera maker's private tag) made ``read_image`` warn "decoder reported damage" on every such picture, which
    edge-infer judged without a word. libtiff skips a tag it does not know; the pixels are whole."""
    import warnings

    data = bytearray(cv2.imencode(".tif", np.full((48, 48), 10, np.uint8))[1].tobytes())
    ifd = struct.unpack("<I", data[4:8])[0]
    count = struct.unpack("<H", data[ifd : ifd + 2])[0]
    last = ifd + 2 + 12 * (count - 1)  # tags are sorted: the last one renamed to a higher number keeps them so
    data[last : last + 2] = struct.pack("<H", tag)
    path = tmp_path / "part.tif"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an ImageWarning fails the test
        assert read_image(path).mean() == 10


def test_a_tiff_with_damaged_strips_gets_a_warning_without_debug_too(tmp_path, tiny_model):
    """libtiff reports a damaged strip ("LZWDecode: Not enough data at scanline 0") only through OpenCV's log,
    which edge-infer silences without --debug: the damaged picture was judged "ok" in silence and the gate passed,
    while the same run with --debug warned and failed it."""
    picture = np.random.default_rng(0).integers(0, 40, (96, 96), dtype=np.uint8)
    data = bytearray(cv2.imencode(".tif", picture)[1].tobytes())
    data[len(data) // 3 : len(data) // 3 + 40] = bytes(40)  # a run of strip bytes lost (a copy, a flash card)
    path = tmp_path / "part.tif"
    path.write_bytes(bytes(data))
    for debug in ([], ["--debug"]):
        result = invoke(["--model", str(tiny_model), "--source", str(path), "--fail-on-defect", *debug])
        (rec,) = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
        assert rec["label"] == "ok" and "decoder reported damage" in rec["warning"], rec
        assert "LZWDecode: Not enough data" in rec["warning"], rec


@pytest.mark.parametrize("ext", [".bmp", ".webp"])
def test_a_picture_read_while_written_into_a_preallocated_file_gets_a_warning(tmp_path, tiny_model, ext: str):
    """A camera or an SMB/rsync copy that makes the file at its full size first, then fills it: read while 90%
    written, a BMP or WebP decoded without a word (the rows not yet written black, or VP8's guess) and a part was
    judged "ok" on 90% of its picture, exit 0 under --fail-on-defect. A JPEG so cut was flagged (no end marker)."""
    picture = np.random.default_rng(1).integers(0, 20, (160, 160), dtype=np.uint8)  # scores ok with the tiny model
    whole = cv2.imencode(ext, cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR))[1].tobytes()
    written = len(whole) * 9 // 10
    path = tmp_path / f"part{ext}"
    path.write_bytes(whole[:written] + bytes(len(whole) - written))
    result = invoke(["--model", str(tiny_model), "--source", str(path), "--fail-on-defect"])
    (rec,) = check(result, ExitCode.DEFECT_FOUND, error_lines=0)
    assert rec["label"] == "ok" and "ends in" in rec["warning"] and "still being written" in rec["warning"], rec
    path.write_bytes(whole)  # written whole: no warning, the gate passes
    (rec,) = check(invoke(["--model", str(tiny_model), "--source", str(path), "--fail-on-defect"]), ExitCode.OK,
                   error_lines=0)  # fmt: skip
    assert rec["label"] == "ok" and rec["warning"] is None, rec
