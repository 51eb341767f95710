"""What every defect-edge command does the same way: one-line errors, exit codes, --debug."""

from __future__ import annotations

import contextlib
import errno
import functools
import io
import math
import os
import re
import stat
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any, NoReturn, TypeVar

import click

from edge_runtime.address_space import limit_note
from edge_runtime.errors import (
    BASE_PACKAGE_FOR_MODULE,
    EXTRA_FOR_MODULE,
    NAME_TOO_LONG,
    DefectEdgeError,
    ExitCode,
    OutputError,
    base_install_hint,
    install_hint,
    printable,
    resource_error,
    stdout_remedy,
)
from edge_runtime.stdout_log import StdoutLog, _stdout_to_devnull  # noqa: F401 - StdoutLog: imported from here

F = TypeVar("F", bound=Callable[..., Any])

debug_option = click.option(
    "--debug", is_flag=True, default=False, help="Show full tracebacks instead of one-line errors."
)


def version_option(f: F) -> F:
    """``--version``: the program and defect-edge's version, for a station's records (``edge-infer 0.1.0``)."""
    from edge_runtime import __version__

    return click.version_option(__version__, "--version", message="%(prog)s (defect-edge) %(version)s")(f)


class GivenPath(click.Path):
    """click's ``Path`` that refuses an empty value (exit 2): ``--eval-data "$DIR"`` with ``DIR`` unset became
    ``Path("")``, the current folder, and an export evaluated or calibrated on whatever lay there.

    >>> GivenPath().convert("imgs", None, None)
    'imgs'
    """

    def __init__(self, *args: Any, what: str = "a folder", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.what = what  # "a file": an empty --output was named "." and refused for its suffix, or as a folder

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not value.strip():
            self.fail(f"is empty (an unset shell variable?); pass {self.what}", param, ctx)
        return super().convert(value, param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click's ``FloatRange`` that also refuses NaN and infinities (exit 2).

    Every comparison with NaN is false, so ``FloatRange`` lets ``nan`` through; it would reach the training, the
    gate or a timer and fail there, minutes later, as an internal error.

    >>> FiniteFloatRange(min=0).convert("1.5", None, None)
    1.5
    """

    name = "finite float range"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return rv


class _OneLineUsageError(click.UsageError):
    """A usage error shown as one line, ``error: ... (see 'CMD --help')``, with click's exit code 2."""

    def __init__(self, message: str, ctx: click.Context | None, where: str) -> None:
        super().__init__(message, ctx)
        self.where = where

    def show(self, file: Any = None) -> None:
        with contextlib.suppress(OSError, ValueError):  # stderr that cannot be written: exit 2 still says it
            click.echo(f"error: {printable(self.format_message().rstrip('.'))} (see '{self.where} --help')", err=True)


class _OneLineUsage:
    """click prints a usage error as a usage line, a hint and the error: three lines, four with the blank one.
    Here it is one line naming the problem and where the options are listed, as for every other error. ``-h``
    is ``--help`` on every command (the maintainer scripts answered it with exit 2)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        settings = dict(kwargs.pop("context_settings", None) or {})
        settings.setdefault("help_option_names", ["-h", "--help"])
        super().__init__(*args, context_settings=settings, **kwargs)  # type: ignore[call-arg]

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: Any
    ) -> click.Context:
        asked_version = "--version" in args  # before click's parser consumes ``args``
        try:
            return super().make_context(info_name, args, parent=parent, **extra)  # type: ignore[misc]
        except click.UsageError as exc:  # click's parser names no command for some ("requires an argument")
            name = info_name or getattr(self, "name", None) or "the command"
            if not isinstance(exc, _SHOWS_HELP):
                exc.message = _extra_arguments(exc.message, has_source=_takes_paths(self))
            raise _one_line(exc, f"{parent.command_path} {name}" if parent is not None else name) from None
        except OSError as exc:  # --help onto a stdout that cannot be written (>/dev/full) or a closed pipe
            _help_not_written(exc, "version" if asked_version else "help")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)  # type: ignore[misc]
        except click.UsageError as exc:  # a check in the command itself
            raise _one_line(exc, ctx.command_path) from None


def _takes_paths(command: object) -> bool:
    """Whether the command's --source names files (edge-infer's does; edge-log's is a text filter)."""
    return any(p.name == "source" and "GLOB" in str(getattr(p, "metavar", "")) for p in getattr(command, "params", []))


def _extra_arguments(message: str, *, has_source: bool) -> str:
    """click lists every unexpected argument: an unquoted pattern the shell expanded into 452 file names made a
    26 kB line. Here: the start of the list, and (where --source takes paths) what to do. No count: click joins
    the arguments with spaces, and a file name may hold one.

    >>> print(_extra_arguments("Got unexpected extra arguments (b c d e)", has_source=True))
    unexpected extra arguments (b c d e): a pattern the shell expanded? Quote it, as in --source 'dir/*.jpeg'
    """
    m = re.fullmatch(r"Got unexpected extra arguments? \((.*)\)", message, re.DOTALL)
    if m is None:
        return message
    listed = m.group(1) if len(m.group(1)) <= 160 else m.group(1)[:160] + " ..."
    what = f"unexpected extra arguments ({listed})"
    return f"{what}: a pattern the shell expanded? Quote it, as in --source 'dir/*.jpeg'" if has_source else what


# click 8.2+: what a group run without a subcommand raises; its message is the whole help text
_SHOWS_HELP: tuple[type, ...] = tuple(filter(None, [getattr(click.exceptions, "NoArgsIsHelpError", None)]))


def _one_line(exc: click.UsageError, where: str) -> click.UsageError:
    if isinstance(exc, _SHOWS_HELP):  # a group run without a subcommand shows its help, as click does
        shown = exc.show

        def show(file: Any = None) -> None:
            with contextlib.suppress(OSError, ValueError):  # onto a stderr that cannot be written: still exit 2
                shown(file)

        exc.show = show  # type: ignore[method-assign]
        return exc
    if isinstance(exc, _OneLineUsageError):
        return exc
    line = _OneLineUsageError(exc.format_message(), exc.ctx, exc.ctx.command_path if exc.ctx is not None else where)
    line.exit_code = exc.exit_code
    return line


def _help_not_written(exc: OSError, what: str) -> NoReturn:
    """The help (or the version) was asked for and could not be printed: a reader that went away (``--help | head
    -3``) ends it quietly; a stdout that cannot be written is one line, exit 7 (it was a traceback)."""
    _stdout_to_devnull()
    if isinstance(exc, BrokenPipeError):
        sys.exit(0)
    why = stdout_remedy(exc)
    fail(f"stdout: cannot write the {what} ({exc.strerror or exc}); {why}", ExitCode.OUTPUT_ERROR)


class Command(_OneLineUsage, click.Command):
    """Every defect-edge command: ``@click.command(cls=Command)``."""


class Group(_OneLineUsage, click.Group):
    """Every defect-edge command group; its subcommands are :class:`Command` too."""

    command_class = Command


def once(param: click.Parameter, values: tuple[Any, ...]) -> Any:
    """The option's one value (None when not given). Given twice, click kept the last and dropped the first in
    silence: ``--source bad.jpg --source ok.jpg --fail-on-defect`` passed the gate without looking at bad.jpg."""
    if len(values) > 1:
        from edge_runtime.stream_url import shown_source  # a stream's password is never printed

        hint = " (a folder or a quoted glob covers many files)" if param.name == "source" else ""
        shown = ", ".join(shown_source(str(v)) for v in values)
        raise click.BadParameter(f"given {len(values)} times ({shown}); one run takes one{hint}", param=param)
    return values[0] if values else None


def typed_params() -> list[click.Parameter]:
    """The current command's parameters typed on the command line, not left at their defaults: options a run
    would ignore are refused by them, and a resume takes the others from the run itself."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [p for p in ctx.command.params if ctx.get_parameter_source(p.name) is ParameterSource.COMMANDLINE]


def fail(message: str, code: ExitCode) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (also when stderr cannot be written)."""
    with contextlib.suppress(OSError, ValueError):
        click.echo(f"error: {printable(str(message))}", err=True)  # one line, whatever a file name holds
    sys.exit(int(code))


@contextlib.contextmanager
def stdout_errors(*, report: bool = True) -> Iterator[None]:
    """Printing a report on stdout: a reader that went away (``edge-log query DB | head``) ends the command
    quietly; stdout that cannot be written (``> /dev/full``) is :class:`OutputError` (exit 7), and a regular file
    that filled up keeps whole lines only (it ended mid-record). ``report``: the output is the command's result,
    so a stdout closed from the start (``>&-``) is refused (the rows went nowhere, exit 0)."""
    if report and 1 in CLOSED_AT_START:
        raise OutputError("stdout is closed (>&-), and this command's result is written there; send it to a file")
    try:
        yield
        sys.stdout.flush()
    except OSError as exc:
        if not isinstance(exc, BrokenPipeError):
            _cut_to_whole_lines()
        _stdout_to_devnull()
        if not isinstance(exc, BrokenPipeError):
            why = stdout_remedy(exc)
            raise OutputError(f"stdout: cannot write ({exc.strerror or exc}); {why}") from exc


def echo_first(text: str) -> OutputError | None:
    """A report printed on stdout before its files are written; a stdout that cannot be written (``> /dev/full``) is
    returned, not raised, so that the files are still written: raise it after them (exit 7). Raised at once, it had
    lost a whole benchmark's figures: the files were never written."""
    try:
        with stdout_errors(report=False):
            click.echo(text)
    except OutputError as exc:
        return exc
    return None


def _cut_to_whole_lines() -> None:
    """stdout, where it is a regular file, cut back to its last complete line."""
    with contextlib.suppress(OSError, ValueError, AttributeError, io.UnsupportedOperation):
        fd = sys.stdout.fileno()
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size == 0:
            return
        with open(f"/proc/self/fd/{fd}", "rb") as f:  # stdout is opened write-only (> file): read it anew (Linux)
            f.seek(st.st_size - min(st.st_size, 1 << 16))
            tail = f.read(1 << 16)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        os.ftruncate(fd, st.st_size - len(tail) + cut + 1 if cut >= 0 else st.st_size - len(tail))


CWD_DELETED = "the current folder was deleted; cd into an existing folder (or give absolute paths) and run again"


def _cwd_exists() -> bool:
    try:
        os.getcwd()
    except OSError:
        return False
    return True


def require_cwd() -> None:
    """Before importing torch: in a deleted current folder its import dies in Intel oneMKL ("Cannot load
    libtorch_cpu.so", exit 2, no error line), even with absolute paths."""
    if not _cwd_exists():
        raise OutputError(CWD_DELETED)


CLOSED_AT_START: set[int] = set()  # the standard streams the caller had closed (now on /dev/null)


def standard_streams() -> None:
    """Before a command does anything. A standard stream the caller closed (``2>&-``, as cron jobs and some
    service managers start programs) is opened on /dev/null: else the next file this command opens takes its
    number, and a library's messages on fd 2 would be written into, say, the --output file; and Python, finding
    no ``sys.stderr``, would print this tool's messages on stdout, among the JSON records. Then stderr is set
    aside from decoder-message capture, and a stderr that cannot be written (``2>/dev/full``) loses messages,
    not the run (:func:`edge_runtime.decoder_messages.python_stderr_aside`)."""
    from edge_runtime.decoder_messages import python_stderr_aside

    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            CLOSED_AT_START.add(fd)
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 - the process's stdout, open until it ends
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    # A name stdout's encoding cannot hold (PYTHONIOENCODING=ascii, a C locale's terminal) is written escaped:
    # it stopped the run mid-folder with "unexpected UnicodeEncodeError", exit 1 and no summary.
    with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
        sys.stdout.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
    python_stderr_aside()


def friendly_errors(func: F) -> F:
    """Turn exceptions into one line on stderr and a documented exit code; ``--debug`` prints the traceback
    before the line (a bug, exit 1, is raised as it is).

    The wrapped click callback must accept a ``debug`` keyword (add :data:`debug_option`).
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug", False))
        standard_streams()
        try:
            return func(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort, SystemExit):
            raise
        except DefectEdgeError as exc:
            if debug:  # the traceback, and still the documented exit code (1 means a bug)
                traceback.print_exc()
            if exc.exit_code == ExitCode.OUTPUT_ERROR and not _cwd_exists():  # not "missing folder or no permission"
                fail(CWD_DELETED, exc.exit_code)
            ctx = click.get_current_context(silent=True)
            if exc.exit_code == ExitCode.USAGE and ctx is not None:  # as click's own usage errors say
                fail(f"{exc.for_cli().rstrip('.')} (see '{ctx.command_path} --help')", exc.exit_code)
            fail(exc.for_cli(), exc.exit_code)
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            extra = EXTRA_FOR_MODULE.get(top)
            if extra is None and top not in BASE_PACKAGE_FOR_MODULE:
                raise
            if debug:
                traceback.print_exc()
            fail(f"{exc.name} is not installed; {install_hint(extra)}" if extra else base_install_hint(top),
                 ExitCode.MISSING_EXTRA)  # fmt: skip
        except KeyboardInterrupt:
            if debug:
                traceback.print_exc()
            fail("interrupted", ExitCode.INTERRUPTED)
        except MemoryError:
            if debug:
                raise
            fail(f"out of memory; use a smaller batch size or fewer images{limit_note()}", ExitCode.INTERNAL)
        except Exception as exc:  # noqa: BLE001 - the one place that turns bugs into a clean line
            if debug:
                raise
            if (exhausted := resource_error(exc)) is not None:  # "unexpected RuntimeError: can't start new thread"
                fail(str(exhausted), exhausted.exit_code)
            if isinstance(exc, FileNotFoundError) and "No usable temporary directory" in str(exc):
                fail("no writable temporary folder (TMPDIR, /tmp, /var/tmp and the current folder are read-only or "
                     "missing); point TMPDIR at a writable folder", ExitCode.OUTPUT_ERROR)  # fmt: skip
            if isinstance(exc, OSError) and not _cwd_exists():  # relative names: "unexpected FileNotFoundError"
                fail(CWD_DELETED, ExitCode.OUTPUT_ERROR)
            if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:  # Path.exists() raises it (3.11)
                # a typed path with a name over 255 bytes ("unexpected OSError", exit 1, from train-model --out,
                # edge-bench --json, edge-infer --save DIR/x.mp4): the command could not be run as typed
                fail(f"{exc.filename or 'a path'}: {NAME_TOO_LONG}; use a shorter one", ExitCode.USAGE)
            fail(
                f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for the traceback and report it)",
                ExitCode.INTERNAL,
            )

    return wrapper  # type: ignore[return-value]
