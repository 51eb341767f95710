"""The live inspection loop at real-time CPU priority (edge_runtime.priority, edge-infer --priority)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import edge_runtime.priority as priority
from edge_runtime.cli import main
from edge_runtime.errors import ExitCode, UsageError
from edge_runtime.infer import InferConfig, run_inference
from edge_runtime.priority import Priority, RealTime
from tests.conftest import REPO
from tests.edge_runtime.conftest import write_parts

POLICY_MASK = ~getattr(os, "SCHED_RESET_ON_FORK", 0)


def _policy() -> int:
    return os.sched_getscheduler(0) & POLICY_MASK


def _realtime_allowed() -> bool:
    """Whether this test process may put a thread under SCHED_RR (tried on a throwaway thread)."""
    if not priority.supported():
        return False
    seen: list[int] = []
    t = threading.Thread(target=lambda: seen.append(priority._set_realtime()))
    t.start()
    t.join()
    return bool(seen and seen[0])


needs_realtime = pytest.mark.skipif(not _realtime_allowed(), reason="real-time scheduling not allowed here")


class Camera:
    """A synthetic camera: ``count`` gray frames, ``period`` s apart; notes the reader thread's policy."""

    def __init__(self, count: int, period: float) -> None:
        self.count, self.period, self.n = count, period, 0
        self.reader_policies: set[int] = set()

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.reader_policies.add(_policy())
        if self.n >= self.count:
            return False, None
        time.sleep(self.period)
        self.n += 1
        return True, np.full((48, 48), (self.n * 37) % 256, np.uint8)

    def release(self) -> None:
        pass


class Policies:
    """A listener that notes the inspection loop's scheduling policy at every record."""

    def __init__(self) -> None:
        self.seen: list[int] = []

    def on_records(self, records: list, items: list) -> None:
        self.seen.append(_policy())


def live_run(model: Path, prio: Priority, *, count: int = 30, period: float = 0.01):
    camera, policies, lines = Camera(count, period), Policies(), []
    cfg = InferConfig(
        camera="synthetic",
        model=model,
        quiet=True,
        listener=policies,
        max_reconnects=0,
        capture=lambda: camera,
        priority=prio,
    )
    summary, _ = run_inference(cfg, log=lines.append)
    return summary, policies.seen, camera, lines


@needs_realtime
def test_the_live_loop_runs_real_time_and_ends_normal(tiny_model):
    before = _policy()
    summary, seen, camera, lines = live_run(tiny_model, Priority.AUTO)
    assert summary.items > 0 and set(seen) == {os.SCHED_RR}
    assert summary.priority == "realtime" and summary.to_dict()["priority"] == "realtime"
    assert any(line.startswith("priority: real-time (SCHED_RR") for line in lines)
    # Only the loop: the camera's reader thread keeps the normal policy, and so does the caller afterwards.
    assert camera.reader_policies == {os.SCHED_OTHER}
    assert _policy() == before == os.SCHED_OTHER


def test_priority_normal_leaves_the_loop_alone(tiny_model):
    summary, seen, _, lines = live_run(tiny_model, Priority.NORMAL)
    assert summary.items > 0 and set(seen) == {os.SCHED_OTHER} and summary.priority == "normal"
    assert not any(line.startswith("priority:") for line in lines)


def test_files_run_at_normal_priority_and_realtime_is_refused_for_them(tmp_path, tiny_model):
    write_parts(tmp_path / "parts", [10, 200])
    policies = Policies()
    cfg = InferConfig(source=str(tmp_path / "parts"), model=tiny_model, quiet=True, listener=policies)
    summary, _ = run_inference(cfg, log=lambda m: None)
    assert summary.items == 2 and set(policies.seen) == {os.SCHED_OTHER} and summary.priority == "normal"

    result = CliRunner().invoke(
        main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), "--priority", "realtime"]
    )
    assert result.exit_code == ExitCode.USAGE
    assert "--priority realtime is for a live source" in result.output and "Traceback" not in result.output


def test_where_real_time_is_not_allowed_auto_runs_normal_and_realtime_says_how(tiny_model, monkeypatch):
    monkeypatch.setattr(priority, "_set_realtime", lambda: 0)
    summary, seen, _, lines = live_run(tiny_model, Priority.AUTO)
    assert summary.items > 0 and set(seen) == {os.SCHED_OTHER} and summary.priority == "normal"
    assert [ln for ln in lines if ln.startswith("priority:")] == [
        f"priority: normal (real-time not allowed for this process; {priority.HOW_TO_ALLOW})"
    ]
    with pytest.raises(UsageError, match="LimitRTPRIO"):
        RealTime.start(required=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="drops root to an unprivileged user")
def test_an_unprivileged_process_is_really_refused():
    # The real EPERM path, not a monkeypatch: user nobody with RLIMIT_RTPRIO 0 (everything imported before).
    code = (
        "import os, resource, edge_runtime.errors; from edge_runtime.priority import RealTime; "
        "resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0)); os.setgid(65534); os.setuid(65534); "
        "rt = RealTime.start(required=False); print(rt.active, os.sched_getscheduler(0))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", str(os.SCHED_OTHER)], proc.stderr


@needs_realtime
def test_a_loop_that_keeps_a_core_busy_goes_back_to_normal(tiny_model, monkeypatch):
    monkeypatch.setattr(priority, "GUARD_WINDOW_S", 0.2)
    monkeypatch.setattr(priority, "GUARD_SHARE", 0.0)  # any work at all counts as too much
    summary, seen, _, lines = live_run(tiny_model, Priority.AUTO, count=80, period=0.005)
    assert seen[0] == os.SCHED_RR and seen[-1] == os.SCHED_OTHER  # switched during the run
    assert summary.priority_dropped and "back to normal priority" in summary.priority_dropped
    assert f"priority: {summary.priority_dropped}" in summary.text()
    assert any(line.startswith("warning: the inspection loop kept a CPU core") for line in lines)
    assert _policy() == os.SCHED_OTHER


@needs_realtime
def test_a_paced_loop_stays_real_time(tiny_model, monkeypatch):
    monkeypatch.setattr(priority, "GUARD_WINDOW_S", 0.2)
    summary, seen, _, _ = live_run(tiny_model, Priority.AUTO, count=40, period=0.02)
    assert set(seen) == {os.SCHED_RR} and summary.priority_dropped is None


@pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="needs Linux's SCHED_BATCH")
def test_a_policy_the_caller_chose_is_left_as_it_is(tiny_model):
    # chrt --batch edge-infer ... (or a systemd unit's CPUSchedulingPolicy=): not raised, not undone at the end.
    out: dict = {}

    def run() -> None:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))  # any user may
        out["run"] = live_run(tiny_model, Priority.REALTIME)
        out["after"] = _policy()

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    summary, seen, _, lines = out["run"]
    assert set(seen) == {os.SCHED_BATCH} and out["after"] == os.SCHED_BATCH
    assert summary.priority == "SCHED_BATCH" and "priority: SCHED_BATCH, as started (left as it is)" in lines
