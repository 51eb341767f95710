"""The plain function behind ``edge-infer``: a source in, verdicts out, a summary and an exit code at the end.

>>> cfg = InferConfig(source="edge_runtime/samples/test", json_stdout=True)   # doctest: +SKIP
>>> summary, code = run_inference(cfg)                                      # doctest: +SKIP
>>> summary.to_dict()["items"], int(code)                                   # doctest: +SKIP
(5, 0)
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.errors import (
    ExitCode,
    ModelError,
    OutputError,
    ResourceError,
    SourceError,
    UsageError,
    printable,
    resource_error,
)
from edge_runtime.inputs import Item, SourceKind, SourceSpec, iter_items, listing_line, open_live, resolve_source
from edge_runtime.model import EdgeModel, Prediction, RuntimeConfig, load_model, model_path
from edge_runtime.outage import STEADY_AFTER
from edge_runtime.output_checks import check_outputs
from edge_runtime.outputs import StdoutClosed, record_for
from edge_runtime.priority import Priority, RealTime
from edge_runtime.run_end import exit_code, finish_run
from edge_runtime.run_outputs import Outputs, open_outputs, video_fps
from edge_runtime.sources import LatestFrameReader
from edge_runtime.stopping import StopSignals
from edge_runtime.summary import Summary
from edge_runtime.verdicts import batches, predict_items
from edge_runtime.video_open import VideoFrames

Log = Callable[[str], None]
PICTURE_BATCH = 8  # items per batch when their full pictures are kept (--save, --show, a listener's thumbnails)


@dataclass(frozen=True)
class InferConfig:
    """Everything ``edge-infer`` was asked to do (built by the CLI, or by hand from Python)."""

    source: str | None = None  # file, folder, glob, video file or stream URL
    camera: str | None = None  # camera index ("0") or device path
    model: Path | None = None  # None: the bundled INT8 model
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    json_stdout: bool = False  # JSON lines on stdout instead of human-readable verdicts
    output: Path | None = None  # .jsonl, .json (an array) or .csv, written per item
    append_output: bool = False  # --append: records follow the output file's own instead of replacing them
    save: Path | None = None  # annotated .mp4/.avi or a folder of images
    show: bool = False
    max_frames: int | None = None
    fail_on_defect: bool = False
    batch_size: int = 32  # files and video files only; live sources always run one frame at a time
    workers: int = 2  # decoding threads for files
    max_reconnects: int | None = None  # live sources; None: keep trying
    read_timeout_s: float = 5.0  # streams: silence that counts as a drop
    summary_path: Path | None = None
    quiet: bool = False  # no human verdict lines
    listener: Any = None  # edge_runtime.station.listener.RecordListener: told of every record before it is written
    capture: Any = None  # a capture factory for a live source instead of opening ``camera`` (tests, soak benchmark)
    heatmap: bool = False  # localisation map: drawn on --show/--save, defect_box in each record (edge_runtime.heatmap)
    station_check: bool = True  # flag items unlike the training images (when the model carries a station profile)
    # The inspection loop of a live source at real-time CPU priority (edge_runtime.priority): AUTO where allowed.
    priority: Priority = Priority.AUTO


STALL_S = 2.0  # how long a stop waits for a record's write to a stalled stdout (see StopSignals.atomic)


class Runner:
    """Hands each record to every output and counts it: :meth:`emit` is the one place a record is finalised.

    Order, inside ``stop.atomic()`` (a SIGTERM waits until the record is complete): ``--output`` files, then
    stdout, then the summary count. A file that cannot be written raises :class:`OutputError` before the
    record is counted; a closed stdout raises :class:`StdoutClosed`.
    """

    def __init__(self, cfg: InferConfig, outputs: Outputs, summary: Summary, stop: StopSignals) -> None:
        self.cfg, self.out, self.summary, self.stop = cfg, outputs, summary, stop
        self.fps = 0.0
        self.last = time.perf_counter()
        self.picture_shape: tuple[int, ...] | None = None  # the last drawn frame's, for undecodable frames
        # unreadable files of a folder saved as a video before its first picture: drawn at that picture's size
        self.held_errors: list[str] = []

    def remaining(self) -> int | None:
        return None if self.cfg.max_frames is None else self.cfg.max_frames - self.summary.items

    def emit(self, item: Item, pred: Prediction | None, rec: dict | None = None) -> bool:
        """Write one record everywhere and count it; False when the run should stop."""
        rec = rec if rec is not None else record_for(item, pred)
        now = time.perf_counter()
        self.fps = 0.9 * self.fps + 0.1 / max(now - self.last, 1e-6) if self.fps else 1.0 / max(now - self.last, 1e-6)
        self.last = now
        canvas = self.picture(item, pred)  # drawn first: the slow part, outside the block a signal waits for
        # A stop waits for the record, unless stdout's reader has stalled: then the stop ends the run STALL_S on
        with self.stop.atomic(stall_s=STALL_S):
            for sink in self.out.files:
                sink.write(rec)
            try:
                if self.out.stdout is not None:
                    self.out.stdout.write(rec)
            except (StdoutClosed, OutputError, KeyboardInterrupt):
                if self.out.files:
                    self._count(rec, pred)  # it is in the --output file
                raise
            self._count(rec, pred)
            # --save keeps one frame per record: a stop between the two left a counted record without its frame
            if canvas is not None and self.out.saver is not None:
                self._write_held()
                name = Path(item.source).name if item.frame is None else f"frame_{item.frame}"
                self.out.saver.write(canvas, name=name, number=self.summary.items)
        keep_going = canvas is None or self.out.window is None or self.out.window.show(canvas)
        left = self.remaining()
        if left is not None and left <= 0:
            self.summary.max_frames_reached = self.cfg.max_frames
        return keep_going and not self.stop.requested and (left is None or left > 0)

    def _count(self, rec: dict, pred: Prediction | None) -> None:
        """Count a written record, and the looks that made its score: counted from the model's batches, they
        took in items never written (a closed stdout, a stop mid-batch: "2 items, second look: 5 items")."""
        self.summary.add(rec)
        if pred is not None:
            self.summary.second_looks += pred.second_look
            self.summary.symmetry_looks += pred.asymmetry is not None
            self.summary.symmetry_lifts += pred.lifted

    def _write_held(self, *, at_end: bool = False) -> None:
        """The placeholders held back until the first picture gave the saved video its size (the first one's grey
        640x480 frame had set it, and every part picture after it was letterboxed into that). ``at_end``: the run
        ends without a picture, and they are written at 640x480 (a folder of unreadable files made no video)."""
        if not self.held_errors or (self.picture_shape is None and not at_end) or self.out.saver is None:
            return
        from edge_runtime.annotate import annotate, blank_frame

        shape = self.picture_shape or (480, 640, 3)
        for error in self.held_errors:
            self.out.saver.write(annotate(blank_frame(shape), None, error=error), name="unreadable")
        self.held_errors = []

    def finish(self) -> None:
        """The run's source is done: what is still held goes out."""
        with self.stop.atomic(stall_s=STALL_S):
            self._write_held(at_end=True)

    def picture(self, item: Item, pred: Prediction | None) -> np.ndarray | None:
        """The annotated picture to show and save (None: nothing shows or saves pictures, or no picture)."""
        if self.out.window is None and self.out.saver is None:
            return None
        from edge_runtime.annotate import annotate, blank_frame

        picture = item.original
        if picture is None:
            # An undecodable frame of a video or stream: a grey frame naming the error keeps --save one frame per
            # record, so the saved video's frames and timing line up with the records (it was left out).
            # the first frames: the size the video declares, else (a stream's first parts garbage) a 640x480 frame;
            # later pictures are letterboxed to the saved video's size
            # An unreadable file of a folder saved as a video gets one too (the video had fewer frames than records).
            shape = self.picture_shape or item.picture_shape or (480, 640, 3)
            into_video = bool(getattr(self.out.saver, "is_video", False))
            if not item.error or (item.frame is None and not into_video):
                return None
            if item.frame is None and self.picture_shape is None:
                self.held_errors.append(item.error)  # drawn once the first picture sets the video's size
                return None
            picture = blank_frame(shape)
        else:
            self.picture_shape = picture.shape
        return annotate(picture, pred, fps=self.fps if item.frame is not None else None, error=item.error or "")


