"""File names OpenCV's video I/O can take.

OpenCV converts a Python ``str`` path to UTF-8 for its C++ API; a name that is not valid UTF-8 (bytes a camera or
an old file system wrote, which Python keeps as surrogate escapes) makes ``cv2.VideoCapture`` and
``cv2.VideoWriter`` crash the whole process with SIGSEGV. Such a file is opened through a symbolic link with a
plain name in a private temporary folder; FFmpeg holds the file open from then on, so the link goes at once.

>>> with opencv_path(Path("line3.avi")) as name:   # doctest: +SKIP
...     cap = cv2.VideoCapture(name)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


def is_utf8(name: str) -> bool:
    """Whether ``name`` encodes as UTF-8 (False for a name holding surrogate escapes of undecodable bytes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@contextlib.contextmanager
def opencv_path(path: str | os.PathLike[str]) -> Iterator[str]:
    """A name for ``path`` that OpenCV can take, valid inside the block: the path itself when it is UTF-8, else a
    link to it, named ``video`` plus the path's suffix (OpenCV picks the container by it). Open the capture or
    writer inside the block; the link is removed after it."""
    name = os.fspath(path)
    if is_utf8(name):
        yield name
        return
    suffix = Path(name).suffix
    folder = tempfile.mkdtemp(prefix="defect-edge-")
    try:
        link = os.path.join(folder, "video" + (suffix if is_utf8(suffix) else ""))
        os.symlink(os.path.abspath(name), link)
        yield link
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def video_frame_count(path: str | os.PathLike[str]) -> int:
    """The frame count a video file declares (0 where it cannot be opened): OpenCV's writer reports no failed
    write, so a written video is read back with this."""
    import cv2

    with opencv_path(path) as name:
        cap = cv2.VideoCapture(name)
    try:
        # a header of zeros reads as a negative count (-192153584101141): none
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)) if cap.isOpened() else 0
    finally:
        cap.release()
