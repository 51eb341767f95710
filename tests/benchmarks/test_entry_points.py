"""The maintainer scripts run as ``python -m ...``: each has a --help, and bad input is one line and an exit code
(benchmarks.station wrote a traceback for an unwritable --out, and timed the bundled samples for a missing --data;
station_viewer a traceback for an unreachable page; annotate_boxes "Sample larger than population")."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO

SCRIPTS = [
    "benchmarks.station", "benchmarks.station_viewer", "benchmarks.soak", "benchmarks.second_look",
    "benchmarks.robustness", "benchmarks.annotate_boxes", "benchmarks.localisation", "edge_runtime.demo",
    "export.ship", "export.quant_study",
]  # fmt: skip


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("module", SCRIPTS)
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_each_script_has_a_help(module: str, flag: str):
    """-h as well: benchmarks.soak, .localisation, .station and edge_runtime.demo answered it with exit 2."""
    if module.startswith("export.") or module == "benchmarks.robustness":
        pytest.importorskip("torch", reason="needs the [train] extra")
    r = run(module, flag)
    assert r.returncode == 0, r.stderr
    assert "Usage:" in r.stdout and "Traceback" not in r.stderr
    # robustness, localisation, second_look and soak listed edge-infer's codes: "10 defect found (--fail-on-defect"
    # for scripts without that option
    has_option = re.search(r"^\s+--fail-on-defect", r.stdout, re.M) is not None
    assert (re.search(r"\b10\s+defect\s+found", r.stdout) is not None) == has_option, r.stdout


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["benchmarks.station", "--data", "/nonexistent"], ExitCode.BAD_DATA, "folder not found"),
        (["benchmarks.station", "--out", "/proc/x", "--data", "DATA"], ExitCode.OUTPUT_ERROR, "cannot write the"),
        (["benchmarks.station", "--priority", "both", "--spin", "on"], ExitCode.USAGE, "drop --spin on"),
        (["benchmarks.station_viewer", "http://127.0.0.1:9/", "1", "--http"], ExitCode.SOURCE_UNAVAILABLE,
         "cannot reach the station page"),
        (["benchmarks.station_viewer", "http://127.0.0.1:9/", "1"], ExitCode.SOURCE_UNAVAILABLE,
         "cannot reach the station page"),  # in Chromium, where one is installed (exit 1 with playwright's text)
        (["benchmarks.station_viewer", "http://127.0.0.1:9/", "nan"], ExitCode.USAGE, "not a finite number"),
        (["benchmarks.annotate_boxes", "render", "--data", "/nonexistent"], ExitCode.BAD_DATA, "60 needed"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_an_exit_code(args: list[str], code: ExitCode, text: str, tmp_path):
    if args[0] == "benchmarks.station" and "--out" not in args:
        args = [*args, "--out", str(tmp_path / "out")]
    args = [str(tmp_path) if a == "DATA" else a for a in args]  # a folder that exists, data or not
    r = run(*args)
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and text in lines[0], r.stderr
