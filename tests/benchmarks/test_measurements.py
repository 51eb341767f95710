"""What edge-bench reports is what it says it measures: memory per row, live latency and rate, the images timed."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import benchmarks.end_to_end as end_to_end
import benchmarks.live as live
import benchmarks.onnx_bench as onnx_bench
from benchmarks.config import Job, JobKind, Row
from benchmarks.plot import _needs_files, series_name
from benchmarks.station_probe import Probe
from benchmarks.timing import measure, peak_rss_mb, reset_peak_rss
from edge_runtime.items import Item
from edge_runtime.model import EdgeModel

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self: a Linux measure")


def pictures(folder: Path, n: int, value: int) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"{folder.name}_{i:02d}.png"
        cv2.imwrite(str(p), np.full((40, 40), value + i, np.uint8))
        paths.append(str(p))
    return paths


@pytest.mark.skipif(not reset_peak_rss(), reason="no writable /proc/self/clear_refs here")
def test_each_measured_configuration_reports_its_own_peak_memory():
    """A worker times batch 1, 8, 32 and then the map rows: a peak only rises, so every later row read batch 32's."""
    ballast = np.ones(300 * 2**20, np.uint8)
    before = peak_rss_mb()
    del ballast
    measure(lambda: None, warmup=1, runs=3)
    assert peak_rss_mb() < before - 200


def test_inference_rows_decode_only_the_images_their_batches_use(tiny_models, tmp_path: Path, monkeypatch):
    paths = pictures(tmp_path / "imgs", 20, 60)
    read = []
    real = onnx_bench.read_image
    monkeypatch.setattr(onnx_bench, "read_image", lambda p: read.append(p) or real(p))
    job = Job(JobKind.ONNX, 1, str(tiny_models[1]), batches=(1, 4), warmup=1, runs=4, min_runs=1, images=tuple(paths))
    rows = onnx_bench.onnx_inference_rows(job)
    assert [r.batch for r in rows] == [1, 4]
    assert len(read) == 4  # not all 20 of --data: they sat in every row's peak memory


class LateCamera(live.PacedSource):
    """A camera whose capture thread wakes 30 ms after each frame was due (a busy machine)."""

    def read(self):  # noqa: ANN201
        ok, frame = super().read()
        time.sleep(0.03)
        return ok, frame


def test_live_latency_counts_from_when_the_frame_was_due(tiny_models, monkeypatch):
    monkeypatch.setattr(live, "PacedSource", LateCamera)
    model = EdgeModel(tiny_models[1])
    frames = [np.full((40, 40, 3), 90, np.uint8)]
    row = live.live_row(model, frames, fps=10, seconds=0.6, threads=1)
    assert row.p50_ms >= 25  # from the publishing thread's stamp it read about 1 ms


def test_live_results_per_second_do_not_exceed_the_camera(tiny_models):
    model = EdgeModel(tiny_models[1])
    row = live.live_row(model, [np.full((40, 40, 3), 90, np.uint8)], fps=30, seconds=0.5, threads=1)
    # 15 results over 14 frame periods read 32, and a late first result more (a busy machine drops frames: fewer
    # results, never more than the camera's)
    assert 0 < row.throughput <= 30.0


def test_live_loop_prepares_frames_as_edge_infer_does(tiny_models, monkeypatch):
    model = EdgeModel(tiny_models[1])
    calls = []
    real = model.input_for_verdict
    monkeypatch.setattr(model, "input_for_verdict", lambda *a, **k: calls.append(1) or real(*a, **k))
    row = live.live_row(model, [np.full((40, 40, 3), 90, np.uint8)], fps=30, seconds=0.3, threads=1)
    assert len(calls) >= row.frames_captured - row.frames_dropped > 0


