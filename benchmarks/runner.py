"""Plan the jobs, run each in a fresh worker process, and gather the rows: :func:`run_benchmark`."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.config import SEED_MODEL, TORCH_PROVIDER, BenchConfig, Job, JobKind, Row, Section
from benchmarks.hardware import Hardware, detect_hardware
from benchmarks.host_load import machine_busy_s, others_share, own_cpu_s, run_cpus
from benchmarks.preflight import check_model_file
from benchmarks.worker import PARENT_ENV, ROWS_ENV, TORCH_MISSING
from edge_runtime import datasets
from edge_runtime.errors import DataError, DefectEdgeError, ExitCode, ModelError
from edge_runtime.model import MODELS_DIR
from edge_runtime.model_file import read_model_bytes
from edge_runtime.preprocess import read_image

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the folder that holds this benchmarks package
SAMPLES_DIR = PACKAGE_ROOT / "edge_runtime" / "samples"
DEFAULT_CHECKPOINTS = (Path("train/default_model/best.pt"),)

Progress = Callable[[str], None]


@dataclass
class BenchResult:
    """Everything one run measured, ready for the Markdown/JSON/CSV/PNG writers."""

    hardware: Hardware
    config: BenchConfig
    rows: list[Row] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0
    command: str = ""
    interrupted: bool = False  # Ctrl-C/SIGTERM/SIGHUP: the rows are partial, written beside (never over) complete ones
    # The share of the machine's CPU time that other processes took during the run (None: not measurable here).
    # Timings of a run on a busy machine are inflated: 262 ms for the origin network instead of 33 ms.
    others_cpu_share: float | None = None


def bundled_models() -> tuple[Path, ...]:
    """Every ONNX file shipped in ``edge_runtime/models`` (INT8 first, then FP32, FP16, others)."""
    order = {"int8": 0, "fp32": 1, "fp16": 2}
    files = sorted(MODELS_DIR.glob("*.onnx")) if MODELS_DIR.is_dir() else []
    return tuple(sorted(files, key=lambda p: (next((v for k, v in order.items() if k in p.stem), 9), p.name)))


def default_checkpoint() -> Path | None:
    """DefectNet weights for the torch rows: the committed default model, when this checkout has it."""
    here = Path(__file__).resolve().parents[1]
    return next((here / p for p in DEFAULT_CHECKPOINTS if (here / p).is_file()), None)


def labelled_images(data: Path, models: Sequence[Path] = ()) -> tuple[list[str], list[str]]:
    """Image paths and class names of ``data/test/<class>/`` (or ``data/<class>/`` when there is no test/),
    read by the one class-folder reader (:mod:`edge_runtime.datasets`). Folders named as a model's classes are
    found first: a station model's ``good``/``scratch`` were refused ("cannot tell which is defective")."""
    hint = "name them as the model's classes (ok_front and def_front, or ok and defective), or leave out --data"
    candidates = [check_model_file(m).class_names for m in models]  # (negative, positive): edge-bench has no
    classes = datasets.find_class_folders(data, candidates=candidates, unknown_hint=hint)  # --positive-class
    listing = datasets.list_labelled(classes)
    names = classes.class_names
    return [str(p) for p in listing.paths], [names[y] for y in listing.labels]


def sample_images(cfg: BenchConfig, progress: Progress = lambda msg: None) -> list[str]:
    """The images the timing jobs cycle through: ``--data``'s readable ones (an unreadable file stopped the
    file -> verdict job after the others had run, and the whole run was lost), else the bundled samples."""
    if cfg.data is None:
        return [str(p) for p in datasets.list_images(SAMPLES_DIR)]
    paths = labelled_images(cfg.data, cfg.models)[0]
    ok = [_readable(p) for p in paths]
    readable = [p for p, good in zip(paths, ok, strict=True) if good]
    left_out = [p for p, good in zip(paths, ok, strict=True) if not good]
    if not readable:
        raise DataError(f"{cfg.data}: none of its {len(paths)} image files is readable; pass --data with images")
    if left_out:
        named = ", ".join(left_out[:3]) + (", ..." if len(left_out) > 3 else "")
        progress(f"warning: {len(left_out)} of {len(paths)} files are not readable images, not timed: {named}")
    return readable


def _readable(path: str) -> bool:
    try:
        read_image(path)
    except Exception:  # noqa: BLE001 - any failure to read or decode: not an image to time
        return False
    return True


