"""edge-bench and the soak test under bad input: checked before any timing, one line, a documented exit code,
nothing measured lost; and figures that say what they measured."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

import benchmarks.runner as runner
from benchmarks.cli import main
from benchmarks.config import TORCH_PROVIDER, Job, JobKind, Row, Section
from benchmarks.report import issue_targets
from benchmarks.soak import main as soak_main
from edge_runtime.errors import ExitCode
from tests.benchmarks.test_cli import TINY_COUNTS, edge_bench
from tests.conftest import REPO, one_core_prefix

TINY = REPO / "tests" / "models" / "tiny.onnx"


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output, r.output
    return lines[0]


@pytest.fixture
def no_jobs(monkeypatch) -> list:
    """Workers that are never started: a job that runs is recorded (the test fails if one should not have), and
    gives one row (a run in which no model gave a row is exit 4)."""
    calls: list = []

    def fake(job):  # noqa: ANN001, ANN202
        calls.append(job)
        row = Row(section=Section.FILE.value, model="m", precision="int8", provider=job.provider, batch=1, threads=1)
        return [row], []

    monkeypatch.setattr(runner, "run_worker", fake)
    return calls


@pytest.mark.parametrize(
    ("json_name", "message"),
    [
        ("model.onnx", "names --model"),  # the model was overwritten with JSON text
        ("ckpt.pt", "names --checkpoint"),
        ("plot.png", "name the same file"),  # the PNG plot beside --json x.png is x.png itself
        ("data/test/ok_front/bench.json", "inside --data"),  # the plot became a test image
        ("other.pt", "named like a checkpoint"),  # a checkpoint that is not this run's input was replaced
        ("exported.onnx", "named like a model"),
    ],
)
def test_outputs_on_an_input_are_refused_before_any_job(tmp_path, synthetic_data, no_jobs, json_name, message):
    model = Path(shutil.copy(TINY, tmp_path / "model.onnx"))
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"checkpoint bytes")
    for other in ("other.pt", "exported.onnx"):
        (tmp_path / other).write_bytes(b"weights")
    before = {p: p.read_bytes() for p in (model, ckpt, tmp_path / "other.pt", tmp_path / "exported.onnx")}
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


def test_a_checkpoint_given_as_a_model_is_named_before_any_job(tmp_path, no_jobs):
    """It said "best.pt: not an ONNX model (truncated or damaged); re-export it with export-onnx"."""
    ckpt = tmp_path / "best.pt"
    with zipfile.ZipFile(ckpt, "w") as z:  # laid out as torch.save writes it
        z.writestr("best/data.pkl", b"\x80\x02}q\x00.")
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(ckpt)])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "best.pt: is a PyTorch checkpoint (train-model's best.pt), not an ONNX model" in one_error_line(r)
    assert no_jobs == []


def test_a_model_replaced_while_edge_bench_runs_is_not_timed_under_its_name(tmp_path, monkeypatch):
    """Every job's worker opens the model file again: a model re-exported onto the same path after the first job
    had its file -> verdict rows timed from the new file, under the old one's name, without a word."""
    from benchmarks.worker import run_job

    model = Path(shutil.copy(TINY, tmp_path / "model.onnx"))
    ran: list[str] = []

    def in_process(job):  # noqa: ANN001, ANN202 - the worker's own code, in this process
        if ran:  # after the first job: export-onnx writes another model onto the path
            shutil.copy(TINY.with_name("tiny_left.onnx"), model)
        ran.append(job.kind.value)
        rows: list[Row] = []
        return rows, run_job(job, rows.append)

    monkeypatch.setattr(runner, "run_worker", in_process)
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(model)])
    assert ran == ["onnx", "e2e"], r.output
    assert "model.onnx: the model file changed while edge-bench ran" in r.output
    assert "| file-to-verdict |" not in r.output  # the row timed from the other file


