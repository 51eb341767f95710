"""edge-bench and the soak test under bad input: checked before any timing, one line, a documented exit code,
nothing measured lost; and figures that say what they measured."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

import benchmarks.runner as runner
from benchmarks.cli import main
from benchmarks.config import TORCH_PROVIDER, Row, Section
from benchmarks.report import issue_targets
from benchmarks.soak import main as soak_main
from edge_runtime.errors import ExitCode
from tests.benchmarks.test_cli import TINY_COUNTS, edge_bench
from tests.conftest import REPO

TINY = REPO / "tests" / "models" / "tiny.onnx"


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.fixture
def no_jobs(monkeypatch) -> list:
    """Workers that are never started: a job that runs is recorded (the test fails if one should not have)."""
    calls: list = []
    monkeypatch.setattr(runner, "run_worker", lambda job: calls.append(job) or ([], []))
    return calls


@pytest.mark.parametrize(
    ("json_name", "message"),
    [
        ("model.onnx", "names --model"),  # the model was overwritten with JSON text
        ("ckpt.pt", "names --checkpoint"),
        ("plot.png", "name the same file"),  # the PNG plot beside --json x.png is x.png itself
        ("data/test/ok_front/bench.json", "inside --data"),  # the plot became a test image
    ],
)
def test_outputs_on_an_input_are_refused_before_any_job(tmp_path, synthetic_data, no_jobs, json_name, message):
    model = Path(shutil.copy(TINY, tmp_path / "model.onnx"))
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"checkpoint bytes")
    before = {p: p.read_bytes() for p in (model, ckpt)}
    args = [*TINY_COUNTS, "--model", model, "--checkpoint", ckpt, "--data", synthetic_data]
    r = CliRunner().invoke(main, [str(a) for a in [*args, "--json", tmp_path / json_name]])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert message in one_error_line(r)
    assert no_jobs == [] and all(p.read_bytes() == b for p, b in before.items())


@pytest.mark.parametrize("damage", ["truncated", "not onnx"])
def test_a_damaged_model_is_exit_4_like_a_missing_one(tmp_path, no_jobs, damage: str):
    data = TINY.read_bytes()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"just some text\n")
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(bad)])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output  # was 0: every target "not measured"
    assert "bad.onnx" in one_error_line(r) and no_jobs == []


def test_threads_beyond_the_cores_are_refused_before_any_job(no_jobs):
    # PyTorch was timed with 512 threads for a minute before onnxruntime refused the count.
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--model", str(TINY), "--threads", str((os.cpu_count() or 1) + 1)])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert "--threads" in one_error_line(r) and no_jobs == []


def test_a_checkpoint_of_the_seed_network_is_refused_before_anything_is_timed(tmp_path):
    pytest.importorskip("torch")
    from edge_runtime.preprocess import CropMode, PreprocessSpec
    from train.checkpoint import atomic_torch_save, model_checkpoint
    from train.config import Arch
    from train.model import build_model, default_model_args

    args = default_model_args(Arch.SEED, 32)
    ckpt = model_checkpoint(
        build_model(Arch.SEED, args), arch=Arch.SEED, model_args=args, spec=PreprocessSpec(size=32, channels=3,
        crop=CropMode.CENTER), class_names=("ok", "defective"), threshold=0.5, fingerprint="", metrics={}, data={},
        epoch=1,
    )  # fmt: skip
    atomic_torch_save(ckpt, tmp_path / "seed.pt")
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-live", "--model", str(TINY), "--checkpoint", str(tmp_path / "seed.pt")]
    r = edge_bench([*args, "--json", str(out)], block_torch=False, tmp_path=tmp_path)
    assert r.returncode == ExitCode.BAD_MODEL, r.stderr  # was 0: a "defectnet" row timing the seed network
    assert "not DefectNet" in r.stderr.strip().splitlines()[-1] and not out.exists()


def inference_row(model: str, provider: str, p50: float, precision: str = "fp32") -> Row:
    return Row(Section.INFERENCE.value, model, precision, provider, batch=1, threads=1, p50_ms=p50)


def test_the_origin_target_is_filled_only_by_the_torch_eager_seed_row():
    int8 = inference_row("defectnet", "cpu", 0.5, "int8")
    onnx_seed = inference_row("seed", "cpu", 20.0)  # an ONNX export of the seed network, timed by onnxruntime
    origin = "origin (seed, torch eager) p50 / INT8 p50, batch 1"
    target = next(t for t in issue_targets([int8, onnx_seed]) if t.name == origin)
    assert target.met is None and target.measured == "-"
    eager = inference_row("seed", TORCH_PROVIDER, 40.0)
    target = next(t for t in issue_targets([int8, onnx_seed, eager]) if t.name == origin)
    assert target.measured.startswith("80x (40.0 ms")


def test_ctrl_c_reports_the_rows_already_timed(tmp_path, monkeypatch):
    done = inference_row("defectnet", "cpu", 0.123, "int8")
    done.file = "tiny.onnx"
    calls: list = []

    def worker(job):
        calls.append(job)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return [done], []

    monkeypatch.setattr(runner, "run_worker", worker)
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", str(out)])
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert "| defectnet | int8 | cpu | 1 | 1 | 0.123 |" in r.stdout  # the rows were lost with "error: interrupted"
    assert r.stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert [row["p50_ms"] for row in json.loads(out.read_text())] == [0.123]


def soak(*args: object):
    return CliRunner().invoke(soak_main, [str(a) for a in ["--fps", "2000", *args]])


@pytest.mark.parametrize(
    ("args", "code", "word"),
    [
        (["--frames", "1000"], ExitCode.USAGE, "--window"),  # default window 10000: IndexError after the whole run
        (["--window", "100", "--model", "nope.onnx"], ExitCode.BAD_MODEL, "nope.onnx"),
        (["--window", "100", "--model", "HALF"], ExitCode.BAD_MODEL, "half.onnx"),
        (["--window", "100", "--fps", "nan"], ExitCode.USAGE, "'--fps': 'nan' is not a finite number"),  # IndexError
        (["--window", "100", "--out", "FILE/sub"], ExitCode.OUTPUT_ERROR, "sub"),  # PermissionError after the run
    ],
)
def test_soak_faults_are_one_line_before_the_run(tmp_path, args, code, word):
    (tmp_path / "half.onnx").write_bytes(TINY.read_bytes()[:200])
    (tmp_path / "file").write_text("x")
    subs = {"HALF": tmp_path / "half.onnx", "FILE/sub": tmp_path / "file" / "sub"}
    r = soak("--frames", "1000", "--out", tmp_path / "out", *[subs.get(a, a) for a in args])
    assert r.exit_code == code, r.output
    error = r.stderr.strip().splitlines()[-1]  # click's own usage errors print a usage line first
    assert word in (error if "--fps" in args else one_error_line(r)) and "Traceback" not in r.output
    assert not (tmp_path / "out" / "soak.json").exists()


def test_soak_samples_the_frames_after_the_last_full_window(tmp_path):
    r = soak("--frames", "1000", "--window", "400", "--model", TINY, "--out", tmp_path)
    assert r.exit_code == 0, r.output
    assert [w["frames"] for w in json.loads((tmp_path / "soak.json").read_text())["windows"]] == [400, 800, 1000]
