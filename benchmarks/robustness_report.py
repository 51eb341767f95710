"""The robustness benchmark's report: the Markdown table on stdout and the rows as JSON, whole or partial."""

from __future__ import annotations

import json
from pathlib import Path

import click

from edge_runtime.cli_support import echo_first
from edge_runtime.errors import OutputError
from edge_runtime.summary import plural


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | perturbation | accuracy | missed defects | false alarms | AUROC | station check flags |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        flagged = r.get("flagged_unlike_training")
        share = "n/a" if flagged is None else f"{100 * flagged:.1f}%"
        lines.append(
            f"| {r['model']} | {r['perturbation']} | {r['accuracy']:.4f} | {r['missed_defects']} | "
            f"{r['false_alarms']} | {r['auroc']:.4f} | {share} |"
        )
    return "\n".join(lines)


def report(rows: list[dict], json_path: Path | None, *, partial: bool = False) -> None:
    """The table on stdout, then the rows as JSON to ``json_path``; a partial run's as an object marked so."""
    lost = echo_first(markdown(rows))
    if json_path is not None:
        from edge_runtime.atomic import atomic_write_text

        data: object = {"interrupted": True, "rows": rows} if partial else rows
        try:
            atomic_write_text(json_path, json.dumps(data, indent=1) + "\n")
        except OSError as exc:
            raise OutputError(f"{json_path}: cannot write ({exc.strerror or exc}); choose another --json path") from exc
    if lost is not None:
        raise lost


def report_partial(rows: list[dict], json_path: Path | None) -> None:
    """An interrupted run's rows: printed, and written beside ``--json`` (``x.interrupted.json``), never over the
    last complete run's file."""
    if not rows:
        click.echo("interrupted before any row was scored: nothing written", err=True)
        return
    from benchmarks.report import interrupted_path

    beside = interrupted_path(json_path) if json_path is not None else None
    said = f"interrupted: {plural(len(rows), 'row')} of a partial run"
    click.echo(said + (f", written to {beside}" if beside else ""), err=True)
    report(rows, beside, partial=True)