def test_a_provider_that_runs_as_another_given_is_timed_once(no_jobs):
    """On a machine without a GPU, --provider auto --provider cpu timed every job twice: two sets of rows reading
    "defectnet | int8 | cpu | 1 | 1", with different figures and nothing to tell them apart."""
    import onnxruntime as ort

    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("auto runs on the GPU here: a provider of its own")
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--batch", "1", "--model", str(TINY)]
    r = CliRunner().invoke(main, [*args, "--provider", "auto", "--provider", "cpu"])
    assert r.exit_code == 0, r.output
    assert sorted((job.kind.value, job.provider) for job in no_jobs) == [("e2e", "auto"), ("onnx", "auto")]
    assert "warning: --provider cpu runs on CPUExecutionProvider here, as --provider auto does; timed once" in r.output


def test_threads_beyond_the_cores_are_refused_before_any_job(no_jobs):
    # PyTorch was timed with 512 threads for a minute before onnxruntime refused the count.
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--model", str(TINY), "--threads", str((os.cpu_count() or 1) + 1)])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert "--threads" in one_error_line(r) and no_jobs == []


def test_a_checkpoint_of_the_seed_network_is_refused_before_anything_is_timed(tmp_path):
    pytest.importorskip("torch")
    from edge_runtime.preprocess import CropMode, PreprocessSpec
    from train.checkpoint import model_checkpoint
    from train.checkpoint_save import atomic_torch_save
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


def test_a_resume_state_given_as_checkpoint_is_refused_before_any_job(tmp_path, no_jobs):
    """``--checkpoint runs/x/last.pt`` printed "[1/18] seed torch-eager" and timed for seconds before its error."""
    torch = pytest.importorskip("torch")
    torch.save({"optimizer": {}, "ema": {}, "history": []}, tmp_path / "last.pt")
    (tmp_path / "best.pt").write_bytes(b"")
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-live", "--model", str(TINY), "--checkpoint",
                                  str(tmp_path / "last.pt")])  # fmt: skip
    assert r.exit_code == ExitCode.BAD_MODEL, r.output
    assert "resume state (last.pt)" in one_error_line(r) and "best.pt" in one_error_line(r)
    assert no_jobs == [] and "[1/" not in r.output


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


def interrupted_after(monkeypatch, rows: list[Row]) -> list:
    """Workers whose first job times ``rows`` and whose second is stopped by Ctrl-C."""
    calls: list = []

    def worker(job):
        calls.append(job)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return list(rows), []

    monkeypatch.setattr(runner, "run_worker", worker)
    return calls


def complete_results(folder: Path) -> dict[Path, bytes]:
    """The files of an earlier complete run (JSON, the CSV named after the hardware, PNG), by their bytes."""
    from benchmarks.hardware import detect_hardware

    files = {
        folder / "bench.json": b'[{"p50_ms": 0.4}]\n',
        folder / f"bench-{detect_hardware().slug}.csv": b"p50_ms\n0.4\n",
        folder / "bench.png": b"the complete run's plot",
    }
    for path, data in files.items():
        path.write_bytes(data)
    return files


def test_ctrl_c_reports_the_rows_already_timed(tmp_path, monkeypatch):
    done = inference_row("defectnet", "cpu", 0.123, "int8")
    done.file = "tiny.onnx"
    interrupted_after(monkeypatch, [done])
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", str(out)])
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert "| defectnet | int8 | cpu | 1 | 1 | 0.123 |" in r.stdout  # the rows were lost with "error: interrupted"
    assert r.stderr.strip().splitlines()[-1].startswith("error: interrupted")
    # The partial rows go beside --json, never to it (they replaced the last complete results; see below).
    assert not out.exists()
    partial = json.loads((tmp_path / "bench.interrupted.json").read_text())
    assert partial["interrupted"] is True and [row["p50_ms"] for row in partial["rows"]] == [0.123]