def test_file_rows_time_both_classes_and_say_how_many_images(tiny_models, tmp_path: Path, monkeypatch):
    ok, bad = pictures(tmp_path / "ok", 10, 40), pictures(tmp_path / "bad", 10, 160)
    read = []
    real = end_to_end.read_image
    monkeypatch.setattr(end_to_end, "read_image", lambda p: read.append(p) or real(p))
    model = EdgeModel(tiny_models[1])
    job = Job(JobKind.END_TO_END, 1, str(tiny_models[1]), warmup=2, runs=8, images=tuple(ok + bad))
    (row,) = end_to_end.file_rows(model, job, load_ms=1.0)
    timed = read[2:]
    classes = {Path(p).parent.name for p in timed}
    assert classes == {"ok", "bad"}  # in list order: ok images only
    assert row.n_images == 8 and row.note.startswith("8 of 20 images timed")


def test_a_frames_wait_for_a_cpu_is_never_more_than_its_latency(monkeypatch):
    import benchmarks.station_probe as probe_mod

    waits = iter([0, 50_000_000])  # at capture, then at the result: 50 ms counted for a frame of about 1 ms
    monkeypatch.setattr(probe_mod, "cpu_wait_ns", lambda tid: next(waits))
    probe = Probe(tid=1)
    probe.capture_wait_ns.append(probe_mod.cpu_wait_ns(1))
    probe.due.append(time.monotonic() - 0.001)
    src = Item(source="cam", frame=0, timestamp=time.monotonic())
    probe.on_records([{}], [src])
    assert probe.cpu_wait_ms[0] == probe.latencies_ms[0]  # capped: 50 ms counted, the frame's own latency kept


def test_two_files_of_the_same_model_are_two_series_in_the_plot():
    rows = [
        Row(section="inference", model="defectnet", precision="int8", provider="cpu", batch=1, threads=1, file=f)
        for f in "ab"
    ]
    assert _needs_files(rows)
    assert {series_name(r, with_file=True) for r in rows} == {"defectnet int8 cpu (a)", "defectnet int8 cpu (b)"}
    assert not _needs_files(rows[:1])


def test_localisation_scores_each_image_with_the_symmetry_look_edge_infer_may_take(monkeypatch):
    """benchmarks.localisation scored without the part's square, so an item that edge-infer --heatmap measures (a
    part unlike the training images, just below the threshold) could be called OK there."""
    from benchmarks.localisation import locate
    from edge_runtime.model import default_model_path
    from edge_runtime.model_info import Precision
    from edge_runtime.preprocess import read_image

    model = EdgeModel(default_model_path(Precision.INT8))
    sample = next((Path(__file__).resolve().parents[2] / "edge_runtime" / "samples").rglob("*def*.jpeg"))
    brighter = np.clip(read_image(sample).astype(np.int16) + 60, 0, 255).astype(np.uint8)  # flagged: unlike training
    seen = []
    real = model.predict_inputs
    monkeypatch.setattr(model, "predict_inputs", lambda x, **k: seen.append(k) or real(x, **k))
    locate(model, brighter)
    assert seen and seen[0]["parts"][0] is not None  # the square the symmetry look measures, as predict(heatmap=True)


def test_a_run_where_every_model_is_refused_is_exit_4_and_keeps_the_last_results(tmp_path: Path):
    from click.testing import CliRunner

    from benchmarks.cli import main
    from edge_runtime.errors import ExitCode
    from tests.benchmarks.test_cli import TINY_COUNTS

    out = tmp_path / "bench.json"
    out.write_text('[{"model": "the last complete run"}]')
    bad = Path(__file__).resolve().parents[1] / "models" / "bad_input_size.onnx"
    r = CliRunner().invoke(main, [*TINY_COUNTS, "--no-torch", "--no-live", "--model", str(bad), "--json", str(out)])
    assert r.exit_code == ExitCode.BAD_MODEL, r.output  # was 0, over an empty [] JSON, a header-only CSV, a blank PNG
    assert "no model could be timed" in r.output and "bad_input_size.onnx" in r.output
    assert out.read_text() == '[{"model": "the last complete run"}]'


