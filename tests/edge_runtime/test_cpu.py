"""The one CPU-features parser."""

from edge_runtime.cpu import cpu_info

X86 = """processor : 0
model name : AMD EPYC 7B13
flags : fpu avx2 fma avx512f avx512_vnni avx512_bf16

processor : 1
model name : something else
"""
ARM = "processor : 0\nFeatures : fp asimd asimddp i8mm\nCPU implementer : 0x41\nHardware : Raspberry Pi\n"


def test_x86_and_arm_cpuinfo():
    x86 = cpu_info(X86)
    assert x86.name == "AMD EPYC 7B13" and x86.features == ("AVX2", "FMA", "AVX-512", "AVX512-VNNI", "AVX512-BF16")
    assert "avx512_vnni" in x86.flags
    arm = cpu_info(ARM)
    assert arm.name == "Raspberry Pi" and arm.features == ("NEON", "NEON-dotprod", "I8MM")


def test_this_machine_has_a_name():
    assert cpu_info().name
