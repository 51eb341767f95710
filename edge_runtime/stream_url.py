"""Stream URLs: which sources are network streams, how FFmpeg is handed one, and how one is shown.

A camera's URL often carries its password (``rtsp://admin:secret@...``, ``?user=admin&pwd=...``): records,
messages, the summary, the inspection log and the station page show it masked.
"""

from __future__ import annotations

import re
import urllib.parse

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp", "tcp")


def is_stream_url(text: str) -> bool:
    """True for network streams (``rtsp://``, ``rtmp://``, ``http(s)://``, ``udp://``, ``tcp://``)."""
    return text.split("://", 1)[0].lower() in STREAM_SCHEMES and "://" in text


def url_scheme(text: str) -> str | None:
    """The scheme of a text written as a URL, a stream's or not; None for a path.

    >>> url_scheme("rtps://cam/line"), url_scheme("parts/a.png")
    ('rtps', None)
    """
    found = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    return found.group(1) if found else None


def not_a_stream(url: str) -> str:
    """Why a URL that names no file is not read: its scheme is no stream's (a typo had been "no such file or
    folder", with the password shown).

    >>> not_a_stream("rtps://admin:s3cret@cam/line").split(": ")[:2]
    ['rtps://admin:***@cam/line', 'rtps:// is not a stream this reads (rtsp://, rtsps://, http://, https://, rtmp://, udp://, tcp://) and no file has that name']
    """  # noqa: E501
    scheme = url_scheme(url) or ""
    if scheme.lower() == "file":
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
        return f"{shown_source(url)}: a file is passed by its path, not as a file:// URL: --source {path}"
    known = ", ".join(f"{s}://" for s in STREAM_SCHEMES)
    return (
        f"{shown_source(url)}: {scheme}:// is not a stream this reads ({known}) and no file has that name: check "
        "the URL's scheme"
    )


def shown_source(text: str) -> str:
    """``text`` as records, logs and messages show it: a stream URL's password replaced by ``***`` (a camera's
    ``http://admin:secret@...`` reached every record, the summary, the inspection log and the station page).

    >>> shown_source("rtsp://admin:s3cret@10.0.0.5:554/stream1")
    'rtsp://admin:***@10.0.0.5:554/stream1'
    >>> shown_source("http://10.0.0.5/video.cgi?user=admin&password=s3cret&resolution=640")
    'http://10.0.0.5/video.cgi?user=admin&password=***&resolution=640'
    >>> shown_source("rtsp://admin:Pa/ss@10.0.0.5/line")  # a '/' in the password, not %2F-encoded
    'rtsp://admin:***@10.0.0.5/line'
    >>> shown_source("parts/p1.png")
    'parts/p1.png'

    Many IP cameras take the password in the query (``?user=admin&pwd=...``): a parameter whose name says
    password, passwd, pwd, pass, token, secret, key, auth or signature is masked too.
    """
    if url_scheme(text) is None:  # any URL: one with a misspelt scheme is named in an error, password hidden
        return text
    scheme, rest = text.split("://", 1)
    netloc, sep, path = rest.partition("/")
    # The user part ends at the last '@' before the query: a password or user with an unencoded '/' or '@' in it
    # was shown in clear, whole or in part. An '@' in the path (not the query) of a URL with a ':' before it masks
    # the host with it, as it cannot be told from such a password; an IPv6 host ([::1]) is no user part.
    head = rest.split("?", 1)[0].split("#", 1)[0]
    last = head.rfind("@")
    if last > 0 and ":" in head[:last] and not head.startswith("["):
        host, sep, path = rest[last + 1 :].partition("/")
        netloc = rest[: last + 1] + host
    userinfo, at, host = netloc.rpartition("@")
    if ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***{at}{host}"
    return _PARAM.sub(_masked_param, f"{scheme}://{netloc}{sep}{path}")


# a query (or fragment: ``#password=...`` reached the records in clear) parameter, and the names that say secret,
# read after percent-decoding (``?pass%77ord=...`` was shown as it came)
_PARAM = re.compile(r"([?&;#])([^=&;#?]*)=([^&;#]*)")
# a name with one of these words holds a secret (``api_key``, ``accessToken``, ``X-Amz-Signature``, ``_sid``,
# ``password1``, ``wmsAuthSign``) ...
_SECRET_WORDS = frozenset(
    {"password", "passwd", "passphrase", "pwd", "pw", "pass", "token", "secret", "key", "apikey", "auth", "signature",
     "sig", "sign", "credential", "credentials", "session", "sid", "hash"}
)  # fmt: skip
# ... and so does a one-word name ending in one of these (``accesstoken``, ``secretkey``) ...
_SECRET_ENDINGS = ("password", "passwd", "passphrase", "token", "secret", "apikey", "secretkey", "signature")
# ... unless its last word says it is a setting about the secret word's namesake, readable on a stream's URL
_SETTING_WORDS = frozenset({"frame", "frames", "count", "interval", "expiry", "expires", "version", "type", "length"})


def _secret_name(name: str) -> bool:
    """Whether a parameter's name says it holds a secret: any of its words, split at ``_ - .``, digits and camelCase
    (``accessToken``, ``X-Amz-Signature``, ``password1``, ``_sid`` must not be shown), or a one-word name's ending;
    not a setting named after one (``keyFrame``, ``tokenCount``, ``signatureVersion``).

    >>> [_secret_name(n) for n in ("accessToken", "X-Amz-Credential", "pw", "keyframe", "keyFrame", "apiKey")]
    [True, True, True, False, False, True]
    >>> [_secret_name(n) for n in ("accesstoken", "password1", "_sid", "wmsAuthSign", "tokenCount", "user")]
    [True, True, True, True, False, False]
    """
    words = [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", name)]
    if words and words[-1] in _SETTING_WORDS:
        return False
    return any(w in _SECRET_WORDS for w in words) or name.lower().endswith(_SECRET_ENDINGS)


def _masked_param(m: re.Match[str]) -> str:
    """``shown_source``'s mask for one parameter.

    >>> shown_source("http://cam/feed.mjpg#password=s3cret"), shown_source("http://cam/f?pass%77ord=s3cret&x=1")
    ('http://cam/feed.mjpg#password=***', 'http://cam/f?pass%77ord=***&x=1')
    """
    if _secret_name(urllib.parse.unquote(m.group(2)).strip()):
        return f"{m.group(1)}{m.group(2)}=***"
    return m.group(0)


def opened_url(url: str) -> str:
    """The URL as FFmpeg opens it: the scheme in lower case (``HTTP://`` was taken for a stream, then failed)."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.lower()}://{rest}"
