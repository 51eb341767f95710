"""File names that are not valid UTF-8 (bytes a camera or an old file system wrote): OpenCV's imwrite,
VideoCapture and VideoWriter crashed the whole process on them (SIGSEGV, exit 139), losing every later item and
the summary. Run as real processes, so that a crash fails the test instead of the test run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import REPO
from tests.edge_runtime.conftest import MODELS, write_parts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="needs a file system that keeps any bytes")


def bytes_path(folder: Path, name: bytes) -> Path:
    return Path(os.fsdecode(os.path.join(os.fsencode(folder), name)))


def edge_infer(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(MODELS / "tiny.onnx"), "--json", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, errors="surrogateescape", timeout=120)


def test_annotated_images_are_saved_for_names_that_are_not_utf8(tmp_path: Path):
    folder = tmp_path / "parts"
    write_parts(folder, [10, 220])
    cv2_bytes = cv2.imencode(".png", np.full((48, 48), 220, np.uint8))[1].tobytes()
    bytes_path(folder, b"part\xff.png").write_bytes(cv2_bytes)
    save = bytes_path(tmp_path, b"saved\xfe")
    r = edge_infer("--source", folder, "--save", save)
    assert r.returncode == 0, r.stderr[-800:]
    assert len(r.stdout.splitlines()) == 3 and "summary: 3 items" in r.stderr
    names = sorted(os.listdir(os.fsencode(save)))
    assert len(names) == 3 and any(n.endswith(b"part\xff.jpg") for n in names)


def test_a_video_named_not_utf8_is_read_and_saved(tmp_path: Path):
    source = bytes_path(tmp_path, b"line\xff.avi")
    writer = cv2.VideoWriter(str(tmp_path / "plain.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 48))
    for level in (10, 220, 10, 220):
        writer.write(np.full((48, 48, 3), level, np.uint8))
    writer.release()
    (tmp_path / "plain.avi").rename(source)
    saved = bytes_path(tmp_path, b"out\xfe.avi")
    r = edge_infer("--source", source, "--save", saved)
    assert r.returncode == 0, r.stderr[-800:]
    records = [json.loads(line) for line in r.stdout.splitlines()]
    assert [rec["defective"] for rec in records] == [False, True, False, True]
    check = edge_infer("--source", saved)  # the saved video holds a frame per record
    assert check.returncode == 0 and len(check.stdout.splitlines()) == 4


def test_a_name_that_is_not_utf8_reaches_the_inspection_log(tmp_path: Path):
    """--log stopped the run at such a name with "unexpected UnicodeEncodeError", exit 1, and left a log without a
    schema; the name is now stored with its bytes escaped, and edge-log reads the log."""
    folder = tmp_path / "lot"
    write_parts(folder, [10])  # (OpenCV's imwrite itself crashes on a folder name that is not UTF-8)
    cv2_bytes = cv2.imencode(".png", np.full((48, 48), 220, np.uint8))[1].tobytes()
    bytes_path(folder, b"caf\xe9.png").write_bytes(cv2_bytes)
    log = tmp_path / "station.db"
    r = edge_infer("--source", folder, "--log", log)
    assert r.returncode == 0, r.stderr[-800:]
    out = subprocess.run([sys.executable, "-m", "edge_runtime.station.log_cli", "query", str(log), "--json"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert sorted(json.loads(line)["source"].rsplit("/", 1)[1] for line in out.stdout.splitlines()) == [
        "caf\\xe9.png", "part_00.png"]  # fmt: skip


def test_json_names_are_utf8_characters_whatever_the_locale(tmp_path: Path):
    """Under LC_ALL=C with Python's UTF-8 mode and locale coercion off, a folder named "pièces" came out in the JSON
    as "pi\\udcc3\\udca8ces" (lone surrogates, which strict JSON parsers reject), while the CSV held "pièces". The
    JSON now says what a UTF-8 locale says: the characters, and only bytes that are not UTF-8 escaped."""
    folder = bytes_path(tmp_path, b"pi\xc3\xa8ces")
    write_parts(folder, [10])
    (folder / "part_00.png").rename(bytes_path(folder, b"part\xff.png"))
    write_parts(folder, [220])
    env = {**os.environ, "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0", "LC_ALL": "C"}
    out = tmp_path / "v.jsonl"
    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(MODELS / "tiny.onnx"), "--json"]
    args = ["--source", folder, "--output", out, "--summary", tmp_path / "s.json"]
    r = subprocess.run([*cmd, *args], cwd=REPO, capture_output=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-800:]
    for text in (r.stdout.decode("ascii"), out.read_text("ascii")):
        sources = sorted(json.loads(line)["source"] for line in text.splitlines())
        assert sources[0].endswith("/pièces/part_00.png") and "\udcc3" not in sources[0]
        assert sources[0].encode("utf-8")  # a strict encoder takes it: no lone surrogate left
        assert os.fsencode(sources[1]).endswith(b"/pi\xc3\xa8ces/part\xff.png")  # as the README has it
    assert json.loads((tmp_path / "s.json").read_text("ascii"))["source"].endswith("/pièces")
