"""A video file opened for inspection: :func:`iter_video` checks and opens it at once (a :class:`SourceError`
before anything is processed) and hands its frames out as :class:`VideoFrames`, read on
:class:`~edge_runtime.video_file.VideoReader`'s thread.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from edge_runtime import ffmpeg_log
from edge_runtime.errors import SourceError
from edge_runtime.items import Item
from edge_runtime.video_file import VideoReader
from edge_runtime.video_tracks import no_video_why, video_tracks

QUIET_FFMPEG = "-8"  # the FFmpeg log level edge-infer sets without --debug (edge_runtime.cli)


def check_video_file(name: str) -> int:
    """A video path must be a regular file (a FIFO would block the decoder forever); returns its size."""
    try:
        st = os.stat(name)
    except OSError as exc:
        raise SourceError(f"{name}: cannot open ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{name}: not a regular file (a FIFO, socket or device); pass a video file")
    return st.st_size


# how long a run stopped by --max-frames waits for the reader thread's next entry (it reads ahead, so it is there
# at once but on a slow decode); unknown by then: frames may be left
END_WAIT_S = 0.5


class VideoFrames(Iterator[Item]):
    """The frames :func:`iter_video` yields, and :meth:`ended`: whether the video held no frame after the last one
    taken (a run stopped by --max-frames at a video's very end does not claim frames were left)."""

    def __init__(self, reader: VideoReader) -> None:
        self.reader, self.frames = reader, reader.items()

    def __next__(self) -> Item:
        return next(self.frames)

    def close(self) -> None:
        self.frames.close()

    def ended(self, wait_s: float = END_WAIT_S) -> bool:
        return self.reader.ends_here(wait_s)


def iter_video(
    name: str,
    prepare: Callable[..., np.ndarray],
    *,
    keep_original: bool,
    open_timeout_s: float = 10.0,
    notice: Callable[[str], None] = lambda m: None,
    cut_short: Callable[[str], None] = lambda m: None,
) -> VideoFrames:
    """Every frame of a video file, read and resized on a background thread (bounded queue).

    The file is checked and opened now (a :class:`SourceError` here, before anything is processed). Frames that
    cannot be decoded are read over up to the declared length. Told through ``cut_short`` (frames were certainly
    missed): a damaged stretch with frames after it, an AVI (whose index counts its frames) that ends early, or a
    file that grew while it was read (a recording still being written);
    through ``notice``: another container that ends before the count it declares (it may be an estimate).
    """
    import cv2

    from edge_runtime.capture import open_within
    from edge_runtime.decoder_messages import stderr_dropped
    from edge_runtime.jpeg_packets import as_jpeg_packets
    from edge_runtime.opencv_paths import opencv_path

    check_video_file(name)

    def open_video() -> Any:
        with opencv_path(name) as opencv_name:  # a name that is not UTF-8 crashed OpenCV (SIGSEGV)
            # one decoding thread: FFmpeg's report of a damaged frame then comes while that frame is read, not
            # while one of the frames before it is (see VideoReader._read)
            cap = cv2.VideoCapture(opencv_name, cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
            if not cap.isOpened():  # OpenCV's other readers, which print to stderr on a file they cannot read
                cap.release()
                with stderr_dropped():
                    cap = cv2.VideoCapture(opencv_name, cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
        if not cap.isOpened():
            cap.release()
            why = no_video_why(name)
            raise SourceError(f"{name}: cannot open as a video" + (f": {why}" if why else
                              " (corrupt, unsupported codec or not a video)"))  # fmt: skip
        # A damaged Motion-JPEG frame gets a warning, as a damaged file does; an undecodable one an item error,
        # however many come in a row (a file has no source to reconnect to; its later frames still get verdicts).
        return as_jpeg_packets(cap, name, max_undecodable_run=None, colour=keep_original)

    cap = open_within(open_video, open_timeout_s, name)
    reader = VideoReader(cap, name, prepare, keep_original=keep_original, notice=notice, cut_short=cut_short)
    # FFmpeg's reports of damage it concealed, counted (with --debug also printed on stderr); after the open, which
    # routes FFmpeg's log to OpenCV's own printer again
    reader.watch = ffmpeg_log.install(echo=os.environ.get("OPENCV_FFMPEG_LOGLEVEL") != QUIET_FFMPEG)
    reader.errors_at_start = ffmpeg_log.error_lines()[0]
    if (tracks := video_tracks(name) or 1) > 1:  # OpenCV reads the first: a second camera's parts passed unseen
        reader.tell(cut_short, f"{name}: the file holds {tracks} video tracks and only the first was inspected; save "
                    "each as its own file (ffmpeg -i IN -map 0:v:1 -c copy OUT) and inspect them all")  # fmt: skip
    return VideoFrames(reader)