def test_two_model_files_of_one_name_are_told_apart_by_their_paths():
    from benchmarks.runner import file_labels

    labels = file_labels((Path("a/x.onnx"), Path("b/x.onnx"), Path("c/y.onnx")))
    assert labels == {"a/x.onnx": "a/x.onnx", "b/x.onnx": "b/x.onnx", "c/y.onnx": "y.onnx"}


def test_the_plot_legend_has_room_for_every_series():
    from benchmarks.plot import panel

    rows = [Row(section="inference", model=f"m{k}", precision="int8", provider="cpu", batch=1, threads=1,
                p50_ms=0.1 + k) for k in range(9)]  # fmt: skip
    names = [series_name(r) for r in rows]
    img = panel(rows, names, "p50", -1.0, 1.0)
    last_legend_line = 380 - 120 + 35 + 14 * (len(names) - 1)  # where the old fixed-size panel put the 9th entry
    assert img.shape[0] > last_legend_line + 4


def test_a_fixed_batch_1_model_says_its_batch_8_row_is_8_calls(tmp_path: Path):
    paths = pictures(tmp_path / "imgs", 3, 80)
    model = Path(__file__).resolve().parents[1] / "models" / "tiny_batch1.onnx"
    job = Job(JobKind.ONNX, 1, str(model), batches=(1, 8), warmup=1, runs=8, min_runs=1, images=tuple(paths))
    rows = onnx_bench.onnx_inference_rows(job)
    notes = {r.batch: r.note for r in rows if not r.model.endswith("+map")}
    assert "fixed batch 1: run as 8 calls" in notes[8] and "fixed batch" not in notes[1]


def test_a_folder_of_few_images_is_timed_as_a_folder_not_as_pool_start_up(tiny_models, tmp_path: Path):
    paths = pictures(tmp_path / "imgs", 3, 80)
    model = EdgeModel(tiny_models[1])
    job = Job(JobKind.END_TO_END, 1, str(tiny_models[1]), runs=10, images=tuple(paths))
    (row,) = end_to_end.folder_rows(model, job)
    assert row.n_images == 2 * end_to_end.FOLDER_BATCH and "(3 distinct, repeated)" in row.note


def test_the_stages_time_the_softening_where_the_model_softens(tiny_models):
    """The shipped models soften inputs sharper than their training images: edge-bench times that as its own stage
    (one blur and one measure), as it times the looks; a model without a station profile has no such stage."""
    from edge_runtime.demo import SAMPLES
    from edge_runtime.model import default_model_path

    image = str(sorted(SAMPLES.rglob("*.jpeg"))[0])
    name = "softening (inputs sharper than the training images)"
    for path, softens in ((default_model_path(), True), (tiny_models[1], False)):
        model = EdgeModel(path)
        job = Job(JobKind.END_TO_END, 1, str(path), warmup=1, runs=3, images=(image,))
        rows = {r.note: r for r in end_to_end.stage_rows(model, job)}
        assert (name in rows) is softens
        if softens:
            assert 0 < rows[name].p50_ms < rows["inference"].p50_ms * 10


def test_warmup_reaches_the_file_to_verdict_job():
    from benchmarks.config import BenchConfig
    from benchmarks.runner import plan_jobs

    jobs = plan_jobs(BenchConfig(models=(Path("m.onnx"),), warmup=7, torch=False), ["a.png"])
    assert {j.kind: j.warmup for _, j in jobs}[JobKind.END_TO_END] == 7


def test_rows_say_when_their_peak_memory_could_not_be_reset(tiny_models, tmp_path: Path, monkeypatch):
    import benchmarks.timing as timing

    monkeypatch.setattr(timing, "reset_peak_rss", lambda: False)  # no clear_refs: another OS, a locked container
    paths = pictures(tmp_path / "imgs", 2, 80)
    job = Job(JobKind.ONNX, 1, str(tiny_models[1]), batches=(1,), warmup=1, runs=3, min_runs=1, images=tuple(paths))
    (row,) = onnx_bench.onnx_inference_rows(job)
    assert "peak RSS since the worker started" in row.note