def plan_jobs(cfg: BenchConfig, images: list[str]) -> list[tuple[str, Job]]:
    """(description, job) in run order: torch first (the slowest), then per model and thread count."""
    jobs: list[tuple[str, Job]] = []
    common = {"batches": cfg.batches, "warmup": cfg.warmup, "min_runs": cfg.min_runs}
    if cfg.torch:
        ckpt = str(cfg.checkpoint or "")
        for arch in (SEED_MODEL, "defectnet"):
            for t in cfg.threads:
                job = Job(JobKind.TORCH, t, arch, TORCH_PROVIDER, runs=cfg.torch_runs, checkpoint=ckpt, **common)
                jobs.append((f"{arch} {TORCH_PROVIDER} threads={t}", job))
        # The origin network takes about a second per batch of 32 on two cores: fewer warm-up and minimum runs.
        jobs = [(d, replace(j, batches=cfg.torch_batches, warmup=min(cfg.warmup, 3), min_runs=3)) for d, j in jobs]
    for model in cfg.models:
        for provider in cfg.providers:
            for t in cfg.threads:
                base = {"threads": t, "model": str(model), "provider": provider.value, "images": tuple(images)}
                name = f"{model.name} {provider.value} threads={t}"
                jobs.append((f"{name}: inference", Job(JobKind.ONNX, runs=cfg.runs, **common, **base)))
                e2e = Job(JobKind.END_TO_END, runs=cfg.e2e_runs, warmup=cfg.warmup, **base)
                jobs.append((f"{name}: file -> verdict", e2e))
                if cfg.live_fps:
                    live = Job(JobKind.LIVE, fps=cfg.live_fps, seconds=cfg.live_seconds, **base)
                    jobs.append((f"{name}: live {'/'.join(map(str, cfg.live_fps))} FPS", live))
    return jobs


def accuracy_jobs(cfg: BenchConfig) -> list[tuple[str, Job]]:
    if cfg.data is None:
        return []
    paths, classes = labelled_images(cfg.data, cfg.models)
    provider, threads = cfg.providers[0].value, max(cfg.threads)
    return [
        (
            f"{m.name}: accuracy on {len(paths)} images",
            Job(JobKind.ACCURACY, threads, str(m), provider, images=tuple(paths), classes=tuple(classes)),
        )
        for m in cfg.models
    ]


def with_contents(jobs: list[tuple[str, Job]], models: tuple[Path, ...]) -> list[tuple[str, Job]]:
    """Each model job carrying the SHA-256 of its file as it is now: every job's worker opens the file again, and a
    model re-exported onto the same path mid-run had its later rows, accuracy too, timed under the first's name."""
    digest = {str(m): hashlib.sha256(read_model_bytes(m)).hexdigest() for m in models}
    return [(d, replace(j, sha256=digest[j.model]) if j.kind is not JobKind.TORCH else j) for d, j in jobs]


class WorkerCrashed(DefectEdgeError):
    """A worker process died without its report (killed for memory, a crash in a native library); ``rows``: those
    it had timed before."""

    def __init__(self, message: str, *, rows: list[Row]) -> None:
        super().__init__(message)
        self.rows = rows


class JobInterrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP while a worker ran; ``rows``: those its job had timed (they came only with the
    job's end, so an interrupted job lost up to three batch sizes already timed)."""

    def __init__(self, rows: list[Row]) -> None:
        super().__init__()
        self.rows = rows


def worker_command() -> tuple[list[str], dict[str, str]]:
    """The command and environment of a worker that runs this very package's code. ``-P``: the current folder does
    not come first on its path; started in a folder holding a ``benchmarks/`` of its own (a project's, an older
    defect-edge checkout), every worker imported that one ("No module named benchmarks.worker", exit 4, on an
    installed edge-bench; an older checkout's code timed without a word). A package imported from elsewhere than
    an install (``python -m benchmarks`` in a checkout, an editable install) has its folder put on ``PYTHONPATH``;
    an installed one is found where it is (its site-packages ahead of the standard library could shadow it)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]  # an empty entry is the cwd
    if not _installed(PACKAGE_ROOT):
        paths.append(str(PACKAGE_ROOT))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid()), "PYTHONPATH": os.pathsep.join(paths)}
    if not paths:
        del env["PYTHONPATH"]
    return [sys.executable, "-P", "-m", "benchmarks.worker"], env


def _installed(folder: Path) -> bool:
    """Whether ``folder`` is one of this Python's site-packages folders (on every fresh interpreter's path)."""
    import site

    sites = [*getattr(site, "getsitepackages", list)(), site.getusersitepackages()]
    return any(os.path.realpath(s) == os.path.realpath(folder) for s in sites)


def run_worker(job: Job) -> tuple[list[Row], list[str]]:
    """Run one job in a fresh ``python -m benchmarks.worker`` and parse its rows. The worker also writes each row
    to a journal as soon as it is timed: stopped (:class:`JobInterrupted`) or crashed (:class:`WorkerCrashed`), the
    job keeps the rows in it."""
    cmd, env = worker_command()
    journal = journal_fd()
    if journal is not None:
        env[ROWS_ENV] = str(journal)
    try:
        # Its own process group: a terminal's Ctrl-C (or SIGHUP) reaches edge-bench alone, which stops the worker
        # here; a worker that died of the signal before edge-bench heard it would look crashed.
        proc = subprocess.run(cmd, input=job.to_json(), capture_output=True, text=True, env=env, process_group=0,
                              pass_fds=() if journal is None else (journal,))  # fmt: skip
        return worker_report(proc, job, journal)
    except KeyboardInterrupt as exc:  # subprocess.run killed the worker and waited: its journal is complete
        raise JobInterrupted(journal_rows(journal)) from exc
    finally:
        if journal is not None:
            os.close(journal)


def worker_report(proc: subprocess.CompletedProcess, job: Job, journal: int | None) -> tuple[list[Row], list[str]]:
    """The rows and skip reasons a worker printed at its end."""
    try:
        out = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        tail = " | ".join(proc.stderr.strip().splitlines()[-3:]) or f"exit code {proc.returncode}"
        message = f"benchmark worker for {job.kind.value} {job.model} failed: {tail}"
        raise WorkerCrashed(message, rows=journal_rows(journal)) from None
    if "error" in out:
        raise DefectEdgeError(out["error"], exit_code=ExitCode(out["exit_code"]))
    return [Row(**r) for r in out["rows"]], list(out["skipped"])


def journal_fd() -> int | None:
    """An unnamed file a worker inherits to write its rows to: in memory on Linux (no temporary folder needed: a
    read-only root, ``docker --read-only``), else a temporary file; None where a child cannot inherit it (Windows)
    or none can be made, and the job's rows then come only with its end."""
    if os.name != "posix":
        return None
    try:
        if hasattr(os, "memfd_create"):
            return os.memfd_create("edge-bench-rows", os.MFD_CLOEXEC)
        with tempfile.TemporaryFile() as f:
            return os.dup(f.fileno())
    except OSError:
        return None


def journal_rows(journal: int | None) -> list[Row]:
    """The whole rows a worker wrote to its journal (none without one)."""
    if journal is None:
        return []
    try:
        data = os.pread(journal, os.fstat(journal).st_size, 0)
    except OSError:
        return []
    rows = []
    for line in data.splitlines():
        try:
            rows.append(Row(**json.loads(line)))
        except (ValueError, TypeError):  # a line cut short by a kill (not expected: each is one write)
            continue
    return rows


def add_seed_ratios(rows: list[Row]) -> None:
    """``vs_seed`` = the origin network's p50 / this row's p50 at the same batch and thread count."""
    seed = {
        (r.batch, r.threads): r.p50_ms
        for r in rows
        if r.model == SEED_MODEL and r.provider == TORCH_PROVIDER and r.p50_ms
    }
    for r in rows:
        ref = seed.get((r.batch, r.threads))
        if r.section == Section.INFERENCE.value and ref and r.p50_ms:
            r.vs_seed = round(ref / r.p50_ms, 1)


def file_labels(models: tuple[Path, ...]) -> dict[str, str]:
    """The name each model file's rows carry: its file name, or the path as given where two files share a name
    (``a/x.onnx`` and ``b/x.onnx`` were one series in the plot and could not be told apart in the tables).

    >>> file_labels((Path("a/x.onnx"), Path("b/x.onnx"), Path("y.onnx")))["y.onnx"]
    'y.onnx'
    """
    names = [m.name for m in models]
    return {str(m): str(m) if names.count(m.name) > 1 else m.name for m in models}


NO_TORCH = "torch is not importable here"


