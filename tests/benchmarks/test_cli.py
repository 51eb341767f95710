"""edge-bench end to end with tiny counts: valid JSON/CSV/PNG with every field, with and without torch.

Timings are never asserted (CONVENTIONS.md rule 11): only that every row and file is there and well formed.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from benchmarks.cli import main
from benchmarks.config import Row
from tests.conftest import REPO

REQUIRED = ("model", "precision", "provider", "batch", "threads", "p50_ms", "p99_ms", "throughput")
TINY_COUNTS = [
    "--quick", "--threads", "1", "--batch", "1", "--batch", "2", "--warmup", "1", "--runs", "3",
    "--torch-runs", "1", "--e2e-runs", "3", "--live-fps", "30", "--live-seconds", "0.1",
]  # fmt: skip


def edge_bench(args: list[str], *, block_torch: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``python -m benchmarks`` in a subprocess; with ``block_torch`` no process of the run can import torch."""
    env = dict(os.environ)
    if block_torch:
        # A torch package that refuses to import, first on the path of the run and of its worker processes.
        fake = tmp_path / "no_torch" / "torch"
        fake.mkdir(parents=True, exist_ok=True)
        (fake / "__init__.py").write_text("raise ImportError('torch is blocked for this test')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(fake.parent), str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "benchmarks", *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
    )


def check_outputs(json_path: Path) -> list[dict]:
    """The JSON is a list of rows with every field; the CSV beside it (named after the hardware) has the same
    rows; the PNG is a readable image."""
    rows = json.loads(json_path.read_text())
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(Row.keys()) <= set(row), set(Row.keys()) - set(row)
        assert all(row[k] is not None for k in ("model", "precision", "provider", "batch", "threads"))
        assert row["section"] == "accuracy" or (row["p50_ms"] > 0 and row["p99_ms"] >= row["p50_ms"])
    csvs = list(json_path.parent.glob("bench-*.csv"))
    assert len(csvs) == 1 and csvs[0].name.endswith("c.csv")  # bench-<cpu>-<cores>c.csv
    with csvs[0].open() as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == Row.keys()
        assert len(list(reader)) == len(rows)
    png = cv2.imread(str(json_path.with_suffix(".png")))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 100
    return rows


def test_help_lists_options_and_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for text in ("--quick", "--json", "--data", "--model", "--threads", "--batch", "Exit codes"):
        assert text in result.output
    assert "replaces all three (the CSV is not appended to)" in " ".join(result.output.split())


