"""Motion-JPEG read as its JPEG packets and decoded here, so that a damaged frame gets a warning as a file does.

OpenCV's FFmpeg backend conceals a damaged frame of an MJPEG stream or video (a network camera over HTTP, an
MJPEG ``.avi``): zeroed or cut-off data comes back as a good frame, and FFmpeg's only sign is a line on stderr.
A verdict on such a frame may be wrong, and nothing would say so. Asked for the packets instead
(``CAP_PROP_FORMAT`` = -1, FFmpeg backend only), each frame is one JPEG, decoded by
:func:`edge_runtime.decoding.decode`: libjpeg's complaints and a missing end marker become the item's
``warning``, an undecodable frame becomes an item error, and the run goes on.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from edge_runtime.decoding import decode
from edge_runtime.errors import ImageReadError
from edge_runtime.image_pages import pages_note

# Undecodable frames in a row that mean the source sends no pictures any more (a broken encoder): the read then
# fails, as FFmpeg's own decoding would, and the caller's reconnect or end-of-video handling takes over.
MAX_UNDECODABLE_RUN = 3


class JpegPackets:
    """A capture that hands out decoded Motion-JPEG frames (BGR) with what the decoder found in each.

    After each :meth:`read`: ``warning`` (the frame was decoded, but the decoder had to conceal damage) or
    ``error`` (no picture: the frame comes back as None, with ``ok`` True, so that the run goes on; the
    ``max_undecodable_run``-th such frame in a row is a failed read instead; None: never, as for a video file,
    which has no source to reconnect to and whose later frames still deserve a verdict).

    ``colour`` False hands out 8-bit gray frames: the decoder then skips the colour planes (4x faster on a
    4000x3000 frame), for a run that shows and saves no pictures and only needs the gray the model reads. With
    ``colour``, ``gray`` holds that same gray decode beside the colour frame: the model reads it either way, so
    a verdict does not depend on whether the run keeps pictures (gray from the decoded colours differs by a grey
    level here and there, and a station-check range or the symmetry look can turn on one).
    """

    def __init__(
        self,
        cap: Any,
        name: str,
        *,
        max_undecodable_run: int | None = MAX_UNDECODABLE_RUN,
        colour: bool = True,
        turn: int | None = None,
    ) -> None:
        self.cap, self.name, self.max_undecodable_run = cap, name, max_undecodable_run
        self.colour = colour
        self.turn = turn  # cv2.rotate's code for the stream's rotation tag: each picture is turned so
        self.gray: np.ndarray | None = None  # with ``colour``: the frame decoded to gray as well (see read)
        self.warning: str | None = None
        self.error: str | None = None
        self.undecodable_run = 0
        self.packet: bytes | None = None  # the last frame's JPEG bytes, as the file holds them (avi_index)
        try:  # what the container says a frame's height is (0: unknown, as for most streams)
            self.frame_height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
        except (cv2.error, AttributeError, OverflowError, TypeError, ValueError):
            self.frame_height = 0

    def read(self) -> tuple[bool, Any]:
        self.warning = self.error = None
        self.gray = self.packet = None
        ok, packet = self.cap.read()
        if not ok or packet is None:
            return ok, packet
        # libjpeg-turbo itself supplies the standard Huffman tables to a frame without them (AVI1 Motion-JPEG).
        data = self.packet = np.asarray(packet, np.uint8).tobytes()
        try:
            image, self.warning = self._picture(data, colour=self.colour)
            if self.colour:
                self.gray = self._picture(data, colour=False)[0]
        except ImageReadError as exc:
            self.undecodable_run += 1
            if self.max_undecodable_run is not None and self.undecodable_run >= self.max_undecodable_run:
                return False, None
            self.error = str(exc).removeprefix(f"{self.name}: ")
            return True, None
        self.undecodable_run = 0
        if self.turn is not None:
            image = cv2.rotate(image, self.turn)
            self.gray = None if self.gray is None else cv2.rotate(self.gray, self.turn)
        return True, image

    def _picture(self, data: bytes, *, colour: bool) -> tuple[np.ndarray, str | None]:
        """The frame and its warning. An interlaced frame (analog capture) comes as two JPEG fields of half the
        frame's height in one packet: both are decoded and woven together, as FFmpeg's own decoder does."""
        first = decode(data, source=self.name, colour=colour, pages=False)
        if self.frame_height <= 0 or abs(2 * first.image.shape[0] - self.frame_height) > 2:
            # a whole frame: a second picture in its packet is not a field, and is not judged
            several = pages_note(data)
            return first.image, "; ".join(w for w in (first.warning, several) if w) or None
        second_at = data.find(b"\xff\xd8", data.find(b"\xff\xd9") + 2)
        if second_at < 0:
            return first.image, first.warning
        second = decode(data[second_at:], source=self.name, colour=colour)
        if second.image.shape != first.image.shape:
            raise ImageReadError(f"{self.name}: interlaced frame with fields of different sizes")
        return weave(first.image, second.image), first.warning or second.warning

    def __getattr__(self, attr: str) -> Any:  # get, set, isOpened, release, ...: the capture's own
        return getattr(self.cap, attr)


def weave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two fields as one frame, rows taken in turn. Which field holds the top row is taken from the picture
    itself (the order whose neighbouring rows differ least), not from the AVI1 marker, which writers fill in
    differently.

    >>> rows = np.arange(8, dtype=np.uint8).reshape(8, 1) * 30
    >>> weave(rows[1::2], rows[0::2]).ravel().tolist()
    [0, 30, 60, 90, 120, 150, 180, 210]
    """
    out = [np.empty((2 * a.shape[0], *a.shape[1:]), a.dtype) for _ in range(2)]
    out[0][0::2], out[0][1::2] = a, b
    out[1][0::2], out[1][1::2] = b, a
    roughness = [float(np.abs(np.diff(o.astype(np.int16), axis=0)).mean()) for o in out]
    return out[int(roughness[1] < roughness[0])]


def as_jpeg_packets(
    cap: Any, name: str, *, max_undecodable_run: int | None = MAX_UNDECODABLE_RUN, colour: bool = True
) -> Any:
    """``cap`` read as :class:`JpegPackets` where it is a Motion-JPEG source on the FFmpeg backend (the only one
    that hands out packets); any other capture unchanged."""
    try:
        if cap.getBackendName() != "FFMPEG":
            return cap
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    except (cv2.error, OverflowError, ValueError):
        return cap
    if fourcc.upper() != b"MJPG":
        return cap
    # OpenCV turns each frame by the stream's rotation tag (a phone's .mov), and turned the packet too: a byte
    # array reversed (180) or stood on end (90) is no JPEG, and every frame was "not a readable image", exit 3.
    # The packets are read as stored and each decoded picture is turned as OpenCV would have turned it.
    turn = ROTATIONS.get(_rotation_tag(cap))
    if turn is not None and not cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0):
        return cap
    if not cap.set(cv2.CAP_PROP_FORMAT, -1):
        return cap
    return JpegPackets(cap, name, max_undecodable_run=max_undecodable_run, colour=colour, turn=turn)


# How OpenCV's FFmpeg backend turns a frame for a stream's rotation tag (degrees).
ROTATIONS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def _rotation_tag(cap: Any) -> int:
    try:
        return round(float(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0.0)) % 360
    except (cv2.error, OverflowError, TypeError, ValueError):
        return 0
