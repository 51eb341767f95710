"""The plain function behind ``edge-infer``: a source in, verdicts out, a summary and an exit code at the end.

>>> cfg = InferConfig(source="edge_runtime/samples/test", json_stdout=True)   # doctest: +SKIP
>>> summary, code = run_inference(cfg)                                      # doctest: +SKIP
>>> summary.to_dict()["items"], int(code)                                   # doctest: +SKIP
(5, 0)
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path

import numpy as np

from edge_runtime.errors import ExitCode, OutputError, SourceError
from edge_runtime.inputs import Item, SourceKind, SourceSpec, iter_items, open_live, resolve_source
from edge_runtime.model import EdgeModel, Prediction, RuntimeConfig, load_model
from edge_runtime.outputs import JsonLinesSink, Summary, open_file_sink, record_for
from edge_runtime.sources import LatestFrameReader

Log = Callable[[str], None]


@dataclass(frozen=True)
class InferConfig:
    """Everything ``edge-infer`` was asked to do (built by the CLI, or by hand from Python)."""

    source: str | None = None  # file, folder, glob, video file or stream URL
    camera: str | None = None  # camera index ("0") or device path
    model: Path | None = None  # None: the bundled INT8 model
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    json_stdout: bool = False  # JSON lines on stdout instead of human-readable verdicts
    output: Path | None = None  # .jsonl or .csv, flushed per item
    save: Path | None = None  # annotated .mp4/.avi or a folder of images
    show: bool = False
    max_frames: int | None = None
    fail_on_defect: bool = False
    batch_size: int = 32  # files and video files only; live sources always run one frame at a time
    workers: int = 2  # decoding threads for files
    max_reconnects: int | None = None  # live sources; None: keep trying
    summary_path: Path | None = None
    quiet: bool = False  # no human verdict lines


@dataclass
class Outputs:
    """The sinks, window and saver of one run, opened from the config and closed together."""

    sinks: list = field(default_factory=list)
    window: object | None = None
    saver: object | None = None
    human: bool = True

    @property
    def needs_picture(self) -> bool:
        return self.window is not None or self.saver is not None

    def close(self) -> None:
        for s in self.sinks:
            s.close()
        for part in (self.window, self.saver):
            if part is not None:
                part.close()


def open_outputs(cfg: InferConfig, log: Log) -> Outputs:
    out = Outputs(human=not cfg.json_stdout and not cfg.quiet)
    if cfg.json_stdout:
        out.sinks.append(JsonLinesSink(sys.stdout))
    if cfg.output is not None:
        out.sinks.append(open_file_sink(cfg.output))
    if cfg.show:
        from edge_runtime.annotate import Window

        out.window = Window(log)
        if not out.window.enabled:
            out.window = None
    if cfg.save is not None:
        from edge_runtime.annotate import Saver

        out.saver = Saver(cfg.save)
    return out


def batches(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    while batch := list(islice(items, size)):
        yield batch


def predict_items(model: EdgeModel, batch: list[Item]) -> list[Prediction | None]:
    """Verdicts for a batch in order; unreadable items get ``None``."""
    good = [it for it in batch if it.model_input is not None]
    preds = iter(
        model.predict_inputs(np.stack([it.model_input for it in good]), prep_ms=[it.prep_ms for it in good])
        if good
        else []
    )
    return [next(preds) if it.model_input is not None else None for it in batch]


class Runner:
    """Emits each verdict to every output and keeps the summary; ``emit`` returns False to stop the run."""

    def __init__(self, cfg: InferConfig, outputs: Outputs, summary: Summary) -> None:
        self.cfg, self.out, self.summary = cfg, outputs, summary
        self.fps = 0.0
        self.last = time.perf_counter()

    def emit(self, item: Item, pred: Prediction | None) -> bool:
        rec = record_for(item, pred)
        for sink in self.out.sinks:
            sink.write(rec)
        self.summary.add(pred)
        if self.out.human:
            where = item.source if item.frame is None else f"{item.source} frame {item.frame}"
            print(
                f"ERROR      {item.error}" if pred is None else f"{pred.label:<10} {pred.score:<9.4g} {where}",
                flush=True,
            )
        now = time.perf_counter()
        self.fps = 0.9 * self.fps + 0.1 / max(now - self.last, 1e-6) if self.fps else 1.0 / max(now - self.last, 1e-6)
        self.last = now
        keep_going = self.draw(item, pred)
        return keep_going and (self.cfg.max_frames is None or self.summary.items < self.cfg.max_frames)

    def draw(self, item: Item, pred: Prediction | None) -> bool:
        if not self.out.needs_picture or item.original is None:
            return True
        from edge_runtime.annotate import annotate

        canvas = annotate(item.original, pred, fps=self.fps if item.frame is not None else None, error=item.error or "")
        if self.out.saver is not None:
            self.out.saver.write(canvas, name=Path(item.source).name if item.frame is None else f"frame_{item.frame}")
        return self.out.window is None or self.out.window.show(canvas)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a service manager stopping us) ends the run like Ctrl-C: cleanly, with the summary."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_code(cfg: InferConfig, summary: Summary) -> ExitCode:
    """A found defect wins (a gate must never pass a bad part), then interruption, a lost source, all-unreadable."""
    if cfg.fail_on_defect and summary.defects:
        return ExitCode.DEFECT_FOUND
    if summary.interrupted:
        return ExitCode.INTERRUPTED
    if summary.source_error:
        return ExitCode.SOURCE_UNAVAILABLE
    if summary.items and summary.errors == summary.items:
        return ExitCode.BAD_DATA
    return ExitCode.OK


def process(
    cfg: InferConfig, spec: SourceSpec, model: EdgeModel, runner: Runner, reader: LatestFrameReader | None
) -> None:
    """The loop: items -> batches -> verdicts -> outputs, until the source ends, max-frames, q or Ctrl-C."""
    items = iter_items(spec, model.input_u8, keep_original=runner.out.needs_picture, workers=cfg.workers, reader=reader)
    size = 1 if spec.kind.live else cfg.batch_size
    try:
        for batch in batches(items, size):
            for item, pred in zip(batch, predict_items(model, batch), strict=True):
                if not runner.emit(item, pred):
                    return
    except SourceError as exc:
        runner.summary.source_error = str(exc)
    finally:
        if hasattr(items, "close"):
            items.close()
        if reader is not None:
            reader.stop()
            runner.summary.dropped_frames, runner.summary.reconnects = reader.dropped, reader.reconnects


def run_inference(cfg: InferConfig, *, log: Log | None = None) -> tuple[Summary, ExitCode]:
    """Run ``cfg`` to the end; human messages (and the summary) go to ``log`` (default: stderr)."""
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    spec = resolve_source(cfg.source, camera=cfg.camera)
    model = load_model(cfg.model, provider=cfg.runtime.provider, threads=cfg.runtime.threads)
    model.warn_if_fell_back()
    log(model.describe())
    if spec.kind is SourceKind.IMAGES:
        ignored = f" ({spec.ignored} non-image files ignored)" if spec.ignored else ""
        log(f"{spec.name}: {len(spec.paths)} images{ignored}")
    reader = None
    if spec.kind.live:  # fails here, within seconds, with exit code 5 and no empty summary
        reader = open_live(spec, on_event=lambda m: log(f"warning: {m}"), max_reconnects=cfg.max_reconnects)
        log(f"{reader.name}: opened; newest-frame mode (slow inference skips frames, it never lags behind)")
    summary = Summary(source=spec.name, model=str(model.path), providers=list(model.providers))
    try:
        outputs = open_outputs(cfg, log)
    except BaseException:
        if reader is not None:
            reader.stop()
        raise
    try:
        with sigterm_as_interrupt():
            try:
                process(cfg, spec, model, Runner(cfg, outputs, summary), reader)
            except KeyboardInterrupt:
                summary.interrupted = True
    finally:
        outputs.close()
        summary.finish()
        log(summary.text())
        write_summary(cfg.summary_path, summary)
    return summary, exit_code(cfg, summary)


def write_summary(path: Path | None, summary: Summary) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary.to_dict(), indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write the summary ({exc.strerror or exc})") from exc