def process(
    cfg: InferConfig,
    spec: SourceSpec,
    model: EdgeModel,
    runner: Runner,
    reader: LatestFrameReader | None,
    rt: RealTime | None = None,
    log: Log | None = None,
) -> None:
    """The loop: items -> batches -> verdicts -> outputs, until the source ends, max-frames, q, a stop signal,
    a closed stdout or a failed output."""
    items = iter_items(
        spec,
        functools.partial(model.input_for_verdict, check=cfg.station_check),
        keep_original=runner.out.needs_picture,
        workers=cfg.workers,
        reader=reader,
        notice=runner.summary.note,
        cut_short=runner.summary.source_cut_short,
    )
    if spec.kind is SourceKind.VIDEO and runner.out.saver is not None:
        runner.out.saver.fps = video_fps(spec.name) or runner.out.saver.fps  # a saved video plays at its pace
    size = 1 if spec.kind.live else min(cfg.batch_size, model.max_batch or cfg.batch_size)
    if runner.out.needs_picture:
        size = min(size, PICTURE_BATCH)  # decoded pictures are kept per item: bound how many are held at once
    listener = cfg.listener
    try:
        for batch in batches(items, size, runner.remaining):
            # only now: a source that cannot be opened, or yields no frame, leaves the last run's --output as it was
            runner.out.begin()
            preds = predict_items(model, batch, with_map=cfg.heatmap)
            records = [record_for(it, p) for it, p in zip(batch, preds, strict=True)]
            # The log takes the whole batch: a stop mid-batch lets the rest of its records out too (the log held
            # 16 items, the summary, --output and --save 9)
            with runner.stop.atomic(stall_s=STALL_S):
                if listener is not None:
                    listener.on_records(records, batch)
                going = _emit_batch(runner, batch, preds, records)
            if not going:
                if runner.summary.max_frames_reached is not None and _ended(spec, items, runner.summary.items):
                    runner.summary.max_frames_reached = None  # it held exactly N: none was left uninspected
                return
            if rt is not None and (why := rt.tick()):
                runner.summary.priority_dropped = why
                if log is not None:
                    log(f"warning: {why}")
        if not runner.stop.requested:
            runner.out.begin()  # a source read to its end without an item: this run's (empty) records
    except SourceError as exc:
        runner.summary.source_error = str(exc)
    except StdoutClosed:
        runner.summary.stdout_closed = True
    finally:
        if runner.stop.requested:
            runner.summary.interrupted = True
        if hasattr(items, "close"):
            items.close()
        try:
            runner.finish()
        except OutputError as exc:
            runner.summary.output_error = runner.summary.output_error or str(exc)
        if reader is not None:
            reader.stop()
            runner.summary.dropped_frames, runner.summary.reconnects = reader.dropped, reader.reconnects
            runner.summary.source_error = runner.summary.source_error or reader.down


