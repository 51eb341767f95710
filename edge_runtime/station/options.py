"""``edge-infer``'s station options (``--log``, ``--station``, ``--log-keep``, ``--log-max``, ``--serve``,
``--serve-fps``, ``--token``) and the listener they build.

>>> @station_options                                   # doctest: +SKIP
... @click.command()
... def main(**opts): listener = open_station(opts)
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edge_runtime.cli_support import FiniteFloatRange, GivenPath, once
from edge_runtime.errors import printable
from edge_runtime.station.units import parse_duration, parse_size
from edge_runtime.stream_url import is_stream_url

F = TypeVar("F", bound=Callable[..., Any])
MIN_LOG_BYTES = 1_000_000
SERVE_FPS = 10.0  # the live stream's default frame rate


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, str | None], Any]:
    def callback(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _bind(text: str) -> Any:
    from edge_runtime.station.server import Bind

    return Bind.parse(text)


def _log_options() -> list[Callable[[Any], Any]]:
    """``--log`` and the options that name and bound it: the station's name, ``--log-keep``, ``--log-max``."""
    return [
        click.option(
            "--log",
            "log",
            type=GivenPath(path_type=Path, dir_okay=False, what="a file"),  # "" was ".", a log "cannot be opened"
            multiple=True,  # given twice, click kept the last and the first log was never written
            callback=lambda ctx, param, values: once(param, values),
            help="Record every item in this SQLite inspection log (read it with edge-log).",
        ),
        click.option(
            "--station",
            "station",
            metavar="NAME",
            default=None,
            help="Station name in the log and the web view [default: the host name].",
        ),
        click.option(
            "--log-keep",
            "log_keep",
            metavar="AGE",
            default=None,
            callback=_parsed(parse_duration),
            help="Delete log items older than AGE while running (30d, 12h).",
        ),
        click.option(
            "--log-max",
            "log_max",
            metavar="SIZE",
            default=None,
            callback=_parsed(parse_size),
            help="Keep the log under SIZE by deleting the oldest items (2GB, 500MB).",
        ),
    ]


def _serve_options() -> list[Callable[[Any], Any]]:
    """The web view's options: ``--serve``, ``--serve-fps``, ``--token``."""
    return [
        click.option(
            "--serve",
            "serve",
            metavar="HOST:PORT",
            default=None,
            callback=_parsed(_bind),
            help="Serve the live station page (stream, counters, defects) here, e.g. 127.0.0.1:8080 "
            "(needs the [station] extra; another address than 127.0.0.1 needs --token).",
        ),
        click.option(
            "--serve-fps",
            "serve_fps",
            type=FiniteFloatRange(0.5, 30.0),  # click's FloatRange lets NaN through: the stream would stop
            default=SERVE_FPS,
            show_default=True,
            help="Frames per second of the page's live stream, at most (fewer leave more CPU to inspection "
            "when the page is open on the same computer).",
        ),
        click.option(
            "--token",
            "token",
            metavar="SECRET",
            default=None,
            envvar="DEFECT_EDGE_TOKEN",
            help="Token the web view asks on every request (Bearer header or ?token=) [env: DEFECT_EDGE_TOKEN].",
        ),
    ]


def station_options(func: F) -> F:
    """Add the station options to a click command (they arrive as ``log``, ``station``, ``log_keep`` ...)."""
    for option in reversed([*_log_options(), *_serve_options()]):
        func = option(func)
    return func


def check_station_options(opts: dict[str, Any]) -> None:
    """Usage errors (exit 2) for combinations that cannot work."""
    if opts.get("log") is None and (opts.get("log_keep") is not None or opts.get("log_max") is not None):
        raise click.UsageError("--log-keep and --log-max need --log FILE")
    if opts.get("log_max") is not None and opts["log_max"] < MIN_LOG_BYTES:
        raise click.UsageError("--log-max must be at least 1MB")
    log = opts.get("log")
    if log is not None:
        from edge_runtime.inputs import VIDEO_SUFFIXES
        from edge_runtime.preprocess import IMAGE_SUFFIXES

        if Path(str(log)).suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES:  # the next run read it as a part
            raise click.UsageError(f"--log {log}: an inspection log under an image or video name; name it .db")
    name = opts.get("station")
    if name is not None and name != name.encode("utf-8", "surrogateescape").decode("utf-8", "replace"):
        # it was "blank, has spaces around it or holds a control character (a newline?)" of `line-3\xe9`
        raise click.UsageError("--station holds a byte that is not UTF-8 (a name in another encoding?); give a "
                               "name in UTF-8, such as line-3")  # fmt: skip
    # control and format characters (a newline, U+2028, a zero-width space) and spaces around the name
    if name is not None and (not name.strip() or name != name.strip() or not name.isprintable()):
        # spaces could not be told from another station on the page, and a newline split edge-log's lines
        raise click.UsageError(
            "--station is blank, has spaces around it or holds a control character (a newline?); give a name such "
            "as line-3"
        )
    bind = opts.get("serve")
    token = opts.get("token")
    if token is not None and token != "" and not token.strip():
        # a token of spaces guarded a public page with `?token=+` (200), as an empty one would have
        raise click.UsageError("--token is blank (only spaces); give a secret that is hard to guess")
    if bind is None and token:
        raise click.UsageError("--token needs --serve HOST:PORT")
    if bind is not None and not bind.loopback and not opts.get("token"):
        raise click.UsageError(
            f"--serve {bind.host}: serving on an address other than 127.0.0.1 needs --token SECRET "
            "(or DEFECT_EDGE_TOKEN)"
        )


def open_station(opts: dict[str, Any], *, say: Callable[[str], None] | None = None) -> Any:
    """The :class:`~edge_runtime.station.listener.StationListener` the options ask for, or None without
    ``--log``/``--serve``. Opens the log and starts the web view's process now, so their errors come before the
    run."""
    check_station_options(opts)
    if opts.get("log") is None and opts.get("serve") is None:
        return None
    from edge_runtime.station.listener import StationListener
    from edge_runtime.station.log import InspectionLog, LogConfig

    say = say or (lambda m: print(m, file=sys.stderr, flush=True))
    station = opts.get("station") or socket.gethostname()
    log = None
    if opts.get("log") is not None:
        log = InspectionLog(
            LogConfig(opts["log"], station=station, keep_s=opts.get("log_keep"), max_bytes=opts.get("log_max")),
            say=say,
        )
    live_source = opts.get("camera") is not None or is_stream_url(str(opts.get("source") or ""))
    listener = StationListener(log=log, wants_pictures=opts.get("serve") is not None or live_source)
    if opts.get("serve") is not None:
        try:
            from edge_runtime.station.feed import LiveFeed
            from edge_runtime.station.server import StationServer

            listener.live = LiveFeed(station=station, max_fps=float(opts.get("serve_fps") or SERVE_FPS))
            listener.server = StationServer(
                listener.live, bind=opts["serve"], token=opts.get("token"), log_path=opts.get("log"), say=say
            )
            url = listener.server.start()
        except BaseException:
            listener.close()
            raise
        say(f"station: live view at {url}" + ("?token=<your token>" if opts.get("token") else ""))
    if log is not None:
        say(f"station: logging every item to {printable(str(log.path))} (station {printable(station)})")
    return listener
