"""Why a network camera refused a stream that FFmpeg could not open, in the camera's own status line.

Asked only after an open failed. Every refusal had been the same "cannot open camera or stream (check the
index/path/URL ...)": a wrong password, a wrong path and a camera serving its last viewer alike.

The camera is asked as FFmpeg asks it: one request without a password, and only when the camera answers 401
with a challenge, once more with the URL's user in the scheme the camera asked for (digest or basic). The
password never goes anywhere else: no redirect is followed, and no other host is asked.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import re
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterator

from edge_runtime.errors import printable
from edge_runtime.stream_url import is_stream_url, opened_url

_ADVICE = {
    401: "a user and password are needed, or those given were refused",
    403: "this user may not read it",
    404: "no stream at that path: check the URL's path",
    453: "the camera has no bandwidth left for another viewer",
    454: "the camera lost the session: try again",
    503: "the camera is busy: it may already serve as many viewers as it can; close another viewer",
}
REFUSED = "the camera refused the stream: "  # what a line naming the camera's own refusal says first
_MAX_HEADER = 65536
_MAX_REASON = 80
_CHALLENGE_FIELD = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"md5": hashlib.md5, "sha-256": hashlib.sha256}
# a comma that starts another challenge ("..., Basic realm=..."): one followed by a scheme and a parameter, outside
# quotes (an even number of quotes after it)
_NEXT_CHALLENGE = re.compile(r',\s*(?=[A-Za-z][\w-]*\s+[\w-]+\s*=)(?=(?:[^"]*"[^"]*")*[^"]*$)')


def refusal(url: str, timeout_s: float = 3.0) -> str | None:
    """``HTTP 401 Unauthorized (...)`` or ``RTSP 404 Not Found (...)``: the status of an HTTP(S) or RTSP(S)
    camera that answers with an error; None where it answers 2xx/3xx, not at all, not within ``timeout_s`` in
    all, or in another protocol.

    >>> refusal("udp://10.0.0.5:1234") is None
    True
    """
    said = why_unopened(url, timeout_s)
    return said.removeprefix(REFUSED) if said is not None and said.startswith(REFUSED) else None


def why_unopened(url: str, timeout_s: float = 3.0) -> str | None:
    """Why a network camera's stream could not be opened, where the camera's side shows it: its refusal
    (``the camera refused the stream: HTTP 404 Not Found (...)``), nothing listening at its address, a host name
    not found, or a web page where a stream was expected (each had been "cannot open camera or stream (check
    the index/path/URL ...)"). None where it cannot tell.

    >>> why_unopened("udp://10.0.0.5:1234") is None
    True
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https", "rtsp", "rtsps"):
        return None
    deadline = time.monotonic() + timeout_s
    try:
        parts = urllib.parse.urlsplit(opened_url(url))
        if not parts.hostname:  # rtsp://$CAMERA:554/line with the variable unset: "cannot find the host  (...)"
            return f"the URL names no host (an unset variable?): write it as {scheme}://HOST[:PORT]/PATH"
        user = _user(parts)
        status, reason, signed_in, kind = _status(parts, user, deadline)
    except ConnectionRefusedError:
        return _nobody(parts)
    except socket.gaierror as exc:
        host = printable(parts.hostname or "")
        return f"cannot find the host {host} ({exc.strerror or exc}): check the URL's host name, or give its IP address"
    except (OSError, ValueError, UnicodeError):
        return None
    if status < 400:
        return _answered(kind)
    return REFUSED + _refused(scheme, status, reason, user, signed_in=signed_in)


def _answered(kind: str) -> str | None:
    """Why a stream the camera answers could not be opened, told by what it answers with."""
    if kind.lower().startswith("text/"):  # a video stream is never text: a login page, the camera's own web page
        return (f"it answers with a web page ({printable(kind[:40])}), not a video stream: check the URL's path "
                "(the stream's, not the camera's web page)")  # fmt: skip
    if kind.lower().startswith("multipart/"):  # an MJPEG stream, whose first picture did not come in time
        stream = printable(kind.split(";")[0][:40])
        return (f"it answers with a stream ({stream}), but no picture came while it was opened: a camera that "
                "sends a frame per part needs --read-timeout above its longest wait for a part")  # fmt: skip
    return None


