"""The GPU install gone wrong, on a machine without a GPU: onnxruntime-gpu without CUDA's libraries, and the CPU
onnxruntime installed beside it. Both ran on the CPU; the first printed onnxruntime's page of red errors at every
start, the second (the default --provider auto) said nothing at all."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime import providers
from edge_runtime.cli import main
from edge_runtime.elf_needed import needed_libraries
from edge_runtime.providers import Provider
from tests.edge_runtime.conftest import write_parts

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def real_library() -> Path:
    """A small real ELF shared library that every onnxruntime wheel ships."""
    import onnxruntime as ort

    path = Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_shared.so"
    if not path.is_file():
        pytest.skip("this onnxruntime has no libonnxruntime_providers_shared.so")
    return path


def cuda_provider(tmp_path: Path, *, missing: str | None) -> Path:
    """A stand-in for onnxruntime-gpu's CUDA provider: a real library whose link to libm names ``missing``."""
    path = tmp_path / "libonnxruntime_providers_cuda.so"
    shutil.copy(real_library(), path)
    if missing:
        data = path.read_bytes()
        assert b"libm.so.6" in data and len(missing) == len("libm.so.6")
        path.write_bytes(data.replace(b"libm.so.6", missing.encode()))
    return path


@pytest.fixture
def gpu_wheel(monkeypatch: pytest.MonkeyPatch):
    """onnxruntime-gpu as it lists its providers, whatever is installed; TensorRT's libraries absent."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: [TRT, CUDA, CPU])
    monkeypatch.setattr(providers, "tensorrt_libraries", lambda: False)

    def provider_at(path: Path) -> None:
        monkeypatch.setattr(providers, "cuda_provider_library", lambda: path, raising=False)

    return provider_at


def test_needed_libraries_reads_the_links_of_a_real_library(tmp_path: Path) -> None:
    assert "libc.so.6" in needed_libraries(real_library())
    for junk in (b"", b"\x7fELF\x02\x01", b"\x7fELF\x02\x01" + b"\xff" * 200, b"not an ELF file" * 10):
        (tmp_path / "junk.so").write_bytes(junk)
        assert needed_libraries(tmp_path / "junk.so") == []
    assert needed_libraries(tmp_path / "missing.so") == []


@pytest.mark.parametrize("asked", [Provider.AUTO, Provider.CUDA, Provider.TENSORRT])
def test_cuda_without_its_libraries_is_not_asked_for_and_the_missing_one_is_named(tmp_path, gpu_wheel, asked):
    gpu_wheel(cuda_provider(tmp_path, missing="libZ.so.6"))
    chain, note = providers.provider_chain(asked)
    assert chain == [CPU]
    assert f"asked for {asked.value}" in note and "libZ.so.6 is not installed" in note
    assert note.endswith("running on the CPU") and "README, GPU" in note


def test_cuda_with_its_libraries_is_asked_for_as_before(tmp_path, gpu_wheel):
    gpu_wheel(cuda_provider(tmp_path, missing=None))
    assert providers.provider_chain(Provider.CUDA) == ([CUDA, CPU], "")
    assert providers.provider_chain(Provider.AUTO) == ([CUDA, CPU], "")


def test_edge_infer_on_a_gpu_wheel_without_cuda_says_why_in_one_line(tmp_path, gpu_wheel, tiny_model):
    gpu_wheel(cuda_provider(tmp_path, missing="libZ.so.6"))
    write_parts(tmp_path / "parts", [10, 200])
    for extra in ([], ["--provider", "cuda"]):
        r = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts"), *extra])
        assert r.exit_code == 0, r.output
        warnings = [line for line in r.stderr.splitlines() if "WARNING" in line or "onnxruntime:" in line]
        assert len(warnings) == 1 and "libZ.so.6 is not installed" in warnings[0], r.stderr


def both_wheels(monkeypatch: pytest.MonkeyPatch, *, gpu: bool) -> None:
    from importlib import metadata

    def version(name: str) -> str:
        if name == "onnxruntime-gpu" and not gpu:
            raise metadata.PackageNotFoundError(name)
        return "1.32.0"

    monkeypatch.setattr(metadata, "version", version)


def test_the_default_run_names_the_cpu_wheel_beside_onnxruntime_gpu(monkeypatch, tmp_path, tiny_model):
    """`pip install '.[station]'` after the GPU swap put the CPU onnxruntime back: edge-infer ran on the CPU and
    said nothing, where --provider cuda named the cause and its remedy."""
    import onnxruntime as ort

    monkeypatch.setattr(ort, "get_available_providers", lambda: [CPU])
    both_wheels(monkeypatch, gpu=True)
    chain, note = providers.provider_chain(Provider.AUTO)
    assert chain == [CPU] and "the GPU is not used" in note and "both installed" in note
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in note
    write_parts(tmp_path / "parts", [10])
    r = CliRunner().invoke(main, ["--model", str(tiny_model), "--source", str(tmp_path / "parts")])
    assert r.exit_code == 0 and "WARNING: the GPU is not used: onnxruntime and onnxruntime-gpu" in r.stderr, r.stderr
    both_wheels(monkeypatch, gpu=False)  # the CPU wheel alone: the usual CPU install, nothing to say
    assert providers.provider_chain(Provider.AUTO) == ([CPU], "")