def test_an_interrupted_run_leaves_the_complete_results_and_writes_its_rows_beside(tmp_path, monkeypatch):
    slow = inference_row("defectnet", "cpu", 0.9, "int8")  # over the 0.5 ms target: scored "**no**" when partial
    interrupted_after(monkeypatch, [slow])
    before = complete_results(tmp_path)
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", str(out)])
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert all(p.read_bytes() == b for p, b in before.items())  # were overwritten by the 1 partial row
    json_file, png = tmp_path / "bench.interrupted.json", tmp_path / "bench.interrupted.png"
    (csv_file,) = tmp_path.glob("bench-*.interrupted.csv")
    partial = json.loads(json_file.read_text())
    assert partial["interrupted"] is True and [row["p50_ms"] for row in partial["rows"]] == [0.9]
    lines = csv_file.read_text().splitlines()
    assert lines[0].endswith(",interrupted") and len(lines) == 2 and lines[1].endswith(",true")
    assert png.stat().st_size > 0
    md = r.stdout.splitlines()
    assert md[0] == "interrupted: 1 row of a partial run; targets not scored"
    targets = [line for line in md if line.startswith("| INT8 inference, batch 1, p50 |")]
    assert targets == ["| INT8 inference, batch 1, p50 | <= 0.5 ms | - | not measured (run interrupted) |"]
    assert "**no**" not in r.stdout  # the targets were scored from the partial rows
    said = [line for line in r.stderr.splitlines() if line.startswith("interrupted: 1 row of")]
    assert len(said) == 1 and str(json_file) in said[0] and str(csv_file) in said[0] and str(png) in said[0]


def test_an_interrupted_run_with_no_row_writes_nothing(tmp_path, monkeypatch):
    interrupted_after(monkeypatch, [])  # the first job timed nothing; Ctrl-C in the second
    before = complete_results(tmp_path)
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", str(out)])
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert all(p.read_bytes() == b for p, b in before.items())  # bench.json was `[]`, the CSV a header
    assert sorted(tmp_path.iterdir()) == sorted(before)  # no .interrupted file with no row in it
    assert "interrupted before any row was timed: nothing written" in r.stderr
    assert r.stdout.startswith("interrupted: 0 rows of a partial run; targets not scored\n")
    assert r.stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert r.stderr.strip().splitlines()[-1] == "error: interrupted; no row had been timed"  # not "reported above"


def test_an_interrupted_first_run_names_no_earlier_results_as_kept(tmp_path, monkeypatch):
    """A first run stopped before any row said "bench.json, bench-<cpu>.csv and bench.png are left as they were"
    and "the rows timed before it are reported above" of files and rows that did not exist."""
    interrupted_after(monkeypatch, [])
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", str(out)])
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    assert list(tmp_path.iterdir()) == []
    lines = r.stderr.strip().splitlines()
    assert "interrupted before any row was timed: nothing written" in lines and "left as they were" not in r.stderr
    assert lines[-1] == "error: interrupted; no row had been timed"


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


@pytest.mark.parametrize("link", ["test", "test/ok_front"])
def test_json_inside_a_linked_folder_of_data_is_refused(tmp_path, synthetic_data, no_jobs, link: str):
    # Datasets often keep their splits as links to a bigger disk: only --data itself was resolved, and the
    # JSON, CSV and PNG were written among the test images.
    real = tmp_path / "elsewhere"
    (synthetic_data / link).rename(real)
    (synthetic_data / link).symlink_to(real, target_is_directory=True)
    out = real / ("ok_front" if link == "test" else "") / "bench.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--data", str(synthetic_data),
                                  "--json", str(out)])  # fmt: skip
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "inside --data" in one_error_line(r) and no_jobs == [] and not out.exists()


def test_soak_stopped_in_its_warm_up_ends_there(tmp_path, monkeypatch):
    import edge_runtime.infer

    runs: list[int] = []

    def run_inference(cfg, **_kw):  # the warm-up run, stopped by Ctrl-C as run_inference reports it
        runs.append(cfg.max_frames)
        return edge_runtime.infer.Summary(source="synthetic"), ExitCode.INTERRUPTED

    monkeypatch.setattr(edge_runtime.infer, "run_inference", run_inference)
    r = soak("--frames", "1000", "--window", "100", "--model", TINY, "--out", tmp_path)
    assert r.exit_code == ExitCode.INTERRUPTED, r.output  # was 0, after the whole measured run
    assert runs == [1000] and "warm-up" in one_error_line(r)
    assert not (tmp_path / "soak.md").exists()  # nothing was measured: the last complete report stays


