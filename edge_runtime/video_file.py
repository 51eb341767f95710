"""Every frame of a video file, read and resized on a background thread, damaged stretches read over.

:func:`edge_runtime.video_open.iter_video` opens the file; its frames come through a bounded queue from
:class:`VideoReader`'s thread, and the video's warnings (a damaged stretch, an early end) travel in that queue in
order with the frames.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime import ffmpeg_log
from edge_runtime.avi_index import AviIndex
from edge_runtime.capture_props import codec_tag, declared_fps, declared_shape, position_ms
from edge_runtime.container_length import file_stamp, missing_bytes, written_since
from edge_runtime.errors import SourceError, resource_error
from edge_runtime.items import Item, frame_item
from edge_runtime.jpeg_packets import JpegPackets
from edge_runtime.matroska_cues import CuedStart, cue_times_ms
from edge_runtime.summary import plural
from edge_runtime.video_tracks import no_frame_why

_NOT_PEEKED = object()  # VideoReader.peeked before ends_here() took an entry
_QUARTER_TURNS = (0, 2)  # cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE
REORDER_FRAMES = 8  # frames a decoder may hand out after the one it reports damage in (B-frames: 2 gave 4, 3 gave 2-3)


# FFmpeg's AVI header length when it writes to a pipe and cannot seek back to set it: read as "not known" (a healthy
# piped recording "stopped at frame 180 of 1073741824" and failed the gate).
STREAMED_AVI_LENGTH = 1 << 30


def _declared_end_ms(cap: Any, declared: int) -> float | None:
    """The time (ms) by which a complete video has shown its last frame: its declared length less 1.5 frames.
    A frame count that includes "repeat the last frame" entries (a frame-rate conversion to AVI) is more than the
    frames there are, and the last frame's time tells a complete video from a cut one."""
    fps = declared_fps(cap)
    return (declared - 1.5) * 1000.0 / fps if fps is not None and declared > 0 else None


STEADY_FRAMES = 1  # frames one frame time apart before a video's frame times are trusted to tell a lost frame

# failed reads in a row read over before a video counts as ended, whatever its header declares: about 9 hours at
# 30 FPS of damage, and 1-30 s of failed reads where a header declares billions of frames
MAX_UNREADABLE_RUN = 1_000_000


def _raise(exc: Exception) -> None:
    raise exc


