"""The live web view: Starlette on uvicorn, in a background thread of ``edge-infer`` (the ``[station]`` extra).

Read-only (GET only). Binds 127.0.0.1 by default; any other address needs a token, and a token, once given, is
checked on every request (``Authorization: Bearer T``, ``?token=T``, or the cookie the page gets with it). Images
are served by record id only. A bad request gets a 4xx with a one-line JSON error, never a traceback.

>>> server = StationServer(LiveState(station="line-3"), bind=Bind("127.0.0.1", 8080))   # doctest: +SKIP
>>> server.start()                                                                      # doctest: +SKIP
'http://127.0.0.1:8080/'
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import socket
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

from edge_runtime.errors import OutputError, require_extra
from edge_runtime.station.live import LiveState

STATIC = Path(__file__).resolve().parent / "static"
TOKEN_COOKIE = "station_token"


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

            response = JSONResponse({"error": "missing or wrong token"}, 401, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


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
    """uvicorn serving :func:`edge_runtime.station.app.build_app` on a daemon thread; ``stop`` ends it."""

    def __init__(self, live: LiveState, *, bind: Bind, token: str | None = None, log_path: Path | None = None) -> None:
        require_extra("starlette", "station")
        require_extra("uvicorn", "station")
        import uvicorn

        from edge_runtime.station.app import build_app

        self.live, self.bind = live, bind
        self.closing = threading.Event()
        app = TokenGate(build_app(live, log_path=log_path, closing=self.closing), token)
        config = uvicorn.Config(app, log_level="error", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
        self.server = uvicorn.Server(config)
        self.sock = bind_socket(bind)
        self.thread = threading.Thread(target=self._run, name="station web view", daemon=True)

    def _run(self) -> None:
        with contextlib.suppress(SystemExit):  # uvicorn's own startup failure; stop() still works
            self.server.run(sockets=[self.sock])

    @property
    def url(self) -> str:
        return self.bind.url if self.bind.port else f"http://{self.bind.host}:{self.sock.getsockname()[1]}/"

    def start(self, timeout_s: float = 10.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise OutputError(f"{self.bind.host}:{self.bind.port}: the web view did not start; choose another --serve")
        return self.url

    def stop(self) -> None:
        self.closing.set()
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(5.0)
        self.sock.close()


async def sleep_until(closing: threading.Event, seconds: float) -> bool:
    """Sleep; True when the server is closing (streams end so uvicorn can shut down)."""
    await asyncio.sleep(seconds)
    return closing.is_set()
