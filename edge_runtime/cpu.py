"""The one parser of what CPU this is: model name and the instruction sets that decide small-CNN speed.

Used by the benchmarks (hardware line and CSV name), export's latency line and the quantization study.

>>> cpu = cpu_info()          # doctest: +SKIP
>>> cpu.name, cpu.features    # doctest: +SKIP
('AMD EPYC 7B13', ('AVX2', 'FMA', 'AVX-512', 'AVX512-VNNI', 'AVX512-BF16'))
"""

from __future__ import annotations

import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

# cpuinfo flag -> name shown. The x86 and Arm features that decide how fast a small INT8/FP32 CNN runs.
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
class CpuInfo:
    name: str
    features: tuple[str, ...]  # names from ISA_FLAGS, in that order
    flags: frozenset[str]  # every raw flag the OS reports


def parse_cpuinfo(text: str) -> dict[str, str]:
    """The first processor block of /proc/cpuinfo text as a dict (Linux, x86 and Arm).

    >>> parse_cpuinfo("model name : X\\nflags : avx2 fma\\n\\nmodel name : Y")["flags"]
    'avx2 fma'
    """
    info: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in info:
            info[key.strip()] = value.strip()
    return info


def _name(info: dict[str, str]) -> str:
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


def cpu_info(text: str | None = None) -> CpuInfo:
    """This machine's CPU (or the one described by ``text``, /proc/cpuinfo format)."""
    if text is None:
        try:
            text = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            text = ""
    info = parse_cpuinfo(text)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    if platform.machine() in ("arm64", "aarch64") and sys.platform == "darwin":
        flags |= {"asimd", "asimddp"}  # every Apple silicon core has NEON with dot product
    features = tuple(name for flag, name in ISA_FLAGS.items() if flag in flags)
    return CpuInfo(_name(info), features, frozenset(flags))


def cpu_name() -> str:
    """The CPU model name, for latency lines (timings mean little without it)."""
    return cpu_info().name
