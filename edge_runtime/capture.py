"""Opening a live source: ``--camera`` checked, a capture factory for a camera index, device or stream URL,
and an open bounded in time (some drivers hang in open).

>>> open_camera = capture_factory(check_camera("0"))   # doctest: +SKIP
>>> cap = open_within(open_camera, 5.0, "camera 0")     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any, Protocol

from edge_runtime.errors import SourceError, UsageError
from edge_runtime.stream_refusal import NOBODY, REFUSED, nothing_listens, options_blamed, why_unopened
from edge_runtime.stream_url import is_stream_url, opened_url, shown_source


class Capture(Protocol):
    """What a live source must offer: the subset of ``cv2.VideoCapture`` that the reader uses."""

    def read(self) -> tuple[bool, Any]: ...

    def release(self) -> None: ...


CaptureFactory = Callable[[], Capture]


def check_camera(camera: str) -> str:
    """``--camera``: an index or a device. A regular file there was read as a camera that never ends: the video
    replayed on every "reconnect", its parts counted again and again.

    >>> check_camera("0")
    '0'
    """
    if camera.isdigit():
        if int(camera) >= 1 << 31:  # OpenCV's index is a C int: a bigger one was a page of overload errors
            raise UsageError(f"--camera {camera}: not a camera index; use a small number (0, 1, ...) or a device")
        return camera
    if not camera.strip():
        raise UsageError("--camera is empty (an unset shell variable?); pass --camera N or --camera /dev/videoN")
    path = camera
    if camera[:5].lower() == "file:":  # file:///x.avi, file:x.avi: a file (or none), never a camera
        path = urllib.parse.urlsplit(camera).path
        if not re.search(r"%0?\d*d", path):  # else an image sequence, as below (%03d is no URL escape)
            path = urllib.parse.unquote(path)
            raise UsageError(f"--camera {camera}: names a file, not a camera; pass a video file with --source {path}")
    with contextlib.suppress(OSError):  # a path that does not exist fails to open as a camera: exit 5
        if stat.S_ISREG(os.stat(path).st_mode):
            raise UsageError(f"--camera {camera}: is a file, not a camera; pass a video file with --source {path}")
    if re.search(r"%0?\d*d", path):  # OpenCV reads img_%03d.jpg as an image sequence, replayed on reconnects
        with contextlib.suppress(TypeError, ValueError, OSError):
            if any(os.path.isfile(path % i) for i in range(5)):
                raise UsageError(
                    f"--camera {camera}: is a numbered sequence of image files, not a camera; pass them with "
                    "--source 'DIR/*.jpg'"
                )
    return camera


def capture_factory(source: str, *, timeout_s: float = 5.0, colour: bool = True) -> CaptureFactory:
    """A factory that opens a camera index (``"0"``), a device path (``/dev/video2``) or a stream URL.

    Stream opens and reads are bounded by ``timeout_s`` (FFmpeg backend); a camera index uses V4L2 on Linux
    so OpenCV does not try every backend in turn. The factory raises :class:`SourceError` if the source
    cannot be opened. ``colour`` False: a Motion-JPEG stream's frames come as gray, decoded without their colour
    planes, for a run that shows and saves no pictures.

    >>> open_camera = capture_factory("0")   # doctest: +SKIP
    >>> cap = open_camera()                  # doctest: +SKIP
    """
    import sys

    import cv2

    from edge_runtime.jpeg_packets import as_jpeg_packets
    from edge_runtime.opencv_paths import opencv_path

    asked: list[str | None] = []  # the camera's refusal, asked once: each reopen of a stream had asked again (a
    # second failed login each time, on a camera that locks an account after a few, and up to 3 s more a reopen)

    def open_capture() -> Capture:
        ms = int(timeout_s * 1000)
        open_ms = max(ms, 5000)  # opening probes the stream's first frames: a short read timeout is no open timeout
        if source.isdigit():
            backend = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
            cap = cv2.VideoCapture(int(source), backend)
        elif is_stream_url(source):
            # one decoding thread: FFmpeg's report of a frame it patched up comes while that frame is read (with a
            # thread per core it came a read early or late, and the warning went to a neighbouring frame)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms,
                      cv2.CAP_PROP_N_THREADS, 1]  # fmt: skip
            cap = cv2.VideoCapture(opened_url(source), cv2.CAP_FFMPEG, params)
        else:
            with opencv_path(source) as name:  # a name that is not UTF-8 crashed OpenCV (SIGSEGV)
                cap = cv2.VideoCapture(name)
        if not cap.isOpened():
            cap.release()
            what = f"camera {source}" if source.isdigit() or source.startswith("/dev/") else shown_source(source)
            said = _why_unopened(source, asked) if is_stream_url(source) else None
            if said is not None:
                raise SourceError(f"{what}: {said}")
            raise SourceError(
                f"{what}: cannot open camera or stream (check the index/path/URL and that no other program holds it)"
            )
        if not source.isdigit():
            # A damaged frame of a network camera's MJPEG gets a warning.
            cap = as_jpeg_packets(cap, shown_source(source), colour=colour)
        # A camera keeps a small queue of its own; ask for one buffer (ignored where unsupported).
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        return cap

    return open_capture


def _why_unopened(url: str, asked: list[str | None]) -> str | None:
    """Why the stream ``url`` did not open, where it shows. The camera is asked once (``asked``): each reopen had
    asked again, a failed login each time on a camera that locks an account after a few. Not asked yet while
    nothing listened: a camera that rebooted and came back refusing (a password reset, a stream path changed by
    its firmware) had been "cannot open camera or stream (check ...)" at every reopen after "nothing listens"."""
    if not asked:
        said = why_unopened(url) or options_blamed(url)
        if said is None or not said.startswith(NOBODY):
            asked.append(said)
        return said
    if asked[0] is not None and re.match(rf"{REFUSED}\w+ 40[13] ", asked[0]):
        return asked[0]  # still so: a sign-in refused stays refused (a busy camera may be offline now)
    return nothing_listens(url)  # a camera off the network while a dropped stream is reopened: told at each attempt


def open_within(factory: CaptureFactory, timeout_s: float, name: str) -> Capture:
    """Call ``factory`` on a helper thread and give up after ``timeout_s`` (some drivers hang in open)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["cap"] = factory()
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box["error"] = exc

    t = threading.Thread(target=target, name=f"open {name}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise SourceError(f"{name}: did not open within {timeout_s:g} s (camera busy, absent or stream unreachable)")
    if "error" in box:
        err = box["error"]
        if isinstance(err, SourceError):
            raise err
        raise SourceError(f"{name}: cannot open ({type(err).__name__}: {err})") from err
    return box["cap"]


def decoder_threads(cap: Any) -> int:
    """The decoding threads of an FFmpeg capture: frames a report of damage may come ahead of."""
    import cv2

    try:
        return max(1, min(64, int(cap.get(cv2.CAP_PROP_N_THREADS) or 1)))
    except Exception:  # noqa: BLE001 - a capture without the property
        return 1
