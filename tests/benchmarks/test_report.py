"""The pieces a reader of the report relies on: percentiles, fixed counts, targets, hardware naming."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from benchmarks.config import Job, JobKind, Row
from benchmarks.hardware import Hardware, detect_hardware
from benchmarks.report import issue_targets, map_cost_targets, table
from benchmarks.runner import add_seed_ratios, labelled_images
from benchmarks.timing import Stats, measure, runs_for_batch
from edge_runtime.errors import DataError
from tests.conftest import REPO, one_core_prefix


def test_stats_percentiles_and_throughput():
    s = Stats.from_seconds([i / 1000 for i in range(1, 101)], items=4)  # 1..100 ms, 4 images per call
    # nearest rank, as edge-infer's summary and edge-log report (numpy's interpolation gave 50.5 and 99.01)
    assert s.p50_ms == pytest.approx(50.0) and s.p99_ms == pytest.approx(99.0) and s.p90_ms == pytest.approx(90.0)
    assert s.throughput == pytest.approx(4 * 100 / 5.05)


def test_measure_calls_warmup_then_the_fixed_count():
    calls = []
    stats = measure(lambda: calls.append(1), warmup=3, runs=7)
    assert len(calls) == 10 and stats.runs == 7


def test_runs_for_batch_keeps_images_per_configuration_equal_with_a_floor():
    assert [runs_for_batch(b, runs=1000, min_runs=20) for b in (1, 8, 32, 256)] == [1000, 125, 31, 20]
    assert runs_for_batch(1, runs=1, min_runs=20) == 1  # --runs 1 at batch 1: one call, as asked (it was 20)


def test_job_survives_the_trip_to_a_worker():
    job = Job(JobKind.LIVE, 2, "m.onnx", batches=(1, 8), images=("a.jpg",), fps=(30, 60), seconds=0.5)
    assert Job.from_json(job.to_json()) == job


def test_hardware_names_this_machine():
    hw = detect_hardware()
    assert hw.cores >= 1 and hw.onnxruntime and "CPUExecutionProvider" in hw.providers
    assert Hardware("Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz", 8, (), "", "", "", (), "", "").slug == (
        "intel-xeon-gold-6338-8c"
    )


def row(model: str, precision: str, provider: str, p50: float, *, section: str = "inference", **kw) -> Row:
    return Row(section, model, precision, provider, kw.pop("batch", 1), kw.pop("threads", 1), p50_ms=p50, **kw)


def test_targets_say_met_missed_and_not_measured():
    rows = [
        row("seed", "fp32", "torch-eager", 40.0),
        row("defectnet", "int8", "cpu", 0.4),
        row("defectnet", "int8", "cpu", 2.0, section="file-to-verdict"),
    ]
    t = {x.name.split(",")[0]: x for x in issue_targets(rows)}
    assert t["INT8 inference"].met is True and "0.400 ms (cpu, 1 thread)" in t["INT8 inference"].measured
    assert t["file -> verdict (INT8)"].met is False
    assert t["folder throughput (INT8)"].met is None
    assert t["origin (seed"].met is True and t["origin (seed"].measured.startswith("100x")


def test_a_target_names_the_provider_and_file_it_was_timed_on():
    """--provider cpu --provider cuda, or two INT8 files: the best figure of any was given with its thread count
    alone ("0.200 ms (1 thread) yes"), read as the CPU's, of the shipped model."""
    rows = [
        row("defectnet", "int8", "cpu", 0.8, file="defectnet_int8.onnx"),
        row("defectnet", "int8", "cuda", 0.2, file="defectnet_int8.onnx"),
        row("defectnet", "int8", "cpu", 0.6, file="line3_int8.onnx", threads=2),
    ]
    t = issue_targets(rows)[0]
    assert t.met is True and t.measured == "0.200 ms (cuda, 1 thread, defectnet_int8.onnx)"
    assert issue_targets(rows[2:])[0].measured == "0.600 ms (cpu, 2 threads)"  # one file: not named


def test_the_map_cost_compares_rows_of_the_same_file():
    """Two INT8 files with a map each: the second file's +map row was set against the first file's lean row
    ("+100%" for a map that cost nothing)."""
    a, b = "a_int8.onnx", "b_int8.onnx"
    rows = [
        row("defectnet", "int8", "cpu", 0.40, file=a),
        row("defectnet+map", "int8", "cpu", 0.44, file=a),
        row("defectnet", "int8", "cpu", 0.80, file=b),
        row("defectnet+map", "int8", "cpu", 0.80, file=b),
    ]
    costs = [t.measured for t in map_cost_targets(rows)]
    assert costs == [f"+10% (0.440 / 0.400 ms, cpu, 1 thread, {a})", f"+0% (0.800 / 0.800 ms, cpu, 1 thread, {b})"]


