"""How busy the CPUs a run may use were with other processes while it ran (Linux ``/proc/stat``)."""

from __future__ import annotations

import os
from collections.abc import Collection

PROC_STAT = "/proc/stat"


def run_cpus() -> frozenset[int] | None:
    """The CPUs this process may run on where they are fewer than the machine's (``taskset``, a container's
    ``--cpuset-cpus``), else None (all of them)."""
    try:
        cpus = frozenset(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    return cpus if cpus and len(cpus) < (os.cpu_count() or 0) else None


def machine_busy_s(cpus: Collection[int] | None = None) -> float | None:
    """CPU seconds the machine's CPUs (``cpus``: those only) have spent busy since boot, None where unknown.

    Pinned to 2 of 64 cores, the whole machine's figure gave another job's full use of those 2 cores as 3% of its
    CPU time (no warning), and a job on the other 62 as the run's.
    """
    wanted = {"cpu"} if cpus is None else {f"cpu{c}" for c in cpus}
    try:
        with open(PROC_STAT) as f:
            lines = [line.split() for line in f if line.startswith("cpu")]
        ticks = [[int(v) for v in line[1:9]] for line in lines if line[0] in wanted]
        if len(ticks) != len(wanted):
            return None
        return sum(sum(t) - t[3] - t[4] for t in ticks) / os.sysconf("SC_CLK_TCK")  # less idle and iowait
    except (OSError, ValueError, IndexError):
        return None


def own_cpu_s() -> float:
    """CPU seconds of this process and of its finished workers."""
    import resource

    me, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + workers.ru_utime + workers.ru_stime


def others_share(
    busy0: float | None, own0: float, wall_s: float, cores: int, cpus: Collection[int] | None = None
) -> float | None:
    """The share of the CPU time of ``cpus`` (None: the machine's ``cores``) that processes other than this run
    took since ``busy0``/``own0`` (read with the same ``cpus``)."""
    busy1 = machine_busy_s(cpus)
    cores = len(cpus) if cpus else cores
    if busy0 is None or busy1 is None or wall_s <= 0 or cores <= 0:
        return None
    return max(0.0, (busy1 - busy0) - (own_cpu_s() - own0)) / (wall_s * cores)