def one_picture(url: str, timeout_s: float = 3.0) -> str | None:
    """What an HTTP(S) URL that gave one frame and ended answers with, where that is one picture (a camera's
    snapshot URL, an image on a web server): it had been reopened as a dropped stream again and again, the same
    picture judged as a new part each time. None where it answers otherwise, or not within ``timeout_s``."""
    if url.split("://", 1)[0].lower() not in ("http", "https"):
        return None
    try:
        parts = urllib.parse.urlsplit(opened_url(url))
        status, _, _, kind = _status(parts, _user(parts), time.monotonic() + timeout_s)
    except (OSError, ValueError, UnicodeError):
        return None
    if status >= 300 or not kind.lower().startswith("image/"):
        return None
    return (f"it answers with one picture ({printable(kind.split(';')[0][:40])}), not a video stream: judged once; "
            "to watch a camera, give its MJPEG or RTSP stream URL")  # fmt: skip


def nothing_listens(url: str, timeout_s: float = 1.0) -> str | None:
    """``nothing listens at HOST:PORT (...)`` where the stream's address refuses a connection (a camera off or
    restarting), else None. Only connects, sends nothing: asked again at each failed reopen, where a camera's
    refusal is not (a wrong password asked again could lock the account).

    >>> nothing_listens("udp://10.0.0.5:1234") is None
    True
    """
    try:
        parts = urllib.parse.urlsplit(opened_url(url))
        if parts.scheme not in ("http", "https", "rtsp", "rtsps"):
            return None
        socket.create_connection((parts.hostname or "", _port(parts)), timeout=timeout_s).close()
    except ConnectionRefusedError:
        return _nobody(parts)
    except (OSError, ValueError, UnicodeError):
        return None
    return None


def options_blamed(url: str) -> str | None:
    """Why a stream could not be opened where ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` is set and the camera's side shows
    nothing: the variable's FFmpeg options (a transport FFmpeg does not know, or one the camera does not serve, had
    been "cannot open camera or stream (check the index/path/URL ...)", with nothing naming the variable). Its
    option names are shown, and the RTSP transport's value; no other value (one may hold a password).

    >>> os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "rtsp_transport;upd|stimeout;5000000"
    >>> options_blamed("rtsp://10.0.0.5/line").split(": ")[0]
    'cannot open it with the FFmpeg options of OPENCV_FFMPEG_CAPTURE_OPTIONS (rtsp_transport=upd, stimeout)'
    >>> del os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"]
    """
    options = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "").strip()
    if not options or not is_stream_url(url):
        return None
    shown = []
    for pair in options.split("|"):
        name, _, value = pair.partition(";")
        if name.strip():
            shown.append(f"rtsp_transport={value.strip()}" if name.strip() == "rtsp_transport" else name.strip())
    return (
        f"cannot open it with the FFmpeg options of OPENCV_FFMPEG_CAPTURE_OPTIONS ({printable(', '.join(shown))[:120]})"
        ": check them (rtsp_transport takes tcp, udp, udp_multicast or http, and the camera must serve it), or unset"
        " the variable to open the stream as OpenCV does by default (RTSP over TCP)"
    )


NOBODY = "nothing listens at "  # how a line says the camera's address refused the connection: it was not asked


def _nobody(parts: urllib.parse.SplitResult) -> str:
    host = parts.hostname or ""
    where = f"{f'[{host}]' if ':' in host else host}:{_port(parts)}"
    return f"{NOBODY}{where} (the camera is off or still starting, or the URL's port is wrong)"