def _emit_batch(runner: Runner, batch: list[Item], preds: list[Prediction | None], records: list[dict]) -> bool:
    """Each record of a judged batch out; False when the run should stop. After a stop signal the batch's other
    records still go out; after the window's q or the last of --max-frames, none."""
    going = True
    for item, pred, rec in zip(batch, preds, records, strict=True):
        if not going and not runner.stop.requested:
            break
        going = runner.emit(item, pred, rec) and going
    return going


def _ended(spec: SourceSpec, items: Iterator[Item], taken: int) -> bool:
    """The source held nothing after the ``taken`` items: a folder or pattern of that many files, or a video its
    reader had read to a clean end. A live source never ends so: it stays "stopped at --max-frames"."""
    if spec.kind is SourceKind.IMAGES:
        return taken >= len(spec.paths)
    return isinstance(items, VideoFrames) and items.ended()


def _open_reader(cfg: InferConfig, spec: SourceSpec, log: Log, listener: Any, *, colour: bool) -> LatestFrameReader:
    def on_event(message: str) -> None:
        log(f"warning: {message}")
        if listener is not None and hasattr(listener, "on_event"):
            listener.on_event(message)

    if cfg.capture is not None:
        reader = LatestFrameReader(cfg.capture, name=spec.shown, max_reconnects=cfg.max_reconnects, on_event=on_event,
                                   steady_after=STEADY_AFTER)  # fmt: skip
        return reader.start()
    return open_live(
        spec, on_event=on_event, max_reconnects=cfg.max_reconnects, colour=colour, read_timeout_s=cfg.read_timeout_s
    )


