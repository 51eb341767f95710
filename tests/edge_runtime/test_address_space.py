"""An edge box's address-space limit (`ulimit -v`, a systemd unit's LimitAS=). edge-infer uses about 150 MiB of
memory, but glibc's per-thread malloc arenas (64 MiB of address space each) and OpenCV's libraries mapped about
930 MiB: under 800 MiB a folder ended "out of memory" before its first item, with onnxruntime's coloured log line
above the error; under 400 MiB OpenCV's import crashed, exit 139, nothing said. Run as real processes under the
limit (preexec_fn), as a crash must fail the test and not the test run."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from edge_runtime import address_space
from edge_runtime.errors import resource_error
from tests.conftest import REPO
from tests.edge_runtime.conftest import write_parts

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="glibc's malloc arenas and RLIMIT_AS are Linux's")


def under_limit(mib: int, *args: str) -> subprocess.CompletedProcess:
    def small_box() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (mib << 20, mib << 20))

    return subprocess.run([sys.executable, *args], cwd=REPO, preexec_fn=small_box, capture_output=True, text=True,
                          timeout=180)  # fmt: skip


def test_a_folder_runs_under_an_800_mib_address_space_limit(tmp_path):
    """Threads and workers pinned to 2, so that the test means the same on any machine."""
    write_parts(tmp_path / "parts", [10, 220] * 40, size=300)
    proc = under_limit(800, "-m", "edge_runtime.cli", "--model", "int8", "--source", str(tmp_path / "parts"),
                       "--json", "--threads", "2", "--workers", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-600:]
    assert len(proc.stdout.splitlines()) == 80
    assert "\x1b[" not in proc.stderr and "warning" not in proc.stderr, proc.stderr[-600:]


@pytest.mark.parametrize(("rlimit", "mib", "said"), [
    (resource.RLIMIT_AS, 300, "address-space limit (ulimit -v) is 300 MiB"),
    (resource.RLIMIT_AS, 450, "address-space limit (ulimit -v) is 450 MiB"),
    (resource.RLIMIT_DATA, 200, "data-size limit (ulimit -d) is 200 MiB"),
    (resource.RLIMIT_DATA, 244, "data-size limit (ulimit -d) is 244 MiB"),
], ids=["as-300", "as-450", "data-200", "data-244"])  # fmt: skip
def test_a_limit_too_small_for_the_libraries_is_said_first_and_no_traceback_follows(rlimit, mib, said):
    """Under such limits OpenCV's import crashed the process (exit 139, nothing said), or a library's import failed
    with a traceback from inside importlib (OpenCV's "failed to map segment", a MemoryError in click's gettext):
    the first line on stderr now names the limit and the remedy, and no traceback follows."""

    def small_box() -> None:
        resource.setrlimit(rlimit, (mib << 20, mib << 20))

    proc = subprocess.run([sys.executable, "-m", "edge_runtime.cli", "--version"], cwd=REPO, preexec_fn=small_box,
                          capture_output=True, text=True, timeout=180)  # fmt: skip
    lines = proc.stderr.splitlines()
    assert lines and lines[0].startswith(f"warning: the {said}"), proc.stderr[-600:]
    assert "raise it (ulimit -" in lines[0]
    assert "Traceback" not in proc.stderr, proc.stderr[-600:]


def test_a_library_import_says_nothing():
    """The process is its user's: `import edge_runtime` in a program under a small limit warns of nothing (and
    leaves malloc's settings alone)."""
    proc = under_limit(600, "-c", "import edge_runtime")
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr[-600:]


def test_out_of_memory_under_a_limit_names_the_limit(monkeypatch):
    """An "out of memory; pass a smaller --batch-size or fewer --workers, or free memory" with 1.5 GB free: the limit
    was what ran out, and the line did not say so."""
    monkeypatch.setattr(address_space, "set_limits", lambda: [(address_space.LIMITS[0], 605 << 20)])
    assert str(resource_error(MemoryError())).endswith("; or raise the address-space limit (ulimit -v, now 605 MiB)")
    monkeypatch.setattr(address_space, "set_limits", lambda: [])
    assert str(resource_error(MemoryError())).endswith("or free memory")
