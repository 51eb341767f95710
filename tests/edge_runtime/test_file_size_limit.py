"""A file-size limit (`ulimit -f`, systemd LimitFSIZE=) stopping a run's writes: --output named it, but stdout
said "check where stdout goes" and --save said nothing to do at all. Real processes under the limit."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from edge_runtime.errors import ExitCode
from tests.conftest import REPO
from tests.edge_runtime.conftest import MODELS, write_parts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE as Linux applies it")
LIMIT = 4096


def edge_infer(*args: str, stdout: object = subprocess.PIPE) -> subprocess.CompletedProcess:
    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))

    cmd = [sys.executable, "-m", "edge_runtime.cli", "--model", str(MODELS / "tiny.onnx"), *args]
    return subprocess.run(cmd, cwd=REPO, preexec_fn=small_files, stdout=stdout, stderr=subprocess.PIPE, text=True,
                          timeout=120)  # fmt: skip


def test_json_onto_a_file_over_the_limit_names_the_limit(tmp_path):
    write_parts(tmp_path / "parts", [10, 220] * 40)
    with open(tmp_path / "v.jsonl", "w") as out:
        proc = edge_infer("--source", str(tmp_path / "parts"), "--json", stdout=out)
    assert proc.returncode == ExitCode.OUTPUT_ERROR, proc.stderr[-600:]
    assert proc.stderr.splitlines()[-1] == (
        "error: stdout: cannot write (File too large); over this process's file-size limit (ulimit -f): raise it, "
        "or check where stdout goes"
    )


def test_saved_pictures_over_the_limit_name_the_limit(tmp_path):
    write_parts(tmp_path / "parts", [10, 220], size=400)
    proc = edge_infer("--source", str(tmp_path / "parts"), "--save", str(tmp_path / "saved"), "--quiet")
    assert proc.returncode == ExitCode.OUTPUT_ERROR, proc.stderr[-600:]
    last = proc.stderr.splitlines()[-1]
    assert "cannot write the annotated image (File too large)" in last
    assert last.endswith("over this process's file-size limit (ulimit -f): raise it, or choose another --save")