def run_inference(
    cfg: InferConfig, *, log: Log | None = None, stop: StopSignals | None = None, summary: Summary | None = None
) -> tuple[Summary, ExitCode]:
    """Run ``cfg`` to the end; human messages (and the summary) go to ``log`` (default: stderr).

    A bad model, source or option raises its :class:`~edge_runtime.errors.DefectEdgeError` before anything is
    processed (no summary). Once processing started, every ending -- source done, SIGTERM/Ctrl-C (also during
    start-up), a closed stdout, a failed output, the machine out of memory, descriptors or threads -- prints the
    summary (the last raises its error after it).
    """
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    own_signals = stop is None
    stop = stop if stop is not None else StopSignals().install()
    summary = summary if summary is not None else Summary(source=cfg.source or f"camera {cfg.camera}")
    outputs: Outputs | None = None
    reader = None
    rt = None
    deferred: ResourceError | None = None
    try:
        spec = resolve_source(cfg.source, camera=cfg.camera)
        summary.source = spec.shown
        _check_usage(cfg, spec)
        model = _load(cfg, spec, stop)
        summary.model, summary.model_sha256 = str(model.path), model.sha256
        summary.providers = list(model.providers)
        outputs = open_outputs(cfg, log)  # before any message: a setup error is one line on stderr
        _check_model(cfg, model, log)
        if spec.kind is SourceKind.IMAGES:
            summary.ignored_files = spec.ignored
            log(listing_line(spec))
        if spec.kind.live:  # fails here, within seconds, with exit code 5
            reader = _open_reader(cfg, spec, log, cfg.listener, colour=outputs.needs_picture)
            name = printable(reader.name)
            log(f"{name}: opened; newest-frame mode (slow inference skips frames, it never lags behind)")
        if cfg.listener is not None and hasattr(cfg.listener, "on_start"):
            cfg.listener.on_start(model, spec)
        if spec.kind.live and cfg.priority is not Priority.NORMAL:
            rt = RealTime.start(required=cfg.priority is Priority.REALTIME)
            summary.priority = rt.label
            log(rt.describe())
        summary.started = time.perf_counter()
        process(cfg, spec, model, Runner(cfg, outputs, summary, stop), reader, rt, log)
    except KeyboardInterrupt:
        summary.interrupted = True
    except OutputError as exc:
        if outputs is None:  # --output cannot even be opened: a setup error
            raise
        summary.output_error = str(exc)
    except BaseException as exc:
        deferred = _ended_by(exc, outputs, stop)
    finally:
        _release(stop, reader, rt, own_signals=own_signals)
    finish_run(cfg, summary, outputs, log)
    if deferred is not None:
        raise deferred
    return summary, exit_code(cfg, summary)


def _release(stop: StopSignals, reader: LatestFrameReader | None, rt: RealTime | None, *, own_signals: bool) -> None:
    """However a run ended: the camera freed, the loop's priority restored, and the signal handlers it installed
    removed."""
    stop.closing = True
    if reader is not None:  # stopped by process() already, unless the stop came before it: the camera is freed
        reader.stop()
    if rt is not None:
        rt.close()
    if own_signals:
        stop.uninstall()


def _ended_by(exc: BaseException, outputs: Outputs | None, stop: StopSignals) -> ResourceError:
    """What ends a run on any other exception: re-raised, with the outputs closed; but the machine out of memory,
    descriptors or threads mid-run is returned, so that the summary of what was judged is still printed and
    written before its error (it had ended with the error line alone, and no --summary)."""
    if outputs is None:
        raise exc
    stop.closing = True
    if outputs.begun and isinstance(exc, Exception) and (fatal := resource_error(exc)) is not None:
        return fatal
    outputs.close()
    raise exc


def _load(cfg: InferConfig, spec: SourceSpec, stop: StopSignals) -> EdgeModel:
    with stop.atomic():  # onnxruntime's import and session creation must not be cut in half
        # A live source waits 33 ms between frames: idle threads sleep instead of spinning (RuntimeConfig).
        spin = cfg.runtime.spin if cfg.runtime.spin is not None else not spec.kind.live
        return load_model(cfg.model, provider=cfg.runtime.provider, threads=cfg.runtime.threads, spin=spin)


def _check_usage(cfg: InferConfig, spec: SourceSpec) -> None:
    """Options that cannot work together with this source, before the model is loaded."""
    check_outputs(spec, output=cfg.output, summary=cfg.summary_path, save=cfg.save, model=model_path(cfg.model))
    from edge_runtime.cli_support import CLOSED_AT_START

    if cfg.json_stdout and 1 in CLOSED_AT_START:  # the records went to /dev/null, exit 0, not a word
        raise OutputError("stdout is closed (>&-), and --json writes the verdicts there; send it to a file "
                          "(> verdicts.jsonl) or use --output FILE")  # fmt: skip
    if cfg.priority is Priority.REALTIME and not spec.kind.live:
        raise UsageError(
            "--priority realtime is for a live source (--camera, or a stream URL); files and videos run at "
            "normal priority, as fast as the CPU allows"
        )


def _check_model(cfg: InferConfig, model: EdgeModel, log: Log) -> None:
    """Say which model runs where; refuse --heatmap for a model without a map; warn of an unverified file."""
    model.warn_if_fell_back()
    log(model.describe())
    if cfg.heatmap and not model.has_map:
        raise ModelError(
            f"{model.path}: has no localisation map for --heatmap; re-export it with export-onnx (the map is on "
            "by default) or run without --heatmap"
        )
    if not model.verified:
        log(f"warning: {model.path.name} records no content hash (exported before defect-edge checked it); "
            "its integrity is not verified")  # fmt: skip