def test_quick_without_torch_writes_every_output(tiny_models, tmp_path):
    int8, fp32 = tiny_models
    out = tmp_path / "out" / "bench.json"
    r = edge_bench([*TINY_COUNTS, "--model", str(int8), "--model", str(fp32), "--json", str(out)], block_torch=True,
                   tmp_path=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = check_outputs(out)
    sections = {(row["section"], row["precision"]) for row in rows}
    for precision in ("int8", "fp32"):
        for section in ("inference", "file-to-verdict", "folder", "stage", "live"):
            assert (section, precision) in sections
    inference = [row for row in rows if row["section"] == "inference"]
    assert sorted({row["batch"] for row in inference}) == [1, 2]
    assert all(row["provider"] == "cpu" and row["peak_rss_mb"] > 0 and row["model_size_mb"] > 0 for row in inference)
    live = [row for row in rows if row["section"] == "live"]
    assert all(row["fps_target"] == 30 and row["frames_captured"] >= 1 for row in live)
    assert not any(row["provider"] == "torch-eager" for row in rows)
    assert "torch is not importable" in r.stdout  # the report says why the PyTorch rows are missing
    assert "| model | precision | provider |" in r.stdout and "## Targets" in r.stdout
    assert "[1/" in r.stderr  # progress


@pytest.mark.slow
def test_torch_rows_time_the_origin_network_in_the_same_run(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "bench.json"
    # the bundled INT8 model, the network the default checkpoint holds (a tiny test model is refused beside it now:
    # the speed-ups compared two networks)
    args = [*TINY_COUNTS, "--batch", "1", "--no-live", "--model", "int8", "--json", str(out)]
    r = edge_bench(args, block_torch=False, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = check_outputs(out)
    seed = [row for row in rows if row["model"] == "seed"]
    ours = [row for row in rows if row["model"] == "defectnet" and row["provider"] == "torch-eager"]
    assert seed and ours and all(row["provider"] == "torch-eager" for row in seed)
    int8 = next(row for row in rows if row["section"] == "inference" and row["precision"] == "int8")
    assert int8["vs_seed"] > 0  # the ratio is filled in from the same run


def test_data_adds_accuracy_per_precision(tiny_models, synthetic_data, tmp_path):
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--data", str(synthetic_data), "--json", str(out)]
    r = edge_bench([*args, "--model", str(tiny_models[0]), "--model", str(tiny_models[1])], block_torch=True,
                   tmp_path=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    acc = [row for row in check_outputs(out) if row["section"] == "accuracy"]
    assert sorted(row["precision"] for row in acc) == ["fp32", "int8"]
    assert all(row["n_images"] == 16 and 0.0 <= row["accuracy"] <= 1.0 for row in acc)


def test_an_unreadable_file_in_data_is_left_out_of_the_timing_not_the_end_of_the_run(
    tiny_models, synthetic_data, tmp_path
):
    """A truncated JPEG in --data stopped the file -> verdict job after the inference job had run: exit 3, no
    Markdown and no JSON. It is now named once and not timed; the accuracy row counts it as skipped."""
    (synthetic_data / "test" / "def_front" / "aa_cut.jpeg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(40))
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--data", str(synthetic_data), "--json", str(out)]
    r = edge_bench([*args, "--model", str(tiny_models[0])], block_torch=True, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 of 17 files are not readable images, not timed" in r.stderr and "aa_cut.jpeg" in r.stderr
    rows = check_outputs(out)
    assert {row["section"] for row in rows} >= {"inference", "file-to-verdict", "folder", "accuracy"}
    acc = next(row for row in rows if row["section"] == "accuracy")
    assert acc["n_images"] == 16 and "1 unreadable files skipped" in acc["note"]


def test_missing_model_is_one_line_with_exit_code_4(tmp_path):
    result = CliRunner().invoke(main, ["--quick", "--model", str(tmp_path / "nope.onnx")])
    assert result.exit_code == 4
    assert result.output.strip().startswith("error:") and "nope.onnx" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_unwritable_json_is_exit_code_7(tiny_models, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(tiny_models[0]), "--json", str(blocker / "b.json")]
    r = edge_bench(args, block_torch=True, tmp_path=tmp_path)
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:")


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="the machine's busy time is read from /proc/stat")
def test_the_json_and_csv_rows_say_how_busy_the_machine_was(tiny_models, tmp_path):
    """Only the Markdown said that other processes took 67% of the CPU during the run; the JSON and CSV, kept and
    compared with other machines' without it, gave the inflated figures as the hardware's."""
    out = tmp_path / "bench.json"
    args = [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(tiny_models[0]), "--json", str(out)]
    r = edge_bench(args, block_torch=True, tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    said = next(line for line in r.stdout.splitlines() if line.startswith("- other processes during the run: "))
    pct = float(said.split(": ")[1].split("%")[0])
    rows = check_outputs(out)
    assert all(abs(row["others_cpu_pct"] - pct) <= 0.5 for row in rows), (said, rows[0])
    with next(tmp_path.glob("bench-*.csv")).open() as fh:
        assert all(abs(float(row["others_cpu_pct"]) - pct) <= 0.5 for row in csv.DictReader(fh))


def test_the_plot_of_a_busy_run_says_so_under_its_title(tmp_path):
    """The PNG, the figure that goes into a ticket or a wiki alone, had no word of a busy machine's inflated
    timings: a busy run's plot has a second line under the title."""
    from benchmarks.cli import _write_files
    from benchmarks.config import BenchConfig
    from benchmarks.hardware import detect_hardware
    from benchmarks.runner import BenchResult

    row = Row("inference", "defectnet", "int8", "cpu", 1, 1, p50_ms=0.4, p99_ms=0.5, throughput=2500.0)
    heights = {}
    for share in (0.01, 0.67):
        out = tmp_path / f"{share}" / "bench.json"
        out.parent.mkdir()
        cfg = BenchConfig(models=(), json_path=out)
        _write_files(BenchResult(hardware=detect_hardware(), config=cfg, rows=[row], others_cpu_share=share))
        heights[share] = cv2.imread(str(out.with_suffix(".png"))).shape[0]
    assert heights[0.67] == heights[0.01] + 18  # one more line of text in the banner


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_stdout_loses_the_table_not_the_json(tiny_models, tmp_path):
    """`edge-bench ... --json b.json > /dev/full` was "unexpected OSError", exit 1, and b.json was not written: the
    measured rows were lost."""
    out = tmp_path / "b.json"
    args = [sys.executable, "-m", "benchmarks", *TINY_COUNTS, "--no-torch", "--no-live", "--model",
            str(tiny_models[0]), "--json", str(out)]  # fmt: skip
    with open("/dev/full", "w") as full:
        r = subprocess.run(args, stdout=full, stderr=subprocess.PIPE, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 7, r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: stdout: cannot write (No space left on device)")
    assert "Traceback" not in r.stderr and json.loads(out.read_text())


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--live-seconds", "nan"], "--live-seconds"),  # was exit 1 from the live worker, after the other jobs ran
        (["--live-seconds", "inf"], "--live-seconds"),
        (["--batch", "100000"], "--batch"),  # the worker was killed for memory: exit 1, every measured row lost
        # the worker died on a 7 TiB array: listed as "skipped", exit 0, over the last complete --json
        (["--runs", "1000000000000"], "--runs"),
        (["--e2e-runs", "100000000"], "--e2e-runs"),
        (["--live-seconds", "1e300"], "--live-seconds"),
        # ran about 45 minutes, growing a list of every frame's due time until memory ran out; then forever
        (["--live-fps", "1000000000"], "--live-fps"),
        (["--warmup", "1000000000000"], "--warmup"),
    ],
)
def test_bad_numbers_are_usage_errors_before_any_job(tiny_models, tmp_path, args, option):
    result = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--model", str(tiny_models[0]), *args])
    assert result.exit_code == 2, result.output
    assert option in result.output and "[1/" not in result.output


def test_a_worker_that_dies_costs_its_own_rows_only(monkeypatch, tmp_path):
    # A worker killed for memory used to end the whole run (exit 1) and lose every row measured before it.
    import subprocess

    import benchmarks.runner as runner
    from benchmarks.config import BenchConfig

    model = tmp_path / "m.onnx"
    model.write_bytes(b"not read: the workers are faked")
    calls: list[int] = []
    real_run = subprocess.run

    def fake_run(cmd, **kwargs):
        if "benchmarks.worker" not in cmd:  # the hardware probe (lscpu ...) runs for real
            return real_run(cmd, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            return subprocess.CompletedProcess(cmd, -9, stdout="", stderr="")
        row = {"section": "file", "model": "m", "precision": "int8", "provider": "cpu", "batch": 1, "threads": 1}
        return subprocess.CompletedProcess(cmd, 0, stdout=json.dumps({"rows": [row], "skipped": []}) + "\n", stderr="")

    monkeypatch.setattr(runner.subprocess, "run", fake_run)
    monkeypatch.setattr(runner, "sample_images", lambda cfg, progress=None: [])
    said: list[str] = []
    cfg = BenchConfig(models=(model,), torch=False, live_fps=(), plot=False)
    result = runner.run_benchmark(cfg, progress=said.append)
    jobs = len(runner.plan_jobs(cfg, []) + runner.accuracy_jobs(cfg))
    assert len(calls) == jobs > 1  # every other job still ran, and its rows are kept
    assert len(result.rows) == jobs - 1
    assert len(result.skipped) == 1 and "failed: exit code -9; its rows are missing" in result.skipped[0]
    assert any(m.startswith("warning: benchmark worker") for m in said)


def test_a_batch_size_given_twice_is_timed_once(monkeypatch, tmp_path):
    """--batch 1 --batch 1 timed and reported every row twice; a --model given twice was already one."""
    import benchmarks.runner as runner
    from benchmarks.cli import main

    seen = {}

    def fake_run(cfg, progress, stop):  # noqa: ANN001, ARG001
        seen["batches"] = cfg.batches
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_benchmark", fake_run)
    args = ["--no-torch", "--no-live", "--batch", "1", "--batch", "8", "--batch", "1"]
    args += ["--json", str(tmp_path / "r.json")]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert seen["batches"] == (1, 8)


def test_a_model_of_another_input_size_than_the_checkpoint_is_refused_before_timing(tiny_models, tmp_path):
    """A 64 px model beside the default 160 px checkpoint: the "defectnet" PyTorch row timed the checkpoint's network
    and "origin / INT8 677x ... yes" compared two networks, without a word."""
    pytest.importorskip("torch")
    args = [*TINY_COUNTS, "--batch", "1", "--no-live", "--model", str(tiny_models[0])]
    r = edge_bench(args, block_torch=False, tmp_path=tmp_path)
    assert r.returncode == 4, r.stderr
    told = "px, so the speed-ups would compare two networks; pass --checkpoint the model's own best.pt, or --no-torch"
    assert r.stderr.strip().splitlines()[-1].endswith(told)
    assert edge_bench([*args, "--no-torch"], block_torch=True, tmp_path=tmp_path).returncode == 0
