"""``python -m benchmarks.worker``: run one job read from stdin in this fresh process; print its rows as JSON.

A fresh process per job makes each row's peak RSS that configuration's own, keeps one model's allocations
from slowing the next, and keeps torch out of the parent process. Each row is also appended to edge-bench's row
journal (:data:`ROWS_ENV`) as soon as it is timed: a job stopped by Ctrl-C or killed keeps the rows it had timed
(they came only with the job's end, and up to three batch sizes were lost).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
import warnings
from collections.abc import Callable

from benchmarks.config import Job, JobKind, Row
from edge_runtime.errors import DefectEdgeError, ModelError, ThreadsWarning

PARENT_ENV = "DEFECT_EDGE_BENCH_PARENT"  # edge-bench's pid, given to its workers
ROWS_ENV = "DEFECT_EDGE_BENCH_ROWS"  # the descriptor of edge-bench's row journal, read when a job did not end
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TORCH_MISSING = "torch is not importable here: PyTorch eager rows skipped (pip install -c constraints.txt '.[train]')"


def run_job(job: Job, keep: Callable[[Row], None]) -> list[str]:
    """Time ``job``, handing each row to ``keep`` as soon as it is timed; returns the reasons for anything skipped."""
    if job.kind is JobKind.TORCH:
        try:
            import torch  # noqa: F401
        except ImportError:
            return [TORCH_MISSING]
        from benchmarks.torch_bench import torch_rows

        for row in torch_rows(job):  # each row kept between two timings, never inside one
            keep(row)
        return []
    from benchmarks.end_to_end import accuracy_rows, end_to_end_rows
    from benchmarks.live import live_rows
    from benchmarks.onnx_bench import onnx_inference_rows

    run = {
        JobKind.ONNX: onnx_inference_rows,
        JobKind.END_TO_END: end_to_end_rows,
        JobKind.LIVE: live_rows,
        JobKind.ACCURACY: accuracy_rows,
    }[job.kind]
    try:
        for row in run(job):
            keep(row)
    except ModelError as exc:  # e.g. an FP16 model on a provider without FP16 kernels; the rows before it stay
        return [f"{job.kind.value} rows of {job.model} on {job.provider}: {exc.for_cli()}"]
    return []


def journal(fd_text: str | None) -> Callable[[Row], None]:
    """Write each row to edge-bench's journal, the file descriptor ``fd_text`` (:data:`ROWS_ENV`), as one line in
    one write: a worker killed at any moment leaves whole rows. None (the worker run by hand): rows go nowhere."""
    fd = int(fd_text) if fd_text and fd_text.isdigit() else None

    def keep(row: Row) -> None:
        nonlocal fd
        if fd is None:
            return
        try:
            os.write(fd, (json.dumps(row.to_dict()) + "\n").encode())
        except OSError:  # a full disk, a closed descriptor: the rows still come with the job's end, only not if stopped
            fd = None

    return keep


def die_with_parent() -> None:
    """On Linux, end this worker when edge-bench ends, however it ends (SIGKILL included): an orphaned worker timed
    on at 100% CPU and skewed the next benchmark on the machine."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != os.environ.get(PARENT_ENV, str(os.getppid())):
        os._exit(1)  # edge-bench ended before prctl took effect: nobody is waiting for these rows


def main() -> None:
    die_with_parent()
    # edge-bench said it once, as a line naming --threads; the worker's stderr is only read when it crashes
    warnings.filterwarnings("ignore", category=ThreadsWarning)
    job = Job.from_json(sys.stdin.read())
    rows: list[Row] = []
    to_journal = journal(os.environ.get(ROWS_ENV))

    def keep(row: Row) -> None:
        rows.append(row)
        to_journal(row)

    try:
        skipped = run_job(job, keep)
    except DefectEdgeError as exc:
        print(json.dumps({"error": exc.for_cli(), "exit_code": int(exc.exit_code)}))  # edge-bench prints it
        return
    print(json.dumps({"rows": [r.to_dict() for r in rows], "skipped": skipped}))


if __name__ == "__main__":
    main()
