"""Where items come from: image files, folders, globs, video files (every frame) and live sources (newest frame).

:func:`resolve_source` turns what the user typed into a :class:`SourceSpec`; :func:`iter_items` yields
:class:`Item` objects whose ``model_input`` is already decoded and resized (on worker threads for files, on
the reader thread for video), so the inference loop only stacks, normalises and runs the model.

>>> spec = resolve_source("edge_runtime/samples/test")               # doctest: +SKIP
>>> for item in iter_items(spec, prepare=model.input_u8):             # doctest: +SKIP
...     print(item.source, item.error or item.model_input.shape)
"""

from __future__ import annotations

import functools
import glob
import math
import os
import queue
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edge_runtime.decoding import decode, read_bytes
from edge_runtime.errors import DataError, DefectEdgeError, SourceError
from edge_runtime.listing import Unreadable, list_entries, list_folder, match_glob
from edge_runtime.preprocess import IMAGE_SUFFIXES
from edge_runtime.sources import LatestFrameReader, capture_factory, check_camera, is_stream_url, shown_source

IGNORED_NAMED = 3  # files not inspected that the start-up line names (the rest are counted)
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".ts"})
T = TypeVar("T")
R = TypeVar("R")


class SourceKind(str, Enum):
    IMAGES = "images"  # one file, a folder (recursive) or a glob: every item is processed
    VIDEO = "video"  # a video file: every frame is processed
    CAMERA = "camera"  # live: newest frame only
    STREAM = "stream"  # live (rtsp://, http://...): newest frame only

    @property
    def live(self) -> bool:
        return self in (SourceKind.CAMERA, SourceKind.STREAM)


@dataclass(frozen=True)
class SourceSpec:
    kind: SourceKind
    name: str  # what the user typed
    paths: tuple[Path, ...] = ()  # IMAGES only: every entry that looks like an image, readable or not
    ignored: int = 0  # files in a folder that are not images, or hidden from a pattern (not processed)
    ignored_names: tuple[str, ...] = ()  # the first few of them, to name them
    links_not_followed: int = 0  # links to folders met while listing (never followed: no loops)

    @property
    def shown(self) -> str:
        """The name records, logs and messages carry: a stream URL without its password."""
        return shown_source(self.name)


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


def _split_prepared(out: Any) -> tuple[np.ndarray, list[str] | None, Any]:
    """``prepare`` returns the model input, or (input, station-check reasons) (EdgeModel.input_and_check), or
    (input, reasons, part square) (EdgeModel.input_for_verdict)."""
    if not isinstance(out, tuple):
        return out, None, None
    return out[0], out[1] or None, out[2] if len(out) > 2 else None


def resolve_source(source: str | None = None, *, camera: str | None = None) -> SourceSpec:
    """Classify ``--source`` / ``--camera``. Raises :class:`DataError` for a path that matches nothing.

    >>> resolve_source(camera="0").kind
    <SourceKind.CAMERA: 'camera'>
    >>> resolve_source("rtsp://10.0.0.5/stream1").kind
    <SourceKind.STREAM: 'stream'>
    """
    if camera is not None:
        return SourceSpec(SourceKind.CAMERA, check_camera(camera))
    if source is None:
        raise DataError("no input: pass --source PATH|DIR|GLOB|VIDEO|URL or --camera N")
    if not source.strip():
        raise DataError("no input: --source is empty (an unset shell variable?); pass --source PATH|DIR|GLOB|VIDEO|URL")
    if is_stream_url(source):
        return SourceSpec(SourceKind.STREAM, source)
    try:
        return _resolve_path(source)
    except OSError as exc:  # a folder on the way that may not be searched (permissions), an I/O error
        raise DataError(f"{source}: cannot read ({exc.strerror or exc}); check its permissions") from exc