def _refused(scheme: str, status: int, reason: str, user: tuple[str, str] | None, *, signed_in: bool) -> str:
    """``HTTP 401 Unauthorized (a user and password are needed)``: the camera's status and what it means."""
    why = _ADVICE.get(status, "the camera's own error")
    if status == 401 and user is None:
        why = "a user and password are needed"
    elif status == 401 and signed_in:  # the camera's own challenge answered with the URL's user
        why = "the user and password given were refused" if user and user[1] else "no password was given"
    reason = printable(reason[:_MAX_REASON] + ("..." if len(reason) > _MAX_REASON else ""))
    return f"{'RTSP' if scheme.startswith('rtsp') else 'HTTP'} {status}{' ' + reason if reason else ''} ({why})"


def _user(parts: urllib.parse.SplitResult) -> tuple[str, str] | None:
    if parts.username is None:
        return None
    return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def _target(parts: urllib.parse.SplitResult) -> tuple[str, str]:
    """The request's target (the whole URL without its user for RTSP, the path and query for HTTP) and the
    host as a Host header names it."""
    host = parts.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{parts.port}" if parts.port else "")
    if parts.scheme.startswith("rtsp"):
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc, fragment="")), netloc
    return urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, "")), netloc


def _status(
    parts: urllib.parse.SplitResult, user: tuple[str, str] | None, deadline: float
) -> tuple[int, str, bool, str]:
    """The camera's answer to the request, and to the request again with the URL's user where it answered 401
    with a challenge (on the same connection for RTSP, as FFmpeg asks: a camera may tie its nonce to it); whether
    the user was sent; and the first answer's Content-Type."""
    with _connect(parts, deadline) as sock:
        status, reason, challenges, open_still, kind = _request(sock, parts, None, 1, deadline)
        if status != 401 or user is None or (auth := _authorization(challenges, user, parts)) is None:
            return status, reason, False, kind
        if open_still and parts.scheme.startswith("rtsp"):
            with contextlib.suppress(OSError, ValueError):  # closed meanwhile: asked again on a new connection
                return *_request(sock, parts, auth, 2, deadline)[:2], True, kind
    with _connect(parts, deadline) as sock:
        return *_request(sock, parts, auth, 2, deadline)[:2], True, kind


def _port(parts: urllib.parse.SplitResult) -> int:
    default = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}[parts.scheme]
    return parts.port if parts.port is not None else default  # port 0 is no default port


@contextlib.contextmanager
def _connect(parts: urllib.parse.SplitResult, deadline: float) -> Iterator[socket.socket]:
    host = parts.hostname or ""
    with socket.create_connection((host, _port(parts)), timeout=_left(deadline)) as raw:
        if parts.scheme not in ("https", "rtsps"):
            yield raw
            return
        context = ssl.create_default_context()  # a camera's certificate is its own (often self-signed), as FFmpeg
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # takes it
        with context.wrap_socket(raw, server_hostname=host) as secure:
            yield secure


