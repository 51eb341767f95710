"""Where items come from: image files, folders, globs, video files (every frame) and live sources (newest frame).

:func:`resolve_source` turns what the user typed into a :class:`SourceSpec`; :func:`iter_items` yields
:class:`Item` objects whose ``model_input`` is already decoded and resized (on worker threads for files, on
the reader thread for video), so the inference loop only stacks, normalises and runs the model.

>>> spec = resolve_source("edge_runtime/samples/test")               # doctest: +SKIP
>>> for item in iter_items(spec, prepare=model.input_u8):             # doctest: +SKIP
...     print(item.source, item.error or item.model_input.shape)
"""

from __future__ import annotations

import errno
import glob
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

import numpy as np

from edge_runtime.capture import capture_factory, check_camera
from edge_runtime.decoding import decode, read_bytes
from edge_runtime.errors import NAME_TOO_LONG, DataError, installed_copy_hint, printable, resource_error
from edge_runtime.items import Item, failure, frame_item, split_prepared, with_warning
from edge_runtime.listing import Unreadable, list_entries, list_folder, match_glob
from edge_runtime.outage import STEADY_AFTER
from edge_runtime.preprocess import IMAGE_SUFFIXES
from edge_runtime.sources import LatestFrameReader
from edge_runtime.stream_refusal import one_picture
from edge_runtime.stream_url import is_stream_url, not_a_stream, shown_source, url_scheme
from edge_runtime.summary import plural, reasons_warning
from edge_runtime.video_open import iter_video

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
        if exc.errno == errno.ENAMETOOLONG:  # no permission to check: the name cannot exist
            raise DataError(f"{source}: {NAME_TOO_LONG}; check the path") from exc
        raise DataError(f"{source}: cannot read ({exc.strerror or exc}); check its permissions") from exc


def _resolve_path(source: str) -> SourceSpec:
    path = Path(source)
    if path.is_dir():
        if isinstance(listed := list_entries(path), Unreadable):
            raise listed.error
        images, ignored, links = list_folder(path)
        if not images:  # what it holds instead is named: a folder with a video in it said "no images" alone
            named = ", ".join(printable(n) for n in ignored[:IGNORED_NAMED])
            named += ", ..." if len(ignored) > IGNORED_NAMED else ""
            videos = [n for n in ignored if Path(n).suffix.lower() in VIDEO_SUFFIXES]
            held = f"; it holds {plural(len(ignored), 'other file')}: {named}" if ignored else ""
            hint = f" (a video is inspected with --source {printable(str(path / videos[0]))})" if videos else ""
            raise DataError(f"{source}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}){held}{hint}")
        return _images(source, images, ignored, links)
    if os.path.lexists(path) and (path.suffix.lower() in IMAGE_SUFFIXES or path.exists()):
        if str(path).startswith("/dev/video"):
            return SourceSpec(SourceKind.CAMERA, source)
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return SourceSpec(SourceKind.IMAGES, source, (path,))  # a FIFO or dead link: an error record
        return SourceSpec(SourceKind.VIDEO, source)
    if url_scheme(source) is not None:  # a misspelt stream URL, its query read as a pattern: no file can match it
        raise DataError(not_a_stream(source))
    if glob.has_magic(source):
        images, ignored, links = match_glob(source)
        if not images:
            hidden = [n for n in ignored if any(part.startswith(".") for part in n.split("/"))]
            passed = f" (hidden, passed over: {', '.join(hidden[:IGNORED_NAMED])})" if hidden else ""
            raise DataError(f"{source}: the pattern matches no image file{passed}")
        return _images(source, images, ignored, links)
    hint = "; for a camera use --camera N" if source.isdigit() else installed_copy_hint(source) or _numbered(source)
    raise DataError(f"{source}: no such file or folder{hint}")


_PRINTF_NUMBER = re.compile(r"%0?\d*d")  # FFmpeg's (and OpenCV's) numbered-file pattern: frame%04d.png


def _numbered(source: str) -> str:
    """For an image sequence named as FFmpeg names one (``seq/%04d.png``): the pattern edge-infer reads instead. It
    said "no such file or folder" alone beside a folder of the very files."""
    name = os.path.basename(source)
    if not (number := _PRINTF_NUMBER.search(name)):
        return ""
    pattern = os.path.join(os.path.dirname(source), _PRINTF_NUMBER.sub("*", name))
    images = match_glob(pattern)[0]
    matched = f" ({plural(len(images), 'image')} match it)" if images else ""
    return f"; a numbered sequence of image files ({number.group()}) is passed as --source '{pattern}'{matched}"


def listing_line(spec: SourceSpec) -> str:
    """``DIR: 17 images (2 files not inspected, ...)``: what a folder or pattern gave."""
    more = ", ..." if spec.ignored > len(spec.ignored_names) else ""
    named = ", ".join(printable(n) for n in spec.ignored_names) + more
    ignored = f" ({plural(spec.ignored, 'file')} not inspected, not images or hidden: {named})"
    links = f" ({plural(spec.links_not_followed, 'link')} to folders not followed)"
    shown = (ignored if spec.ignored else "") + (links if spec.links_not_followed else "")
    return f"{printable(spec.name)}: {plural(len(spec.paths), 'image')}{shown}"


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


def load_file(path: Path, prepare: Callable[..., np.ndarray], *, keep_original: bool) -> Item:
    """Read, decode and resize one image file; any failure becomes an Item with ``error`` (never an exception)."""
    try:
        decoded = decode(read_bytes(path), source=str(path))
        # CPU time of this worker thread: the resize's own cost, not the time it waited for a core.
        t0 = time.thread_time()
        x, unlike, part = split_prepared(prepare(decoded.image, source=str(path)))
        prep_ms = (time.thread_time() - t0) * 1000.0
        original = decoded.image if keep_original else None
        warning = with_warning(decoded.warning, reasons_warning(unlike))
        return Item(str(path), None, x, original, prep_ms, warning=warning, unlike_training=unlike, part=part)
    except Exception as exc:  # noqa: BLE001 - every per-item failure is an item error, the run goes on
        if (exhausted := resource_error(exc)) is not None:  # no descriptor or thread left: not this file's fault
            raise exhausted from exc  # (986 of 2000 good images were "cannot read file", exit 0)
        if os.path.isdir(path):  # a folder met while listing that could not be listed (asked only on failure)
            listed = list_entries(path)
            why = listed.error.strerror or listed.error if isinstance(listed, Unreadable) else "not when the run began"
            return Item(str(path), error=f"{path}: cannot list the folder ({why}); the images in it were not inspected")
        return Item(str(path), error=failure(str(path), exc))


def iter_files(
    paths: Iterable[Path], prepare: Callable[..., np.ndarray], *, keep_original: bool, workers: int
) -> Iterator[Item]:
    """Every file, decoded ``workers``-wide in the background while the caller runs inference."""
    # Kept pictures can be large (up to the 67 MP cap each): then only a few are decoded ahead.
    depth = 2 * workers + 2 if keep_original else 8 * workers + 64
    return prefetch_map(
        lambda p: load_file(p, prepare, keep_original=keep_original), paths, workers=workers, depth=depth
    )


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
        read_timeout_s=read_timeout_s if spec.kind is SourceKind.STREAM else None,  # a camera's read has none
        steady_after=STEADY_AFTER,  # a camera that hangs soon after every reopen uses up --max-reconnects
        one_picture=(lambda: one_picture(spec.name)) if spec.kind is SourceKind.STREAM else None,
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
