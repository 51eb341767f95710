"""How a run tells the station what it judged: the :class:`RecordListener` that ``edge-infer`` calls.

``run_inference`` calls ``on_start`` once the model and source are open, ``on_records`` with each batch of
records *before* they are written to stdout or ``--output`` (so the log commits first), ``on_event`` with each
source message (drop, reconnect) and ``on_close`` with the summary at the end. :class:`StationListener` fans
these out to the inspection log and to the live web view.

>>> listener = StationListener(log=InspectionLog(LogConfig(Path("station.db"))))   # doctest: +SKIP
>>> run_inference(InferConfig(source="parts/", listener=listener))                  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from edge_runtime.errors import OutputError
from edge_runtime.station.log import InspectionLog, RunInfo
from edge_runtime.station.units import duration_text, size_text
from edge_runtime.summary import plural

if TYPE_CHECKING:
    from edge_runtime.inputs import Item, SourceSpec
    from edge_runtime.model import EdgeModel
    from edge_runtime.outputs import Summary
    from edge_runtime.station.feed import LiveFeed
    from edge_runtime.station.server import StationServer


class RecordListener(Protocol):
    """What ``edge-infer`` hands to the station; ``wants_pictures`` keeps each item's decoded picture for it."""

    wants_pictures: bool

    def on_start(self, model: EdgeModel, spec: SourceSpec) -> None: ...

    def on_records(self, records: Sequence[dict[str, Any]], items: Sequence[Item]) -> None: ...

    def on_event(self, message: str) -> None: ...

    def on_close(self, summary: Summary) -> None: ...


def picture_of(item: Item) -> np.ndarray | None:
    """The decoded picture when the run kept it, else the model's own resized input."""
    return item.original if item.original is not None else item.model_input


def run_info(model: EdgeModel, spec: SourceSpec) -> RunInfo:
    return RunInfo(
        source=spec.shown,
        model_version=model.info.model_version or "unknown",
        model_file=str(model.path),
        providers=list(model.providers),
        precision=model.info.precision.value,
        threshold=model.info.threshold,
        model_sha256=model.sha256,  # hashed once, at load: the same as --summary's model_sha256
    )


class StationListener:
    """Log every batch (committed before it is emitted), then hand it to the live view's feed (which never
    blocks: the view runs in its own process); either part optional."""

    def __init__(
        self,
        *,
        log: InspectionLog | None = None,
        live: LiveFeed | None = None,
        server: StationServer | None = None,
        wants_pictures: bool = True,
    ) -> None:
        self.log, self.live, self.server = log, live, server
        # The decoded pictures: for the live stream, and for thumbnails as the camera saw the part. Without them
        # (a folder with --log only: keeping them would shorten the decoding queue) thumbnails show the model's
        # input, the part as the model saw it.
        self.wants_pictures = wants_pictures

    def on_start(self, model: EdgeModel, spec: SourceSpec) -> None:
        info = run_info(model, spec)
        if self.log is not None:
            self.log.start_run(info)
        if self.live is not None:
            self.live.start(info, live_source=spec.kind.live)

    def on_records(self, records: Sequence[dict[str, Any]], items: Sequence[Item]) -> None:
        ids = None
        if self.log is not None:
            pictures = [
                picture_of(it) if rec.get("defective") else None for rec, it in zip(records, items, strict=True)
            ]
            source_pixels = all(it.original is not None for it in items)
            ids = self.log.write(records, pictures, source_pixels=source_pixels)
        if self.live is not None:
            # a box is in the source's pixels: drawn on the model's input instead, it would point elsewhere
            shown = [rec if it.original is not None else {k: v for k, v in rec.items() if k != "defect_box"}
                     for rec, it in zip(records, items, strict=True)]  # fmt: skip
            self.live.add(shown, [picture_of(it) for it in items], ids)

    def on_event(self, message: str) -> None:
        """A live source's news (dropped, reconnecting), from its reader thread: the page hears it, and the log
        stores the thumbnails made since its last write (the source may stay quiet for long)."""
        if self.log is not None:
            with contextlib.suppress(OutputError):  # the inspection loop's next write reports a log that fails
                self.log.flush(wait=False)
        if self.live is not None:
            self.live.event(message)

    def on_close(self, summary: Summary) -> None:
        failed: OutputError | None = None
        try:
            self._close_log(summary)
        except OutputError as exc:  # the page is told first: it stayed "connected", then "no contact"
            failed = exc
        if self.live is not None:
            failure = summary.output_error or (str(failed) if failed is not None else None)
            self.live.finish(interrupted=summary.interrupted, error=summary.source_error, failure=failure)
            if self.live.dropped:  # the view process stopped reading for long: its counters fell behind for good
                summary.station_notes.append(
                    f"station page: {plural(self.live.dropped, 'update')} dropped while the live view did not read "
                    "them; its counters are short by those items (edge-log and the --log are complete)"
                )
        if failed is not None:
            raise failed

    def _close_log(self, summary: Summary) -> None:
        if self.log is None:
            return
        self.log.flush()
        self.log.last_pass()
        if n := self.log.retention_deleted:  # deleted without a word, the month's records with --log-keep 1M
            kept = [f"--log-keep {duration_text(self.log.cfg.keep_s)}"] if self.log.cfg.keep_s is not None else []
            kept += [f"--log-max {size_text(self.log.cfg.max_bytes)}"] if self.log.cfg.max_bytes is not None else []
            summary.station_notes.append(f"inspection log: {plural(n, 'older item')} deleted to keep within "
                                         f"{' and '.join(kept)}")  # fmt: skip
        self.log.check_still_there()

    def close(self) -> None:
        """End the web view's process and close the log (idempotent; called by the CLI whatever happened)."""
        server, self.server = self.server, None
        if server is not None:
            server.stop()
        if self.live is not None:
            self.live.stop()
        log, self.log = self.log, None
        if log is not None:
            log.close()
