"""What machine the numbers come from: CPU model, cores, instruction sets, OS and onnxruntime."""

from __future__ import annotations

import os
import platform
import re
from dataclasses import asdict, dataclass

from edge_runtime.cpu import ISA_FLAGS, cpu_info  # noqa: F401 - ISA_FLAGS re-exported for callers
from edge_runtime.cpu_quota import cpu_quota


@dataclass(frozen=True)
class Hardware:
    cpu: str
    cores: int
    isa: tuple[str, ...]
    os: str
    python: str
    onnxruntime: str
    providers: tuple[str, ...]
    numpy: str
    opencv: str
    cpu_quota: float | None = None  # cores a cgroup quota allows (docker --cpus), None without one

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def slug(self) -> str:
        """A file-name-safe name of the machine, e.g. ``amd-epyc-2c``.

        >>> Hardware("AMD EPYC 7B13", 2, (), "", "", "", (), "", "").slug
        'amd-epyc-7b13-2c'
        """
        name = re.sub(r"\((r|tm)\)|cpu|processor|@.*", "", self.cpu.lower())
        name = re.sub(r"[^a-z0-9]+", "-", name).strip("-") or "unknown-cpu"
        return f"{name}-{self.cores}c"


def usable_cores() -> int:
    """Cores this process may run on (respects taskset/cgroup affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def detect_hardware() -> Hardware:
    """Describe this machine and its onnxruntime build (no torch)."""
    import cv2
    import numpy as np
    import onnxruntime as ort

    cpu = cpu_info()
    return Hardware(
        cpu=cpu.name,
        cores=usable_cores(),
        isa=cpu.features,
        os=platform.platform(),
        python=platform.python_version(),
        onnxruntime=ort.__version__,
        providers=tuple(ort.get_available_providers()),
        numpy=np.__version__,
        opencv=cv2.__version__,
        cpu_quota=cpu_quota(),
    )