def test_each_stage_row_names_its_model_file():
    """Two INT8 files gave two "inference | int8 | cpu | 1 | ..." stage rows in "Where file -> verdict time goes",
    with nothing to tell which file's each was."""
    from benchmarks.config import BenchConfig
    from benchmarks.report import to_markdown
    from benchmarks.runner import BenchResult

    rows = [row("defectnet", "int8", "cpu", p, section="stage", note="inference", file=f) for p, f in
            ((0.3, "a_int8.onnx"), (0.9, "b_int8.onnx"))]  # fmt: skip
    md = to_markdown(BenchResult(hardware=detect_hardware(), config=BenchConfig(models=()), rows=rows))
    stage = md.split("## Where file -> verdict time goes")[1].split("\n\n")[1].splitlines()
    assert stage[0].endswith("| file |")
    assert stage[2].endswith("| 0.300 | - | - | a_int8.onnx |") and stage[3].endswith("| 0.900 | - | - | b_int8.onnx |")


def test_every_latency_table_says_how_many_calls_its_percentiles_come_from():
    """--quick times batch 8 five times: its "p99 ms" was the slowest of 5 calls, next to batch 1's p99 of 100,
    with nothing to say so (the count was in the JSON only)."""
    from benchmarks.config import BenchConfig
    from benchmarks.report import to_markdown
    from benchmarks.runner import BenchResult

    rows = [
        row("defectnet", "int8", "cpu", 0.4, section=section, runs=runs, note="inference" if section == "stage" else "")
        for section, runs in (("inference", 5), ("file-to-verdict", 7), ("stage", 9))
    ]
    md = to_markdown(BenchResult(hardware=detect_hardware(), config=BenchConfig(models=()), rows=rows))
    for section, runs in (("Inference", 5), ("End to end", 7), ("Where file -> verdict", 9)):
        head, _, first = md.split(f"## {section}")[1].split("\n\n")[1].splitlines()[:3]
        names = [c.strip() for c in head.strip("|").split("|")]
        assert first.strip("|").split("|")[names.index("runs")].strip() == str(runs), (section, head, first)


def test_seed_ratio_only_at_the_same_batch_and_threads():
    rows = [row("seed", "fp32", "torch-eager", 50.0), row("defectnet", "int8", "cpu", 0.5),
            row("defectnet", "int8", "cpu", 0.5, threads=2)]  # fmt: skip
    add_seed_ratios(rows)
    assert [r.vs_seed for r in rows] == [1.0, 100.0, None]


def test_markdown_table_has_one_line_per_row():
    text = table([row("defectnet", "int8", "cpu", 0.41234)], [("p50 ms", lambda r: r.p50_ms), ("x", lambda r: None)])
    assert text.splitlines() == ["| p50 ms | x |", "| --- | --- |", "| 0.412 | - |"]


def test_labelled_images_map_casting_folder_names(synthetic_data, tmp_path):
    paths, classes = labelled_images(synthetic_data)
    assert len(paths) == 16 and sorted(set(classes)) == ["defective", "ok"]
    with pytest.raises(DataError, match="not found"):
        labelled_images(tmp_path / "missing")


def test_map_cost_compares_the_map_rows_with_the_single_output_model_of_the_same_run():
    from benchmarks.report import map_cost_targets

    def row(model: str, p50: float, threads: int = 1, note: str = "") -> Row:
        return Row("inference", model, "int8", "cpu", 1, threads, p50_ms=p50, note=note)

    rows = [
        row("defectnet", 0.40),
        row("defectnet", 0.41, note="has defect_map, P(defective) only fetched"),
        row("defectnet+map", 0.46),
        row("defectnet", 0.30, threads=2),
        row("defectnet+map", 0.40, threads=2),
    ]
    (one, two) = map_cost_targets(rows)
    assert one.met and "+15%" in one.measured and "1 thread" in one.measured
    assert not two.met and "+33%" in two.measured
    assert all(t.name != one.name for t in issue_targets(rows)[:4])  # the map rows never count as the INT8 model
    assert map_cost_targets([row("defectnet", 0.4)]) == []


