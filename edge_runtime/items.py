"""One image or frame on its way to a verdict (:class:`Item`), and how a decoded picture becomes one.

Shared by every source kind: files (edge_runtime.inputs), video files (edge_runtime.video_file) and live sources.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.errors import DefectEdgeError, resource_error
from edge_runtime.summary import reasons_warning


@dataclass
class Item:
    """One image or frame on its way to a verdict; ``error`` is set (and ``model_input`` None) if unreadable."""

    source: str
    frame: int | None = None
    model_input: np.ndarray | None = None  # uint8 (size, size), from ``prepare``
    original: np.ndarray | None = None  # the decoded picture, kept only when it will be drawn or saved
    prep_ms: float = 0.0
    error: str | None = None
    timestamp: float | None = None  # live frames: time.monotonic() at capture
    warning: str | None = None  # a verdict is given, but the decoder concealed damage (corrupt JPEG data)
    unlike_training: list[str] | None = None  # station check: why the item looks unlike the training images
    part: Any = None  # edge_runtime.symmetry.PartPatch for the model's symmetry look (None: not cut, or no part)
    picture_shape: tuple[int, ...] | None = None  # an undecodable frame: the size its container declares


def split_prepared(out: Any) -> tuple[np.ndarray, list[str] | None, Any]:
    """``prepare`` returns the model input, or (input, station-check reasons) (EdgeModel.input_and_check), or
    (input, reasons, part square) (EdgeModel.input_for_verdict)."""
    if not isinstance(out, tuple):
        return out, None, None
    return out[0], out[1] or None, out[2] if len(out) > 2 else None


def with_warning(first: str | None, second: str | None) -> str | None:
    """Two warnings of one item as one (either may be None)."""
    return f"{first}; {second}" if first and second else first or second


def failure(source: str, exc: BaseException) -> str:
    """One line for an item that could not be processed, whatever went wrong."""
    if isinstance(exc, DefectEdgeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{source}: too large to process (out of memory)"
    first = (str(exc).strip().splitlines() or [""])[-1][:120]
    return f"{source}: cannot process ({type(exc).__name__}: {first})"


def frame_item(
    source: str, index: int, frame: Any, prepare: Callable[..., np.ndarray], *, keep_original: bool,
    warning: str | None = None, error: str | None = None, shape: tuple[int, ...] | None = None,
    gray: np.ndarray | None = None,
) -> Item:  # fmt: skip
    """One video or live frame on its way to a verdict. ``warning``/``error``: what a Motion-JPEG source's decoder
    said of it (:class:`edge_runtime.jpeg_packets.JpegPackets`; an error comes without a frame, and ``shape``, the
    frame size the container declares, sizes its placeholder in a saved video). ``gray``: the same frame decoded
    to gray, which the model reads when given (a colour Motion-JPEG frame kept for --save: see JpegPackets)."""
    if error is not None or frame is None:
        return Item(source, index, error=f"{source} frame {index}: {error or 'no picture'}", picture_shape=shape)
    t0 = time.perf_counter()
    try:
        x, unlike, part = split_prepared(prepare(frame if gray is None else gray, source=f"{source} frame {index}"))
    except Exception as exc:  # noqa: BLE001 - a bad frame is an item error, the run goes on
        if (exhausted := resource_error(exc)) is not None:  # the machine's limit, not the frame's: stop the run
            raise exhausted from exc
        return Item(source, index, error=failure(f"{source} frame {index}", exc))
    ms = (time.perf_counter() - t0) * 1000.0
    original = frame if keep_original else None
    warning = with_warning(warning, reasons_warning(unlike))
    return Item(source, index, x, original, ms, warning=warning, unlike_training=unlike, part=part)
