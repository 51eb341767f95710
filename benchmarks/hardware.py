"""What machine the numbers come from: CPU model, cores, instruction sets, OS and onnxruntime."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

# Instruction sets that decide how fast a small INT8/FP32 CNN runs; cpuinfo flag -> name shown.
ISA_FLAGS = {
    "avx2": "AVX2",
    "fma": "FMA",
    "avx512f": "AVX-512",
    "avx512_vnni": "AVX512-VNNI",
    "avx_vnni": "AVX-VNNI",
    "avx512_bf16": "AVX512-BF16",
    "amx_int8": "AMX-INT8",
    "asimd": "NEON",
    "asimddp": "NEON-dotprod",
    "i8mm": "I8MM",
    "sve": "SVE",
}


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


def _cpuinfo() -> dict[str, str]:
    """The first processor block of /proc/cpuinfo (Linux, x86 and ARM)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def _cpu_name(info: dict[str, str]) -> str:
    for key in ("model name", "Hardware", "Model", "cpu model"):
        if info.get(key):
            return info[key]
    if sys.platform == "darwin":
        try:
            out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True)
            if out.stdout.strip():
                return out.stdout.strip()
        except OSError:
            pass
    return platform.processor() or platform.machine() or "unknown CPU"


def _isa(info: dict[str, str]) -> tuple[str, ...]:
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.machine() in ("arm64", "aarch64") and sys.platform == "darwin":
        flags |= {"asimd", "asimddp"}  # every Apple silicon core has NEON with dot product
    return tuple(name for flag, name in ISA_FLAGS.items() if flag in flags)


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

    info = _cpuinfo()
    return Hardware(
        cpu=_cpu_name(info),
        cores=usable_cores(),
        isa=_isa(info),
        os=platform.platform(),
        python=platform.python_version(),
        onnxruntime=ort.__version__,
        providers=tuple(ort.get_available_providers()),
        numpy=np.__version__,
        opencv=cv2.__version__,
    )
