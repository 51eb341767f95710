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

# Undecodable frames in a row that mean the source sends no pictures any more (a broken encoder): the read then
# fails, as FFmpeg's own decoding would, and the caller's reconnect or end-of-video handling takes over.
MAX_UNDECODABLE_RUN = 3


class JpegPackets:
    """A capture that hands out decoded Motion-JPEG frames (BGR) with what the decoder found in each.

    After each :meth:`read`: ``warning`` (the frame was decoded, but the decoder had to conceal damage) or
    ``error`` (no picture: the frame comes back as None, with ``ok`` True, so that the run goes on; the
    :data:`MAX_UNDECODABLE_RUN`-th such frame in a row is a failed read instead).
    """

    def __init__(self, cap: Any, name: str) -> None:
        self.cap, self.name = cap, name
        self.warning: str | None = None
        self.error: str | None = None
        self.undecodable_run = 0

    def read(self) -> tuple[bool, Any]:
        self.warning = self.error = None
        ok, packet = self.cap.read()
        if not ok or packet is None:
            return ok, packet
        # libjpeg-turbo itself supplies the standard Huffman tables to a frame without them (AVI1 Motion-JPEG).
        data = np.asarray(packet, np.uint8).tobytes()
        try:
            decoded = decode(data, source=self.name, colour=True)
        except ImageReadError as exc:
            self.undecodable_run += 1
            if self.undecodable_run >= MAX_UNDECODABLE_RUN:
                return False, None
            self.error = str(exc).removeprefix(f"{self.name}: ")
            return True, None
        self.undecodable_run = 0
        self.warning = decoded.warning
        return True, decoded.image

    def __getattr__(self, attr: str) -> Any:  # get, set, isOpened, release, ...: the capture's own
        return getattr(self.cap, attr)


def as_jpeg_packets(cap: Any, name: str) -> Any:
    """``cap`` read as :class:`JpegPackets` where it is a Motion-JPEG source on the FFmpeg backend (the only one
    that hands out packets); any other capture unchanged."""
    try:
        if cap.getBackendName() != "FFMPEG":
            return cap
        fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little")
    except (cv2.error, OverflowError, ValueError):
        return cap
    if fourcc.upper() != b"MJPG" or not cap.set(cv2.CAP_PROP_FORMAT, -1):
        return cap
    return JpegPackets(cap, name)
