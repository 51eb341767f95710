"""What an OpenCV capture declares of its frames: their rate, size and the time of the one just read.

Each is ``None`` where the capture declares nothing usable (no property, NaN, zero), so that a caller never
computes with a made-up value.

>>> declared_fps(object()) is None   # a capture without ``get`` (a test's fake camera)
True
"""

from __future__ import annotations

import math
from typing import Any


def declared_fps(cap: Any) -> float | None:
    """The frame rate the capture declares (finite and above 0), None where it declares none."""
    import cv2

    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    except Exception:  # noqa: BLE001 - cv2.error, a capture without the property
        return None
    return fps if math.isfinite(fps) and fps > 0.0 else None


def declared_shape(cap: Any) -> tuple[int, int, int] | None:
    """The frame size (height, width, 3) the container declares, None where it declares none."""
    import cv2

    try:
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    except (cv2.error, TypeError, ValueError, OverflowError):
        return None
    return (h, w, 3) if 0 < h <= 1 << 15 and 0 < w <= 1 << 15 else None


def position_ms(cap: Any) -> float | None:
    """The time (ms) of the frame just read, None where it is unknown or the first frame's (0)."""
    import cv2

    try:
        ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
    except (cv2.error, TypeError, ValueError):
        return None
    return ms if math.isfinite(ms) and ms > 0.0 else None


def codec_tag(cap: Any) -> str | None:
    """The four-character code of the video's codec (``avc1``, ``AV01``, ``MJPG``), None where none is declared."""
    import cv2

    try:
        tag = int(cap.get(cv2.CAP_PROP_FOURCC) or 0).to_bytes(4, "little").decode("ascii")
    except Exception:  # noqa: BLE001 - cv2.error, a capture without the property, a code that is not text
        return None
    return tag.strip() if tag.strip().isalnum() else None
