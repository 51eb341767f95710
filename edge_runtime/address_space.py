"""A command under an address-space limit (``ulimit -v``, a systemd unit's ``LimitAS=``): fit the libraries' maps.

The limit counts address space mapped, not memory used. edge-infer uses about 150 MiB of memory but mapped
930 MiB: glibc gives each thread that allocates its own malloc arena, reserving 64 MiB of address space each, and
OpenCV alone maps 360 MiB when it loads. Under ``ulimit -v 800000`` a folder therefore ended "out of memory"
before its first item (with onnxruntime's coloured log line above it); under 600000 a decoding thread died with
glibc's "cannot allocate memory for thread-local data: ABORT" (exit 139, no summary); under 400000 OpenCV's import
crashed (exit 139, nothing said). One arena for all threads brings the map down to about 650 MiB.
"""

from __future__ import annotations

import sys

from edge_runtime.stopping import EARLY_COMMANDS, EARLY_MODULES, started_as

M_ARENA_MAX = -8  # glibc's mallopt() parameter for the number of malloc arenas (malloc.h)
# About what a folder run maps with one arena (620-660 MiB measured, onnxruntime 1.32, OpenCV 5.0): below it a
# command may stop "out of memory" or crash without a word, so it says so first.
NEEDS_MIB = 640
COMMAND_MODULES = EARLY_MODULES | {"edge_runtime.cli", "benchmarks"}  # `python -m ...` runs of the commands


def address_space_limit() -> int | None:
    """The soft address-space limit in bytes, or None where there is none (or no such limit: Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def limit_note() -> str:
    """``; or raise the address-space limit (ulimit -v, now 585 MiB)`` where one is set, else empty: the remedy
    for an "out of memory" that the limit, not the machine's memory, caused."""
    limit = address_space_limit()
    return "" if limit is None else f"; or raise the address-space limit (ulimit -v, now {limit >> 20} MiB)"


def one_malloc_arena() -> bool:
    """Ask glibc for one malloc arena shared by all threads; False where this is not glibc (musl, macOS)."""
    import ctypes

    try:
        return ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1) == 1
    except (OSError, AttributeError):
        return False


def fit_address_space() -> None:
    """Called by ``import edge_runtime`` in a command, before OpenCV, numpy and onnxruntime load and start
    threads: under an address-space limit, one malloc arena; under one too small for the libraries, a warning
    that names the limit and the remedy (the crash that may follow says nothing). A library import leaves malloc
    alone: the process is its user's."""
    command, module = started_as()
    limit = address_space_limit()
    if limit is None or (command not in EARLY_COMMANDS and module not in COMMAND_MODULES):
        return
    one_malloc_arena()
    if limit < NEEDS_MIB << 20:
        print(
            f"warning: the address-space limit (ulimit -v) is {limit >> 20} MiB; this command maps about "
            f"{NEEDS_MIB} MiB (OpenCV's and onnxruntime's libraries, not memory used) and may stop out of memory or "
            f"crash without a message: raise it (ulimit -v {NEEDS_MIB << 10} or unlimited)",
            file=sys.stderr,
            flush=True,
        )
        _load_opencv_or_exit()


def _load_opencv_or_exit() -> None:
    """OpenCV first, as it maps the most: under too small a limit its import failed with a traceback from inside
    importlib ("libQt5Gui...so: failed to map segment from shared object"), before any command could catch it."""
    try:
        import cv2  # noqa: F401
    except (ImportError, MemoryError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        print(f"error: OpenCV cannot load under the address-space limit ({first}); raise it (ulimit -v "
              f"{NEEDS_MIB << 10} or unlimited)", file=sys.stderr, flush=True)  # fmt: skip
        raise SystemExit(1) from None
