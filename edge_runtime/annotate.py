"""Drawing verdicts on frames, the ``--show`` window and ``--save`` (annotated video or images).

>>> canvas = annotate(np.zeros((120, 160), np.uint8), Prediction("defective", 0.97, True, 0.3), fps=30.0)
>>> canvas.shape, tuple(int(v) for v in canvas[0, 0])       # BGR, red border for a defect
((120, 160, 3), (0, 0, 255))
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_runtime.atomic import disk_room, missing_folders, probe_writable, remove_empty, write_back
from edge_runtime.errors import OutputError, write_remedy
from edge_runtime.model import Prediction
from edge_runtime.picture_size import letterbox, readable
from edge_runtime.summary import score_text

RED, GREEN, GREY = (0, 0, 255), (0, 200, 0), (128, 128, 128)
VIDEO_SAVE_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


def annotate(image: np.ndarray, pred: Prediction | None, *, fps: float | None = None, error: str = "") -> np.ndarray:
    """A BGR copy of ``image`` with a red (defective) / green (ok) / grey (error) frame, label, score and FPS;
    with the localisation map (``edge-infer --heatmap``: ``pred.heatmap`` on the image's pixels) also the map as
    a colour wash and ``pred.defect_box`` as a white box (the box alone when the prediction carries no map)."""
    canvas = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    canvas = np.ascontiguousarray(canvas[:, :, :3], dtype=np.uint8).copy()
    h, w = canvas.shape[:2]
    if pred is not None and pred.heatmap is not None and pred.heatmap.shape == (h, w):
        from edge_runtime.heatmap import draw

        draw(canvas, pred.heatmap, pred.defect_box, full_scale=pred.heat_scale)
    elif pred is not None and pred.defect_box is not None:  # the box without its map (the station page's stream)
        from edge_runtime.heatmap import draw_box

        draw_box(canvas, pred.defect_box)
    canvas = readable(canvas)
    h, w = canvas.shape[:2]
    colour = GREY if pred is None else RED if pred.defective else GREEN
    border = max(3, min(h, w) // 40)
    cv2.rectangle(canvas, (0, 0), (w - 1, h - 1), colour, border * 2)
    text = f"ERROR {error[:40]}" if pred is None else f"{pred.label} {score_text(pred.score, 3)}"
    if fps is not None:
        text += f"  {fps:.1f} FPS"
    scale = max(0.4, min(h, w) / 500)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, y0 = border + 2, border + 2
    cv2.rectangle(canvas, (x0, y0), (min(w - 1, x0 + tw + 6), y0 + th + base + 6), colour, -1)
    cv2.putText(canvas, text, (x0 + 3, y0 + th + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def blank_frame(shape: tuple[int, ...]) -> np.ndarray:
    """A dark grey picture of ``shape``: what ``--save`` shows for a frame that could not be decoded.

    >>> blank_frame((4, 6, 3)).shape, int(blank_frame((4, 6))[0, 0])
    ((4, 6, 3), 48)
    """
    return np.full(shape, 48, np.uint8)


# Opens and closes a window, as --show will: in a child process, because OpenCV's Qt aborts the whole process
# (SIGABRT: no summary, the video being saved left unplayable) when its display cannot be reached.
_WINDOW_PROBE = "import cv2; cv2.namedWindow('edge-infer probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_problem() -> str | None:
    """Why no window can be opened here (None: one can). On Linux/BSD a display must be named (X11 or Wayland)
    and answer: a stale DISPLAY after an SSH session, or a kiosk's X server restarting, is found here, before the
    run. Assumed to work on macOS and Windows."""
    if not sys.platform.startswith(("linux", "freebsd")):
        return None
    named = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not named:
        return "no display found (DISPLAY/WAYLAND_DISPLAY unset)"
    import subprocess

    try:
        probe = subprocess.run(
            [sys.executable, "-c", _WINDOW_PROBE], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return f"the display {named} did not answer"
    if probe.returncode != 0:
        return f"cannot open a window on display {named}"
    return None


class Window:
    """The ``--show`` window; ``show`` returns False when the user pressed q or Esc or closed it."""

    NAME = "edge-infer"

    def __init__(self, notice: Callable[[str], None]) -> None:
        problem = display_problem()
        self.enabled = problem is None
        self.notice = notice
        if problem is not None:
            notice(f"--show: {problem}; running headless")

    def show(self, canvas: np.ndarray) -> bool:
        if not self.enabled:
            return True
        try:
            cv2.imshow(self.NAME, canvas)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:  # an OpenCV build without GUI support, or a display that went away
            self.enabled = False
            self.notice(f"--show: cannot open a window ({str(exc).strip().splitlines()[-1]}); running headless")
            return True
        return key not in (ord("q"), 27)

    def close(self) -> None:
        if self.enabled:
            cv2.destroyAllWindows()


def write_image(path: Path, image: np.ndarray) -> None:
    """Encode ``image`` by ``path``'s suffix (.jpg, .png) and write it atomically with Python's own file I/O: OpenCV's
    ``imwrite`` crashes the process (SIGSEGV) on a path that is not valid UTF-8, as a camera's file names and
    folders may be. Raises ``OSError`` when it cannot be encoded or written."""
    from edge_runtime.atomic import atomic_write_bytes

    # a full disk leaves no torn picture under the final name; no fsync per picture (a line saves 30 a second)
    atomic_write_bytes(path, encode_image(image, path.suffix), durable=False)


def encode_image(image: np.ndarray, suffix: str) -> bytes:
    """``image`` encoded as ``suffix`` says (.jpg when none); ``OSError`` when it cannot be."""
    ok, data = cv2.imencode(suffix.lower() or ".jpg", image)
    if not ok:
        raise OSError(f"cannot encode a {suffix or '.jpg'} image")
    return data.tobytes()


def saved_name(number: int, name: str) -> str:
    """The name of a picture in a ``--save`` folder: ``<number>_<stem>.jpg``, its stem cut (with a digest of the
    whole stem) where that would pass the file system's 255-byte limit: a legal 245-byte name stopped the run at
    its picture, exit 7, the items after it never judged.

    >>> saved_name(12, "parts/p1.png")
    '000012_p1.jpg'
    >>> len(os.fsencode(saved_name(1, "a" * 250 + ".jpeg")))
    255
    """
    stem = Path(name).stem
    out = f"{number:06d}_{stem}.jpg"
    if len(os.fsencode(out)) <= 255:
        return out
    raw = os.fsencode(stem)
    tail = f"-{hashlib.sha1(raw).hexdigest()[:12]}.jpg"
    keep = 255 - len(f"{number:06d}_") - len(tail)
    cut = raw[:keep]
    try:  # a UTF-8 name is cut between characters, not inside one (a half 'é' made the name undecodable)
        raw.decode("utf-8")
        cut = cut.decode("utf-8", "ignore").encode("utf-8")
    except UnicodeDecodeError:
        pass  # bytes that are not UTF-8 (an old file system's): kept as they are
    return f"{number:06d}_{os.fsdecode(cut)}{tail}"


MIN_VIDEO_SIDE = 240  # pixels: a saved video is never smaller, whatever its first picture


SAVED_NAME = re.compile(r"\d{6,}_.*\.jpg", re.DOTALL)  # a picture Saver.write names in a --save folder


FULL_DISK_EVERY = 30  # frames between two checks of a saved video's room at most (one a second at 30 FPS)
FULL_DISK_BYTES = 64 << 10  # less room than this: a video writer's next frames are lost in silence
INDEX_BYTES = 32  # a saved frame's entry in the index its writer adds at the end (MP4's moov, AVI's idx1), at most


class Saver:
    """``--save OUT.mp4|.avi`` writes an annotated video the size of the first picture (at least
    ``MIN_VIDEO_SIDE`` pixels a side; pictures of another shape are letterboxed, not stretched);
    any other path is a folder of annotated JPEGs named ``<n>_<name>.jpg``."""

    def __init__(self, target: Path, *, fps: float = 10.0) -> None:
        self.target, self.fps = target, fps
        self.is_video = target.suffix.lower() in VIDEO_SAVE_SUFFIXES
        self.writer: cv2.VideoWriter | None = None
        self.count = 0
        self._next_check = 1  # the saved frame after which a video's disk room is checked next (see _check_room)
        self._written, self._grown_at = 0, 0  # a saved video's size at the last check, and the frame it grew at
        folder = target.parent if self.is_video else target
        self._made = missing_folders(folder)  # the folders this run makes for --save: removed if left empty
        try:
            probe_writable(folder / f".defect-edge-{os.getpid()}.probe")  # a read-only folder: now, not later
        except OSError as exc:
            raise OutputError(f"{target}: cannot write there ({exc.strerror or exc}); choose another --save") from exc
        self._created = False
        self.moved = False  # the saved file or folder was renamed during the run (see _check_still_there)
        self._held_gone = False  # the folder held for the lock was deleted during the run (see _write_held)
        self._lock_fd = self._lock()

    def _lock(self) -> int | None:
        """Hold the video file (or the folder) for the run, as --output is held: two runs saving to one video wrote
        a file whose header and frames disagreed, and into one folder pictures under the same numbers; both exited 0.
        The video's file is opened without truncating it, and OpenCV's writer later reopens the same file."""
        try:
            if self.is_video:
                self._created = not self.target.exists()
                fd = os.open(self.target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
            else:
                fd = os.open(self.target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return None  # not lockable here (the saver's own checks report what cannot be written)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                self._remove_if_unused()
                raise OutputError(
                    f"{self.target}: another process is saving to it (it is locked); choose another --save"
                ) from exc
            return None  # a file system without locks: save unlocked rather than not at all
        return fd

    def earlier_pictures(self) -> int:
        """How many pictures named as a run names them (``000012_part.jpg``) a ``--save`` folder already holds."""
        if self.is_video:
            return 0
        try:
            with os.scandir(self.target) as it:
                return sum(1 for e in it if SAVED_NAME.fullmatch(e.name))
        except OSError:
            return 0

    def _remove_if_unused(self) -> None:
        """The file this run created to hold its lock, when it is still empty (no frame could be saved into it)."""
        if self._created:
            try:
                if self.target.stat().st_size == 0:
                    self.target.unlink()
            except OSError:
                pass

    def write(self, canvas: np.ndarray, *, name: str, number: int | None = None) -> None:
        """Save one annotated picture; ``number``: the record's (1-based) number in the run, which names a
        folder's files so that they line up with the records (default: the count of pictures saved)."""
        self.count += 1
        if not self.is_video:
            out = self.target / saved_name(number or self.count, name)
            try:
                if self._lock_fd is None:
                    write_image(out, canvas)
                else:
                    self._write_held(out, canvas)
            except OSError as exc:
                why = write_remedy(exc, "choose another --save")
                raise OutputError(f"{out}: cannot write the annotated image ({exc.strerror or exc}); {why}") from exc
            return
        if self.writer is None:
            h, w = canvas.shape[:2]
            grow = max(1.0, MIN_VIDEO_SIDE / min(h, w))  # a tiny first picture would shrink every later one to it
            w, h = round(w * grow), round(h * grow)
            if max(w, h) > 8 * min(w, h):  # a line of pixels (5000 x 1): no video that size plays; 4:3 instead
                w, h = 640, 480
            w, h = w + w % 2, h + h % 2  # video codecs want even sides
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_SAVE_SUFFIXES[self.target.suffix.lower()])
            from edge_runtime.opencv_paths import opencv_path

            with opencv_path(self.target) as name:  # a name that is not UTF-8 crashed OpenCV (SIGSEGV)
                self.writer = cv2.VideoWriter(name, fourcc, self.fps, (w, h))
            if not self.writer.isOpened():
                raise OutputError(f"{self.target}: cannot write a video there (codec or path); try a .avi or a folder")
            self.size = (w, h)
        if canvas.shape[1::-1] != self.size:
            canvas = letterbox(canvas, self.size)
        self.writer.write(canvas)
        if self.count >= self._next_check:
            self._check_room(canvas)

    def _check_room(self, canvas: np.ndarray) -> None:
        """OpenCV's video writer fails in silence on a full disk: the run went on for its whole length, said "holds
        0 of 300 frames" only at the end, and the MP4 written before was unreadable. A folder's save stops at once;
        so does a video's while the disk still holds the frames its writer keeps in memory (it writes 256 KiB at a
        time: 26 frames of 300 x 300), two more, and the index written at its end. A check every 30 frames with 64
        KiB to spare had let the frames fill the disk: an AVI of 7 of the 31 frames it claimed, an MP4 that did
        not play. Checked again before half the frames the room holds are written, at most every
        ``FULL_DISK_EVERY`` frames (a statvfs and a JPEG encoding)."""
        room = disk_room(self.target.parent)
        if room is None:
            self._next_check = self.count + FULL_DISK_EVERY
            return
        with contextlib.suppress(OSError):
            if (size := os.stat(self.target).st_size) > self._written:  # the writer wrote what it held
                self._written, self._grown_at = size, self.count
        frame = canvas.nbytes // 4  # a frame's size, as a fine JPEG: larger than the writer's own frames
        with contextlib.suppress(OSError):
            frame = len(encode_image(canvas, ".jpg"))
        held = frame * (self.count - self._grown_at)  # in the writer's memory since it last wrote, bound for the disk
        need = FULL_DISK_BYTES + INDEX_BYTES * self.count + held + 2 * frame
        if room < need:
            full = "full" if room < FULL_DISK_BYTES else "nearly full"
            raise OutputError(f"{self.target}: the disk is {full} ({room} bytes left), so the "
                              f"saved video stops at frame {self.count}; free some space, or --save to another "
                              "disk")  # fmt: skip
        self._next_check = self.count + max(1, min(FULL_DISK_EVERY, (room - need) // max(frame, 1) // 2))

    def _write_held(self, out: Path, canvas: np.ndarray) -> None:
        """One picture into the folder held for the lock, wherever it is now: renamed during the run, it keeps every
        picture (they were split between it and a new folder under the old name). A folder deleted during the run
        gets its name made again, as before, and the end of the run says what was lost (:meth:`_check_still_there`)."""
        from edge_runtime.atomic import atomic_write_at, atomic_write_bytes

        data = encode_image(canvas, ".jpg")
        if not self._held_gone:
            try:
                atomic_write_at(self._lock_fd, out.name, data)
                return
            except FileNotFoundError:
                self._held_gone = True  # deleted: the later pictures go by name, without a try through it each
        atomic_write_bytes(out, data, durable=False)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self._remove_if_unused()
        try:
            self._check_still_there()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None
            if self.count == 0:  # a run that saved nothing (a video without a frame)
                remove_empty(self._made)

    def _check_still_there(self) -> None:
        """A --save folder or video deleted during the run: the folder was made again in silence for the pictures
        after it (2448 of 3000 there, exit 0); the video was "0 of 3000 frames (a full disk ...)". A video is still
        readable through the file held for the lock, and is written back; a folder's pictures are gone."""
        if self._lock_fd is None or self.count == 0:
            return
        try:
            held = os.fstat(self._lock_fd)
            if held.st_nlink > 0:
                # renamed (a rotation, or moved away): complete where it went; the frame count is not read back
                # under the old name, which said "holds 0 of 100 frames (a full disk ...)", exit 7
                there = os.stat(self.target) if os.path.exists(self.target) else None
                self.moved = there is None or (there.st_dev, there.st_ino) != (held.st_dev, held.st_ino)
                if not self.is_video and not self.moved and (present := self.earlier_pictures()) < self.count:
                    # `rm -rf` racing the run removed some pictures, and the folder survived: 310 of 1435, exit 0
                    raise OutputError(f"{self.target}: {self.count - present} of the {self.count} annotated pictures "
                                      "saved were deleted during the run; keep --save folders until the run has "
                                      "ended")  # fmt: skip
                return
        except OSError:
            return
        if not self.is_video:
            # the pictures there now are those saved after the deletion, in a folder made again (it said "with
            # the pictures saved before that (22 of 60 are there now)", of the 22 saved after it)
            there = self.earlier_pictures()
            raise OutputError(f"{self.target}: deleted during the run, and with it the first {self.count - there} of "
                              f"the {self.count} annotated pictures saved (the {there} saved after it are there now, "
                              "in the folder made again); keep --save folders until the run has ended")  # fmt: skip
        try:
            where = write_back(self._lock_fd, self.target)
        except OSError as exc:
            raise OutputError(f"{self.target}: deleted during the run, and the saved video could not be written "
                              f"back ({exc.strerror or exc}); it is lost") from exc  # fmt: skip
        self.moved = where != self.target  # its frames are counted where they went, not under the taken name
        raise OutputError(f"{self.target}: deleted during the run; the saved video was written back to {where}; "
                          "keep --save files until the run has ended")  # fmt: skip
