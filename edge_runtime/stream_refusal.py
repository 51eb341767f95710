"""Why a network camera refused a stream that FFmpeg could not open, in the camera's own status line.

Asked only after an open failed. Every refusal had been the same "cannot open camera or stream (check the
index/path/URL ...)": a wrong password, a wrong path and a camera serving its last viewer alike.

The camera is asked as FFmpeg asks it: one request without a password, and only when the camera answers 401
with a challenge, once more with the URL's user in the scheme the camera asked for (digest or basic). The
password never goes anywhere else: no redirect is followed, and no other host is asked.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import time
import urllib.parse

from edge_runtime.errors import printable
from edge_runtime.stream_url import opened_url

_ADVICE = {
    401: "a user and password are needed, or those given were refused",
    403: "this user may not read it",
    404: "no stream at that path: check the URL's path",
    453: "the camera has no bandwidth left for another viewer",
    454: "the camera lost the session: try again",
    503: "the camera is busy: it may already serve as many viewers as it can; close another viewer",
}
_MAX_HEADER = 65536
_MAX_REASON = 80
_CHALLENGE_FIELD = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_HASHES = {"md5": hashlib.md5, "sha-256": hashlib.sha256}


def refusal(url: str, timeout_s: float = 3.0) -> str | None:
    """``HTTP 401 Unauthorized (...)`` or ``RTSP 404 Not Found (...)``: the status of an HTTP(S) or RTSP(S)
    camera that answers with an error; None where it answers 2xx/3xx, not at all, not within ``timeout_s`` in
    all, or in another protocol.

    >>> refusal("udp://10.0.0.5:1234") is None
    True
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https", "rtsp", "rtsps"):
        return None
    deadline = time.monotonic() + timeout_s
    try:
        parts = urllib.parse.urlsplit(opened_url(url))
        user, signed_in = _user(parts), False
        status, reason, challenges = _ask(parts, None, deadline)
        if status == 401 and user is not None and (auth := _authorization(challenges, user, parts)) is not None:
            status, reason, challenges = _ask(parts, auth, deadline)
            signed_in = True
    except (OSError, ValueError, UnicodeError):
        return None
    if status < 400:
        return None
    why = _ADVICE.get(status, "the camera's own error")
    if status == 401 and user is None:
        why = "a user and password are needed"
    elif status == 401 and signed_in:  # the camera's own challenge answered with the URL's user
        why = "the user and password given were refused"
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


def _ask(parts: urllib.parse.SplitResult, auth: str | None, deadline: float) -> tuple[int, str, list[str]]:
    """One request (RTSP DESCRIBE, HTTP GET) on its own connection: the status, its reason and the
    authentication challenges. Raises OSError or ValueError where no status line comes by ``deadline``."""
    rtsp, secure = parts.scheme.startswith("rtsp"), parts.scheme in ("https", "rtsps")
    host = parts.hostname or ""
    target, netloc = _target(parts)
    if rtsp:
        lines = [f"DESCRIBE {target} RTSP/1.0", "CSeq: 1", "Accept: application/sdp"]
    else:
        lines = [f"GET {target} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
    lines += ["User-Agent: defect-edge"] + ([f"Authorization: {auth}"] if auth else [])
    port = parts.port or {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}[parts.scheme]
    with socket.create_connection((host, port), timeout=_left(deadline)) as raw:
        sock: socket.socket = raw
        if secure:  # a camera's certificate is its own (often self-signed), as FFmpeg takes it
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(raw, server_hostname=host)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEADER:
            sock.settimeout(_left(deadline))  # a camera that trickles its answer is given up on in time, too
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    protocol, code, *reason = status_line.split(" ", 2)
    if protocol.partition("/")[0] != ("RTSP" if rtsp else "HTTP") or not (code.isdigit() and len(code) == 3):
        raise ValueError(f"not an answer to the request: {status_line[:40]!r}")
    challenges = [
        value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
        if name.strip().lower() == "www-authenticate"
    ]
    return int(code), (reason[0] if reason else "").strip(), challenges


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
