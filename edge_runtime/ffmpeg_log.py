"""FFmpeg's own reports of damaged data, counted instead of printed.

FFmpeg's decoders conceal damage: an H.264 frame with a lost or broken slice comes back as a whole picture, its
broken part filled from an earlier frame (in a test, a defective part's frame came back as the OK part before it,
"ok", and the gate passed). The decoder's only sign is a log line ("error while decoding MB 7 1"), which OpenCV
prints on stdout, or not at all at the quiet level edge-infer sets. Here that log goes to a function of ours that
keeps its reports of damage (error and info level) and prints nothing: a reader compares :func:`errors` before and
after a read to learn that the frame it got was patched up.

OpenCV offers no such hook, so the FFmpeg library OpenCV loaded is called directly (``ctypes``). Where that
library is not found (OpenCV built without FFmpeg, or linked statically), :func:`install` returns False and
nothing changes. ``--debug`` leaves FFmpeg's printing as it is.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import sys
import threading

AV_LOG_ERROR = 16  # FFmpeg's level for "error while decoding MB 7 1"
AV_LOG_INFO = 32  # and for "concealing N DC, N AC, N MV errors in P frame"
# What FFmpeg's decoders write about damaged input (lower case); other error lines (a network's) are not damage.
DAMAGE_WORDS = (
    "error while decoding",
    "concealing",
    "decode_slice_header",
    "invalid nal",
    "corrupt",
    "missing reference",
    "reference picture missing",
    "non-existing pps",
    "no frame!",
    "cabac decode",
    "out of range",
    "mmco",
    "illegal",
    "damaged",
    "overread",
)

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class _Log:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0  # damage lines so far
        self.last = ""  # the latest one
        self.error_count = 0  # lines at FFmpeg's error level (a demuxer's too: "Invalid track number 2")
        self.last_error = ""
        self.lib: ctypes.CDLL | None = None
        self.searched = False  # the process's maps were read for the library (once: not per video opened)
        self.callback = None  # kept alive while FFmpeg holds it
        self.echo = False
        self.atexit = False


_log = _Log()


def _library() -> ctypes.CDLL | None:
    """The libavutil this process has loaded (OpenCV's), found in the process's memory map."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split(None, 5)[5].strip() for line in maps if "libavutil" in line and len(line.split()) > 5}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            for symbol in ("av_log_set_callback", "av_log_format_line", "av_log_set_level", "av_log_default_callback"):
                getattr(lib, symbol)  # the functions we need, or not this library
        except (OSError, AttributeError):
            continue
        return lib
    return None


def _on_log(avcl: int | None, level: int, fmt: bytes | None, args: int | None) -> None:
    if level > AV_LOG_INFO or _log.lib is None or fmt is None:
        return
    try:
        line = ctypes.create_string_buffer(512)
        prefix = ctypes.c_int(0)
        _log.lib.av_log_format_line(
            ctypes.c_void_p(avcl), level, fmt, ctypes.c_void_p(args), line, len(line), ctypes.byref(prefix)
        )
        text = line.value.decode("utf-8", "replace").strip()
    except Exception:  # noqa: BLE001 - a log line must never break decoding
        return
    low = text.lower()
    if any(word in low for word in DAMAGE_WORDS):
        with _log.lock:
            _log.count += 1
            _log.last = text
    if level <= AV_LOG_ERROR:
        with _log.lock:
            _log.error_count += 1
            _log.last_error = text
    if _log.echo and level <= AV_LOG_ERROR:  # --debug: FFmpeg's errors on stderr, as FFmpeg printed them
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.write(f"[FFmpeg] {text}\n")


def install(*, echo: bool = False) -> bool:
    """Route FFmpeg's log here (nothing printed; ``echo``: its errors on stderr, for --debug); call after OpenCV has
    opened a video, as OpenCV sets its own route then. True when FFmpeg's reports are counted. Whatever OpenCV's own
    FFmpeg log level (``OPENCV_FFMPEG_LOGLEVEL``, --debug), the reports are counted: a diagnostic setting had turned
    the check off, and printed FFmpeg's lines on stdout, into --json's records."""
    _log.echo = echo
    if _log.lib is None:
        if _log.searched:
            return False
        _log.searched = True
        _log.lib = _library()
        if _log.lib is None:
            return False
        _log.lib.av_log_set_callback.argtypes = [_CALLBACK]
        c = ctypes
        _log.lib.av_log_format_line.argtypes = [c.c_void_p, c.c_int, c.c_char_p, c.c_void_p, c.c_char_p, c.c_int,
                                                c.POINTER(c.c_int)]  # fmt: skip
        _log.callback = _CALLBACK(_on_log)
    _log.lib.av_log_set_level(AV_LOG_INFO)
    _log.lib.av_log_set_callback(_log.callback)
    if not _log.atexit:
        atexit.register(_uninstall)
        _log.atexit = True
    return True


def _uninstall() -> None:
    """At exit, FFmpeg's log back to its own quiet printer: a capture still being released on a daemon thread must
    not call into an interpreter that is shutting down."""
    lib = _log.lib
    if lib is None:
        return
    with contextlib.suppress(Exception):
        lib.av_log_set_level(-8)  # AV_LOG_QUIET
        default = ctypes.cast(lib.av_log_default_callback, ctypes.c_void_p)
        lib.av_log_set_callback.argtypes = [ctypes.c_void_p]
        lib.av_log_set_callback(default)


def errors() -> int:
    """How many damage reports FFmpeg has made so far in this process."""
    return _log.count


def error_lines() -> tuple[int, str]:
    """How many lines FFmpeg has logged at its error level so far, and the latest (its own words)."""
    with _log.lock:
        return _log.error_count, _log.last_error


def last() -> str:
    """FFmpeg's latest damage report (its own words), '' if none."""
    with _log.lock:
        return _log.last


def unconverted_since(count: int, *, live: bool = False) -> str | None:
    """Why a frame is not a picture, where FFmpeg's picture conversion (swscale) failed since ``count`` error lines:
    OpenCV then hands over its buffer as it was, black or whatever it held before (an interlaced H.264 video: each
    frame judged "ok" with "no part found", exit 0). ``live``: a camera's stream, set up rather than converted. None
    where it did not."""
    with _log.lock:
        grew, text = _log.error_count > count, _log.last_error
    if not grew or not text.lower().startswith("cannot convert"):
        return None
    fix = ("set the camera's encoder to progressive (not interlaced) output" if live else "convert the video first "
           "(an interlaced one: ffmpeg -i IN -vf bwdif=0 -c:v libx264 -pix_fmt yuv420p OUT.mp4)")  # fmt: skip
    why = text.splitlines()[0].strip()
    return (f"FFmpeg could not convert the decoded frame to a picture ({why}), and OpenCV handed over a frame that is "
            f"not the picture; {fix}")  # fmt: skip
