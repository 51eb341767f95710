"""The affinity and a container's CPU quota set the default inference threads. onnxruntime counted the machine's
physical cores whatever the process may use: on 2 cores under `taskset -c 0` or `docker run --cpus 1` (a 1-core
cgroup quota) its two spinning threads fought for the one core, a folder running at 0.7x the items/s of --threads 1
with 1.35x the CPU time. Fake cgroup and topology files stand for the machine's: cgroup v2 (cpu.max) and v1
(cpu.cfs_quota_us / period)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_runtime import cpu_quota as quota_module
from edge_runtime.cpu_quota import AutoThreads, cpu_quota, physical_cores, threads_for
from edge_runtime.model import load_model

V2_MOUNT = "41 31 0:38 / /sys/fs/cgroup rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = "32 31 0:29 {root} /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
V1 = "sys/fs/cgroup/cpu,cpuacct"
OTHER_MOUNTS = "23 1 0:21 / /proc rw - proc proc rw\n35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"


def fake_machine(root: Path, *, mountinfo: str, cgroup: str, files: dict[str, str]) -> Path:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(OTHER_MOUNTS + mountinfo)
    (root / "proc/self/cgroup").write_text(cgroup)
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_cgroup_v2_quota_of_the_group_and_of_a_parent(tmp_path):
    """`docker run --cpus 1.5` writes "150000 100000" to the container's cpu.max; a systemd slice's CPUQuota= sits
    in a parent group and binds the groups below it."""
    group, own = "0::/system.slice/station.service\n", "sys/fs/cgroup/system.slice/station.service"
    slice_ = "sys/fs/cgroup/system.slice"
    limits = {f"{own}/cpu.max": "150000 100000\n", f"{slice_}/cpu.max": "max 100000\n"}
    assert cpu_quota(fake_machine(tmp_path / "own", mountinfo=V2_MOUNT, cgroup=group, files=limits)) == 1.5
    limits = {f"{own}/cpu.max": "max 100000\n", f"{slice_}/cpu.max": "50000 100000\n"}
    assert cpu_quota(fake_machine(tmp_path / "parent", mountinfo=V2_MOUNT, cgroup=group, files=limits)) == 0.5


def test_cgroup_v1_quota_with_cpu_and_cpuacct_joined(tmp_path):
    """Docker on cgroup v1 without a cgroup namespace: /proc/self/cgroup names the container's group, which is also
    the mount's root, so the mount point is the group's own folder."""
    group = "/docker/0123abcd"
    limits = {f"{V1}/cpu.cfs_quota_us": "100000\n", f"{V1}/cpu.cfs_period_us": "100000\n"}
    mounts, cgroup = V1_MOUNT.format(root=group), f"4:cpu,cpuacct:{group}\n0::/\n"
    assert cpu_quota(fake_machine(tmp_path, mountinfo=mounts, cgroup=cgroup, files=limits)) == 1.0


@pytest.mark.parametrize(
    ("mountinfo", "cgroup", "files"),
    [
        (V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "max 100000\n"}),  # v2, no limit
        (V1_MOUNT.format(root="/"), "4:cpu,cpuacct:/\n", {f"{V1}/cpu.cfs_quota_us": "-1\n"}),  # v1, no limit
        (V2_MOUNT, "0::/\n", {}),  # v2 without the cpu controller enabled: no cpu.max
        (V2_MOUNT, "0::/\n", {"sys/fs/cgroup/cpu.max": "garbled\n"}),
    ],
    ids=["v2-max", "v1-minus-one", "no-cpu-controller", "unreadable"],
)  # fmt: skip
def test_no_quota_is_none(tmp_path, mountinfo, cgroup, files):
    assert cpu_quota(fake_machine(tmp_path, mountinfo=mountinfo, cgroup=cgroup, files=files)) is None


def test_no_proc_is_no_quota(tmp_path):
    assert cpu_quota(tmp_path) is None


def test_threads_are_the_allowed_cores_or_the_quotas_whole_cores_where_fewer():
    assert threads_for(1.0, 2, 2) == AutoThreads(1, "a CPU quota of 1 core")
    assert threads_for(1.5, 2, 2) == AutoThreads(1, "a CPU quota of 1.5 cores")  # half a core holds no thread
    assert threads_for(2.5, 8, 8) == AutoThreads(2, "a CPU quota of 2.5 cores")
    assert threads_for(0.25, 2, 2).count == 1
    assert threads_for(None, 1, 2) == AutoThreads(1, "1 of 2 cores allowed: taskset or cpuset")
    assert threads_for(4.0, 2, 4) == AutoThreads(2, "2 of 4 cores allowed: taskset or cpuset")
    assert threads_for(4.0, 2, 2) is None and threads_for(None, 2, 2) is None  # onnxruntime's own count fits


def test_hyper_threads_of_one_core_count_once(tmp_path):
    """onnxruntime runs a thread per physical core: `taskset -c 0,1` on the two hyper-threads of core 0 of a
    2-core, 4-thread machine allows 1 of its 2."""
    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"}.items():
        topology = tmp_path / f"sys/devices/system/cpu/cpu{cpu}/topology"
        topology.mkdir(parents=True)
        (topology / "thread_siblings_list").write_text(siblings + "\n")
    assert physical_cores(range(4), tmp_path) == 2
    assert physical_cores({0, 2}, tmp_path) == 1
    assert physical_cores({0, 1}, tmp_path) == 2
    assert physical_cores({0, 1}, tmp_path / "none") == 2  # no topology: each CPU its own core


@pytest.mark.parametrize(
    ("quota", "cpus", "why"),
    [(1.0, {0, 1, 2, 3}, "a CPU quota of 1 core"), (None, {0}, "1 of 4 cores allowed: taskset or cpuset")],
    ids=["quota", "affinity"],
)
def test_a_model_loaded_on_fewer_cores_runs_that_many_threads(tiny_model, monkeypatch, quota, cpus, why):
    """The start line said `threads auto` and onnxruntime ran a thread per core of the machine; it now runs one
    per core it may use and says why. A thread count given (--threads, DEFECT_EDGE_THREADS, threads=) is taken as
    it is."""
    monkeypatch.delenv("DEFECT_EDGE_THREADS", raising=False)
    monkeypatch.setattr(quota_module, "cpu_quota", lambda: quota)
    monkeypatch.setattr(quota_module, "allowed_cpus", lambda: cpus)
    monkeypatch.setattr(quota_module.os, "cpu_count", lambda: 4)
    model = load_model(tiny_model, provider="cpu")
    assert model.session.get_session_options().intra_op_num_threads == 1
    assert f"threads 1 ({why})" in model.describe()
    given = load_model(tiny_model, provider="cpu", threads=1)
    assert "threads 1" in given.describe() and "(" not in given.describe().split("threads 1")[1]
    monkeypatch.setattr(quota_module, "cpu_quota", lambda: None)
    monkeypatch.setattr(quota_module, "allowed_cpus", lambda: {0, 1, 2, 3})
    free = load_model(tiny_model, provider="cpu")
    assert free.session.get_session_options().intra_op_num_threads == 0  # onnxruntime's own choice
    assert "threads auto" in free.describe()
