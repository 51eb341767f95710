"""Error types and the exit codes every defect-edge command shares.

Each error carries one sentence that names the thing and what to do, and the exit code a command ends with.
The codes are documented in the README and in every command's ``--help``.
"""

from __future__ import annotations

import errno
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Process exit codes shared by ``train-model``, ``export-onnx``, ``edge-infer`` and ``edge-bench``."""

    OK = 0
    INTERNAL = 1  # a bug: rerun with --debug and report the traceback; also out of resources (ResourceError)
    USAGE = 2  # click's own code for a bad option or argument
    BAD_DATA = 3  # missing/empty/unreadable data folder or images
    BAD_MODEL = 4  # missing, corrupt or incompatible checkpoint or ONNX file
    SOURCE_UNAVAILABLE = 5  # camera, stream or video cannot be opened
    GATE_FAILED = 6  # a gate failed: INT8 lost too much accuracy, or --check-station found the images unlike training
    OUTPUT_ERROR = 7  # an output path cannot be written
    MISSING_EXTRA = 8  # an optional dependency (an extra) is not installed
    DEFECT_FOUND = 10  # --fail-on-defect and at least one defective item was seen
    INTERRUPTED = 130  # Ctrl-C / SIGTERM, after a clean stop


EXIT_CODE_MEANINGS = {
    0: "ok",
    1: "internal error (rerun with --debug), or out of file descriptors, threads or memory",
    2: "bad usage",
    3: "bad data",
    4: "bad model or checkpoint",
    5: "source unavailable",
    6: "gate failed",
    7: "output not writable",
    8: "missing extra",
    10: "defect found (--fail-on-defect; also an item without a trustworthy verdict: error, warning or no part)",
    130: "interrupted",
}


def exit_codes_help(*codes: int) -> str:
    """The help's footer: the exit codes a command can end with (all of them when none are named).

    >>> exit_codes_help(0, 2, 130)
    'Exit codes: 0 ok; 2 bad usage; 130 interrupted.'
    """
    chosen = codes or tuple(EXIT_CODE_MEANINGS)
    return "Exit codes: " + "; ".join(f"{c} {EXIT_CODE_MEANINGS[c]}" for c in chosen) + "."


EXIT_CODES_HELP = exit_codes_help()  # edge-infer's: every code


# Optional modules and the extra that installs them.
# A typed path the file system cannot hold (ENAMETOOLONG): the one wording for it
NAME_TOO_LONG = "a name in this path is longer than the file system allows (255 bytes a name, 4096 the whole path)"
EXTRA_FOR_MODULE = {"torch": "train", "onnx": "train"}
# The base install's modules that a command imports after it has started (OpenCV and numpy load with edge_runtime
# itself), and the package of each: gone (the GPU swap uninstalls onnxruntime before it installs onnxruntime-gpu),
# they had ended the command in a 30-line traceback, exit 1.
BASE_PACKAGE_FOR_MODULE = {"onnxruntime": "onnxruntime"}


def base_install_hint(module: str) -> str:
    """The remedy for a missing module of the base install.

    >>> base_install_hint("onnxruntime").split(": ")[0]
    'onnxruntime is not installed (onnxruntime, part of the base install)'
    """
    package = BASE_PACKAGE_FOR_MODULE[module]
    remedy = f"pip install -c constraints.txt {package}"
    if module == "onnxruntime":
        remedy += ", or onnxruntime-gpu for the GPU (README, GPU)"
    return f"{module} is not installed ({package}, part of the base install): {remedy}"


def write_remedy(exc: OSError, otherwise: str) -> str:
    """What to do about a failed write: ``otherwise``, and first the file-size limit where that stopped it (the
    lines had said to check where stdout goes, or nothing, under ``ulimit -f``).

    >>> write_remedy(OSError(errno.EFBIG, "File too large"), "choose another --save")
    "over this process's file-size limit (ulimit -f): raise it, or choose another --save"
    >>> write_remedy(OSError(errno.ENOSPC, "No space left on device"), "choose another --save")
    'choose another --save'
    """
    if exc.errno == errno.EFBIG:
        return f"over this process's file-size limit (ulimit -f): raise it, or {otherwise}"
    return otherwise


def stdout_remedy(exc: OSError) -> str:
    """What to do about a failed write to stdout: on a full disk (or quota), free space (it said only "check where
    stdout goes", of a file that was fine).

    >>> stdout_remedy(OSError(errno.ENOSPC, "No space left on device"))
    'free space where stdout goes, or send it elsewhere'
    >>> stdout_remedy(OSError(errno.EIO, "Input/output error"))
    'check where stdout goes'
    """
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space where stdout goes, or send it elsewhere"
    return write_remedy(exc, "check where stdout goes")


def printable(text: str) -> str:
    """``text`` with control characters (a newline, a terminal escape in a file name) shown escaped, so that one
    message stays one line and a terminal never obeys a name.

    >>> printable("a" + chr(10) + "b.png")
    'a\\\\nb.png'
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class DefectEdgeError(Exception):
    """An error a user can fix; its message is one sentence and it knows its exit code.

    ``cli``: the sentence as a command says it, where the remedy is an option that a Python caller passes as an
    argument (``--provider cpu``, ``provider="cpu"``); the message itself is the Python caller's.
    """

    exit_code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, exit_code: ExitCode | None = None, cli: str | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        self.cli = cli

    def for_cli(self) -> str:
        """The message a command prints."""
        return self.cli or str(self)


class DataError(DefectEdgeError):
    exit_code = ExitCode.BAD_DATA


class ImageReadError(DataError):
    """One image could not be decoded; callers usually skip it and count it."""


class ImageWarning(UserWarning):
    """An image was read, but its verdict is not to be trusted: the decoder concealed damage (``read_image``,
    ``decode_image``), as ``edge-infer``'s record says in its ``warning``. ``warnings.simplefilter("error",
    ImageWarning)`` raises it."""


class ThreadsWarning(UserWarning):
    """More inference threads asked for than the cores this process may use (its affinity: ``taskset``, a cpuset;
    a CPU quota): onnxruntime's spinning threads take turns on them, each run slower than with fewer threads. The
    count is used as given."""


class ModelError(DefectEdgeError):
    exit_code = ExitCode.BAD_MODEL


class UnopenedModelError(ModelError, AttributeError):
    """A pickled model's :class:`ModelError` where it could not be opened again (its file gone, damaged or replaced),
    raised at each use of the model. An AttributeError too, so that ``hasattr(model, name)`` and ``getattr(model,
    name, default)`` answer (it raised the ModelError at a mere ``hasattr``) while ``predict`` still fails."""


class ClosedModelError(ModelError, AttributeError):
    """A model used after its :meth:`~edge_runtime.model.EdgeModel.close` (or the end of its ``with`` block). An
    AttributeError too, so that ``hasattr(model, "session")`` answers False once the session is gone."""


class SourceError(DefectEdgeError):
    exit_code = ExitCode.SOURCE_UNAVAILABLE


class GateError(DefectEdgeError):
    exit_code = ExitCode.GATE_FAILED


class OutputError(DefectEdgeError):
    exit_code = ExitCode.OUTPUT_ERROR


class MissingExtraError(DefectEdgeError, ImportError):
    exit_code = ExitCode.MISSING_EXTRA


class ResourceError(DefectEdgeError):
    """The machine ran out of what the run needs (file descriptors, threads): the run stops with what it did kept,
    instead of every later item failing as if its file were bad."""

    exit_code = ExitCode.INTERNAL


def resource_error(exc: BaseException) -> ResourceError | None:
    """The :class:`ResourceError` that ``exc`` stands for, or None.

    >>> str(resource_error(OSError(errno.EMFILE, "Too many open files"))).split(";")[0]
    'out of file descriptors (Too many open files)'
    >>> resource_error(OSError(errno.ENOENT, "No such file")) is None
    True
    """
    if isinstance(exc, ResourceError):
        return exc
    if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE):
        return ResourceError(f"out of file descriptors ({exc.strerror or exc}); raise the limit (ulimit -n, systemd "
                             "LimitNOFILE) or pass fewer --workers")  # fmt: skip
    if isinstance(exc, RuntimeError) and "can't start new thread" in str(exc):
        return ResourceError("cannot start a thread (the thread limit: ulimit -u, systemd TasksMax or a container's "
                             "pids limit; or the memory limit, ulimit -v); raise it or pass --workers 1")  # fmt: skip
    if isinstance(exc, MemoryError) or _out_of_memory_in_a_library(exc):
        from edge_runtime.address_space import limit_note

        return ResourceError(
            f"out of memory; pass a smaller --batch-size or fewer --workers, or free memory{limit_note()}"
        )
    return None


