"""The web view's process: uvicorn serving the station app over a :class:`LiveState` that the run's
:class:`~edge_runtime.station.feed.LiveFeed` fills through a pipe.

Started by :class:`~edge_runtime.station.server.StationServer` with the ``spawn`` method (never ``fork``: the
inspection process runs onnxruntime's threads), at a lower CPU priority. It ignores Ctrl-C (that is for the run,
which then ends it) and ends by itself when the pipe from the run closes: at the end of the run, or when the
inspection process dies, even by SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.station.admission import CONNECTIONS_PER_CLIENT, Admission, Lane
from edge_runtime.station.connections import (
    HEAD_TIMEOUT_S,
    guarded_protocol,
    quiet_accept_errors,
    raise_fd_limit,
)
from edge_runtime.station.feed import Kind
from edge_runtime.station.live import LiveState


@dataclass(frozen=True)
class ViewConfig:
    """What the view process needs besides its socket and pipes (pickled to it)."""

    station: str
    max_fps: float = 10.0
    keep_pictures: bool = True
    token: str | None = None
    log_path: Path | None = None
    nice: int = 10
    parent_pid: int = 0
    start_timeout_s: float = 10.0
    head_timeout_s: float = HEAD_TIMEOUT_S  # a request's head not complete by then: the connection is closed
    connections_per_client: int = CONNECTIONS_PER_CLIENT  # beyond: a 503 (one address held thousands)
    lane_caps: dict[Lane, int] | None = None  # log reads in progress at once per lane (None: LANE_CAPS)


def apply(live: LiveState, message: tuple) -> None:
    """One message of the feed (see :class:`~edge_runtime.station.feed.Kind`) applied to the view's state."""
    kind, *args = message
    if kind == Kind.ADD:
        records, pictures, ids, mono, wall = args
        live.add(records, pictures, ids, at=(mono, wall))
    elif kind == Kind.START:
        live.start(args[0], live_source=args[1])
    elif kind == Kind.EVENT:
        live.event(args[0])
    elif kind == Kind.FINISH:
        live.finish(interrupted=args[0], error=args[1], failure=args[2])


def _quiet_stream_end(record: logging.LogRecord) -> bool:
    """uvicorn says "ASGI callable returned without completing response." of a live stream dropped for not
    reading it (app._StreamToReaders): the drop is on purpose, not an error of the station."""
    return "returned without completing response" not in record.getMessage()


def _quiet_requests_cut_at_close(record: logging.LogRecord) -> bool:
    """Requests still answered 2 s after the view began to close (300 clients that asked for a long history) are
    cancelled: uvicorn said "Cancel 40 running task(s) ..." and wrote a traceback for each, 1300 lines on the
    station's stderr at the end of a run. The view closes with the run, so cutting them short is on purpose."""
    if "timeout graceful shutdown exceeded" in record.getMessage():
        return False
    return not (record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError))


def start_uvicorn(live: LiveState, sock: socket.socket, cfg: ViewConfig) -> tuple[Any, threading.Thread, Any]:
    """uvicorn on a thread of this process (not the main one, so it leaves the signal handlers alone)."""
    import uvicorn

    from edge_runtime.station.admission import AdmissionGate
    from edge_runtime.station.app import build_app
    from edge_runtime.station.server import TokenGate

    closing = threading.Event()
    admission = Admission(per_client=cfg.connections_per_client, lane_caps=cfg.lane_caps)
    app = AdmissionGate(TokenGate(build_app(live, log_path=cfg.log_path, closing=closing), cfg.token), admission)
    protocol = guarded_protocol(head_timeout_s=cfg.head_timeout_s, admission=admission)
    config = uvicorn.Config(
        app, http=protocol, log_level="error", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(_quiet_stream_end)
    logging.getLogger("uvicorn.error").addFilter(_quiet_requests_cut_at_close)

    def run() -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's own startup failure: reported as not started
            server.run(sockets=[sock])

    thread = threading.Thread(target=run, name="station web view", daemon=True)
    thread.start()
    deadline = time.monotonic() + cfg.start_timeout_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    return server, thread, closing


def serve_view(sock: socket.socket, feed: Any, ready: Any, wanted: Any, cfg: ViewConfig) -> None:
    """The view process's main: report ``("ready", None)`` or ``("failed", reason)`` on ``ready``, then apply
    the feed's messages until its pipe closes."""
    # The run owns the stop: a Ctrl-C or a SIGTERM sent to the whole process group (systemd's stop, the station
    # demo's) reaches this process too, and killed by it, the view lost the run's end and the run printed "the live
    # view stopped" after its summary. The run ends this process by closing the pipe (then SIGKILL if it hangs).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    with contextlib.suppress(OSError):
        os.nice(cfg.nice)
    raise_fd_limit()  # each client holds a file descriptor: under systemd's 1024, 1000 idle clients shut the page
    quiet_accept_errors()
    try:
        live = LiveState(station=cfg.station, max_fps=cfg.max_fps, keep_pictures=cfg.keep_pictures, wanted=wanted)
        server, thread, closing = start_uvicorn(live, sock, cfg)
        ok = bool(server.started)
        ready.send(("ready", None) if ok else ("failed", "uvicorn did not start"))
    except Exception as exc:  # noqa: BLE001 - told to the parent, which prints one line
        with contextlib.suppress(OSError):
            ready.send(("failed", f"{exc.__class__.__name__}: {exc}"))
        return
    finally:
        with contextlib.suppress(OSError):
            ready.close()
    if ok:
        follow(feed, live, cfg.parent_pid)
        live.linger()
    closing.set()  # the stream responses end, so uvicorn can shut down
    server.should_exit = True
    thread.join(5.0)
    live.stop()


def follow(feed: Any, live: LiveState, parent_pid: int) -> None:
    """Apply the feed's messages until its pipe closes or the parent is gone."""
    with contextlib.suppress(EOFError, OSError):
        while True:
            if not feed.poll(0.5):
                if os.getppid() != parent_pid:  # the parent died and its pipe end is somehow still open
                    return
                continue
            batch, frame = feed.recv()
            for message in batch:
                apply(live, message)
            if frame is not None:
                live.show(*frame)
