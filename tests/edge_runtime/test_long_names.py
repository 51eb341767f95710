"""A typed path with a name longer than the file system allows (255 bytes): one line naming it, exit 2 or 3.

Python 3.11's ``Path.exists()`` raises on such a name instead of answering False, so ``--save LONG/x.mp4`` (and
``train-model --out``, ``edge-bench --json``) ended "unexpected OSError: [Errno 36] File name too long", exit 1.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO

SAMPLE = next((REPO / "edge_runtime" / "samples" / "test").rglob("*.jpeg"))
LONG = "a" * 300  # over the 255 bytes a name may have


def edge_infer(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; sys.argv[0] = 'edge-infer'; from edge_runtime.cli import main; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["--source", str(SAMPLE), "--save", f"{LONG}/annotated.mp4"], ExitCode.USAGE),
        (["--source", str(SAMPLE), "--save", LONG], ExitCode.OUTPUT_ERROR),
        (["--source", f"{LONG}/part.jpeg"], ExitCode.BAD_DATA),
        (["--check-station", LONG], ExitCode.BAD_DATA),
    ],
    ids=["save-video-in-long-folder", "save-long-folder", "source", "check-station"],
)
def test_a_name_too_long_is_one_line_naming_it(tmp_path: Path, args: list[str], code: int) -> None:
    r = edge_infer(tmp_path, *args)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    [line] = r.stderr.strip().splitlines()[-1:]
    assert line.startswith(f"error: {LONG}") and ("longer than the file system allows" in line or "too long" in line)
    assert list(tmp_path.iterdir()) == []  # nothing made on the way
