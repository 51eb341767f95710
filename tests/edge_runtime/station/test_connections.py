"""Clients that hold the web view's connections: one that never completes its request (slowloris, an idle
socket) is closed at a deadline, more clients than file descriptors neither shut the page for good nor flood the
station's stderr, and answers cut short by the view's close leave no traceback."""

from __future__ import annotations

import json
import resource
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack

import pytest

pytest.importorskip("starlette", reason="the web view needs the [station] extra")
pytest.importorskip("uvicorn", reason="the web view needs the [station] extra")

from edge_runtime.station.live import LiveState  # noqa: E402
from tests.edge_runtime.station.conftest import running_view as view  # noqa: E402

STATION = """
import sys
from edge_runtime.station.feed import LiveFeed
from edge_runtime.station.server import Bind, StationServer
server = StationServer(LiveFeed(station="line-3"), bind=Bind("127.0.0.1", 0))
print(server.start(), flush=True)
sys.stdin.read()  # until the test is done
server.stop()
"""


def status(port: int, timeout_s: float = 5.0) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=timeout_s) as r:
        assert json.loads(r.read())["station"] == "line-3"
        return r.status


def read_response(client: socket.socket) -> bytes:
    """One whole response: its head and the Content-Length of body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += client.recv(65536)
    length = int(data.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    while len(data.split(b"\r\n\r\n", 1)[1]) < length:
        chunk = client.recv(65536)
        assert chunk, "the server closed the connection mid-answer"
        data += chunk
    return data


def test_a_client_that_never_completes_its_request_is_disconnected():
    """A connection that sent part of a request, or nothing, was kept for ever: 1500 such clients (slowloris) took
    every file descriptor of the view, and the page stopped answering."""
    with view(head_timeout_s=0.3) as port:
        slow = socket.create_connection(("127.0.0.1", port), timeout=10)
        slow.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never the blank line that ends it
        idle = socket.create_connection(("127.0.0.1", port), timeout=10)
        again = socket.create_connection(("127.0.0.1", port), timeout=10)  # a response, then half a request
        again.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(again).startswith(b"HTTP/1.1 200 OK")
        again.sendall(b"GET /api/sta")
        for client in (slow, idle, again):
            assert client.recv(4096) == b"", "the server should have closed it"  # old code: timed out after 10 s
            client.close()
        assert status(port) == 200


def test_a_response_in_progress_is_not_cut_at_the_deadline():
    with view(head_timeout_s=0.3) as port, socket.create_connection(("127.0.0.1", port), timeout=10) as watcher:
        watcher.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert b"200 OK" in watcher.recv(4096)
        watcher.settimeout(1.5)  # five deadlines: the stream (no frame yet) is still open
        with pytest.raises(TimeoutError):
            watcher.recv(1)


def hold(port: int, n: int, stack: ExitStack) -> None:
    for _ in range(n):
        stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))


@pytest.mark.parametrize("hard", [48, 4096])
def test_more_clients_than_file_descriptors(hard: int):
    """With systemd's default limit (1024 open files) 1500 clients left the page unanswered for as long as they
    stayed, and asyncio wrote 115,000 lines of tracebacks to the station's stderr in 20 s. The view raises its
    limit to the hard one; where it cannot, a failed accept is one line, and the page answers once clients leave."""

    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (48, hard))

    proc = subprocess.Popen(
        [sys.executable, "-c", STATION], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, preexec_fn=limits,
    )  # fmt: skip
    try:
        port = int(proc.stdout.readline().rsplit(":", 1)[1].strip("/\n"))  # type: ignore[union-attr]
        with ExitStack() as stack:
            hold(port, 80, stack)
            if hard > 48:  # raised: room for them and for the page
                assert status(port) == 200
            else:
                with pytest.raises(OSError):  # not answered: no descriptor to accept it with
                    status(port, timeout_s=1.0)
        assert status(port) == 200  # the clients are gone: the page answers again
    finally:
        _, err = proc.communicate("", timeout=30)
    assert "Traceback" not in err, err[:2000]
    said = [line for line in err.splitlines() if "cannot accept more connections" in line]
    assert len(said) == (1 if hard == 48 else 0), err[:2000]
    assert len(err.splitlines()) <= 1, err[:2000]


def test_answers_cut_short_when_the_view_closes_leave_no_traceback(monkeypatch, capfd):
    """An answer still being made 2 s after the view began to close is cancelled: uvicorn wrote a traceback for
    each (1300 lines at the end of a run with 300 clients asking for a long history)."""

    def slow_status(self: LiveState) -> dict:
        time.sleep(3.0)  # past uvicorn's 2 s for answers in progress at the close
        return {"station": "line-3"}

    monkeypatch.setattr(LiveState, "status", slow_status)
    with view() as port:
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        client.sendall(b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(0.3)  # the request is in progress when the view closes
    client.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Cancel" not in err, err[:2000]
