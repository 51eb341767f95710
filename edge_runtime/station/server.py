"""The live web view: Starlette on uvicorn, in a child process of ``edge-infer`` (the ``[station]`` extra).

The server, its JPEG encoder and its database reads run in their own process, spawned at a lower CPU priority:
in the inspection process they would hold the GIL, and the inspection thread would wait for it (up to 5 ms).
The run feeds them through a :class:`~edge_runtime.station.feed.LiveFeed`, which never blocks.

Read-only (GET only). Binds 127.0.0.1 by default; any other address needs a token, and a token, once given, is
checked on every request (``Authorization: Bearer T``, ``?token=T``, or the cookie the page gets with it). Images
are served by record id only. A bad request gets a 4xx with a one-line JSON error, never a traceback.

>>> server = StationServer(LiveFeed(station="line-3"), bind=Bind("127.0.0.1", 8080))   # doctest: +SKIP
>>> server.start()                                                                     # doctest: +SKIP
'http://127.0.0.1:8080/'
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from edge_runtime.errors import OutputError, require_extra
from edge_runtime.station.feed import LiveFeed

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "station_token"
VIEW_NICE = 10  # the view process's priority below the inspection's (os.nice increment)


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Bind:
        """``HOST:PORT`` (``[::1]:8080`` for IPv6); ValueError with a readable message otherwise.

        >>> Bind.parse("0.0.0.0:8080"), Bind.parse("[::1]:80").host
        (Bind(host='0.0.0.0', port=8080), '::1')
        """
        host, sep, port = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
            raise ValueError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8080)")
        return cls(host, int(port))

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"


class TokenGate:
    """ASGI middleware: 401 for any request without the token (when there is one)."""

    def __init__(self, app: Any, token: str | None) -> None:
        self.app, self.token = app, token

    def allowed(self, scope: dict) -> bool:
        from urllib.parse import parse_qs

        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        given = auth[7:] if auth.lower().startswith("bearer ") else None
        if given is None:
            given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token") or [None])[0]
        if given is None:  # the cookie the page got with ?token=, so its assets, images and stream need no query
            cookies = SimpleCookie(headers.get(b"cookie", b"").decode("latin-1"))
            given = cookies[TOKEN_COOKIE].value if TOKEN_COOKIE in cookies else None
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())  # type: ignore[union-attr]

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.token is not None and not self.allowed(scope):
            from starlette.responses import JSONResponse

            error = "missing or wrong token: open the page as /?token=SECRET, with the --token the station runs with"
            response = JSONResponse({"error": error}, 401, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        if scope["type"] == "http" and self.token is None and not loopback_host(scope):
            # Without a token the view serves this computer only (127.0.0.1): a web page elsewhere could still reach
            # it through DNS rebinding (its own name, resolved to 127.0.0.1), unless the Host it names is checked.
            from starlette.responses import JSONResponse

            error = "this view serves this computer only: open it as http://127.0.0.1:PORT/, or serve with --token"
            await JSONResponse({"error": error}, 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def loopback_host(scope: dict) -> bool:
    """Whether a request's Host names this computer (localhost, a loopback address), or is absent (HTTP/1.0).

    >>> hosts = (b"127.0.0.1:8080", b"[::1]:80", b"localhost", b"evil.com")
    >>> [loopback_host({"headers": [(b"host", h)]}) for h in hosts]
    [True, True, True, False]
    """
    host = dict(scope.get("headers") or []).get(b"host")
    if host is None:
        return True
    name = host.decode("latin-1").strip().lower()
    name = name[1 : name.index("]")] if name.startswith("[") and "]" in name else name.rsplit(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def bind_socket(bind: Bind) -> socket.socket:
    """Bind now, so a taken port fails before the run starts (uvicorn would only log it from its thread)."""
    family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((bind.host, bind.port))
        sock.listen(64)
    except OSError as exc:
        sock.close()
        raise OutputError(
            f"{bind.host}:{bind.port}: cannot serve there ({exc.strerror or exc}); choose another --serve"
        ) from exc
    sock.set_inheritable(True)
    return sock


class StationServer:
    """The web view's process (spawned, niced): binds the socket now, ``start`` launches the process and hands
    it the socket, ``stop`` ends it. The process also ends by itself when this one dies."""

    def __init__(
        self,
        live: LiveFeed,
        *,
        bind: Bind,
        token: str | None = None,
        log_path: Path | None = None,
        nice: int = VIEW_NICE,
        say: Callable[[str], None] | None = None,
    ) -> None:
        require_extra("starlette", "station")
        require_extra("uvicorn", "station")
        self.live, self.bind, self.token, self.log_path, self.nice = live, bind, token, log_path, nice
        self.say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self.sock = bind_socket(bind)
        self.port = self.sock.getsockname()[1]
        self.process: Any = None

    @property
    def url(self) -> str:
        return Bind(self.bind.host, self.port).url  # the port the system chose for --serve HOST:0

    def start(self, timeout_s: float = 60.0) -> str:
        """Spawn the view process and wait until it serves; :class:`OutputError` (one line) when it cannot."""
        import multiprocessing

        from edge_runtime.station.view_process import ViewConfig, serve_view

        ctx = multiprocessing.get_context("spawn")  # never fork: this process runs onnxruntime's threads
        feed_r, feed_w = ctx.Pipe(duplex=False)
        ready_r, ready_w = ctx.Pipe(duplex=False)
        wanted = ctx.RawValue("d", 0.0)
        cfg = ViewConfig(
            station=self.live.station,
            max_fps=self.live.max_fps,
            keep_pictures=self.live.keep_pictures,
            token=self.token,
            log_path=self.log_path,
            nice=self.nice,
            parent_pid=os.getpid(),
        )
        self.process = ctx.Process(
            target=serve_view, args=(self.sock, feed_r, ready_w, wanted, cfg), name="station web view", daemon=True
        )
        try:
            self.process.start()
        finally:
            feed_r.close()  # the child's ends: once it holds them, its pipe sees EOF when this process is gone
            ready_w.close()
        reason = wait_ready(ready_r, self.process, timeout_s)
        ready_r.close()
        if reason is not None:
            feed_w.close()
            self._end_process()
            raise OutputError(
                f"{self.bind.host}:{self.bind.port}: the web view did not start ({reason}); choose another --serve"
            )
        self.sock.close()  # the view process holds it now; if that process ends, connections are refused
        self.live.attach(feed_w, wanted, on_broken=self.say)
        return self.url

    def stop(self) -> None:
        """Send what is left, close the pipe (the view process then shuts down) and wait for it. Idempotent."""
        hung = self.live.stop()
        self._end_process(0.5 if hung else 5.0)  # a hung view will not end by itself
        self.sock.close()

    def _end_process(self, wait_s: float = 5.0) -> None:
        if self.process is None:
            return
        self.process.join(wait_s)
        if self.process.is_alive():  # SIGKILL: the view ignores SIGTERM, which a stop of the whole group sends it
            self.process.kill()
            self.process.join(2.0)


def wait_ready(ready: Any, process: Any, timeout_s: float) -> str | None:
    """None once the view process reports that it serves, else why it does not."""
    try:
        if ready.poll(timeout_s):
            status, reason = ready.recv()
            return None if status == "ready" else reason
    except (EOFError, OSError):  # it ended before saying anything
        process.join(2.0)
    if process.is_alive():
        return f"no answer within {timeout_s:g} s"
    return f"its process ended with exit code {process.exitcode}"


async def sleep_until(closing: threading.Event, seconds: float) -> bool:
    """Sleep; True when the server is closing (streams end so uvicorn can shut down)."""
    await asyncio.sleep(seconds)
    return closing.is_set()
