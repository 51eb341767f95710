"""``python -m benchmarks.worker``: run one job read from stdin in this fresh process; print its rows as JSON.

A fresh process per job makes each row's peak RSS that configuration's own, keeps one model's allocations
from slowing the next, and keeps torch out of the parent process.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys

from benchmarks.config import Job, JobKind, Row
from edge_runtime.errors import DefectEdgeError, ModelError

PARENT_ENV = "DEFECT_EDGE_BENCH_PARENT"  # edge-bench's pid, given to its workers
PR_SET_PDEATHSIG = 1  # linux/prctl.h
TORCH_MISSING = "torch is not importable here: PyTorch eager rows skipped (pip install -c constraints.txt '.[train]')"


def run_job(job: Job) -> tuple[list[Row], list[str]]:
    """The rows of one job and the reasons for anything skipped."""
    if job.kind is JobKind.TORCH:
        try:
            import torch  # noqa: F401
        except ImportError:
            return [], [TORCH_MISSING]
        from benchmarks.torch_bench import torch_rows

        return torch_rows(job), []
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
        return run(job), []
    except ModelError as exc:  # e.g. an FP16 model on a provider without FP16 kernels
        return [], [f"{job.kind.value} rows of {job.model} on {job.provider}: {exc.for_cli()}"]


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
    job = Job.from_json(sys.stdin.read())
    try:
        rows, skipped = run_job(job)
    except DefectEdgeError as exc:
        print(json.dumps({"error": exc.for_cli(), "exit_code": int(exc.exit_code)}))  # edge-bench prints it
        return
    print(json.dumps({"rows": [r.to_dict() for r in rows], "skipped": skipped}))


if __name__ == "__main__":
    main()