def test_an_interrupted_soak_report_says_how_far_it_got(tmp_path, monkeypatch):
    import edge_runtime.infer

    real = edge_runtime.infer.run_inference

    def stopped_after_300(cfg, **kw):  # the measured run, stopped by Ctrl-C after 300 frames
        if cfg.listener is None:
            return real(cfg, **kw)
        summary, _ = real(replace(cfg, max_frames=300), **kw)
        return summary, ExitCode.INTERRUPTED

    monkeypatch.setattr(edge_runtime.infer, "run_inference", stopped_after_300)
    r = soak("--frames", "1000", "--window", "100", "--model", TINY, "--out", tmp_path)
    assert r.exit_code == ExitCode.INTERRUPTED, r.output
    md = (tmp_path / "soak.md").read_text().splitlines()
    assert md[0].startswith("# Soak interrupted after 300 of 1000 frames")  # was "# Soak: 300 frames ..."
    assert md[2].startswith("`python -m benchmarks.soak --frames 1000 --window 100 --fps 2000 --model ")


def benchmark_processes(mark: str) -> list[int]:
    """The processes whose environment holds ``mark``: an edge-bench run of this test and its workers."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
def test_sigterm_reports_the_rows_timed_and_leaves_no_worker(tmp_path):
    mark = f"DEFECT_EDGE_TEST_RUN={uuid.uuid4().hex}"
    env = {**os.environ, mark.split("=")[0]: mark.split("=")[1]}
    out = tmp_path / "bench.json"
    out.write_text('[{"p50_ms": 0.4}]\n')  # an earlier complete run's
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--batch", "1", "--e2e-runs", "10000000", "--model", str(TINY)]
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks", *args, "--json", str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        while "[2/2]" not in (line := proc.stderr.readline()):  # the inference row is timed, file -> verdict runs
            assert line, "edge-bench ended before its second job"
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)  # to edge-bench alone, as `kill PID` does
        stdout, stderr = proc.communicate(timeout=60)
        deadline = time.monotonic() + 5
        while benchmark_processes(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = benchmark_processes(mark)
    finally:
        for pid in benchmark_processes(mark):  # the old code's orphan: never left running after the test
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr  # was -15 (143 in a shell), nothing printed
    assert "| tiny-test | fp32 | cpu |" in stdout and stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert left == []  # the worker timed on, orphaned, at 100% CPU
    assert out.read_text() == '[{"p50_ms": 0.4}]\n'  # the partial rows replaced the complete run's
    partial = json.loads((tmp_path / "bench.interrupted.json").read_text())
    assert partial["interrupted"] is True and partial["rows"]


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="needs POSIX process groups (Ctrl-C signals a whole group)")
def test_ctrl_c_keeps_the_rows_the_job_in_progress_had_timed(tmp_path):
    """Ctrl-C in the middle of a job lost the rows that job had already timed (up to three batch sizes): the worker
    reported its rows only when the whole job ended, and the run ended "0 rows of a partial run". Now batch 1,
    timed before the stop, is printed and written; batch 256, being timed when it came, is not."""
    model = REPO / "edge_runtime" / "models" / "defectnet_int8.onnx"
    out = tmp_path / "bench.json"
    # 300 warm-up calls: about 0.2 s at batch 1, a minute at batch 256 (0.2 s a call): the stop comes during it
    args = ["--quick", "--no-torch", "--no-live", "--threads", "1", "--batch", "1", "--batch", "256",
            "--warmup", "300", "--runs", "3", "--e2e-runs", "3", "--model", str(model), "--json", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)  # fmt: skip
    try:
        while "[1/2]" not in (line := proc.stderr.readline()):
            assert line, "edge-bench ended before its first job"
        time.sleep(5.0)  # the worker starts, loads the model and times batch 1: about a second here
        os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to edge-bench's whole process group
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == ExitCode.INTERRUPTED, stderr
    assert stderr.strip().splitlines()[-1].startswith("error: interrupted")
    assert stdout.startswith("interrupted: 1 row of a partial run"), stdout  # was "0 rows", nothing written
    partial = json.loads((tmp_path / "bench.interrupted.json").read_text())
    assert [(row["section"], row["batch"]) for row in partial["rows"]] == [("inference", 1)]
    assert partial["rows"][0]["p50_ms"] > 0 and not out.exists()


def test_a_worker_killed_mid_job_keeps_the_rows_it_had_timed(monkeypatch):
    """A worker killed for memory at batch 32 lost batches 1 and 8 with it ("its rows are missing"): its rows came
    only with the job's end. A stand-in worker writes one row to its journal, as the real one does once a row is
    timed, then is killed."""
    row = inference_row("defectnet", "cpu", 0.25, "int8")
    script = "\n".join([
        "import os, signal",
        "from benchmarks.config import Row",
        "from benchmarks.worker import ROWS_ENV, journal",
        f"journal(os.environ[ROWS_ENV])(Row(**{row.to_dict()!r}))",
        "os.kill(os.getpid(), signal.SIGKILL)  # as the kernel's out-of-memory killer does",
    ])  # fmt: skip
    real = runner.worker_command
    monkeypatch.setattr(runner, "worker_command", lambda: ([sys.executable, "-c", script], real()[1]))
    result = runner.BenchResult(hardware=None, config=runner.BenchConfig(models=(TINY,)))
    said: list[str] = []
    job = Job(JobKind.ONNX, 1, str(TINY))
    runner._run_jobs([("tiny.onnx cpu threads=1: inference", job)], result, said.append)
    assert [(r.model, r.p50_ms) for r in result.rows] == [("defectnet", 0.25)]
    assert len(result.skipped) == 1 and "exit code -9; its rows after the 1 timed are missing" in result.skipped[0]
    assert any(line.startswith("warning: benchmark worker") for line in said)


def test_more_threads_than_the_cores_allowed_are_timed_after_a_warning(tmp_path):
    """`taskset -c 0 edge-bench --threads 2` timed 2 threads taking turns on one core in silence. One warning line
    now names the limit and what to do; the 2-thread rows are still timed."""
    prefix = one_core_prefix()
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--threads", "2", "--model", str(TINY), "--json", str(out)]
    r = subprocess.run([*prefix, sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True,
                       text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if line.startswith("warning: --threads")]
    assert len(warned) == 1 and "--threads 2 but this process may use 1 core (" in warned[0], r.stderr
    assert warned[0].endswith("use --threads 1") and "ThreadsWarning" not in r.stderr
    assert {row["threads"] for row in json.loads(out.read_text())} == {1, 2}  # --threads 1 of TINY_COUNTS, and 2


def test_a_complete_run_removes_the_partial_files_of_an_interrupted_one(tmp_path, monkeypatch):
    """The .interrupted files were left beside the new complete results, and a reader could take the older, partial
    rows for the latest run."""
    row = inference_row("defectnet", "cpu", 0.2, "int8")
    calls = interrupted_after(monkeypatch, [row])
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(TINY), "--json", str(out)]
    assert CliRunner().invoke(main, args).exit_code == ExitCode.INTERRUPTED
    partial = sorted(p.name for p in tmp_path.glob("*.interrupted.*"))
    assert len(partial) == 3
    monkeypatch.setattr(runner, "run_worker", lambda job: (calls.append(job), ([row], []))[1])
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert out.is_file() and not list(tmp_path.glob("*.interrupted.*"))
    assert any(line.startswith("removed ") and "interrupted run's rows" in line for line in r.stderr.splitlines())


def test_a_complete_run_leaves_another_json_s_partial_files_and_warns_on_one_it_cannot_remove(tmp_path, monkeypatch):
    """A complete run with another --json removed the interrupted run's CSV (named after the hardware) and left
    its JSON and PNG; a partial file that could not be removed ended the complete run with exit 1."""
    row = inference_row("defectnet", "cpu", 0.2, "int8")
    calls = interrupted_after(monkeypatch, [row])
    base = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(TINY), "--json"]
    assert CliRunner().invoke(main, [*base, str(tmp_path / "x.json")]).exit_code == ExitCode.INTERRUPTED
    partial = sorted(tmp_path.glob("*.interrupted.*"))
    assert len(partial) == 3
    monkeypatch.setattr(runner, "run_worker", lambda job: (calls.append(job), ([row], []))[1])
    r = CliRunner().invoke(main, [*base, str(tmp_path / "y.json")])
    assert r.exit_code == 0 and sorted(tmp_path.glob("*.interrupted.*")) == partial, r.output
    real_unlink = Path.unlink

    def refuse(self, *args, **kwargs):
        if self.suffix == ".png":
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(self, *args, **kwargs)

    monkeypatch.setattr(Path, "unlink", refuse)
    r = CliRunner().invoke(main, [*base, str(tmp_path / "x.json")])
    assert r.exit_code == 0, r.output
    assert "warning: could not remove" in r.stderr and "x.interrupted.png (Operation not permitted)" in r.stderr
    # the partial JSON stays with its PNG, so that the next complete run finds and removes them (an orphaned PNG
    # was never cleaned up)
    assert sorted(p.name for p in tmp_path.glob("x.interrupted.*")) == ["x.interrupted.json", "x.interrupted.png"]
    monkeypatch.setattr(Path, "unlink", real_unlink)
    assert CliRunner().invoke(main, [*base, str(tmp_path / "x.json")]).exit_code == 0
    assert not list(tmp_path.glob("x.interrupted.*"))


def test_another_json_s_partial_run_keeps_its_csv_when_a_run_beside_it_completes(tmp_path, monkeypatch):
    """x interrupted, then y interrupted (the hardware-named CSV then held y's rows), then x complete: it removed
    that CSV, and y's partial JSON and PNG were left without it. Each --json now has a CSV of its own name."""
    row = inference_row("defectnet", "cpu", 0.2, "int8")
    base = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(TINY), "--json"]
    for name in ("x.json", "y.json"):
        interrupted_after(monkeypatch, [row])
        assert CliRunner().invoke(main, [*base, str(tmp_path / name)]).exit_code == ExitCode.INTERRUPTED
    monkeypatch.setattr(runner, "run_worker", lambda job: ([row], []))
    assert CliRunner().invoke(main, [*base, str(tmp_path / "x.json")]).exit_code == 0
    left = sorted(p.name for p in tmp_path.glob("*.interrupted.*"))
    assert left[0].startswith("y-") and left[0].endswith("c.interrupted.csv"), left
    assert left[1:] == ["y.interrupted.json", "y.interrupted.png"], left
    assert sorted(p.name for p in tmp_path.glob("*.csv") if "interrupted" not in p.name)[0].startswith("x-")


