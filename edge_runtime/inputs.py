"""Where items come from: image files, folders, globs, video files (every frame) and live sources (newest frame).

:func:`resolve_source` turns what the user typed into a :class:`SourceSpec`; :func:`iter_items` yields
:class:`Item` objects whose ``model_input`` is already decoded and resized (on worker threads for files, on
the reader thread for video), so the inference loop only stacks, normalises and runs the model.

>>> spec = resolve_source("edge_runtime/samples/test")               # doctest: +SKIP
>>> for item in iter_items(spec, prepare=model.input_u8):             # doctest: +SKIP
...     print(item.source, item.error or item.model_input.shape)
"""

from __future__ import annotations

import glob
import os
import queue
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

from edge_runtime.errors import DataError, DefectEdgeError, SourceError
from edge_runtime.preprocess import IMAGE_SUFFIXES, decode_image
from edge_runtime.sources import LatestFrameReader, capture_factory, is_stream_url

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
    paths: tuple[Path, ...] = ()  # IMAGES only
    ignored: int = 0  # files in a folder that are not images (not processed)


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


def resolve_source(source: str | None = None, *, camera: str | None = None) -> SourceSpec:
    """Classify ``--source`` / ``--camera``. Raises :class:`DataError` for a path that matches nothing.

    >>> resolve_source(camera="0").kind
    <SourceKind.CAMERA: 'camera'>
    >>> resolve_source("rtsp://10.0.0.5/stream1").kind
    <SourceKind.STREAM: 'stream'>
    """
    if camera is not None:
        return SourceSpec(SourceKind.CAMERA, camera)
    if source is None:
        raise DataError("no input: pass --source PATH|DIR|GLOB|VIDEO|URL or --camera N")
    if is_stream_url(source):
        return SourceSpec(SourceKind.STREAM, source)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        images = tuple(p for p in files if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"{source}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return SourceSpec(SourceKind.IMAGES, source, images, ignored=len(files) - len(images))
    if path.exists():
        if str(path).startswith("/dev/video"):
            return SourceSpec(SourceKind.CAMERA, source)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return SourceSpec(SourceKind.IMAGES, source, (path,))
        return SourceSpec(SourceKind.VIDEO, source)
    if glob.has_magic(source):
        matches = sorted(Path(p) for p in glob.glob(source, recursive=True) if os.path.isfile(p))
        if not matches:
            raise DataError(f"{source}: the pattern matches no file")
        return SourceSpec(SourceKind.IMAGES, source, tuple(matches))
    hint = "; for a camera use --camera N" if source.isdigit() else ""
    raise DataError(f"{source}: no such file or folder{hint}")


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


def load_file(path: Path, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Item:
    """Read, decode and resize one image file; an unreadable file becomes an Item with ``error``."""
    try:
        gray = decode_image(path.read_bytes(), source=str(path))
        # CPU time of this worker thread: the resize's own cost, not the time it waited for a core.
        t0 = time.thread_time()
        x = prepare(gray, source=str(path))
        return Item(str(path), None, x, gray if keep_original else None, (time.thread_time() - t0) * 1000.0)
    except OSError as exc:
        return Item(str(path), error=f"{path}: cannot read file ({exc.strerror or exc})")
    except DefectEdgeError as exc:
        return Item(str(path), error=str(exc))


def iter_files(
    paths: Iterable[Path], prepare: Callable[..., np.ndarray], *, keep_original: bool, workers: int
) -> Iterator[Item]:
    """Every file, decoded ``workers``-wide in the background while the caller runs inference."""
    return prefetch_map(
        lambda p: load_file(p, prepare, keep_original=keep_original), paths, workers=workers, depth=8 * workers + 64
    )


def frame_item(source: str, index: int, frame: Any, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Item:
    t0 = time.perf_counter()
    try:
        x = prepare(frame, source=f"{source} frame {index}")
    except DefectEdgeError as exc:
        return Item(source, index, error=str(exc))
    return Item(source, index, x, frame if keep_original else None, (time.perf_counter() - t0) * 1000.0)


def iter_video(
    name: str, prepare: Callable[..., np.ndarray], *, keep_original: bool, open_timeout_s: float = 10.0
) -> Iterator[Item]:
    """Every frame of a video file, read and resized on a background thread (bounded queue)."""
    import cv2

    from edge_runtime.sources import open_within

    def open_video() -> Any:
        cap = cv2.VideoCapture(name)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{name}: cannot open as a video (corrupt, unsupported codec or not a video)")
        return cap

    cap = open_within(open_video, open_timeout_s, name)
    q: queue.Queue[Item | None] = queue.Queue(maxsize=64)
    stop = threading.Event()

    def reader() -> None:
        index = 0
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    break
                item = frame_item(name, index, frame, prepare, keep_original=keep_original)
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                index += 1
        finally:
            cap.release()
            q.put(None)

    t = threading.Thread(target=reader, name=f"video {name}", daemon=True)
    t.start()
    try:
        while (item := q.get()) is not None:
            yield item
    finally:
        stop.set()
        t.join(2.0)


def iter_live(reader: LatestFrameReader, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Iterator[Item]:
    """The newest frame each time the caller asks (the reader drops the rest and counts them)."""
    with reader:
        for live in reader:
            item = frame_item(reader.name, live.index, live.frame, prepare, keep_original=keep_original)
            item.timestamp = live.timestamp
            yield item
    if reader.error is not None:
        raise reader.error


def open_live(spec: SourceSpec, *, on_event: Callable[[str], None], max_reconnects: int | None) -> LatestFrameReader:
    """A started :class:`LatestFrameReader` for a camera or stream; raises :class:`SourceError` within seconds."""
    label = f"camera {spec.name}" if spec.kind is SourceKind.CAMERA else spec.name
    reader = LatestFrameReader(
        capture_factory(spec.name),
        name=label,
        max_reconnects=max_reconnects,
        open_timeout_s=8.0,
        first_frame_timeout_s=8.0,
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
) -> Iterator[Item]:
    """Items of any source kind; live sources need the ``reader`` from :func:`open_live`."""
    if spec.kind is SourceKind.IMAGES:
        return iter_files(spec.paths, prepare, keep_original=keep_original, workers=workers)
    if spec.kind is SourceKind.VIDEO:
        return iter_video(spec.name, prepare, keep_original=keep_original)
    if reader is None:
        raise ValueError("a live source needs the reader from open_live()")
    return iter_live(reader, prepare, keep_original=keep_original)
