"""edge-bench on a user's machine: its workers run its own code wherever it is started, and a --data whose classes
a model does not know is refused before anything is timed."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import benchmarks.runner as runner
from benchmarks.cli import main
from benchmarks.config import Job, JobKind, Row, Section
from edge_runtime.errors import ExitCode
from tests.benchmarks.test_cli import TINY_COUNTS
from tests.conftest import REPO, make_dataset

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


def model_of_classes(path: Path, negative: str, positive: str) -> Path:
    """The tiny model with other class names, as train-model --positive-class writes them for a station's folders."""
    from edge_runtime import integrity
    from edge_runtime.model_info import METADATA_KEY

    data = TINY.read_bytes()
    meta = json.loads(integrity.metadata_entries(data)[METADATA_KEY])
    meta = {k: v for k, v in meta.items() if k != integrity.HASH_KEY}
    meta |= {"class_names": [negative, positive], "positive_class": positive}
    path.write_bytes(integrity.stamp(integrity.with_metadata(data, METADATA_KEY, json.dumps(meta)), METADATA_KEY))
    return path


def recorded_jobs(monkeypatch) -> list[Job]:
    """Workers that are never started: each job is recorded and gives one row."""
    calls: list[Job] = []

    def fake(job: Job) -> tuple[list[Row], list[str]]:
        calls.append(job)
        return [Row(Section.FILE.value, "m", "fp32", job.provider, batch=1, threads=1, p50_ms=1.0)], []

    monkeypatch.setattr(runner, "run_worker", fake)
    return calls


def test_data_whose_classes_a_model_does_not_know_is_refused_before_any_job(tmp_path: Path, monkeypatch):
    """The accuracy job, the last, refused them after every row had been timed: exit 3, no table, nothing
    written (minutes of a full run lost)."""
    model = model_of_classes(tmp_path / "station.onnx", "good", "scratch")
    data = make_dataset(tmp_path / "data", n_train=0, n_test=2)  # def_front / ok_front
    calls = recorded_jobs(monkeypatch)
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(model), "--data", str(data)])
    assert r.exit_code == ExitCode.BAD_DATA and calls == [], r.output
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error: ") and "station.onnx" in line and "good and scratch" in line, line


def test_data_folders_named_as_the_model_s_classes_are_its_classes(tmp_path: Path, monkeypatch):
    """A station model's own folders (good/scratch) were refused: "cannot tell which of 'good' and 'scratch' is
    defective; name them as the model's classes" (they were named so)."""
    model = model_of_classes(tmp_path / "station.onnx", "good", "scratch")
    data = make_dataset(tmp_path / "data", n_train=0, n_test=2, classes=("scratch", "good"))
    calls = recorded_jobs(monkeypatch)
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(model), "--data", str(data)])
    assert r.exit_code == 0, r.output
    (accuracy,) = [j for j in calls if j.kind is JobKind.ACCURACY]
    labels = dict(zip((Path(p).parent.name for p in accuracy.images), accuracy.classes, strict=True))
    assert labels == {"good": "good", "scratch": "scratch"}
