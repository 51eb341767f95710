"""edge-bench on a user's machine: its workers run its own code wherever it is started, and a --data whose classes
a model does not know is refused before anything is timed."""

from __future__ import annotations

from pathlib import Path

import benchmarks.runner as runner
from benchmarks.config import Job, JobKind
from tests.conftest import REPO

TINY = REPO / "tests" / "models" / "tiny.onnx"


def test_a_worker_runs_edge_bench_s_own_code_whatever_folder_it_is_started_in(tmp_path: Path, monkeypatch):
    """Started in a folder holding a benchmarks/ package of its own (a project's benchmarks, an older defect-edge
    checkout), every worker imported that package: an installed edge-bench ended "No module named
    benchmarks.worker ... pass --model PATH", exit 4, and an older checkout's worker timed its own code."""
    other = tmp_path / "benchmarks"
    other.mkdir()
    (other / "__init__.py").write_text("")
    (other / "worker.py").write_text('print(\'{"rows": [], "skipped": ["another benchmarks package"]}\')\n')
    monkeypatch.chdir(tmp_path)
    job = Job(JobKind.ONNX, threads=1, model=str(TINY), warmup=0, runs=3, min_runs=1)
    rows, skipped = runner.run_worker(job)
    assert skipped == [] and rows and rows[0].file == "tiny.onnx" and rows[0].runs == 3
