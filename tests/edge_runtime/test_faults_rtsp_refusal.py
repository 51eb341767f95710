"""An RTSP camera that refuses the stream is named by its status line, as an HTTP one is: a real FFmpeg open
(through OpenCV) of a camera on loopback that answers DESCRIBE with an error, with digest authentication checked
as a camera checks it. Every refusal had been "cannot open camera or stream (check the index/path/URL and that
no other program holds it)": a wrong password, a wrong path and a camera serving its last viewer alike.
"""

from __future__ import annotations

import hashlib
import re
import socketserver
import threading
from collections.abc import Iterator

import pytest

from edge_runtime.errors import ExitCode
from tests.edge_runtime.faults_common import (
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)

REALM, NONCE, PASSWORD = "IP Camera", "5d1f3a9c", "s3cret"


def _md5(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def _digest_ok(header: str) -> bool:
    """What a camera checks: the response computed from the user's password (``admin``/``s3cret``)."""
    fields = {m[0]: m[1] for m in re.findall(r'(\w+)="?([^",]*)"?', header)}
    ha1, ha2 = _md5(f"admin:{REALM}:{PASSWORD}"), _md5(f"DESCRIBE:{fields.get('uri', '')}")
    if fields.get("qop") == "auth":
        want = _md5(f"{ha1}:{NONCE}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
    else:
        want = _md5(f"{ha1}:{NONCE}:{ha2}")
    return header.startswith("Digest ") and fields.get("response") == want


class _Camera(socketserver.ThreadingTCPServer):
    daemon_threads = allow_reuse_address = True
    answer: tuple[int, str] = (404, "Not Found")  # the answer to every DESCRIBE (401: unless the digest is right)
    qop: bool = False
    described: list[str]


class _Handler(socketserver.StreamRequestHandler):
    server: _Camera

    def handle(self) -> None:
        while True:
            head = []
            while (line := self.rfile.readline(8192).decode("latin-1").rstrip("\r\n")) != "":
                head.append(line)
            if not head:
                return
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            cseq = headers.get("cseq", "1")
            method = head[0].split(" ", 1)[0]
            self.server.described.append(head[0])
            status, reason = self.server.answer
            extra = ""
            if method == "DESCRIBE" and status == 401:
                if _digest_ok(headers.get("authorization", "")):  # the right password: no stream here anyway
                    status, reason = 415, "Unsupported Media Type"
                else:
                    qop = ', qop="auth"' if self.server.qop else ""
                    extra = f'WWW-Authenticate: Digest realm="{REALM}", nonce="{NONCE}"{qop}\r\n'
            if method == "OPTIONS":
                status, reason = 200, "OK"
                extra = "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
            self.wfile.write(f"RTSP/1.0 {status} {reason}\r\nCSeq: {cseq}\r\n{extra}Content-Length: 0\r\n\r\n".encode())


@pytest.fixture
def camera() -> Iterator[_Camera]:
    server = _Camera(("127.0.0.1", 0), _Handler)
    server.described = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def _open(tiny_model, camera: _Camera, user: str) -> str:
    url = f"rtsp://{user}127.0.0.1:{camera.server_address[1]}/stream1"
    r = invoke(["--model", str(tiny_model), "--source", url, "--max-reconnects", "0"])
    check(r, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    assert "s3cret" not in r.stderr and "wrong" not in r.stderr
    assert any(line.startswith("DESCRIBE ") for line in camera.described), "FFmpeg never asked the fake camera"
    return r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        ((404, "Not Found"), "the camera refused the stream: RTSP 404 Not Found (no stream at that path"),
        ((503, "Service Unavailable"), "RTSP 503 Service Unavailable (the camera is busy"),
        ((401, "Unauthorized"), "RTSP 401 Unauthorized (a user and password are needed)"),
    ],
)
def test_an_rtsp_camera_that_refuses_the_stream_is_named_by_its_status(tiny_model, camera, answer, said):
    camera.answer = answer
    line = _open(tiny_model, camera, "")
    assert said in line and "cannot open camera" not in line


@pytest.mark.parametrize("qop", [False, True])
def test_a_refused_rtsp_password_is_told_and_a_right_one_is_not_blamed(tiny_model, camera, qop):
    """The password is checked with the camera's own digest challenge (with and without ``qop=auth``): a wrong
    one is named as refused; with the right one the camera's other failure is not blamed on the password."""
    camera.answer, camera.qop = (401, "Unauthorized"), qop
    line = _open(tiny_model, camera, "admin:wrong@")
    assert "RTSP 401 Unauthorized (the user and password given were refused)" in line
    line = _open(tiny_model, camera, f"admin:{PASSWORD}@")
    assert "RTSP 415 Unsupported Media Type (the camera's own error)" in line and "password" not in line
