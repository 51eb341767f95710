"""The outputs of one ``edge-infer`` run (``--output`` files, stdout, ``--show``, ``--save``), opened from its
config and closed together; a saved video's frame count is read back at the end."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_runtime.errors import OutputError, UsageError
from edge_runtime.outputs import RECORD_KEYS, FileSink, JsonLinesSink

if TYPE_CHECKING:
    from edge_runtime.infer import InferConfig

Log = Callable[[str], None]


@dataclass
class Outputs:
    """The sinks, window and saver of one run, opened from the config and closed together."""

    files: list = field(default_factory=list)  # --output
    stdout: JsonLinesSink | None = None  # --json, or the human lines
    window: object | None = None
    saver: object | None = None
    wants_pictures: bool = False  # a listener keeps the decoded pictures
    begun: bool = False  # the source is open and the run's records may follow

    def begin(self) -> None:
        """The source gave its first item: the ``--output`` files are emptied for this run's records (see
        FileSink.begin). Called before each batch; only the first call does anything."""
        if self.begun:
            return
        self.begun = True
        for s in self.files:
            s.begin()

    @property
    def needs_picture(self) -> bool:
        return self.window is not None or self.saver is not None or self.wants_pictures

    def close(self) -> None:
        """Close everything, each even when another failed (a .json array's closing bracket on a FIFO whose reader
        left kept the saved video unfinished and its lock held); the first failure is raised after. A saved video
        that came out short (full disk) raises :class:`OutputError`."""
        closes = [s.close for s in self.files]
        closes += [self.stdout.close] if self.stdout is not None else []  # a file it is redirected to, deleted
        closes += [self.window.close] if self.window is not None else []
        closes += [self.saver.close, lambda: check_saved_video(self.saver)] if self.saver is not None else []
        first: BaseException | None = None
        for close in closes:
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - the others are still closed; the first failure is raised
                first = first or exc
        if first is not None:
            raise first


def video_fps(name: str) -> float | None:
    """The frame rate a video file declares (None where it declares none usable)."""
    import cv2

    from edge_runtime.opencv_paths import opencv_path

    with opencv_path(name) as opencv_name:
        cap = cv2.VideoCapture(opencv_name)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if 0.5 <= fps <= 1000.0 else None


def check_saved_video(saver: Any) -> None:
    """``--save OUT.mp4``: OpenCV's writer reports no write error, so read the frame count back."""
    if not getattr(saver, "is_video", False) or not getattr(saver, "count", 0) or getattr(saver, "moved", False):
        return
    from edge_runtime.opencv_paths import video_frame_count
    from edge_runtime.summary import plural

    got = video_frame_count(saver.target)
    if got >= saver.count:
        return
    if header_zeroed(saver.target):
        # logrotate's copytruncate: it was blamed on "a full disk, a file-size limit (ulimit -f) or a folder not
        # writable", and the user looked for a fault of the machine
        raise OutputError(f"{saver.target}: the saved video was emptied by another program while edge-infer wrote it "
                          "(logrotate's copytruncate, or `> FILE`): its header is gone and it does not play; keep "
                          "--save videos out of log rotation, or --save to a folder")  # fmt: skip
    raise OutputError(
        f"{saver.target}: the saved video holds {got} of {plural(saver.count, 'frame')} (a full disk, a file-size "
        "limit (ulimit -f) or a folder not writable)"
    )


def header_zeroed(path: Path) -> bool:
    """Whether a written video begins with zero bytes: its writer puts the container's header there first ("RIFF",
    an MP4 box's size), and writes on at its own offset after another program empties the file, leaving a hole of
    zeros before the rest (a full disk or a size limit leaves a short file, never a hole)."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == bytes(4)
    except OSError:
        return False


def open_outputs(cfg: InferConfig, log: Log) -> Outputs:
    out = Outputs(wants_pictures=bool(getattr(cfg.listener, "wants_pictures", False)) or cfg.heatmap)
    if cfg.json_stdout or not cfg.quiet:
        out.stdout = JsonLinesSink(sys.stdout, human=not cfg.json_stdout)
    try:
        if cfg.output is not None:
            out.files.append(open_file_sink(cfg.output, append=cfg.append_output))
        if cfg.show:
            from edge_runtime.annotate import Window

            out.window = Window(log)
            if not out.window.enabled:
                out.window = None
        if cfg.save is not None:
            from edge_runtime.annotate import Saver

            out.saver = Saver(cfg.save)
            if earlier := out.saver.earlier_pictures():
                from edge_runtime.summary import plural

                log(f"warning: {cfg.save}: already holds {plural(earlier, 'annotated picture')} of an earlier run; "
                    "this run's are numbered from 1 beside them, and a picture of the same number and name is "
                    "replaced (choose an empty folder to keep runs apart)")  # fmt: skip
    except BaseException:
        out.close()
        raise
    return out


def open_file_sink(path: Path, *, append: bool = False) -> FileSink:
    """``.jsonl``/``.ndjson`` -> JSON lines, ``.json`` -> one JSON array, ``.csv`` -> CSV. Raises
    :class:`OutputError` if it cannot be written or another process is writing it. ``append`` (``--append``): the
    records follow those already in the file, which must then be JSON lines, or CSV with this version's header."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv"):
        raise UsageError(f"{path}: --output must end in .jsonl, .json or .csv (the suffix picks the format)")
    if append and suffix == ".json":
        raise UsageError(f"{path}: --append adds to JSON lines (.jsonl) or CSV; a .json array is one document, "
                         "rewritten whole: use FILE.jsonl")  # fmt: skip
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); choose another --output") from exc
    if append and suffix == ".csv":
        _check_csv_header(path)
    return FileSink(path, csv_format=suffix == ".csv", json_array=suffix == ".json", keep=append)


def _check_csv_header(path: Path) -> None:
    """An existing CSV that ``--append`` adds to must have this version's columns: rows under another header would
    be read into the wrong columns."""
    try:
        with path.open("rb") as f:
            first = f.readline(1 << 16)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise OutputError(f"{path}: cannot read it to append ({exc.strerror or exc}); choose another --output") from exc
    if first and first.rstrip(b"\r\n").decode("utf-8", "replace") != ",".join(RECORD_KEYS):
        raise OutputError(f"{path}: --append: its first line is not the CSV header edge-infer writes (other columns, "
                          "or not a CSV of verdicts); choose another --output")  # fmt: skip
