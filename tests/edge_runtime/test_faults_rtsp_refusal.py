"""An RTSP or HTTP(S) camera that refuses the stream is named by its status line: a real FFmpeg open (through
OpenCV) of a fake camera on loopback that answers with an error, with digest authentication checked as a camera
checks it. Every RTSP refusal had been "cannot open camera or stream (check the index/path/URL and that no other
program holds it)": a wrong password, a wrong path and a camera serving its last viewer alike.
"""

from __future__ import annotations

import hashlib
import os
import re
import socketserver
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_runtime.errors import ExitCode
from edge_runtime.stream_refusal import refusal
from tests.edge_runtime.faults_common import (
    check,
    invoke,
    no_hang,  # noqa: F401 - the autouse hang guard, for this module too
)

PASSWORD = "s3cret"
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


def _digest_ok(header: str, method: str, realm: str, nonce: str, algorithm: str) -> bool:
    """What a camera checks: the response computed from the user's password (``admin``/``s3cret``)."""
    pairs = re.findall(r'(\w+)=(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))', header)
    fields = {m[0]: re.sub(r"\\(.)", r"\1", m[1]) or m[2] for m in pairs}
    make = HASHES[algorithm]

    def h(text: str) -> str:
        return make(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = h(f"admin:{realm}:{PASSWORD}"), h(f"{method}:{fields.get('uri', '')}")
    if fields.get("qop") == "auth":
        want = h(f"{ha1}:{nonce}:{fields.get('nc')}:{fields.get('cnonce')}:auth:{ha2}")
    else:
        want = h(f"{ha1}:{nonce}:{ha2}")
    return header.startswith("Digest ") and fields.get("response") == want and fields.get("username") == "admin"


class _Camera(socketserver.ThreadingTCPServer):
    daemon_threads = allow_reuse_address = True
    answer: tuple[int, str] = (404, "Not Found")  # the answer to every request (401: unless the digest is right)
    challenges: tuple[str, ...] = ()  # (algorithm, qop) pairs offered on a 401, in order; () for basic
    realm: str = "IP Camera"
    redirect: str | None = None
    one_line: bool = False  # all challenges in one WWW-Authenticate line, with a Basic one after them
    nonce_per_connection: bool = False  # a nonce good only on the connection it was given on
    requests: list[tuple[str, dict[str, str]]]


class _Handler(socketserver.StreamRequestHandler):
    server: _Camera
    nonce: str

    def handle(self) -> None:
        self.nonce = os.urandom(8).hex()  # this connection's own
        while True:
            head = []
            while (line := self.rfile.readline(8192).decode("latin-1").rstrip("\r\n")) != "":
                head.append(line)
            if not head:
                return
            headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
            self.server.requests.append((head[0], headers))
            method, protocol = head[0].split(" ", 1)[0], head[0].rsplit(" ", 1)[-1]
            status, reason = self.server.answer
            extra = ""
            if method == "OPTIONS":
                status, reason, extra = 200, "OK", "Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
            elif self.server.redirect:
                status, reason, extra = 302, "Found", f"Location: {self.server.redirect}\r\n"
            elif status == 401:
                status, reason, extra = self._authenticate(method, headers.get("authorization", ""))
            seq = f"CSeq: {headers.get('cseq', '1')}\r\n" if protocol.startswith("RTSP") else ""
            self.wfile.write(f"{protocol} {status} {reason}\r\n{seq}{extra}Content-Length: 0\r\n\r\n".encode())
            if not protocol.startswith("RTSP"):
                return

    def _authenticate(self, method: str, given: str) -> tuple[int, str, str]:
        """415 for the right password (no stream here anyway), else 401 with the camera's challenges."""
        realm, nonce = self.server.realm, self.nonce if self.server.nonce_per_connection else "5d1f3a9c"
        offered = self.server.challenges
        if (not offered and given == "Basic YWRtaW46czNjcmV0") or any(
            _digest_ok(given, method, realm, nonce, algorithm) for algorithm, _ in offered
        ):
            return 415, "Unsupported Media Type", ""
        quoted = realm.replace('"', '\\"')
        said = [f'Digest realm="{quoted}", nonce="{nonce}", algorithm={algorithm}{qop}' for algorithm, qop in offered]
        if self.server.one_line:  # a Basic realm after them, in the same line, must not be taken for the digest's
            return 401, "Unauthorized", f'WWW-Authenticate: {", ".join(said)}, Basic realm="other"\r\n'
        lines = [f"WWW-Authenticate: {c}\r\n" for c in said] or [f'WWW-Authenticate: Basic realm="{quoted}"\r\n']
        return 401, "Unauthorized", "".join(lines)


@pytest.fixture
def cameras() -> Iterator[Callable[[ssl.SSLContext | None], _Camera]]:
    """Start fake cameras on loopback (over TLS with a context); each is stopped after the test."""
    started: list[_Camera] = []

    def start(tls: ssl.SSLContext | None = None) -> _Camera:
        server = _Camera(("127.0.0.1", 0), _Handler)
        server.requests = []
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


@pytest.fixture
def camera(cameras) -> _Camera:
    return cameras(None)


def _open(tiny_model, camera: _Camera, user: str, scheme: str = "rtsp") -> str:
    url = f"{scheme}://{user}127.0.0.1:{camera.server_address[1]}/stream1"
    r = invoke(["--model", str(tiny_model), "--source", url, "--max-reconnects", "0"])
    check(r, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    assert PASSWORD not in r.stderr and "wrong" not in r.stderr
    assert camera.requests, "FFmpeg never asked the fake camera"
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
    camera.answer, camera.challenges = answer, (("MD5", ""),)
    line = _open(tiny_model, camera, "")
    assert said in line and "cannot open camera" not in line


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
@pytest.mark.parametrize(
    "challenges",
    [
        (("MD5", ""),),
        (("MD5", ', qop="auth"'),),
        (("SHA-256", ', qop="auth"'), ("MD5", ', qop="auth"')),  # the first one offered with a known hash
        (),  # basic
    ],
)
def test_a_refused_password_is_told_and_a_right_one_is_not_blamed(tiny_model, camera, scheme, challenges):
    """The password is answered to the camera's own challenge: a wrong one is named as refused; with the right
    one, the camera's other failure is not blamed on the password (a SHA-256 challenge had been answered with an
    MD5 hash, and an HTTP digest camera with basic: the right password was "refused")."""
    camera.answer, camera.challenges, camera.realm = (401, "Unauthorized"), challenges, 'cam "lab", one'
    line = _open(tiny_model, camera, "admin:wrong@", scheme)
    assert f"{scheme.upper()} 401 Unauthorized (the user and password given were refused)" in line
    camera.requests.clear()
    line = _open(tiny_model, camera, f"admin:{PASSWORD}@", scheme)
    assert f"{scheme.upper()} 415 Unsupported Media Type (the camera's own error)" in line and "password" not in line


@pytest.mark.parametrize("case", ["one line", "nonce per connection"])
def test_a_right_password_is_not_blamed_for_how_the_camera_words_its_challenge(tiny_model, camera, case):
    """Two challenges in one header line (the Basic one's realm was taken for the digest's), and a nonce good only
    on its own connection (asked again on a new one): both gave "the user and password given were refused"."""
    camera.answer, camera.challenges = (401, "Unauthorized"), (("MD5", ', qop="auth"'),)
    camera.one_line, camera.nonce_per_connection = case == "one line", case == "nonce per connection"
    line = _open(tiny_model, camera, f"admin:{PASSWORD}@")
    assert "RTSP 415 Unsupported Media Type (the camera's own error)" in line, line
    line = _open(tiny_model, camera, "admin@")
    assert "RTSP 401 Unauthorized (no password was given)" in line, line


def test_the_password_goes_only_to_the_camera_and_only_when_it_asks(camera, cameras):
    """The HTTP check sent the password in basic authentication (readable on the wire) before the camera asked,
    also to a digest camera, and followed a redirect to another host with it."""
    elsewhere = cameras(None)
    url = f"http://admin:{PASSWORD}@127.0.0.1:{camera.server_address[1]}/video.mjpg"
    assert refusal(url) == "HTTP 404 Not Found (no stream at that path: check the URL's path)"
    assert camera.requests and all("authorization" not in headers for _, headers in camera.requests)
    camera.redirect = f"http://localhost:{elsewhere.server_address[1]}/other"
    assert refusal(url) is None and not elsewhere.requests


def test_an_https_camera_with_its_own_certificate_is_asked_too(tmp_path: Path, cameras):
    """A camera's self-signed certificate stopped the HTTPS check (FFmpeg takes it), so its refusal went unnamed."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    made = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                           "-days", "1", "-subj", "/CN=camera"], capture_output=True, check=False)  # fmt: skip
    if made.returncode:
        pytest.skip("openssl cannot make a certificate here")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    camera = cameras(context)
    assert refusal(f"https://127.0.0.1:{camera.server_address[1]}/v.mjpg") == (
        "HTTP 404 Not Found (no stream at that path: check the URL's path)"
    )


def test_a_camera_that_trickles_its_answer_is_given_up_on_in_time(camera):
    """A byte a second kept the check (and its thread and socket) for up to 64 KiB: each reconnect left one."""
    import time

    class Trickle(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.rfile.readline()
            for _ in range(30):
                self.wfile.write(b"R")
                time.sleep(0.2)

    camera.RequestHandlerClass = Trickle
    t0 = time.monotonic()
    assert refusal(f"rtsp://127.0.0.1:{camera.server_address[1]}/s", timeout_s=1.0) is None
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize("password", [f"Pa/ss{PASSWORD}", f"1234/{PASSWORD}", f"P@ss/{PASSWORD}"])
def test_a_password_with_a_slash_in_it_is_not_shown(tiny_model, camera, password):
    """A '/' in the password, not %2F-encoded, cut the URL's user part short, and the password was printed
    (after a first fix, still where the part before the '/' was all digits, read as a port, and after an '@'
    in it)."""
    url = f"rtsp://admin:{password}@127.0.0.1:{camera.server_address[1]}/line"
    r = invoke(["--model", str(tiny_model), "--source", url, "--max-reconnects", "0"])
    check(r, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    assert PASSWORD not in r.stderr + r.stdout and f"admin:***@127.0.0.1:{camera.server_address[1]}/line" in r.stderr


def test_the_camera_is_asked_once_however_often_the_stream_is_reopened(camera):
    """Each reopen of a live stream asked the camera again: a second failed login per reopen on cameras that lock
    an account after a few. A sign-in refusal stays named on every reopen; other answers are not repeated."""
    from edge_runtime.capture import capture_factory
    from edge_runtime.errors import SourceError

    camera.answer, camera.challenges = (401, "Unauthorized"), (("MD5", ""),)
    reopen = capture_factory(f"rtsp://admin:wrong@127.0.0.1:{camera.server_address[1]}/line", timeout_s=2.0)
    for _ in range(3):
        with pytest.raises(SourceError, match=r"RTSP 401 Unauthorized \(the user and password given were refused\)"):
            reopen()
    ours = [line for line, headers in camera.requests if headers.get("user-agent") == "defect-edge"]
    assert len(ours) == 2, camera.requests  # once without the password, once answering the challenge
    camera.answer = (503, "Service Unavailable")
    busy = capture_factory(f"rtsp://127.0.0.1:{camera.server_address[1]}/line", timeout_s=2.0)
    with pytest.raises(SourceError, match="RTSP 503"):
        busy()
    with pytest.raises(SourceError, match="cannot open camera or stream"):  # offline now, perhaps: not said busy
        busy()


def test_a_camera_that_comes_back_refusing_after_nothing_listened_is_asked_then(camera):
    """A camera that rebooted and came back asking for a password (or with its stream path changed): the reopens
    said "nothing listens" while it was off, then "cannot open camera or stream (check ...)" at every attempt, as
    the camera had been asked already (while off). It is asked once it listens, and only once."""
    import socket

    from edge_runtime.capture import capture_factory
    from edge_runtime.errors import SourceError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reopen = capture_factory(f"rtsp://127.0.0.1:{port}/line", timeout_s=2.0)
    with pytest.raises(SourceError, match=f"nothing listens at 127.0.0.1:{port}"):
        reopen()
    back = _Camera(("127.0.0.1", port), _Handler)  # the camera is back on its port, asking for a password
    back.requests, back.answer, back.challenges = [], (401, "Unauthorized"), (("MD5", ""),)
    threading.Thread(target=back.serve_forever, daemon=True).start()
    try:
        for _ in range(3):
            with pytest.raises(SourceError, match=r"RTSP 401 Unauthorized \(a user and password are needed\)"):
                reopen()
    finally:
        back.shutdown()
        back.server_close()
    ours = [line for line, headers in back.requests if headers.get("user-agent") == "defect-edge"]
    assert len(ours) == 1, back.requests  # asked once, without a password (the URL gives none)


def test_ffmpeg_options_from_the_environment_that_stop_the_open_are_named(tiny_model, camera):
    """``OPENCV_FFMPEG_CAPTURE_OPTIONS`` with a mistyped RTSP transport (or one the camera does not serve) gave
    "cannot open camera or stream (check the index/path/URL ...)" while the URL was right: now the line names the
    variable and its transport, and shows none of its other values (a header there may hold a password)."""
    camera.answer = (200, "OK")  # the camera answers: its side shows nothing wrong
    url = f"rtsp://127.0.0.1:{camera.server_address[1]}/stream1"
    options = f"rtsp_transport;upd|headers;Authorization: Basic {PASSWORD}"
    r = invoke(["--model", str(tiny_model), "--source", url, "--max-reconnects", "0"],
               env={"OPENCV_FFMPEG_CAPTURE_OPTIONS": options})  # fmt: skip
    check(r, ExitCode.SOURCE_UNAVAILABLE, error_lines=1)
    line = r.stderr.strip().splitlines()[-1]
    assert "OPENCV_FFMPEG_CAPTURE_OPTIONS (rtsp_transport=upd, headers)" in line, line
    assert "rtsp_transport takes tcp, udp" in line and PASSWORD not in r.stderr and "cannot open camera" not in line