def _out_of_memory_in_a_library(exc: BaseException) -> bool:
    """onnxruntime's allocator ("bfc_arena ... Failed to allocate", its Fail exception; "std::bad_alloc", its
    RuntimeException) or OpenCV's ("Insufficient memory", cv2.error) out of memory."""
    kind, text = type(exc).__name__, str(exc)
    if kind in ("Fail", "RuntimeException"):
        return "Failed to allocate" in text or "bad_alloc" in text
    return kind == "error" and type(exc).__module__.startswith("cv2") and "Insufficient memory" in text


def require_extra(module: str, extra: str = "train") -> None:
    """Import ``module`` or raise a :class:`MissingExtraError` naming the extra that provides it.

    >>> require_extra("json")
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{module} is not installed; {install_hint(extra)}") from exc


def exit_if_missing(modules: tuple[str, ...], extra: str = "train") -> None:
    """For ``python -m train.X`` / ``export.X`` (a package's ``__init__`` calls it while ``sys.argv[0]`` is still
    ``-m``): a missing extra is one ``error:`` line and exit 8, as ``train-model`` and ``export-onnx`` give, not a
    traceback from the module's imports."""
    import importlib.util
    import sys

    if sys.argv[:1] != ["-m"]:
        return
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            print(f"error: {module} is not installed; {install_hint(extra)}", file=sys.stderr)
            sys.exit(int(ExitCode.MISSING_EXTRA))


