"""``edge-log``: what a station did, from its inspection log (read-only).

>>> edge-log summary station.db --since 8h                           # doctest: +SKIP
>>> edge-log query station.db --defective --since 8h --csv > rejects.csv   # doctest: +SKIP
>>> edge-log show station.db 1234 --out part.png                     # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import click

from edge_runtime.cli_support import GivenPath, Group, debug_option, friendly_errors, stdout_errors, version_option
from edge_runtime.errors import exit_codes_help, printable
from edge_runtime.summary import no_part, plural, score_text

CSV_KEYS = (
    "id",
    "time",
    "station",
    "source",
    "frame",
    "label",
    "score",
    "threshold",
    "defective",
    "latency_ms",
    "error",
    "warning",
    "unlike_training",
    "defect_box",
    "asymmetry",
    "has_image",
    "model_version",
    "model_file",
    "model_sha256",
    "precision",
    "providers",
)
DB = click.argument("db", type=GivenPath(path_type=Path, dir_okay=False, what="the log file"))
MAX_ID = 2**63 - 1  # SQLite's largest integer: a larger id or limit cannot even be asked


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from edge_runtime.station.units import parse_when

    if value is None:
        return None
    # one clock for the whole command: `--since 1h --until 1h` is an empty window, refused, not microseconds wide
    now = ctx.find_root().meta.setdefault("defect_edge.now", time.time())
    try:
        return parse_when(value, now=now)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


SINCE = click.option(
    "--since", callback=_when, metavar="WHEN", help="From this time: 8h (ago), ISO time (UTC) or epoch seconds."
)
STATION = click.option(
    "--station", metavar="NAME", default=None, help="Only items of this station (the --station of its runs)."
)
UNTIL = click.option(
    "--until", callback=_when, metavar="WHEN", help="Before this time: 1h (ago), ISO time (UTC) or epoch seconds."
)


@click.group(
    cls=Group,
    help="Read a station's inspection log (written by edge-infer --log FILE).\n\n"
    + exit_codes_help(0, 1, 2, 3, 7, 130),
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=False,  # a bare `edge-log` is a usage error of one line, as every other (it printed the help)
)
@version_option
@click.pass_context
def main(ctx: click.Context) -> None:
    from edge_runtime.cli_support import fail
    from edge_runtime.errors import ExitCode
    from edge_runtime.stopping import StopSignals

    # taken over before the imports: an early Ctrl-C or kill is "interrupted", exit 130 (a kill was a silent 143)
    stop = StopSignals.for_command()
    ctx.call_on_close(stop.finish)
    if stop.requested:
        fail("interrupted", ExitCode.INTERRUPTED)


def _pct(part: int, whole: int) -> str:
    from edge_runtime.summary import share_text

    return share_text(part, whole)


def _count_column(n: int, word: str, width: int) -> str:
    """``plural`` with its count right-aligned in ``width`` and its word padded: an hour of one item read "1 items",
    and the hour lines must still line up as columns."""
    count, _, unit = plural(n, word).partition(" ")
    return f"{count:>{width}} {unit:<{len(word) + 1}}"


def summary_text(db: Path, s: dict[str, Any]) -> str:
    lat = (
        "n/a" if s["latency_ms_p50"] is None else f"p50 {s['latency_ms_p50']:.3f} ms, p99 {s['latency_ms_p99']:.3f} ms"
    )
    lines = [
        printable(
            f"{db}: {plural(s['items'], 'item')} from {s['first'] or '-'} to {s['last'] or '-'}; "
            f"stations: {', '.join(s['stations']) or '-'}"
        ),
        f"defective {s['defective']} ({_pct(s['defective'], s['items'] - s['errors'])}), ok {s['ok']}, "
        f"errors {s['errors']}, warnings {s['warnings']}; latency {lat}",
        f"station check: {plural(s['unlike_training'], 'item')} looked unlike the training images"
        + (f" ({s['no_part']} with no part found: the whole frame was judged)" if s.get("no_part") else ""),
        "defect rate per hour (UTC):",
    ]
    lines += [
        f"  {b['start'][:13]}h  {_count_column(b['items'], 'item', 8)}  {b['defective']:>6} defective  "
        f"{_pct(b['defective'], b['items'] - b['errors']):>6}"
        for b in s["per_hour"]
    ] or ["  (none)"]
    lines.append("models seen:")
    lines += [  # escaped as the first line: a newline in a model's file name split its line in two
        printable(f"  {m['model_version'][:16]}  {Path(m['model_file']).name}  {m['precision']}  "
                  f"{','.join(m['providers'])}  {plural(m['items'], 'item')}  {m['first']} .. {m['last']}  "
                  f"{_sha_text(m['model_sha256'])}")
        for m in s["models"]
    ] or ["  (none)"]  # fmt: skip
    return "\n".join(lines)


def _sha_text(sha256: str | None) -> str:
    """The model file's hash, shortened as ``git log`` shortens a commit's (``--json`` gives it whole): the path
    alone named whatever file lay there later. A run logged before the log kept hashes has none to show."""
    return f"sha256 {sha256[:16]}" if sha256 else "sha256 not logged (run logged by an older defect-edge)"


@main.command(help="Items, defects, defect rate per hour, errors, latency p50/p99 and the models seen.")
@DB
@SINCE
@UNTIL
@STATION
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@debug_option
@friendly_errors
def summary(
    db: Path, since: float | None, until: float | None, station: str | None, as_json: bool, debug: bool
) -> None:
    from edge_runtime.station.query import Filter, open_reader, stations
    from edge_runtime.station.query import summary as summarise

    with closing(open_reader(db)) as con:  # the last reader to close removes the log's -wal and -shm files
        _check_range(since, until)
        s = summarise(con, Filter(since=since, until=until, station=station))
        known = stations(con) if station is not None else None
    with stdout_errors():
        click.echo(json.dumps(s) if as_json else summary_text(db, s))
    _warn_unknown_station(db, station, known)


def _warn_unknown_station(db: Path, station: str | None, known: list[str] | None) -> None:
    if station is not None and known is not None and station not in known:  # a typo read as "0 items"
        shown = ", ".join(known) or "none"
        click.echo(f"warning: no run of station {station!r} in {db}; its stations: {shown}", err=True)


@main.command(help="List items, oldest first: a table, JSON lines (--json) or CSV (--csv).")
@DB
@click.option("--defective", "only_defective", is_flag=True, help="Only defective items.")
@click.option("--ok", "only_ok", is_flag=True, help="Only OK items.")
@SINCE
@UNTIL
@click.option("--source", metavar="TEXT", help="Only items whose source contains TEXT.")
@STATION
@click.option("--limit", type=click.IntRange(1, MAX_ID), default=None, help="At most N items.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option("--csv", "as_csv", is_flag=True, help="CSV with a header.")
@debug_option
@friendly_errors
def query(
    db: Path,
    only_defective: bool,
    only_ok: bool,
    since: float | None,
    until: float | None,
    source: str | None,
    station: str | None,
    limit: int | None,
    as_json: bool,
    as_csv: bool,
    debug: bool,
) -> None:
    from edge_runtime.station.query import Filter, open_reader, rows, stations

    # Both given, click kept the last: --defective --ok listed only OK items, --json --csv printed CSV.
    if only_defective and only_ok:
        raise click.UsageError("--defective and --ok exclude each other; give one, or neither for every item")
    if as_json and as_csv:
        raise click.UsageError("--json and --csv exclude each other; give one")
    fmt = "json" if as_json else "csv" if as_csv else None
    defective = True if only_defective else False if only_ok else None
    _check_range(since, until)
    with closing(open_reader(db)) as con:
        known = stations(con) if station is not None else None
        with stdout_errors():
            flt = Filter(since=since, until=until, defective=defective, source=source, station=station)
            _print_rows(rows(con, flt, limit=limit), fmt)
    _warn_unknown_station(db, station, known)


def _check_range(since: float | None, until: float | None) -> None:
    """--since at or after --until matches nothing: a typo that printed nothing, exit 0, read as "no rejects"."""
    if since is not None and until is not None and since >= until:
        raise click.UsageError("--since is not before --until, so no item could match; swap them")
    if since is not None and since > time.time() + 60:  # a year typed wrong (2027 for 2026): a header alone, exit 0
        from edge_runtime.station.units import iso

        click.echo(f"warning: --since {iso(since)} lies in the future: no item can match it yet", err=True)


def _print_rows(found: Any, fmt: str | None) -> None:
    shown = 0
    if fmt == "json":
        for r in found:
            shown += 1
            click.echo(json.dumps(r))
    elif fmt == "csv":
        from edge_runtime.outputs import csv_cell

        # \r\n as RFC 4180 and edge-infer's CSV: with \n alone a CR in a file name was left unquoted and split the row
        writer = csv.DictWriter(sys.stdout, fieldnames=CSV_KEYS, extrasaction="ignore", lineterminator="\r\n")
        writer.writeheader()
        for r in found:
            shown += 1
            writer.writerow({k: csv_cell(r.get(k)) for k in CSV_KEYS} | {"providers": ",".join(r["providers"])})
    else:
        for r in found:
            shown += 1
            verdict_text = r["error"] and f"ERROR {r['error']}" or f"{r['label']:<10} {score_text(r['score'])}"
            where = r["source"] if r["frame"] is None else f"{r['source']} frame {r['frame']}"
            # as edge-infer's own line: an item judged without a part found read as a plain "ok"
            notes = "".join(f"  ({n})" for n in (r.get("warning") and f"warning: {r['warning']}",
                            no_part(r) and "no part found: the whole frame was judged") if n)  # fmt: skip
            # a newline in a file name had broken the row in two, the second half reading as a row of its own
            click.echo(printable(f"{r['id']:>8}  {r['time']}  {verdict_text:<18} {where}{notes}"))
    if not shown:  # nothing at all (a CSV of its header alone): a filter that matched nothing read as "no rejects"
        click.echo("no item matches", err=True)


@main.command(help="Write the stored image of item ID (defective items keep one) with its verdict drawn.")
@DB
@click.argument("item_id", metavar="ID", type=click.IntRange(1, MAX_ID))
@click.option(
    "--out", type=GivenPath(path_type=Path, dir_okay=False, what="a file"), required=True, help="PNG or JPEG to write."
)
@debug_option
@friendly_errors
def show(db: Path, item_id: int, out: Path, debug: bool) -> None:
    from edge_runtime.errors import DataError, OutputError
    from edge_runtime.station.query import open_reader, row, thumbnail_jpeg
    from edge_runtime.station.render import verdict_image
    from edge_runtime.station.schema import snapshot

    if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise click.BadParameter("must end in .png or .jpg", param_hint="--out")
    _check_out(out, db)
    with closing(open_reader(db)) as con, snapshot(con):  # the item and its picture at one moment
        rec, jpeg = row(con, item_id), thumbnail_jpeg(con, item_id)
    if jpeg is None:
        raise DataError(
            f"item {item_id} has no stored image (only defective items keep one); pick one from "
            "edge-log query --defective"
        )
    import cv2

    if not debug:  # OpenCV's own warning for a file it cannot write; the error below says it in one line
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create its folder ({exc.strerror or exc}); choose another --out") from exc
    from edge_runtime.annotate import write_image

    try:
        write_image(out, verdict_image(jpeg, rec))
    except OSError as exc:
        raise OutputError(f"{out}: cannot write the image ({exc.strerror or exc}); choose another --out") from exc
    with stdout_errors(report=False):  # the picture is the result: written already
        click.echo(printable(f"{out}: item {item_id}, {_verdict_words(rec)} at {rec['time']} ({rec['source']})"))


def _verdict_words(rec: dict[str, Any]) -> str:
    """``defective 0.9876``, or the error of an item with no verdict (its None score was "unexpected TypeError")."""
    if rec["error"] is not None:
        return f"ERROR {rec['error']}"
    return f"{rec['label']} {score_text(rec['score'])}"


def _check_out(out: Path, db: Path) -> None:
    """``--out`` is written by a rename onto its name, through a link: what it names must be an image or nothing.
    A link ``x.png`` to the log replaced the log with a picture, and one to ``/dev/full`` the device itself."""
    import os
    import stat

    from edge_runtime.errors import OutputError

    target = Path(os.path.realpath(out))
    try:
        st = os.stat(target)
    except OSError:
        return  # nothing there yet
    if not stat.S_ISREG(st.st_mode):
        raise OutputError(f"{out}: not a regular file (a folder, device, FIFO or socket); choose another --out")
    if any(target == Path(os.path.realpath(f"{db}{end}")) for end in ("", "-wal", "-shm", "-journal")):
        raise OutputError(f"{out}: names the inspection log itself; choose another --out")
    try:
        with open(target, "rb") as f:
            head = f.read(8)
    except OSError:
        return  # the write below says what is wrong
    if head and not (head.startswith(b"\x89PNG") or head.startswith(b"\xff\xd8")):
        raise OutputError(f"{out}: holds something that is not a PNG or JPEG picture; choose another --out")


if __name__ == "__main__":
    main()