def _run_jobs(jobs: list[tuple[str, Job]], result: BenchResult, progress: Progress) -> None:
    """Run the jobs in order, adding their rows to ``result`` as each finishes."""
    labels = file_labels(result.config.models)
    failed: dict[str, str] = {}  # model -> why its later jobs are not run
    for k, (what, job) in enumerate(jobs, 1):
        if job.model in failed:  # said, not left out in silence (an accuracy section simply missing)
            progress(
                f"[{k}/{len(jobs)}] {what}: not run, as {failed[job.model]}"
            )  # the count had jumped [1/18] -> [5/18]
            if failed[job.model] != NO_TORCH:  # torch missing: the first job's line says every torch row is left out
                result.skipped.append(f"{what}: not run, as {failed[job.model]}")
            continue
        progress(f"[{k}/{len(jobs)}] {what}")
        try:
            rows, skipped = run_worker(job)
            _keep_rows(rows, job, result, labels)
        except JobInterrupted as exc:
            _keep_rows(exc.rows, job, result, labels)
            raise
        except WorkerCrashed as exc:  # one job's loss, not the run's: the rows measured so far are kept
            progress(f"warning: {exc}")
            _keep_rows(exc.rows, job, result, labels)
            missing = f"its rows after the {len(exc.rows)} timed are missing" if exc.rows else "its rows are missing"
            result.skipped.append(f"{what}: {exc}; {missing}")
            continue
        if job.kind is JobKind.TORCH and skipped:
            # torch missing is no failure of the models ("seed failed an earlier job", said the runtime-only install)
            why = NO_TORCH if skipped[0] == TORCH_MISSING else "torch failed an earlier job"
            progress(f"{what}: {skipped[0]}")  # it had no note, the rows after it had
            failed.update(dict.fromkeys((SEED_MODEL, "defectnet"), why))
        elif skipped:
            failed[job.model] = f"{labels.get(job.model, job.model)} failed an earlier job"
        result.skipped += [s for s in skipped if s not in result.skipped]


def _keep_rows(rows: list[Row], job: Job, result: BenchResult, labels: dict[str, str]) -> None:
    for r in rows:
        r.file = labels.get(job.model, r.file) if r.file else r.file
    result.rows += rows


def run_benchmark(cfg: BenchConfig, *, progress: Progress = lambda msg: None, stop: Any = None) -> BenchResult:
    """Run every job of ``cfg`` (each in a fresh process) and return the rows, with hardware and skips. ``stop``:
    the command's :class:`~edge_runtime.stopping.StopSignals`; once the jobs are over a signal only counts, so the
    rows are still reported.

    >>> result = run_benchmark(BenchConfig(models=bundled_models()))  # doctest: +SKIP
    """
    if not cfg.models:
        raise ModelError(
            f"no model to benchmark: {MODELS_DIR} has no .onnx file; pass --model PATH (an .onnx from export-onnx)"
        )
    missing = [str(m) for m in cfg.models if not m.is_file()]
    if missing:
        raise ModelError(f"{', '.join(missing)}: model file not found; pass --model PATH to an .onnx from export-onnx")
    cpus = run_cpus()  # other processes count where they compete with this run: on the CPUs it may use
    started, busy0, own0 = time.perf_counter(), machine_busy_s(cpus), own_cpu_s()
    result = BenchResult(hardware=detect_hardware(), config=cfg)
    jobs = with_contents(plan_jobs(cfg, sample_images(cfg, progress)) + accuracy_jobs(cfg), cfg.models)
    try:
        _run_jobs(jobs, result, progress)
    except KeyboardInterrupt:  # the worker was interrupted with us; what the earlier ones measured is kept
        result.interrupted = True
    if stop is not None:
        stop.closing = True  # from here a signal is only counted (read after this: none can raise in between)
        result.interrupted |= stop.requested  # a stop during the jobs: the rows are partial even if none raised
    if result.interrupted:
        result.skipped.append("interrupted (Ctrl-C, SIGTERM or SIGHUP): the jobs after the last row were not run")
    elif not any(r.provider != TORCH_PROVIDER for r in result.rows):
        # Every model was refused (a broken file): exit 4 and keep the last results, instead of exit 0 over them.
        why = next((s for s in result.skipped if "torch" not in s), "no row was measured")
        raise ModelError(f"no model could be timed: {why}; pass --model PATH to a defect-edge .onnx from export-onnx")
    add_seed_ratios(result.rows)
    for r in result.rows:
        r.cpu, r.onnxruntime = f"{result.hardware.cpu} ({result.hardware.cores} cores)", result.hardware.onnxruntime
    result.seconds = time.perf_counter() - started
    result.others_cpu_share = others_share(busy0, own0, result.seconds, os.cpu_count() or 1, cpus)
    if result.others_cpu_share is not None:
        for r in result.rows:
            r.others_cpu_pct = round(100 * result.others_cpu_share, 1)
    return result
