"""onnxruntime execution providers: what ``--provider`` asks for, and the chain a session is made with (best first,
the CPU always last), with a note when it differs from what was asked for."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from edge_runtime.errors import MissingExtraError, UsageError


class Provider(str, Enum):
    AUTO = "auto"  # the best available: TensorRT, then CUDA, then CPU
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"

    @classmethod
    def named(cls, name: Provider | str) -> Provider:
        """The provider a Python caller names, in any case, or by onnxruntime's own name (``CUDAExecutionProvider``);
        anything else is a :class:`UsageError` listing the names.

        >>> Provider.named("CUDA"), Provider.named("CPUExecutionProvider")
        (<Provider.CUDA: 'cuda'>, <Provider.CPU: 'cpu'>)
        """
        if isinstance(name, cls):
            return name
        if isinstance(name, str):
            key = name.strip().lower().removesuffix("executionprovider")
            if key in {p.value for p in cls}:
                return cls(key)
        raise UsageError(f"provider {name!r} is not one of {', '.join(p.value for p in cls)}")


ORT_PROVIDER = {
    Provider.CPU: "CPUExecutionProvider",
    Provider.CUDA: "CUDAExecutionProvider",
    Provider.TENSORRT: "TensorrtExecutionProvider",
}


TENSORRT_LIBRARIES = ("libnvinfer.so.10", "libnvinfer.so.11", "libnvinfer.so")


def tensorrt_libraries() -> bool:
    """Whether TensorRT's runtime library loads. onnxruntime-gpu lists its TensorRT provider even without it,
    then prints a multi-line error at session creation and falls back; asking first keeps the output clean."""
    import ctypes

    for name in TENSORRT_LIBRARIES:
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return True
    return False


EMPTIED = (
    "onnxruntime is installed but its files are gone: onnxruntime and onnxruntime-gpu were installed side by side and "
    "uninstalling one removed the module both provide; reinstall the one to keep: pip install --force-reinstall "
    "--no-deps -c constraints.txt onnxruntime-gpu (or onnxruntime)"
)


def onnxruntime_module() -> ModuleType:
    """onnxruntime, or a :class:`MissingExtraError` (exit 8) where only its leftovers are there. A missing module
    raises ModuleNotFoundError, which the commands turn into one line naming the package."""
    import onnxruntime as ort

    if getattr(ort, "__file__", None) is None:  # a namespace package made of what pip left (capi/): it had ended
        raise MissingExtraError(EMPTIED)  # in "unexpected AttributeError ... report it", exit 1
    return ort


def cuda_provider_library() -> Path:
    """Where onnxruntime-gpu keeps its CUDA provider (the CPU wheel has no such file)."""
    ort = onnxruntime_module()
    return Path(ort.__file__).parent / "capi" / "libonnxruntime_providers_cuda.so"


def cuda_missing_library() -> str | None:
    """The first library onnxruntime's CUDA provider links to that this process cannot load (``libcublasLt.so.13``
    where CUDA is not installed), or None. onnxruntime-gpu lists CUDA whether or not CUDA is installed, then
    prints a page of red errors at every session creation and falls back to the CPU: asking first keeps that to
    one line, as for TensorRT. The names are looked up as the loader would for the provider (it has no RUNPATH)."""
    import ctypes

    from edge_runtime.elf_needed import needed_libraries

    for name in needed_libraries(cuda_provider_library()):
        try:
            ctypes.CDLL(name)
        except OSError:
            return name
    return None


_BOTH_WHEELS = (
    "onnxruntime and onnxruntime-gpu are both installed and the CPU one took over their shared module (a later pip "
    "install of defect-edge or an extra put it back): pip uninstall -y onnxruntime onnxruntime-gpu, then pip "
    "install -c constraints.txt onnxruntime-gpu (see README, GPU)"
)


def _both_wheels() -> bool:
    """Whether the CPU and the GPU onnxruntime wheels are both installed: the one installed last owns the module."""
    from importlib import metadata

    def installed(name: str) -> bool:
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            return False
        return True

    return installed("onnxruntime") and installed("onnxruntime-gpu")


def _missing(provider: Provider, available: list[str]) -> NoReturn:
    """A missing package (exit 8), not a bad model (exit 4, as it was). The remedy as the caller gives it: a Python
    caller of load_model had been told to use --provider cpu."""
    missing = f"provider {provider.value} is not available in this onnxruntime (has: {', '.join(available)}); "
    if _both_wheels():
        raise MissingExtraError(missing + _BOTH_WHEELS)
    remedy = missing + "install onnxruntime-gpu (see README, GPU) or use {}"
    raise MissingExtraError(remedy.format('provider="cpu"'), cli=remedy.format("--provider cpu"))


def provider_chain(provider: Provider) -> tuple[list[str], str]:
    """The onnxruntime providers to ask for, best first (CPU always last, so a session can be made), and a note
    for the user when the chain is not what was asked for."""
    available = onnxruntime_module().get_available_providers()
    trt, cuda, cpu = (ORT_PROVIDER[p] for p in (Provider.TENSORRT, Provider.CUDA, Provider.CPU))
    if provider is Provider.CPU:
        return [cpu], ""
    if provider is not Provider.AUTO and ORT_PROVIDER[provider] not in available:
        _missing(provider, available)
    wanted = [p for p in (trt, cuda) if p in available] if provider is Provider.AUTO else [ORT_PROVIDER[provider]]
    if provider is Provider.TENSORRT and cuda in available:
        wanted.append(cuda)  # TensorRT hands the nodes it cannot build to CUDA, not to the CPU
    if cuda in wanted and (library := cuda_missing_library()):
        return [cpu], (  # TensorRT needs CUDA's libraries too
            f"asked for {provider.value}, but onnxruntime-gpu's CUDA provider cannot run: {library} is not "
            "installed (install the CUDA and cuDNN releases onnxruntime-gpu is built for, see README, GPU); "
            "running on the CPU"
        )
    if provider is Provider.AUTO and cuda not in available and _both_wheels():
        return [cpu], f"the GPU is not used: {_BOTH_WHEELS}"  # the default run had said nothing of it
    note = ""
    if trt in wanted and not tensorrt_libraries():
        wanted.remove(trt)
        if provider is Provider.TENSORRT:
            note = (
                f"TensorRT's libraries ({TENSORRT_LIBRARIES[0]}) are not installed, so the TensorRT provider cannot "
                f"run; using {', '.join(wanted) or 'the CPU'} instead (install TensorRT 10 to use it)"
            )
    return [*wanted, cpu], note
