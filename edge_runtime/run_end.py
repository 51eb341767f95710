"""The end of an ``edge-infer`` run: its exit code, and the outputs closed and the summary printed and written.

>>> summary.finish(); int(exit_code(cfg, summary))   # doctest: +SKIP
0
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_runtime.errors import ExitCode, OutputError, printable
from edge_runtime.summary import NO_PART, Summary, plural

if TYPE_CHECKING:
    from edge_runtime.infer import InferConfig
    from edge_runtime.run_outputs import Outputs

Log = Callable[[str], None]


def exit_code(cfg: InferConfig, summary: Summary) -> ExitCode:
    """A gate first: with --fail-on-defect, any defective item, or any item without a trustworthy verdict (an
    error, a warning, or a frame in which no part was found: an empty tray, a lens cap), or a video with frames
    that could not be read (a damaged stretch, an AVI that ends before its index does), gives 10 -- a gate never
    passes a part it could not judge, nor a run that stopped because stdout's reader went away (`| head -1`: what
    came after was never judged). Then a failed output, interruption, a lost source, all-unreadable."""
    if cfg.fail_on_defect and (
        summary.defects or summary.errors or summary.warnings or summary.no_part or summary.cut_short
    ):
        return ExitCode.DEFECT_FOUND
    if cfg.fail_on_defect and summary.stdout_closed:  # stopped before its source ended: the rest was never judged
        return ExitCode.DEFECT_FOUND
    if summary.output_error:
        return ExitCode.OUTPUT_ERROR
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    if summary.stdout_closed:  # the reader went away (`| head -1`): a quiet end, whatever the items were
        return ExitCode.OK
    if summary.source_error:
        return ExitCode.SOURCE_UNAVAILABLE
    if summary.items and summary.errors == summary.items:
        return ExitCode.BAD_DATA
    return ExitCode.OK


def finish_run(cfg: InferConfig, summary: Summary, outputs: Outputs | None, log: Log) -> None:
    """Close the outputs and print (and write) the summary; a failure here is an output error, not a crash."""
    if outputs is not None:
        try:
            outputs.close()
        except OutputError as exc:
            summary.output_error = summary.output_error or str(exc)
    if cfg.listener is not None and hasattr(cfg.listener, "on_close"):
        try:
            cfg.listener.on_close(summary)
        except OutputError as exc:  # both named: an --output and a --log deleted under one run were each written back
            _add_output_error(summary, exc)
    summary.finish()
    log(summary.text())
    if cfg.fail_on_defect and summary.no_part:
        log(
            f"gate: {plural(summary.no_part, 'item')} with {NO_PART} (an empty tray? a covered lens?) "
            f"{'is' if summary.no_part == 1 else 'are'} not passed"
        )
    if cfg.fail_on_defect and summary.cut_short:
        log("gate: not passed: part of the video could not be read or was not inspected (see the source warning)")
    if cfg.fail_on_defect and summary.stdout_closed:
        log("gate: not passed: stdout's reader went away before the source ended, so later items were not judged")
    if cfg.fail_on_defect and (found := gate_findings(summary)):  # exit 10 had come with no reason on stderr
        log(f"gate: not passed: {found}")
    try:
        # A run stopped before its source opened leaves the last run's --summary, as it leaves its --output: a
        # "0 items" summary beside the old records contradicted them.
        if outputs is not None and outputs.begun:
            write_summary(cfg.summary_path, summary)
        else:
            for kept in (cfg.output, cfg.summary_path):
                if kept is not None and os.path.lexists(kept):  # a new one was not made: nothing to keep
                    log(f"{printable(str(kept))}: left as it was (the run stopped before its source was read)")
    except OutputError as exc:  # another file than --output's: both are named (a full disk fails both)
        _add_output_error(summary, exc)
    if summary.output_error:
        log(f"error: {summary.output_error}")
    elif exit_code(cfg, summary) is ExitCode.BAD_DATA:  # exit 3 came with the summary alone; every error, a line
        what = "the one item" if summary.items == 1 else f"all {summary.items} items"
        log(f"error: no verdict: {what} could not be read (each record says why); check the source")


def gate_findings(summary: Summary) -> str:
    """What fails a gate among the items judged, in words; empty where nothing does.

    >>> s = Summary(source="x"); s.defects, s.errors, s.warnings = 3, 1, 0
    >>> gate_findings(s)
    '3 defective items, 1 item error'
    """
    found = [(summary.defects, "defective item"), (summary.errors, "item error"), (summary.warnings, "item warning")]
    return ", ".join(plural(n, what) for n, what in found if n)


def _add_output_error(summary: Summary, exc: OutputError) -> None:
    """Name ``exc`` beside the run's output error, once: the same failure met again at the end (an emptied log)
    had put the whole message twice in the error line."""
    if str(exc) not in (summary.output_error or ""):
        summary.output_error = f"{summary.output_error}; {exc}" if summary.output_error else str(exc)


def write_summary(path: Path | None, summary: Summary) -> None:
    if path is None:
        return
    from edge_runtime.atomic import atomic_write_text
    from edge_runtime.output_checks import check_summary_replaceable
    from edge_runtime.outputs import utf8_names

    check_summary_replaceable(Path(os.path.realpath(path)))  # a run, or a station's --log, begun since the start
    try:
        atomic_write_text(path, json.dumps(utf8_names(summary.to_dict()), indent=2) + "\n")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the summary ({exc.strerror or exc})") from exc