class VideoReader:
    """Reads ``cap`` on its own thread into a bounded queue; :meth:`items` yields what it read.

    A failed read is read over up to the declared length (:meth:`_read_over`): the decoder finds the frames after a
    damaged stretch (a broken middle stopped the run at frame 13 of 40, with 21 readable frames unseen), and the
    frames keep their true numbers. Warnings go into the queue as calls, in order with the frames, so a run that
    stops before them (--max-frames, q) is not told of a later break.
    """

    def __init__(
        self,
        cap: Any,
        name: str,
        prepare: Callable[..., np.ndarray],
        *,
        keep_original: bool,
        notice: Callable[[str], None],
        cut_short: Callable[[str], None],
    ) -> None:
        import cv2

        self.cap, self.name, self.prepare, self.keep_original = cap, name, prepare, keep_original
        self.stamp = file_stamp(name)  # its size and time now: at its end, a recording still being written is told
        self.notice, self.cut_short = notice, cut_short
        self.declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.exact_count = Path(name).suffix.lower() == ".avi"
        if self.exact_count and self.declared >= STREAMED_AVI_LENGTH:  # a length it could not go back and write
            self.declared = 0
        self.ends_ms = _declared_end_ms(cap, self.declared)
        index = AviIndex.read(Path(name)) if self.exact_count else None
        # Matroska / MP4: how much of the file its own container says is missing (a cut copy or recording)
        self.missing = 0 if self.exact_count else missing_bytes(name) or 0
        if index is not None:
            # the frames there are: OpenCV's count takes in FFmpeg's empty "repeat the last frame" entries, also
            # those after the last frame (a 4-frame file converted to 30 FPS "stopped at frame 4 of 12", exit 10)
            self.declared, self.ends_ms = len(index), None
        # a Motion-JPEG AVI's frames are matched with its index: lost chunk headers cannot renumber later frames
        self.avi = index if isinstance(cap, JpegPackets) else None
        self.shape, self.codec = declared_shape(cap) if keep_original else None, codec_tag(cap)
        if self.shape is not None and getattr(cap, "turn", None) in _QUARTER_TURNS:  # a phone's portrait .mov
            self.shape = (self.shape[1], self.shape[0], 3)  # the container's size is the stored, unturned one
        # Decoded pictures are kept for --save/--show: a few frames ahead, not 64 (8K frames took 3.3 GB).
        self.q: queue.Queue[Item | Callable[[], None] | None] = queue.Queue(maxsize=4 if keep_original else 64)
        self.stop = threading.Event()
        self.index, self.at_ms = 0, None
        self.failed_from: int | None = None  # where the current run of failed reads began
        self.watch = False  # FFmpeg's reports of concealed damage are counted (edge_runtime.ffmpeg_log)
        self.concealed: str | None = None  # the last read's frame was patched up by the decoder: FFmpeg's words
        self.unconverted: str | None = None  # the last read's frame could not be converted to a picture: its words
        fps = declared_fps(cap)
        self.fps = fps if fps is not None and fps <= 100_000.0 else None
        self.first_ms: float | None = None  # where the first frame read lies in the video (ms)
        self.patched_left = 0  # frames still to be told of a damage report (the decoder's reorder delay)
        self.last_good: tuple[int, float] | None = None  # the number and time (ms) of the last frame read
        self.errors_at_start = 0  # FFmpeg's count of error lines when the video was opened
        self.time_gap: tuple[float, float] | None = None  # the frame times (ms) a damaged stretch lies between
        self.missing_why: str | None = None  # how the container's index tells the frames now told are missing
        self.steady = 0  # frames that came one frame time after the one before; -1: a variable frame rate
        self.held: dict[str, Any] | None = None  # a frame read after a gap in the frame times, not yet numbered
        self.gap: tuple[int, float, float, bool] | None = None  # its number, the times around the gap, damage seen
        # a Matroska file's index of key frames: frames lost before the first frame time is seen
        times = cue_times_ms(name) if self.fps is not None and not self.exact_count else None
        self.cues = CuedStart(times, fps=self.fps) if times and self.fps is not None else None
        self.peeked: Any = _NOT_PEEKED  # the queue's next entry, taken by ends_here() and not yet yielded

    def items(self) -> Iterator[Item]:
        t = threading.Thread(target=self.run, name=f"video {self.name}", daemon=True)
        t.start()
        frames = 0
        try:
            while (item := self._next()) is not None:
                if not isinstance(item, Item):
                    item()  # a warning about the video, where it belongs among the frames
                    continue
                frames += 1
                yield item
        finally:
            self.stop.set()
            t.join(2.0)
        if not frames:  # a video of no frame would pass a gate with 0 items and exit 0, as if all were well
            why = no_frame_why(self.name, codec=self.codec, decoder_said=self._damage_reported())
            raise SourceError(f"{self.name}: no frame could be read" + (f": {why}" if why else
                              " (an empty, truncated or corrupt video); check the file"))  # fmt: skip

    def _next(self) -> Item | Callable[[], None] | None:
        entry, self.peeked = self.peeked, _NOT_PEEKED
        return self.q.get() if entry is _NOT_PEEKED else entry

    def ends_here(self, wait_s: float) -> bool:
        """True when the queue's next entry is the end marker: no frame after those taken, nor a warning (a cut
        or damaged end is not called a clean end). Nothing is told or read beyond what the thread reads ahead."""
        if self.peeked is _NOT_PEEKED:
            try:
                self.peeked = self.q.get(timeout=wait_s)
            except queue.Empty:
                return False
        return self.peeked is None

    def put(self, entry: Item | Callable[[], None]) -> None:
        while not self.stop.is_set():
            try:
                self.q.put(entry, timeout=0.2)
                return
            except queue.Full:
                continue

    def tell(self, say: Callable[[str], None], message: str) -> None:
        self.put(functools.partial(say, message))

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ok, frame = self._read()
                if not ok:
                    self._settle_held(None)
                    if self._read_over():
                        continue
                    break
                self._follow_index()
                self._settle_held(self.at_ms)
                if self.first_ms is None:
                    self._lost_at_start()
                after_gap = self._follow_time()
                if self.first_ms is None:
                    self.first_ms = self.at_ms or 0.0
                if self.failed_from is not None:
                    self._damage_ended()
                cap = self.cap
                warning = "; ".join(w for w in (getattr(cap, "warning", None), self.concealed) if w) or None
                read = {"frame": frame, "warning": warning, "error": getattr(cap, "error", None) or self.unconverted,
                        "gray": getattr(cap, "gray", None)}  # fmt: skip
                if after_gap:  # numbered once the next frame tells lost frames from a change of frame rate
                    self.held = read
                    continue
                self._emit(read)
            self._settle_held(None)
        except Exception as exc:  # noqa: BLE001 - no file descriptor or memory left: not the video's end
            # It had ended the thread with a traceback, and the frames read so far passed as the whole video (the
            # gate passed with 1 of 360 frames seen).
            why = (str(exc).strip().splitlines() or [""])[-1][:160] or type(exc).__name__
            lost = resource_error(exc) or SourceError(
                f"{self.name}: reading stopped at frame {self.index} ({why}); the frames after it were not inspected"
            )
            self.put(functools.partial(_raise, lost))
        finally:
            self._finish()

    def _emit(self, read: dict[str, Any]) -> None:
        frame = read.pop("frame")
        self.put(frame_item(self.name, self.index, frame, self.prepare, keep_original=self.keep_original,
                            shape=self.shape, **read))  # fmt: skip
        self.index += 1

    def _read(self) -> tuple[bool, Any]:
        import cv2

        before, lines = (ffmpeg_log.errors(), ffmpeg_log.error_lines()[0]) if self.watch else (0, 0)
        try:
            ok, frame = self.cap.read()
        except cv2.error:
            return False, None
        self.at_ms = position_ms(self.cap) if ok else self.at_ms
        self.concealed, self.unconverted = None, ffmpeg_log.unconverted_since(lines) if self.watch and ok else None
        if self.watch and ffmpeg_log.errors() > before:
            # H.264 and the like conceal a lost or broken slice with parts of other frames: a defective part's frame
            # came back as the OK part before it, "ok", and the gate passed. With B-frames the decoder hands frames
            # out a few after it decodes them: this frame and the next REORDER_FRAMES are told.
            self.patched_left = 1 + REORDER_FRAMES
        if ok and self.patched_left:
            self.patched_left -= 1
            self.concealed = (f"the decoder found damaged data near this frame and filled it in from other frames "
                              f"({ffmpeg_log.last()}); its verdict may be wrong")  # fmt: skip
        return ok, frame

    def _undecoded_start(self, read: int) -> int:
        """Frames before the first one read that the decoder dropped in silence (a recording cut from a stream
        mid-way does not begin on a key frame): the first frame lies that far into the video, and the container
        counts just that many frames more than were read. Both must agree: a video that starts after its sound
        track (an AVI 0.5 s in) is complete, and was not one to call cut."""
        if self.fps is None or not self.first_ms or read >= self.declared:
            return 0
        gap = round(self.first_ms * self.fps / 1000.0)
        return gap if gap >= 1 and abs(read + gap - self.declared) <= 1 else 0

    def _follow_index(self) -> None:
        """The frame just read, found in the AVI's index: frames before it whose chunk headers were lost (FFmpeg
        read over them in silence) become a damaged stretch, and this one keeps its true number."""
        data = getattr(self.cap, "packet", None)
        if self.avi is None or data is None:
            return
        shift = self.avi.shift
        found = self.avi.frame_of(data, self.index)
        if found is None and self.index < 3:  # an index that does not describe this file's frames: not used
            self.avi.close()
            self.avi = None
        elif found is not None and found > self.index:
            self.failed_from = self.index if self.failed_from is None else self.failed_from
            self.index = found
            if self.avi.shift != shift:  # the frames lie where the index says, less a stretch cut out before them
                them = "it" if found - self.failed_from == 1 else "them"
                self.missing_why = (f"the file's index lists {them}, and the frames after {them} lie {self.avi.shift} "
                                    "bytes before where it says: a stretch cut out of the file")  # fmt: skip

    def _lost_at_start(self) -> None:
        """The first frame read, found among the key frames a Matroska file's Cues list: frames before it were in
        the file (a damaged first block, which FFmpeg drops in silence), and it keeps its true number."""
        if self.cues is not None and (lost := self.cues.lost_before(self.cap, at_ms=self.at_ms or 0.0)):
            self.failed_from, self.index, self.missing_why = 0, *lost

    def _follow_time(self) -> bool:
        """Number the frame just read by its time, in a video whose frames have come at its steady frame rate.
        Failed reads after which the next frame in time came (a decoder that stalled on damage) lost no frame. True
        when frames are missing before this one by their times (a damaged Matroska block, dropped by the demuxer
        without a failed read: later frames came numbered early, and the defective parts in the gap were never
        judged): it is held until the next frame says whether the video goes on at its rate (lost frames) or at
        another (a camera triggered by the parts, clips joined, a phone that slowed down: never taken for loss)."""
        at = self.at_ms if self.at_ms is not None else 0.0
        last, self.last_good = self.last_good, (self.index, at)
        # an AVI has no frame times (its "repeat the last frame" entries count as frames at the declared rate)
        if self.exact_count or self.fps is None or last is None or at <= last[1] or self.steady < 0:
            return False
        frames = (at - last[1]) * self.fps / 1000.0
        if frames < 0.95 or abs(frames - round(frames)) > 0.05:
            self.steady = -1  # a variable frame rate: the times say nothing of lost frames
            return False
        if round(frames) == 1:
            self.steady += 1
        # before the rate is known a gap is no loss, unless a key frame the Matroska index lists lies in it
        cued = self.cues is not None and self.steady < STEADY_FRAMES and self.cues.cued_between(last[1], at)
        if self.steady < STEADY_FRAMES and not cued:
            return False
        found = last[0] + round(frames)
        if found == self.index:  # the next frame, or failed reads that counted the frames lost (their own warning)
            return False
        if found == last[0] + 1:  # failed reads that lost no frame
            self.failed_from, self.index = None, found
            self.last_good = (found, at)
        elif found > self.index:
            # a video FFmpeg has reported damage in: a gap is lost frames, whatever comes next
            self.gap = (found, last[1], at, cued or self._damage_reported() is not None)
            return True
        return False

    def _settle_held(self, next_ms: float | None) -> None:
        """The frame held after a gap in the frame times, numbered: lost frames before it where FFmpeg has reported
        damage in the video, or the next frame came one frame time after it (or the container's count ends with it);
        else the rate changed, its number is the next, and the times are not read again."""
        if self.held is None or self.gap is None or self.fps is None:
            return
        found, before, at, damage = self.gap
        if damage:
            lost = True
        elif next_ms is not None:
            lost = abs((next_ms - at) * self.fps / 1000.0 - 1.0) <= 0.05
        else:
            lost = found == self.declared - 1
        if lost:
            self.time_gap = (before, at)
            self.failed_from = self.index if self.failed_from is None else self.failed_from
            self.index = found
            self._damage_ended()
        else:
            self.steady = -1
        self.last_good = (self.index, at)
        held, self.held, self.gap = self.held, None, None
        self._emit(held)

    def _read_over(self) -> bool:
        """After a failed read: True to read on (a damaged stretch within the declared length), False at the end,
        which is told where the video ends before its declared length."""
        start = self.index if self.failed_from is None else self.failed_from
        if self.index < self.declared and self.index - start < MAX_UNREADABLE_RUN:
            self.failed_from = start
            self.index += 1
            return True
        if changed := written_since(self.name, self.stamp):  # more frames may follow, also after a clean end
            self.tell(self.cut_short, f"{self.name}: the file {changed} while it was read (a recording still being "
                      f"written): stopped at frame {start}, and the frames recorded after it were not inspected; "
                      "inspect it once the recording has ended")  # fmt: skip
        elif gap := self._undecoded_start(start):  # 3 of 6 frames judged as frames 0-2, the defective one never seen
            self.tell(self.cut_short, f"{self.name}: the first {plural(gap, 'frame')} could not be decoded (the video "
                      "does not begin on a key frame, as a recording cut from a stream, or they are damaged); the "
                      f"{plural(start, 'frame')} after them were inspected, numbered from 0")  # fmt: skip
        elif self.missing and start:  # the container declares more bytes than the file holds (none read: no frame)
            of = f" of {self.declared}" if self.declared > start else ""
            self.tell(self.cut_short, f"{self.name}: stopped at frame {start}{of}: the file ends {self.missing} bytes "
                      "before its container says it does (truncated video)")  # fmt: skip
        elif 0 < start < self.declared and (self.ends_ms is None or self.at_ms is None or self.at_ms < self.ends_ms):
            # a frame index (AVI) counts the frames there are; other containers may estimate the count from a
            # longer audio track, or count frames an edit list hides: a warning only
            if self.exact_count:
                self.tell(
                    self.cut_short,
                    f"{self.name}: stopped at frame {start} of {self.declared} (truncated or corrupt video)",
                )
            elif (err := self._damage_reported()) is not None:
                # FFmpeg met damage and read no further (HEVC, a WebM block): no estimate, the rest was never judged
                self.tell(self.cut_short, f"{self.name}: stopped at frame {start} of {self.declared}: FFmpeg found "
                          f"damaged data ({err}) and could read no further; the frames after it were not "
                          "inspected")  # fmt: skip
            else:
                self.tell(
                    self.notice,
                    f"{self.name}: stopped at frame {start} of {self.declared} (truncated or corrupt video, "
                    "or a frame count the container estimated from a longer audio track or an edit list)",
                )
        return False

    def _damage_reported(self) -> str | None:
        """FFmpeg's latest error line since this video was opened (its own words), None where it reported none."""
        if not self.watch:
            return None
        count, last = ffmpeg_log.error_lines()
        return last if count > self.errors_at_start else None

    def _damage_ended(self) -> None:
        last, first = self.index - 1, self.failed_from
        lost = f"frame {last}" if first == last else f"frames {first} to {last}"
        t0, t1 = (t / 1000.0 for t in self.time_gap or (0.0, 0.0))
        are = "is" if first == last else "are"
        if self.missing_why is not None:  # told by the container's index
            why = f"{are} missing ({self.missing_why})"
        elif self.time_gap is None:
            why = "could not be decoded (a damaged stretch of the video)"
        else:  # read over in silence by the demuxer, or never recorded (a pause): found only by the frame times
            why = (f"{are} missing (the frame times jump from {t0:.3f} s to {t1:.3f} s, {t1 - t0:.1f} s without a "
                   "frame: a pause in the recording, frames dropped while recording, or frames lost in a damaged "
                   "file; parts that passed then were not inspected)")  # fmt: skip
        self.tell(self.cut_short, f"{self.name}: {lost} {why}; the frames after it were inspected")
        self.failed_from, self.time_gap, self.missing_why = None, None, None

    def _finish(self) -> None:
        self.cap.release()
        if self.avi is not None:
            self.avi.close()
        while True:  # the end marker must arrive, unless the consumer is gone
            try:
                self.q.put(None, timeout=0.2)
                break
            except queue.Full:
                if self.stop.is_set():
                    break