def _request(
    sock: socket.socket, parts: urllib.parse.SplitResult, auth: str | None, seq: int, deadline: float
) -> tuple[int, str, list[str], bool, str]:
    """One request (RTSP DESCRIBE, HTTP GET): the status, its reason, the authentication challenges, whether
    the connection stays open for another, and the answer's Content-Type. Raises OSError or ValueError where no
    answer comes by ``deadline``."""
    rtsp = parts.scheme.startswith("rtsp")
    target, netloc = _target(parts)
    if rtsp:
        lines = [f"DESCRIBE {target} RTSP/1.0", f"CSeq: {seq}", "Accept: application/sdp"]
    else:
        lines = [f"GET {target} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
    lines += ["User-Agent: defect-edge"] + ([f"Authorization: {auth}"] if auth else [])
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    data, end = b"", None
    while end is None and len(data) < _MAX_HEADER:
        chunk = _receive(sock, deadline)
        if not chunk:  # closed after its answer
            break
        data += chunk
        end = re.search(rb"\r?\n\r?\n", data)
    head, body = (data[: end.start()], data[end.end() :]) if end else (data, b"")
    status_line, *header_lines = [line.rstrip("\r") for line in head.decode("latin-1").split("\n")]
    protocol, code, *reason = status_line.split(" ", 2)
    if protocol.partition("/")[0] != ("RTSP" if rtsp else "HTTP") or not (code.isdigit() and len(code) == 3):
        raise ValueError(f"not an answer to the request: {status_line[:40]!r}")
    headers = [(name.strip().lower(), value.strip()) for name, _, value in (h.partition(":") for h in header_lines)]
    challenges = [c for name, value in headers if name == "www-authenticate" for c in _split_challenges(value)]
    length = next((int(v) for n, v in headers if n == "content-length" and v.isdigit()), 0)
    open_still = rtsp and end is not None and length < _MAX_HEADER
    open_still = open_still and all(n != "connection" or v.lower() != "close" for n, v in headers)
    while open_still and len(body) < length:  # the body read off, so that a second request can follow
        chunk = _receive(sock, deadline)
        open_still, body = bool(chunk), body + chunk
    kind = next((v for n, v in headers if n == "content-type"), "")
    return int(code), (reason[0] if reason else "").strip(), challenges, open_still, kind


def _receive(sock: socket.socket, deadline: float) -> bytes:
    sock.settimeout(_left(deadline))  # a camera that trickles its answer is given up on in time, too
    return sock.recv(4096)


def _split_challenges(value: str) -> list[str]:
    """One WWW-Authenticate value's challenges: ``Digest realm="a", nonce="n", Basic realm="b"`` is two (the
    Basic challenge's realm had been taken for the digest's, and a right password was "refused")."""
    return [c.strip() for c in _NEXT_CHALLENGE.split(value) if c.strip()]


def _left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the camera did not answer in time")
    return left


def _authorization(challenges: list[str], user: tuple[str, str], parts: urllib.parse.SplitResult) -> str | None:
    """The Authorization header answering a camera's challenges: the first digest with a hash known here
    (MD5, SHA-256; their -sess forms), else basic where offered; None where neither is."""
    method = "DESCRIBE" if parts.scheme.startswith("rtsp") else "GET"
    for challenge in challenges:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "digest":
            fields = {m[0].lower(): re.sub(r"\\(.)", r"\1", m[1]) or m[2] for m in _CHALLENGE_FIELD.findall(rest)}
            if fields.get("algorithm", "MD5").lower().removesuffix("-sess") in _HASHES:
                return _digest(fields, user, method, _target(parts)[0])
    if any(c.partition(" ")[0].lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(":".join(user).encode()).decode()
    return None


def _digest(fields: dict[str, str], user: tuple[str, str], method: str, uri: str) -> str:
    """RFC 7616 digest (``qop=auth`` where the camera asks for it, else the RFC 2069 form)."""
    algorithm = fields.get("algorithm", "MD5")
    make = _HASHES[algorithm.lower().removesuffix("-sess")]

    def h(text: str) -> str:
        return make(text.encode(), usedforsecurity=False).hexdigest()

    name, password = user
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    cnonce = os.urandom(8).hex()
    ha1 = h(f"{name}:{realm}:{password}")
    if algorithm.lower().endswith("-sess"):
        ha1 = h(f"{ha1}:{nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")

    def quoted(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    said = [f"username={quoted(name)}", f"realm={quoted(realm)}", f"nonce={quoted(nonce)}", f"uri={quoted(uri)}"]
    if "auth" in [q.strip() for q in fields.get("qop", "").split(",")]:
        said += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
        said.append(f'response="{h(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")}"')
    else:
        said.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
    said += [f"opaque={quoted(fields['opaque'])}"] if "opaque" in fields else []
    said += [f"algorithm={algorithm}"] if "algorithm" in fields else []
    return "Digest " + ", ".join(said)
