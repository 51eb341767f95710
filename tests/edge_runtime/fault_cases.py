"""Generators of bad inputs for the fault suite: images, special files, models, metadata.

Each generator returns (case id, something that writes the case); the tests in test_faults*.py run edge-infer on
every case and check what a user sees: one error line or one record per entry, a documented exit code, no
traceback, no hang.
"""

from __future__ import annotations

import json
import os
import random
import socket
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tests.edge_runtime.conftest import model_bytes, tiny_info, with_metadata

Writer = Callable[[Path], None]  # writes one entry at the given path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    body = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body


def jpeg_header(w: int, h: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, h, w, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xd9"


def bmp_header(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 0, 16, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 16, 0, 0, 54) + info + b"\0" * 16


def webp_header(w: int, h: int) -> bytes:
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4 + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x


def tiff_header(w: int, h: int) -> bytes:
    entries = struct.pack("<HHII", 256, 4, 1, w) + struct.pack("<HHII", 257, 4, 1, h)
    return b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + b"\0\0\0\0"


def _bytes(data: bytes) -> Writer:
    return lambda p: p.write_bytes(data)


def huge_header_cases() -> list[tuple[str, str, Writer]]:
    """(id, file name, writer): headers that claim absurd sizes."""
    cases = []
    for w, h in ((100000, 100000), (2**31 - 1, 1), (1, 2**31 - 1), (0, 0), (70000, 70000)):
        cases += [
            (f"png-{w}x{h}", "x.png", _bytes(png_header(w, h))),
            (f"jpeg-{w}x{h}", "x.jpg", _bytes(jpeg_header(min(w, 65535), min(h, 65535)))),
            (f"bmp-{w}x{h}", "x.bmp", _bytes(bmp_header(w % 2**31, h % 2**31))),
            (f"pgm-{w}x{h}", "x.pgm", _bytes(f"P5\n{w} {h}\n255\n".encode() + b"\0" * 64)),
        ]
    cases += [
        ("bmp-negative-height", "x.bmp", _bytes(bmp_header(100, -100))),
        ("bmp-min-height", "x.bmp", _bytes(bmp_header(100, -(2**31)))),
        ("bmp-negative-width", "x.bmp", _bytes(bmp_header(-100, 100))),
        ("ppm-huge", "x.ppm", _bytes(b"P6\n# comment\n100000 100000\n255\n" + b"\0" * 64)),
        ("webp-huge", "x.webp", _bytes(webp_header(16384, 16384))),
        ("tiff-huge", "x.tif", _bytes(tiff_header(100000, 100000))),
    ]
    return cases


def _encoded(ext: str, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (64, 64), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    return buf.tobytes()


def truncated_cases() -> list[tuple[str, str, Writer]]:
    cases = []
    for ext in (".png", ".jpg", ".bmp", ".tif", ".webp"):
        data = _encoded(ext)
        for frac in (0.0, 0.02, 0.3, 0.6, 0.95):
            cut = data[: max(1, int(len(data) * frac))] if frac else b""
            cases.append((f"truncated{ext}-{frac}", f"x{ext}", _bytes(cut)))
    return cases


def bitflip_cases(n: int = 30) -> list[tuple[str, str, Writer]]:
    data = _encoded(".jpg", seed=1)
    png = _encoded(".png", seed=2)
    rng = random.Random(0)
    cases = []
    for i in range(n):
        src, ext = (data, ".jpg") if i % 3 else (png, ".png")
        b = bytearray(src)
        for _ in range(1 + i % 4):
            k = rng.randrange(len(b))
            b[k] ^= 1 << rng.randrange(8)
        cases.append((f"bitflip{ext}-{i}", f"x{ext}", _bytes(bytes(b))))
    return cases


def junk_cases() -> list[tuple[str, str, Writer]]:
    rng = random.Random(1)
    return [
        ("empty", "x.png", _bytes(b"")),
        ("text-as-png", "x.png", _bytes(b"just some notes\n")),
        ("html-as-jpg", "x.jpg", _bytes(b"<html><body>404</body></html>")),
        ("random-jpg", "x.jpg", _bytes(bytes(rng.randrange(256) for _ in range(5000)))),
        ("random-png", "x.png", _bytes(bytes(rng.randrange(256) for _ in range(5000)))),
        ("jpeg-magic-only", "x.jpeg", _bytes(b"\xff\xd8\xff")),
        ("png-magic-only", "x.png", _bytes(b"\x89PNG\r\n\x1a\n")),
        ("bmp-magic-only", "x.bmp", _bytes(b"BM")),
        ("pgm-bad-numbers", "x.pgm", _bytes(b"P5\nabc def\n255\n")),
        ("zeros", "x.tiff", _bytes(b"\0" * 4096)),
    ]


def odd_but_valid_cases() -> list[tuple[str, str, Writer]]:
    def img(arr: np.ndarray, ext: str) -> Writer:
        return lambda p: p.write_bytes(cv2.imencode(ext, arr)[1].tobytes())

    return [
        ("gray16-png", "x.png", img(np.full((40, 60), 40000, np.uint16), ".png")),
        ("rgba-png", "x.png", img(np.full((40, 60, 4), 200, np.uint8), ".png")),
        ("one-pixel", "x.png", img(np.full((1, 1), 100, np.uint8), ".png")),
        ("long-strip", "x.png", img(np.full((1, 5000), 100, np.uint8), ".png")),
        ("tall-strip", "x.bmp", img(np.full((3000, 2), 100, np.uint8), ".bmp")),
        ("colour-jpeg", "x.jpg", img(np.full((50, 50, 3), 90, np.uint8), ".jpg")),
    ]


def special_entry_cases(tmp_root: Path) -> list[tuple[str, str, Writer]]:
    """FIFOs, sockets, links and devices named like images: each must become an error record, never a hang."""

    def fifo(p: Path) -> None:
        os.mkfifo(p)

    def sock(p: Path) -> None:
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()

    def link(target: str) -> Writer:
        return lambda p: os.symlink(target, p)

    def loop(p: Path) -> None:
        os.symlink(p.name, p)

    def sparse(p: Path) -> None:
        with open(p, "wb") as f:
            f.truncate(65 << 20)

    return [
        ("fifo-jpeg", "x.jpeg", fifo),
        ("socket-png", "x.png", sock),
        ("dangling-link", "x.png", link("/nonexistent/defect-edge/a.png")),
        ("link-loop", "x.png", loop),
        ("dev-zero-link", "x.jpg", link("/dev/zero")),
        ("dev-null-link", "x.png", link("/dev/null")),
        ("over-64MiB", "x.png", sparse),
    ]


# Metadata variants: (id, JSON text). Every one must be refused at load with exit 4.
def bad_metadata_cases() -> list[tuple[str, str]]:
    d = tiny_info().to_dict()
    pre = d["preprocess"]

    def with_(**kw: object) -> str:
        return json.dumps(d | kw)

    def with_pre(**kw: object) -> str:
        return json.dumps(d | {"preprocess": pre | kw})

    deep = '{"schema_version": 1, "preprocess": ' + "[" * 100000 + "]" * 100000 + "}"
    return [
        ("threshold-true", with_(threshold=True)),
        ("threshold-string", with_(threshold="0.5")),
        ("threshold-null", with_(threshold=None)),
        ("threshold-above-1", with_(threshold=1.7)),
        ("threshold-negative", with_(threshold=-0.1)),
        ("threshold-400-digits", with_(threshold=0).replace('"threshold": 0', '"threshold": 1' + "0" * 400)),
        ("threshold-5000-digits", with_(threshold=0).replace('"threshold": 0', '"threshold": 1' + "0" * 5000)),
        ("threshold-1e999", with_(threshold=0).replace('"threshold": 0', '"threshold": 1e999')),
        ("threshold-NaN", with_(threshold=0).replace('"threshold": 0', '"threshold": NaN')),
        ("threshold-list", with_(threshold=[0.5])),
        ("class-names-one", with_(class_names=["ok"])),
        ("class-names-three", with_(class_names=["ok", "defective", "x"])),
        ("class-names-same", with_(class_names=["ok", "ok"], positive_class="ok")),
        ("class-names-numbers", with_(class_names=[0, 1])),
        ("class-names-string", with_(class_names="ok,defective")),
        ("positive-class-mismatch", with_(positive_class="ok")),
        ("preprocess-list", with_(preprocess=[1, 2])),
        ("preprocess-null", with_(preprocess=None)),
        ("preprocess-string", with_(preprocess="size=32")),
        ("preprocess-missing", json.dumps({k: v for k, v in d.items() if k != "preprocess"})),
        ("std-zero", with_pre(std=0)),
        ("std-negative", with_pre(std=-1.0)),
        ("std-NaN", with_pre(std=0).replace('"std": 0', '"std": NaN')),
        ("std-string", with_pre(std="1")),
        ("scale-zero", with_pre(scale=0.0)),
        ("scale-negative", with_pre(scale=-1 / 255)),
        ("mean-infinite", with_pre(mean=0).replace('"mean": 0', '"mean": 1e999')),
        ("size-string", with_pre(size="32")),
        ("size-float", with_pre(size=32.5)),
        ("size-zero", with_pre(size=0)),
        ("channels-two", with_pre(channels=2)),
        ("resize-unknown", with_pre(resize="cubic")),
        ("crop-unknown", with_pre(crop="zoom")),
        ("spec-version-9", with_pre(version=9)),
        ("schema-2", with_(schema_version=2)),
        ("schema-true", with_(schema_version=True)),
        ("precision-int4", with_(precision="int4")),
        ("outputs-unknown", with_(outputs=["x"])),
        ("outputs-string", with_(outputs="p_defective")),
        ("metrics-list", with_(metrics=[1])),
        ("not-an-object", json.dumps([d])),
        ("not-json", "{threshold: 0.5"),
        ("deeply-nested", deep),
        ("huge", with_(arch="x" * 2_000_000)),
        ("empty-object", "{}"),
    ]


def damaged_model_cases() -> list[tuple[str, bytes]]:
    """Whole-file damage of the committed tiny model: truncation and bit flips (the content hash catches them)."""
    data = model_bytes()
    rng = random.Random(2)
    cases = [("empty", b""), ("random", bytes(rng.randrange(256) for _ in range(800)))]
    for frac in (0.1, 0.5, 0.9, 0.99):
        cases.append((f"truncated-{frac}", data[: int(len(data) * frac)]))
    for i in range(12):
        b = bytearray(data)
        k = rng.randrange(len(b))
        b[k] ^= 1 << rng.randrange(8)
        cases.append((f"bitflip-{i}-at-{k}", bytes(b)))
    cases.append(("metadata-edited-threshold", _edited_threshold(data)))
    return cases


def _edited_threshold(data: bytes) -> bytes:
    """The real metadata with only the threshold changed, hash entry kept: a tampered file."""
    from edge_runtime import integrity
    from edge_runtime.model_info import METADATA_KEY

    d = json.loads(integrity.metadata_entries(data)[METADATA_KEY])
    d["threshold"] = 0.99
    return with_metadata(data, json.dumps(d, sort_keys=True))
