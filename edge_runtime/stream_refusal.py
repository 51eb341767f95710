"""Why a network camera refused a stream that FFmpeg could not open, in the camera's own status line.

Asked only after an open failed. Every refusal had been the same "cannot open camera or stream (check the
index/path/URL ...)": a wrong password, a wrong path and a camera serving its last viewer alike.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request

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
_CHALLENGE_FIELD = re.compile(r'(\w+)\s*=\s*(?:"([^"]*)"|([^\s,]+))')


def refusal(url: str, timeout_s: float = 3.0) -> str | None:
    """``HTTP 401 Unauthorized (...)`` or ``RTSP 404 Not Found (...)``: the status of an HTTP(S) or RTSP(S)
    camera that answers with an error; None where it answers 2xx/3xx, not at all, or speaks another protocol.

    >>> refusal("udp://10.0.0.5:1234") is None
    True
    """
    scheme = url.split("://", 1)[0].lower()
    if scheme in ("http", "https"):
        return _http_refusal(url, timeout_s)
    if scheme in ("rtsp", "rtsps"):
        return _rtsp_refusal(url, timeout_s)
    return None


def _status_line(protocol: str, status: int, reason: str, *, credentials: bool | None = None) -> str:
    """``RTSP 401 Unauthorized (...)``; for a 401, what the advice is depends on whether a user was given."""
    why = _ADVICE.get(status, "the camera's own error")
    if status == 401 and credentials is not None:
        why = "the user and password given were refused" if credentials else "a user and password are needed"
    return f"{protocol} {status} {reason} ({why})"


def _plain_url(parts: urllib.parse.SplitResult) -> str:
    """The URL without its user part, as a request names it."""
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    netloc += f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _user(parts: urllib.parse.SplitResult) -> tuple[str, str] | None:
    if parts.username is None:
        return None
    return urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password or "")


def _http_refusal(url: str, timeout_s: float) -> str | None:
    parts = urllib.parse.urlsplit(opened_url(url))
    request = urllib.request.Request(_plain_url(parts), method="GET")
    if (user := _user(parts)) is not None:  # basic authentication from the URL's user part, as FFmpeg sends it
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(user).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=timeout_s):  # noqa: S310 - the user's own camera URL
            return None
    except urllib.error.HTTPError as exc:
        return _status_line("HTTP", exc.code, str(exc.reason))
    except (OSError, ValueError):
        return None


def _rtsp_refusal(url: str, timeout_s: float) -> str | None:
    """DESCRIBE the stream, as FFmpeg does first, and again with the URL's user (digest or basic) after a 401."""
    try:
        parts = urllib.parse.urlsplit(opened_url(url))
        plain, user = _plain_url(parts), _user(parts)
        status, reason, challenges = _describe(parts, plain, None, timeout_s)
        if status == 401 and user is not None and (auth := _authorization(challenges, user, plain)) is not None:
            status, reason, challenges = _describe(parts, plain, auth, timeout_s)
    except (OSError, ValueError, UnicodeError):
        return None
    if status < 400:
        return None
    return _status_line("RTSP", status, reason, credentials=user is not None)


def _describe(
    parts: urllib.parse.SplitResult, plain: str, auth: str | None, timeout_s: float
) -> tuple[int, str, list[str]]:
    """One DESCRIBE on its own connection: the status, its reason and the authentication challenges."""
    secure = parts.scheme == "rtsps"
    host = parts.hostname or ""
    lines = [f"DESCRIBE {plain} RTSP/1.0", "CSeq: 1", "Accept: application/sdp", "User-Agent: defect-edge"]
    lines += [f"Authorization: {auth}"] if auth else []
    with socket.create_connection((host, parts.port or (322 if secure else 554)), timeout=timeout_s) as raw:
        sock: socket.socket = raw
        if secure:  # a camera's certificate is its own, as FFmpeg takes it
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            sock = context.wrap_socket(raw, server_hostname=host)
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head and len(head) < _MAX_HEADER:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
    status_line, *header_lines = head.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    protocol, code, *reason = status_line.split(" ", 2)
    if not protocol.startswith("RTSP/") or not code.isdigit():
        raise ValueError(f"not an RTSP answer: {status_line[:40]!r}")
    challenges = [
        value.strip()
        for name, _, value in (line.partition(":") for line in header_lines)
        if name.strip().lower() == "www-authenticate"
    ]
    return int(code), (reason[0] if reason else "").strip(), challenges


def _authorization(challenges: list[str], user: tuple[str, str], uri: str) -> str | None:
    """The Authorization header answering a camera's challenges: digest where offered, else basic."""
    for challenge in challenges:
        scheme, _, rest = challenge.partition(" ")
        if scheme.lower() == "digest":
            fields = {m[0].lower(): m[1] or m[2] for m in _CHALLENGE_FIELD.findall(rest)}
            return _digest(fields, user, uri)
    if any(c.partition(" ")[0].lower() == "basic" for c in challenges):
        return "Basic " + base64.b64encode(":".join(user).encode()).decode()
    return None


def _digest(fields: dict[str, str], user: tuple[str, str], uri: str) -> str:
    """RFC 2617 digest for DESCRIBE (MD5 or MD5-sess; ``qop=auth`` where the camera asks for it)."""

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    name, password = user
    realm, nonce = fields.get("realm", ""), fields.get("nonce", "")
    cnonce = os.urandom(8).hex()
    ha1 = md5(f"{name}:{realm}:{password}")
    if fields.get("algorithm", "").lower() == "md5-sess":
        ha1 = md5(f"{ha1}:{nonce}:{cnonce}")
    ha2 = md5(f"DESCRIBE:{uri}")
    said = [f'username="{name}"', f'realm="{realm}"', f'nonce="{nonce}"', f'uri="{uri}"']
    if "auth" in [q.strip() for q in fields.get("qop", "").split(",")]:
        said += ["qop=auth", "nc=00000001", f'cnonce="{cnonce}"']
        said.append(f'response="{md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")}"')
    else:
        said.append(f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    said += [f'opaque="{fields["opaque"]}"'] if "opaque" in fields else []
    said += [f"algorithm={fields['algorithm']}"] if "algorithm" in fields else []
    return "Digest " + ", ".join(said)