def _resolve_path(source: str) -> SourceSpec:
    path = Path(source)
    if path.is_dir():
        if isinstance(listed := list_entries(path), Unreadable):
            raise listed.error
        images, ignored, links = list_folder(path)
        if not images:
            raise DataError(f"{source}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return _images(source, images, ignored, links)
    if os.path.lexists(path) and (path.suffix.lower() in IMAGE_SUFFIXES or path.exists()):
        if str(path).startswith("/dev/video"):
            return SourceSpec(SourceKind.CAMERA, source)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return SourceSpec(SourceKind.IMAGES, source, (path,))  # a FIFO or dead link: an error record
        return SourceSpec(SourceKind.VIDEO, source)
    if glob.has_magic(source):
        images, ignored, links = match_glob(source)
        if not images:
            hidden = [n for n in ignored if any(part.startswith(".") for part in n.split("/"))]
            passed = f" (hidden, passed over: {', '.join(hidden[:IGNORED_NAMED])})" if hidden else ""
            raise DataError(f"{source}: the pattern matches no image file{passed}")
        return _images(source, images, ignored, links)
    hint = "; for a camera use --camera N" if source.isdigit() else ""
    raise DataError(f"{source}: no such file or folder{hint}")


def _images(source: str, images: tuple[Path, ...], ignored: list[str], links: int) -> SourceSpec:
    names = tuple(ignored[:IGNORED_NAMED])  # hidden ones first
    return SourceSpec(SourceKind.IMAGES, source, images, len(ignored), names, links_not_followed=links)


def prefetch_map(fn: Callable[[T], R], items: Iterable[T], *, workers: int, depth: int) -> Iterator[R]:
    """``map(fn, items)`` in order, computed ``depth`` items ahead on ``workers`` threads (bounded memory).

    >>> list(prefetch_map(lambda x: x * x, range(5), workers=2, depth=3))
    [0, 1, 4, 9, 16]
    """
    pending: deque[Future[R]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        try:
            for x in items:
                pending.append(pool.submit(fn, x))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()


def _failure(source: str, exc: BaseException) -> str:
    """One line for an item that could not be processed, whatever went wrong."""
    if isinstance(exc, DefectEdgeError):
        return str(exc)
    if isinstance(exc, MemoryError):
        return f"{source}: too large to process (out of memory)"
    first = (str(exc).strip().splitlines() or [""])[-1][:120]
    return f"{source}: cannot process ({type(exc).__name__}: {first})"


def load_file(path: Path, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Item:
    """Read, decode and resize one image file; any failure becomes an Item with ``error`` (never an exception)."""
    try:
        decoded = decode(read_bytes(path), source=str(path))
        # CPU time of this worker thread: the resize's own cost, not the time it waited for a core.
        t0 = time.thread_time()
        x, unlike, part = _split_prepared(prepare(decoded.image, source=str(path)))
        prep_ms = (time.thread_time() - t0) * 1000.0
        original = decoded.image if keep_original else None
        return Item(str(path), None, x, original, prep_ms, warning=decoded.warning, unlike_training=unlike, part=part)
    except Exception as exc:  # noqa: BLE001 - every per-item failure is an item error, the run goes on
        if os.path.isdir(path):  # a folder met while listing that could not be listed (asked only on failure)
            listed = list_entries(path)
            why = listed.error.strerror or listed.error if isinstance(listed, Unreadable) else "not when the run began"
            return Item(str(path), error=f"{path}: cannot list the folder ({why}); the images in it were not inspected")
        return Item(str(path), error=_failure(str(path), exc))


def iter_files(
    paths: Iterable[Path], prepare: Callable[..., np.ndarray], *, keep_original: bool, workers: int
) -> Iterator[Item]:
    """Every file, decoded ``workers``-wide in the background while the caller runs inference."""
    # Kept pictures can be large (up to the 67 MP cap each): then only a few are decoded ahead.
    depth = 2 * workers + 2 if keep_original else 8 * workers + 64
    return prefetch_map(
        lambda p: load_file(p, prepare, keep_original=keep_original), paths, workers=workers, depth=depth
    )


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
        x, unlike, part = _split_prepared(prepare(frame if gray is None else gray, source=f"{source} frame {index}"))
    except Exception as exc:  # noqa: BLE001 - a bad frame is an item error, the run goes on
        return Item(source, index, error=_failure(f"{source} frame {index}", exc))
    ms = (time.perf_counter() - t0) * 1000.0
    original = frame if keep_original else None
    return Item(source, index, x, original, ms, warning=warning, unlike_training=unlike, part=part)


def check_video_file(name: str) -> int:
    """A video path must be a regular file (a FIFO would block the decoder forever); returns its size."""
    try:
        st = os.stat(name)
    except OSError as exc:
        raise SourceError(f"{name}: cannot open ({exc.strerror or exc})") from exc
    if not stat.S_ISREG(st.st_mode):
        raise SourceError(f"{name}: not a regular file (a FIFO, socket or device); pass a video file")
    return st.st_size


def iter_video(
    name: str,
    prepare: Callable[..., np.ndarray],
    *,
    keep_original: bool,
    open_timeout_s: float = 10.0,
    notice: Callable[[str], None] = lambda m: None,
    cut_short: Callable[[str], None] = lambda m: None,
) -> Iterator[Item]:
    """Every frame of a video file, read and resized on a background thread (bounded queue).

    The file is checked and opened now (a :class:`SourceError` here, before anything is processed). Frames that
    cannot be decoded are read over up to the declared length. Told through ``cut_short`` (frames were certainly
    missed): a damaged stretch with frames after it, or an AVI (whose index counts its frames) that ends early;
    through ``notice``: another container that ends before the count it declares (it may be an estimate).
    """
    import cv2

    from edge_runtime.jpeg_packets import as_jpeg_packets
    from edge_runtime.opencv_paths import opencv_path
    from edge_runtime.sources import open_within

    check_video_file(name)

    def open_video() -> Any:
        with opencv_path(name) as opencv_name:  # a name that is not UTF-8 crashed OpenCV (SIGSEGV)
            cap = cv2.VideoCapture(opencv_name)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{name}: cannot open as a video (corrupt, unsupported codec or not a video)")
        # A damaged Motion-JPEG frame gets a warning, as a damaged file does; an undecodable one an item error,
        # however many come in a row (a file has no source to reconnect to; its later frames still get verdicts).
        return as_jpeg_packets(cap, name, max_undecodable_run=None, colour=keep_original)

    cap = open_within(open_video, open_timeout_s, name)
    return _video_frames(cap, name, prepare, keep_original=keep_original, notice=notice, cut_short=cut_short)


def _declared_end_ms(cap: Any, declared: int) -> float | None:
    """The time (ms) by which a complete video has shown its last frame: its declared length less 1.5 frames.
    A frame count that includes "repeat the last frame" entries (a frame-rate conversion to AVI) is more than the
    frames there are, and the last frame's time tells a complete video from a cut one."""
    import cv2

    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    except (cv2.error, TypeError, ValueError):
        return None
    if not (math.isfinite(fps) and fps > 0.0 and declared > 0):
        return None
    return (declared - 1.5) * 1000.0 / fps


def _declared_shape(cap: Any) -> tuple[int, int, int] | None:
    """The frame size (height, width, 3) the container declares, None where it declares none."""
    import cv2

    try:
        h, w = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
    except (cv2.error, TypeError, ValueError, OverflowError):
        return None
    return (h, w, 3) if 0 < h <= 1 << 15 and 0 < w <= 1 << 15 else None


def _position_ms(cap: Any) -> float | None:
    import cv2

    try:
        ms = float(cap.get(cv2.CAP_PROP_POS_MSEC))
    except (cv2.error, TypeError, ValueError):
        return None
    return ms if math.isfinite(ms) and ms > 0.0 else None


# failed reads in a row read over before a video counts as ended, whatever its header declares: about 9 hours at
# 30 FPS of damage, and 1-30 s of failed reads where a header declares billions of frames
MAX_UNREADABLE_RUN = 1_000_000


def _video_frames(
    cap: Any,
    name: str,
    prepare: Callable[..., np.ndarray],
    *,
    keep_original: bool,
    notice: Callable[[str], None],
    cut_short: Callable[[str], None],
) -> Iterator[Item]:
    import cv2

    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    exact_count = Path(name).suffix.lower() == ".avi"
    ends_ms = _declared_end_ms(cap, declared)
    shape = _declared_shape(cap) if keep_original else None
    # Decoded pictures are kept for --save/--show: a few frames ahead, not 64 (8K frames took 3.3 GB).
    q: queue.Queue[Item | Callable[[], None] | None] = queue.Queue(maxsize=4 if keep_original else 64)
    stop = threading.Event()

    def put(entry: Item | Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.2)
                return
            except queue.Full:
                continue

    def tell(say: Callable[[str], None], message: str) -> None:
        # in order with the frames: a run that stops before them (--max-frames, q) is not told of a later break
        put(functools.partial(say, message))

    def reader() -> None:
        index, at_ms, failed_from = 0, None, None  # failed_from: where the current run of failed reads began
        try:
            while not stop.is_set():
                try:
                    ok, frame = cap.read()
                    at_ms = _position_ms(cap) if ok else at_ms
                except cv2.error:
                    ok, frame = False, None
                if not ok:
                    # Read on over a damaged stretch, up to the declared length: the decoder finds the frames after
                    # it (a broken middle stopped the run at frame 13 of 40, with 21 readable frames unseen).
                    start = index if failed_from is None else failed_from
                    if index < declared and index - start < MAX_UNREADABLE_RUN:
                        failed_from = start
                        index += 1
                        continue
                    if 0 < start < declared and (ends_ms is None or at_ms is None or at_ms < ends_ms):
                        # a frame index (AVI) counts the frames there are; other containers may estimate the
                        # count from a longer audio track, or count frames an edit list hides: a warning only
                        if exact_count:
                            tell(
                                cut_short,
                                f"{name}: stopped at frame {start} of {declared} (truncated or corrupt video)",
                            )
                        else:
                            tell(
                                notice,
                                f"{name}: stopped at frame {start} of {declared} (truncated or corrupt video, "
                                "or a frame count the container estimated from a longer audio track or an edit list)",
                            )
                    break
                if failed_from is not None:
                    last = index - 1
                    lost = f"frame {last}" if failed_from == last else f"frames {failed_from} to {last}"
                    tell(cut_short, f"{name}: {lost} could not be decoded (a damaged stretch of the video); the "
                         "frames after it were inspected")  # fmt: skip
                    failed_from = None
                item = frame_item(name, index, frame, prepare, keep_original=keep_original, shape=shape,
                                  warning=getattr(cap, "warning", None), error=getattr(cap, "error", None),
                                  gray=getattr(cap, "gray", None))  # fmt: skip
                put(item)
                index += 1
        finally:
            cap.release()
            while True:  # the end marker must arrive, unless the consumer is gone
                try:
                    q.put(None, timeout=0.2)
                    break
                except queue.Full:
                    if stop.is_set():
                        break

    t = threading.Thread(target=reader, name=f"video {name}", daemon=True)
    t.start()
    frames = 0
    try:
        while (item := q.get()) is not None:
            if not isinstance(item, Item):
                item()  # a warning about the video, where it belongs among the frames
                continue
            frames += 1
            yield item
    finally:
        stop.set()
        t.join(2.0)
    if not frames:  # a video of no frame would pass a gate with 0 items and exit 0, as if all were well
        raise SourceError(f"{name}: no frame could be read (an empty, truncated or corrupt video); check the file")


def iter_live(reader: LatestFrameReader, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Iterator[Item]:
    """The newest frame each time the caller asks (the reader drops the rest and counts them)."""
    with reader:
        for live in reader:
            item = frame_item(reader.name, live.index, live.frame, prepare, keep_original=keep_original,
                              warning=live.warning, error=live.error, gray=live.gray)  # fmt: skip
            item.timestamp = live.timestamp
            yield item
    if reader.error is not None:
        raise reader.error


def open_live(
    spec: SourceSpec,
    *,
    on_event: Callable[[str], None],
    max_reconnects: int | None,
    colour: bool = True,
    read_timeout_s: float = 5.0,
) -> LatestFrameReader:
    """A started :class:`LatestFrameReader` for a camera or stream; raises :class:`SourceError` within seconds.
    ``colour`` False: a Motion-JPEG stream's frames are decoded to gray only (nothing shows or saves them)."""
    label = f"camera {spec.shown}" if spec.kind is SourceKind.CAMERA else spec.shown
    reader = LatestFrameReader(
        capture_factory(spec.name, colour=colour, timeout_s=read_timeout_s),
        name=label,
        max_reconnects=max_reconnects,
        open_timeout_s=max(8.0, read_timeout_s + 3.0),  # a triggered camera sends its first frame with a part
        first_frame_timeout_s=max(8.0, read_timeout_s + 3.0),
        on_event=on_event,
    )
    return reader.start()


def iter_items(
    spec: SourceSpec,
    prepare: Callable[..., np.ndarray],
    *,
    keep_original: bool = False,
    workers: int = 2,
    reader: LatestFrameReader | None = None,
    notice: Callable[[str], None] = lambda m: None,
    cut_short: Callable[[str], None] = lambda m: None,
) -> Iterator[Item]:
    """Items of any source kind; live sources need the ``reader`` from :func:`open_live`."""
    if spec.kind is SourceKind.IMAGES:
        return iter_files(spec.paths, prepare, keep_original=keep_original, workers=workers)
    if spec.kind is SourceKind.VIDEO:
        return iter_video(spec.name, prepare, keep_original=keep_original, notice=notice, cut_short=cut_short)
    if reader is None:
        raise ValueError("a live source needs the reader from open_live()")
    return iter_live(reader, prepare, keep_original=keep_original)