SHIPPED_PACKAGES = ("edge_runtime", "train", "export", "benchmarks")


def installed_copy_hint(path: str | Path) -> str:
    """For a relative path that is not here but names a file shipped in defect-edge's packages: where this install
    has it. The README's examples (``edge_runtime/samples``, ``train/default_model/best.pt``) are relative to a
    checkout; typed elsewhere, after a pip install, they failed with no word of the installed copy.

    >>> installed_copy_hint("no_such_folder")
    ''
    """
    path = Path(path)
    if path.is_absolute():  # a config made it absolute (train-model's --init): as typed in this folder
        try:
            path = path.relative_to(Path.cwd())
        except (ValueError, OSError):  # elsewhere, or this folder is gone
            return ""
    if not path.parts or path.parts[0] not in SHIPPED_PACKAGES:
        return ""
    copy = Path(__file__).resolve().parent.parent / path
    try:
        shipped = copy.exists() and not path.exists()
    except (OSError, ValueError):  # a name too long or not valid here: the caller's own error says so
        return ""
    return f" (the copy installed with defect-edge is {copy})" if shipped else ""


def install_hint(extra: str) -> str:
    """How to add an extra: from the checkout, or, installed from a wheel, from that wheel (defect-edge is not on
    PyPI, so ``defect-edge[x]`` finds nothing; an edge box with the wheel alone had no checkout to run ``'.[x]'`` in).

    >>> install_hint("station")
    "install the extra in the defect-edge checkout with: pip install -c constraints.txt '.[station]'"
    """
    if _in_checkout():
        return f"install the extra in the defect-edge checkout with: pip install -c constraints.txt '.[{extra}]'"
    from edge_runtime import __version__

    return (f"install the extra from the wheel defect-edge was installed from: pip install -c constraints.txt "
            f"'defect_edge-{__version__}-py3-none-any.whl[{extra}]' (in a checkout: '.[{extra}]')")  # fmt: skip


def _in_checkout() -> bool:
    """Whether these packages run from defect-edge's checkout (an editable install: its pyproject.toml beside them),
    or the command runs in one (the README's runtime install, ``pip install -c constraints.txt .``, copies the
    packages into site-packages: a missing extra there had been told to install it from a wheel nobody had)."""
    for folder in (Path(__file__).resolve().parent.parent, Path(".")):
        try:
            if 'name = "defect-edge"' in (folder / "pyproject.toml").read_text():
                return True
        except (OSError, UnicodeDecodeError):  # none there: a wheel's copy in site-packages, or another folder
            continue
    return False


class UsageError(DefectEdgeError):
    """A bad option value or setting (also from the environment): exit 2, like click's own usage errors."""

    exit_code = ExitCode.USAGE