def test_a_folder_given_as_checkpoint_is_called_a_folder(tmp_path, no_jobs):
    """It said "checkpoint not found" for a folder that exists."""
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--model", str(TINY), "--checkpoint", str(tmp_path)])
    assert r.exit_code == ExitCode.BAD_MODEL and "is a folder" in one_error_line(r) and no_jobs == []


def test_data_whose_class_names_do_not_tell_gets_advice_edge_bench_can_follow(tmp_path, no_jobs):
    """Class folders bad/good: the advice was "pass --positive-class NAME", and edge-bench has no such option."""
    for name in ("bad", "good"):
        (tmp_path / "d" / name).mkdir(parents=True)
        shutil.copy(next((REPO / "edge_runtime" / "samples").rglob("*.jpeg")), tmp_path / "d" / name / "a.jpeg")
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--data", str(tmp_path / "d")])
    assert r.exit_code == ExitCode.BAD_DATA, r.output
    line = one_error_line(r)
    assert "--positive-class" not in line and "name them as the model's classes" in line and no_jobs == []


def test_a_provider_this_onnxruntime_lacks_is_exit_8_before_any_job(no_jobs):
    """``--provider cuda`` without onnxruntime-gpu timed both PyTorch rows first (a minute without --quick), then
    exited 8 with nothing on stdout."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA: nothing to refuse")
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--model", str(TINY), "--provider", "cuda"])
    assert r.exit_code == ExitCode.MISSING_EXTRA, r.output
    assert "provider cuda is not available" in one_error_line(r) and no_jobs == []


def test_a_thread_count_typed_twice_is_timed_once(no_jobs):
    """``--threads 1 --threads 1`` (or a --model or --provider typed twice) planned every job twice: twice the
    time, and duplicate rows in the report."""
    twice = ["--threads", "1", "--model", str(TINY), "--provider", "cpu", "--provider", "cpu"]
    r = CliRunner().invoke(main, [*TINY_COUNTS, *twice, "--no-torch", "--no-live", "--model", str(TINY)])
    assert r.exit_code == 0, r.output
    assert sorted((job.kind.value, job.threads) for job in no_jobs) == [("e2e", 1), ("onnx", 1)]


def test_options_that_no_live_or_no_torch_leave_unused_are_named(no_jobs):
    """``--live-fps 7`` with ``--no-live`` and ``--torch-runs 3`` with ``--no-torch`` were ignored without a word."""
    args = ["--quick", "--threads", "1", "--model", str(TINY), "--no-live", "--no-torch", "--live-fps", "7",
            "--live-seconds", "9", "--torch-runs", "3"]  # fmt: skip
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "warning: --live-fps, --live-seconds not used with --no-live" in r.stderr
    assert "warning: --torch-runs not used with --no-torch" in r.stderr
    quiet = CliRunner().invoke(main, ["--quick", "--threads", "1", "--model", str(TINY), "--no-live", "--no-torch"])
    assert "not used with" not in quiet.stderr  # (a busy machine may still get its own warning)


def test_two_result_sets_in_one_folder_keep_a_csv_each(tmp_path, monkeypatch):
    """fp32.json then int8.json in one folder: the CSV was named after the hardware alone, so the second run replaced
    the first's, and fp32.json was left beside int8's rows without a word."""
    base = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(TINY), "--json"]
    for name, ms in (("fp32", 0.4), ("int8", 0.2)):
        row = inference_row("defectnet", "cpu", ms, name)
        monkeypatch.setattr(runner, "run_worker", lambda job, row=row: ([row], []))
        assert CliRunner().invoke(main, [*base, str(tmp_path / f"{name}.json")]).exit_code == 0
    csvs = {p.name.split("-")[0]: p.read_text() for p in tmp_path.glob("*.csv")}
    assert sorted(csvs) == ["fp32", "int8"] and "0.4" in csvs["fp32"] and "0.4" not in csvs["int8"]


@pytest.mark.parametrize("given", ["", ".", "sub"])
def test_a_json_path_that_is_a_folder_is_one_output_line(tmp_path, monkeypatch, no_jobs, given):
    """--json '' and --json . were "unexpected ValueError: PosixPath('.') has an empty name", exit 1. An empty
    --json (an unset variable) is now named as empty, a usage error, not as the folder "."."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", given])
    code, words = (ExitCode.USAGE, "is empty") if given == "" else (ExitCode.OUTPUT_ERROR, "is a folder")
    assert r.exit_code == code, r.output
    assert words in one_error_line(r) and no_jobs == []