def test_a_run_on_a_busy_machine_says_its_timings_are_inflated():
    """Another job training on the same 2 cores made the origin network take 262 ms instead of 33 ms, a "vs seed"
    of 375x, and nothing in the report said so."""
    import os
    import subprocess
    import sys
    import time

    from benchmarks.config import BenchConfig
    from benchmarks.report import to_markdown
    from benchmarks.runner import BenchResult, machine_busy_s, others_share, own_cpu_s

    if machine_busy_s() is None:
        pytest.skip("no /proc/stat here")
    busy0, own0, t0 = machine_busy_s(), own_cpu_s(), time.perf_counter()
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # not waited for: not a worker of ours
    try:
        time.sleep(1.0)
        share = others_share(busy0, own0, time.perf_counter() - t0, os.cpu_count() or 1)
    finally:
        neighbour.kill()
        neighbour.wait()
    assert share is not None and share > 0.8 / (os.cpu_count() or 1) / 2, share  # one core of the machine's, busy
    result = BenchResult(hardware=detect_hardware(), config=BenchConfig(models=()), others_cpu_share=0.4)
    md = to_markdown(result).splitlines()
    assert md[0].startswith("warning: other processes took 40% of the machine's CPU time") and "inflated" in md[0]
    quiet = to_markdown(BenchResult(hardware=detect_hardware(), config=BenchConfig(models=()), others_cpu_share=0.01))
    assert "warning" not in quiet and "other processes during the run: 1%" in quiet


def test_the_busy_share_counts_the_cpus_the_run_may_use(monkeypatch, tmp_path):
    """Pinned to 2 of 64 cores (taskset, a container's --cpuset-cpus), another job that took both for the whole
    run was 2 of 64 cores' time, "3%", no warning; the run's timings were those of a shared core."""
    import benchmarks.host_load as host_load

    tick = os.sysconf("SC_CLK_TCK")

    def stat(busy: list[int]) -> None:  # user, nice, system, idle, iowait, irq, softirq, steal per CPU
        lines = [f"cpu{k} {b} 0 0 {10_000 - b} 0 0 0 0 0 0" for k, b in enumerate(busy)]
        total = f"cpu {sum(busy)} 0 0 {64 * 10_000 - sum(busy)} 0 0 0 0 0 0"
        (tmp_path / "stat").write_text("\n".join([total, *lines, "intr 0"]) + "\n")

    monkeypatch.setattr(host_load, "PROC_STAT", str(tmp_path / "stat"))
    stat([0] * 64)
    own0 = host_load.own_cpu_s()
    busy0 = host_load.machine_busy_s({0, 1})
    stat([tick, tick] + [0] * 62)  # 1 s of both of the run's CPUs, by another process, in 1 s of wall time
    share = host_load.others_share(busy0, own0, 1.0, 64, {0, 1})
    assert share is not None and share > 0.9, share
    assert host_load.machine_busy_s({0, 99}) is None  # a CPU /proc/stat does not list: unknown, not 0


def test_a_pinned_run_reads_the_cpus_it_may_use():
    prefix = one_core_prefix()
    code = "from benchmarks.host_load import run_cpus; print(sorted(run_cpus()))"
    out = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == f"[{prefix[-1]}]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the inherited ru_maxrss is a Linux behaviour")
def test_a_worker_reports_its_own_peak_memory_not_its_parents():
    """ru_maxrss survives exec: every ONNX row of edge-bench read 275 MiB, the size of edge-bench itself."""
    ballast = np.ones(400 * 2**20, np.uint8)  # this process (the parent) now holds 400 MiB more
    code = "from benchmarks.timing import peak_rss_mb; print(peak_rss_mb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert ballast.sum() == ballast.size  # keeps it resident until the worker has reported
    assert 5 < float(out) < 200


def test_the_hardware_line_names_a_cpu_quota_that_throttles_the_rows():
    """Under `docker run --cpus 1` on 2 cores the report said "2 usable cores" and its 2-thread rows ran 3-4x
    slower than the 1-thread ones (file -> verdict p50 10.8 ms against 2.4 ms), with nothing to say why."""
    from dataclasses import replace

    from benchmarks.config import BenchConfig
    from benchmarks.report import to_markdown
    from benchmarks.runner import BenchResult

    hw = replace(detect_hardware(), cores=2, cpu_quota=1.0)
    md = to_markdown(BenchResult(hardware=hw, config=BenchConfig(models=()), others_cpu_share=0.01))
    assert "2 usable cores under a CPU quota of 1 core (rows with more threads are throttled" in md
    assert "edge-infer defaults to 1)" in md
    free = to_markdown(BenchResult(hardware=replace(hw, cpu_quota=None), config=BenchConfig(models=())))
    assert "2 usable cores;" in free
    assert "quota" not in free
