"""A long command's progress lines on stdout, that lose the lines, never the work, when stdout fails."""

from __future__ import annotations

import contextlib
import os
import sys

import click

from edge_runtime.errors import printable


class StdoutLog:
    """A long command's progress lines on stdout (``export-onnx``, ``train-model``). A stdout that cannot be written
    (its reader left: ``| head -1``; a full disk) loses the lines, never the work: it had stopped the export
    with "unexpected BrokenPipeError", or exit 7 blaming TMPDIR, and no model written. :meth:`tell_lost` says so
    on stderr at the end."""

    def __init__(self) -> None:
        self.lost: str | None = None

    def __call__(self, message: str) -> None:
        if self.lost is not None:
            return
        try:
            # each line's control characters escaped: a terminal escape in a name (a folder, a checkpoint) is shown,
            # never obeyed; the lines of a table stay lines
            click.echo("\n".join(printable(line) for line in message.split("\n")))
        except OSError as exc:
            self.lost = "its reader went away" if isinstance(exc, BrokenPipeError) else str(exc.strerror or exc)
            _stdout_to_devnull()

    def tell_lost(self) -> None:
        if self.lost is not None:
            with contextlib.suppress(OSError, ValueError):
                click.echo(f"warning: stdout could not be written ({self.lost}); its messages were lost, not the "
                           "work", err=True)  # fmt: skip


def _stdout_to_devnull() -> None:
    """Point fd 1 at /dev/null once stdout failed: the interpreter's last flush of what is still buffered would
    fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
        os.close(null)