def test_a_plot_that_cannot_be_written_keeps_the_last_complete_set(tmp_path, monkeypatch):
    """A file-size limit that stopped the PNG left a new JSON and CSV beside no PNG (the old one removed): the set
    was mixed, exit 7. The three are now written all or none."""
    import errno
    import pathlib

    base = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(TINY), "--json", str(tmp_path / "r.json")]
    monkeypatch.setattr(runner, "run_worker", lambda job: ([inference_row("defectnet", "cpu", 0.4, "int8")], []))
    assert CliRunner().invoke(main, base).exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert len(before) == 3
    real = pathlib.Path.write_bytes

    def limited(self: pathlib.Path, data: bytes) -> int:
        if self.name.startswith(".r.png."):
            raise OSError(errno.EFBIG, "File too large")
        return real(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", limited)
    monkeypatch.setattr(runner, "run_worker", lambda job: ([inference_row("defectnet", "cpu", 0.2, "int8")], []))
    r = CliRunner().invoke(main, base)
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "r.png: cannot write (File too large)" in last and "left as they were" in last
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no temporary file left either


def test_the_jobs_left_out_after_a_models_failure_are_listed(tmp_path, monkeypatch):
    """A model whose scores are NaN failed its file -> verdict job; its accuracy job was then left out in silence:
    no Accuracy section, and Skipped named only the e2e rows."""
    from benchmarks.config import JobKind

    model = str(REPO / "tests" / "models" / "tiny.onnx")

    def worker(job):  # noqa: ANN001
        if job.kind is JobKind.END_TO_END:
            return [], [f"e2e rows of {job.model} on cpu: the model gave score nan (not a probability)"]
        return [inference_row("defectnet", "cpu", 0.2, "int8")], []

    monkeypatch.setattr(runner, "run_worker", worker)
    samples = REPO / "edge_runtime" / "samples"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--no-live", "--model", model, "--data", str(samples)])
    assert r.exit_code == 0, r.output
    skipped = r.output.split("## Skipped", 1)[1]
    assert "e2e rows of" in skipped and "accuracy on" in skipped and "failed an earlier job" in skipped


@pytest.mark.parametrize("given", ["bench.txt", "newdir/", "results"])
def test_a_json_path_that_does_not_end_in_json_is_refused(tmp_path, no_jobs, given):
    """bench.txt shared bench.json's CSV and PNG (both named after the stem), and 'newdir/' was written as a file."""
    target = str(tmp_path) + "/" + given
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(TINY), "--json", target])
    assert r.exit_code == ExitCode.OUTPUT_ERROR, r.output
    assert "pass --json FILE.json" in one_error_line(r) and no_jobs == [] and list(tmp_path.iterdir()) == []


