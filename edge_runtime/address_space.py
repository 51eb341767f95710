"""A command under an address-space or data-size limit (``ulimit -v`` / ``-d``, systemd ``LimitAS=`` / ``LimitDATA=``).

The limit counts address space mapped, not memory used. edge-infer uses about 150 MiB of memory but mapped
930 MiB: glibc gives each thread that allocates its own malloc arena, reserving 64 MiB of address space each, and
OpenCV alone maps 360 MiB when it loads. Under ``ulimit -v 800000`` a folder therefore ended "out of memory"
before its first item (with onnxruntime's coloured log line above it); under 600000 a decoding thread died with
glibc's "cannot allocate memory for thread-local data: ABORT" (exit 139, no summary); under 400000 OpenCV's import
crashed (exit 139, nothing said). One arena for all threads brings the map down to about 650 MiB. A data-size
limit counts the libraries' private data and the threads' stacks: under 250 MB a run crashed (exit 139), silent.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from edge_runtime.stopping import EARLY_COMMANDS, EARLY_MODULES, started_as

M_ARENA_MAX = -8  # glibc's mallopt() parameter for the number of malloc arenas (malloc.h)
COMMAND_MODULES = EARLY_MODULES | {"edge_runtime.cli", "benchmarks"}  # `python -m ...` runs of the commands


@dataclass(frozen=True)
class Limit:
    """A process limit that a run's libraries, not its memory use, can exceed."""

    name: str  # as the messages say it
    ulimit: str  # the shell's option that sets it
    rlimit: str  # the name in the resource module
    needs_mib: int  # about what a folder run takes of it: below, a command may stop or crash without a word
    takes: str


LIMITS = (
    # one malloc arena: 620-660 MiB measured (onnxruntime 1.32, OpenCV 5.0); 930 MiB with glibc's arena per thread
    Limit("address-space limit", "ulimit -v", "RLIMIT_AS", 640,
          "maps about 640 MiB (OpenCV's and onnxruntime's libraries, not memory used)"),
    # the libraries' private data and the threads' stacks: 310-330 MiB measured at the end of a folder run
    Limit("data-size limit", "ulimit -d", "RLIMIT_DATA", 384,
          "takes about 384 MiB of private data (its libraries' data and its threads' stacks)"),
)  # fmt: skip


def set_limits() -> list[tuple[Limit, int]]:
    """The limits of :data:`LIMITS` set on this process, with their soft values in bytes (none on Windows)."""
    try:
        import resource
    except ImportError:
        return []
    found = []
    for limit in LIMITS:
        soft = resource.getrlimit(getattr(resource, limit.rlimit))[0]
        if soft != resource.RLIM_INFINITY:
            found.append((limit, soft))
    return found


def limit_note() -> str:
    """``; or raise the address-space limit (ulimit -v, now 585 MiB)`` for each such limit set, else empty: the
    remedy for an "out of memory" that a limit, not the machine's memory, caused."""
    return "".join(f"; or raise the {lim.name} ({lim.ulimit}, now {soft >> 20} MiB)" for lim, soft in set_limits())


def one_malloc_arena() -> bool:
    """Ask glibc for one malloc arena shared by all threads; False where this is not glibc (musl, macOS)."""
    import ctypes

    try:
        return ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1) == 1
    except (OSError, AttributeError):
        return False


def fit_address_space() -> None:
    """Called by ``import edge_runtime`` in a command, before OpenCV, numpy and onnxruntime load and start
    threads: under an address-space limit, one malloc arena; under a limit too small for the libraries, a warning
    that names it and the remedy (the crash that may follow says nothing). A library import leaves malloc alone:
    the process is its user's."""
    command, module = started_as()
    limits = set_limits()
    if not limits or (command not in EARLY_COMMANDS and module not in COMMAND_MODULES):
        return
    if any(lim.rlimit == "RLIMIT_AS" for lim, _ in limits):
        one_malloc_arena()
    small = [(lim, soft) for lim, soft in limits if soft < lim.needs_mib << 20]
    for lim, soft in small:
        print(f"warning: the {lim.name} ({lim.ulimit}) is {soft >> 20} MiB; this command {lim.takes} and may stop "
              f"out of memory or crash without a message: raise it ({lim.ulimit} {lim.needs_mib << 10} or unlimited)",
              file=sys.stderr, flush=True)  # fmt: skip
    if small:
        _one_line_when_out_of_memory(small[0][0])


def _one_line_when_out_of_memory(lim: Limit) -> None:
    """Under too small a limit a library failed to load before any command could catch it: a traceback from
    inside importlib ("libQt5Gui...so: failed to map segment from shared object", a MemoryError in click's
    gettext). Such a failure is now one line naming the limit (exit 1, as Python's own); --debug keeps it."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], exc: BaseException, tb: object) -> None:
        memory = issubclass(kind, MemoryError) or (issubclass(kind, ImportError) and kind is not ModuleNotFoundError)
        if not memory or "--debug" in sys.argv:
            previous(kind, exc, tb)  # type: ignore[arg-type]
            return
        first = (str(exc).strip().splitlines() or [kind.__name__])[0][:160]
        print(f"error: out of memory under the {lim.name} ({first}); raise it ({lim.ulimit} {lim.needs_mib << 10} "
              "or unlimited)", file=sys.stderr, flush=True)  # fmt: skip

    sys.excepthook = hook
