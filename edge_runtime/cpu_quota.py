"""How many cores this process may keep busy: its CPU affinity and a container's CPU quota.

onnxruntime sizes its thread pool by the machine's physical cores, whatever the affinity (``taskset``, a cpuset)
or a CPU quota (``docker run --cpus 1``, a systemd unit's ``CPUQuota=``, a Kubernetes CPU limit) allows. Its pool
threads spin while they wait for work, so two threads on one allowed core take turns spinning, and under a quota
of one core they use it up in half the period and the whole process is stopped until the next: on 2 cores, under
``taskset -c 0`` or a 1-core quota, a folder ran at 0.7x the items/s of ``--threads 1`` with 1.35x the CPU time.
:func:`default_threads` is the thread count to ask for instead.

>>> cpu_quota()               # doctest: +SKIP
1.5
>>> default_threads()         # doctest: +SKIP
AutoThreads(count=1, why='a CPU quota of 1.5 cores')
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


def _cgroup_dirs(root: Path) -> list[tuple[Path, Path]]:
    """(mount point, folder) of this process's own cgroups that can hold a CPU quota: the cgroup v2 one, and the
    v1 ``cpu`` controller's. ``root`` stands for ``/`` (tests pass a folder of fake files)."""
    try:
        mounts = (root / "proc/self/mountinfo").read_text(errors="replace").splitlines()
        groups = (root / "proc/self/cgroup").read_text(errors="replace").splitlines()
    except OSError:  # not Linux, or /proc hidden
        return []
    own: dict[str, str] = {}  # "" (v2) or "cpu" (v1) -> this process's cgroup path under that hierarchy
    for line in groups:
        _, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if controllers == "" or "cpu" in controllers.split(","):
            own[controllers and "cpu"] = path
    found: list[tuple[Path, Path]] = []
    for line in mounts:
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        kind, _, options = line.partition(" - ")[2].partition(" ")
        v1_cpu = kind == "cgroup" and "cpu" in options.split()[-1].split(",")
        key = "" if kind == "cgroup2" else "cpu" if v1_cpu else None
        if key is None or key not in own:
            continue
        mount_root, mount_point = fields[3], fields[4]
        inside = os.path.relpath(own[key], mount_root) if own[key].startswith(mount_root) else "."
        # a cgroup namespace or a container shows its own group as the mount's root: the mount point is it then
        top = root / mount_point.lstrip("/")
        found.append((top, top / ("" if inside == "." else inside)))
    return found


def _quota_at(folder: Path) -> float | None:
    """The quota set in one cgroup folder, in cores (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` / period)."""
    try:
        if (folder / "cpu.max").exists():
            quota, _, period = (folder / "cpu.max").read_text().partition(" ")
            return None if quota.strip() == "max" else int(quota) / int(period)
        quota_us = int((folder / "cpu.cfs_quota_us").read_text())
        return None if quota_us <= 0 else quota_us / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, ZeroDivisionError):  # no such controller here, or a file we cannot make out
        return None


def cpu_quota(root: Path = Path("/")) -> float | None:
    """The CPU quota this process runs under, in cores (1.5 = one and a half), or None where there is none.

    The smallest quota of the process's cgroup and the groups above it (a parent's limit binds its children too),
    over cgroup v2 and the v1 ``cpu`` controller.
    """
    quotas = []
    for top, folder in _cgroup_dirs(root):
        while True:  # up to the hierarchy's mount point, not above it
            quota = _quota_at(folder)
            if quota is not None:
                quotas.append(quota)
            if folder == top or top not in folder.parents:
                break
            folder = folder.parent
    return min(quotas) if quotas else None


def allowed_cpus() -> set[int]:
    """The logical CPUs this process may run on (its affinity: ``taskset``, a cpuset), else all of them."""
    try:
        return os.sched_getaffinity(0) or set(range(os.cpu_count() or 1))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return set(range(os.cpu_count() or 1))


def physical_cores(cpus: Iterable[int], root: Path = Path("/")) -> int:
    """The physical cores that the logical CPUs ``cpus`` lie on (hyper-threads of one core count once)."""
    cores = set()
    for cpu in cpus:
        try:
            cores.add((root / f"sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list").read_text().strip())
        except OSError:  # no topology here: each CPU its own core
            cores.add(str(cpu))
    return max(1, len(cores))


@dataclass(frozen=True)
class AutoThreads:
    """The inference threads to run where onnxruntime's own count would be too many, and why (for the start line)."""

    count: int
    why: str


def threads_for(quota: float | None, allowed: int, machine: int) -> AutoThreads | None:
    """The threads for ``allowed`` physical cores that this process may run on, under a CPU quota of ``quota``
    cores, where onnxruntime would run ``machine`` (the machine's physical cores: its count ignores both); None
    where that is no more than the allowed cores. A fraction of a core cannot hold a spinning thread, so a quota of
    1.5 cores gives 1 thread.

    >>> threads_for(1.0, 2, 2), threads_for(None, 1, 2)
    (AutoThreads(count=1, why='a CPU quota of 1 core'), AutoThreads(count=1, why='1 of 2 cores allowed: taskset or cpuset'))
    >>> threads_for(None, 2, 2), threads_for(4.0, 2, 2), threads_for(1.5, 8, 8).count, threads_for(0.2, 4, 4).count
    (None, None, 1, 1)
    """  # noqa: E501
    cap = allowed if quota is None else min(allowed, max(1, math.floor(quota)))
    if cap >= machine:
        return None
    if quota is not None and cap < allowed:
        return AutoThreads(cap, f"a CPU quota of {quota:g} core{'' if quota == 1 else 's'}")
    return AutoThreads(cap, f"{allowed} of {machine} cores allowed: taskset or cpuset")


def default_threads() -> AutoThreads | None:
    """The inference threads to ask onnxruntime for when none are given (:func:`threads_for` this process)."""
    machine = physical_cores(range(os.cpu_count() or 1))
    return threads_for(cpu_quota(), physical_cores(allowed_cpus()), machine)


def over_cores_line(threads: int, limit: AutoThreads | None, *, spelled: str = "--threads {}") -> str | None:
    """What to say where ``threads`` asked for are more than ``limit`` (:func:`default_threads`: the cores this
    process may use, where fewer than the machine's); None where they are not. ``spelled``: how the caller names a
    count (``--threads {}``, ``threads={}``). The count is used as given: the line says what it costs.

    >>> over_cores_line(2, AutoThreads(1, "1 of 2 cores allowed: taskset or cpuset"))
    '--threads 2 but this process may use 1 core (1 of 2 cores allowed: taskset or cpuset); threads will take turns: use --threads 1'
    >>> over_cores_line(1, AutoThreads(1, "a CPU quota of 1 core")), over_cores_line(8, None)
    (None, None)
    """  # noqa: E501
    if limit is None or threads <= limit.count:
        return None
    cores = f"{limit.count} core{'' if limit.count == 1 else 's'}"
    return (
        f"{spelled.format(threads)} but this process may use {cores} ({limit.why}); threads will take turns: "
        f"use {spelled.format(limit.count)}"
    )


def threads_warning(threads: int, *, spelled: str = "--threads {}") -> str | None:
    """:func:`over_cores_line` for this process: a ``--threads`` above the cores its affinity or CPU quota allows
    was taken in silence, and its spinning threads took turns on the core (``taskset -c 0`` on 2 cores: the 715 test
    images at 226 items/s with 2 threads, 517 with 1)."""
    return over_cores_line(threads, default_threads(), spelled=spelled)