def test_torch_rows_left_out_where_torch_is_missing_say_so(tmp_path, monkeypatch):
    """On the runtime-only install, the torch rows after the first said "not run, as seed failed an earlier job":
    nothing had failed, torch is simply not installed there."""
    from benchmarks.config import JobKind
    from benchmarks.worker import TORCH_MISSING

    def worker(job):  # noqa: ANN001
        if job.kind is JobKind.TORCH:
            return [], [TORCH_MISSING]
        return [inference_row("defectnet", "cpu", 0.2, "int8")], []

    monkeypatch.setattr(runner, "run_worker", worker)
    model = str(REPO / "edge_runtime" / "models" / "defectnet_int8.onnx")  # the checkpoint's own size
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-live", "--threads", "1", "--threads", "2", "--model", model])
    assert r.exit_code == 0, r.output
    skipped = r.output.split("## Skipped", 1)[1]
    assert "torch is not importable here" in skipped and "failed an earlier job" not in skipped
    # one line for all the torch rows (it named the 2-thread row left out, not the 1-thread one); the console
    # counts every job (it jumped from [1/N] to [5/N])
    assert skipped.count("torch") == 1 and "not run" not in skipped, skipped
    counts = [int(m) for m in re.findall(r"^edge-bench \[(\d+)/\d+\]", r.output, re.M)]
    assert counts and counts == list(range(1, len(counts) + 1)), r.output


def test_a_json_in_a_folder_whose_name_is_too_long_is_one_line_before_any_job(tmp_path, no_jobs):
    """--json DIR/b.json, DIR named over 255 bytes, was "unexpected OSError: [Errno 36] File name too long", exit 1."""
    target = tmp_path / ("a" * 300) / "b.json"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--model", str(TINY), "--json", str(target)])
    assert r.exit_code == ExitCode.USAGE, r.output
    assert "longer than the file system allows" in one_error_line(r) and no_jobs == []
