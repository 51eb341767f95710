"""Where verdicts go: JSON lines (stdout or file) and CSV, flushed per item, plus the run summary.

Every record has the same keys (:data:`RECORD_KEYS`); ``frame`` is ``null`` for image files, and an item
that could not be read has ``label``/``score``/``defective``/``latency_ms`` null and ``error`` set:

>>> record_for(Item("a.png"), Prediction("ok", 0.01, False, 0.4), time_s=0.0)["label"]
'ok'
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from edge_runtime.errors import OutputError
from edge_runtime.inputs import Item
from edge_runtime.model import Prediction

RECORD_KEYS = ("source", "frame", "label", "score", "defective", "latency_ms", "error", "time")


def record_for(item: Item, pred: Prediction | None, *, time_s: float | None = None) -> dict[str, Any]:
    """The output record of one item (``pred`` None when the item has an error)."""
    stamp = datetime.fromtimestamp(time.time() if time_s is None else time_s, tz=timezone.utc)
    rec: dict[str, Any] = {"source": item.source, "frame": item.frame}
    if pred is None:
        rec |= {"label": None, "score": None, "defective": None, "latency_ms": None, "error": item.error}
    else:
        rec |= pred.to_dict() | {"error": None}
    rec["time"] = stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return rec


class JsonLinesSink:
    """One JSON object per line, flushed after each so a crash or Ctrl-C loses nothing written so far."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, rec: dict[str, Any]) -> None:
        self.stream.write(json.dumps(rec, allow_nan=False) + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream not in (sys.stdout, sys.stderr):
            self.stream.close()


class CsvSink:
    """CSV with a header (:data:`RECORD_KEYS`); empty cells for nulls; flushed per row."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.writer = csv.DictWriter(stream, fieldnames=RECORD_KEYS, extrasaction="ignore")
        self.writer.writeheader()
        stream.flush()

    def write(self, rec: dict[str, Any]) -> None:
        self.writer.writerow({k: "" if rec.get(k) is None else rec[k] for k in RECORD_KEYS})
        self.stream.flush()

    def close(self) -> None:
        self.stream.close()


def open_file_sink(path: Path) -> JsonLinesSink | CsvSink:
    """``.jsonl``/``.json`` -> JSON lines, ``.csv`` -> CSV. Raises :class:`OutputError` if it cannot be written."""
    suffix = path.suffix.lower()
    if suffix not in (".jsonl", ".json", ".ndjson", ".csv"):
        raise OutputError(f"{path}: --output must end in .jsonl or .csv")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        stream = path.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc}); choose another --output") from exc
    return CsvSink(stream) if suffix == ".csv" else JsonLinesSink(stream)


@dataclass
class Summary:
    """Counts and timings of a run; ``to_dict`` is what ``--summary FILE.json`` writes."""

    source: str
    model: str = ""
    providers: list[str] = field(default_factory=list)
    items: int = 0
    defects: int = 0
    errors: int = 0
    dropped_frames: int = 0
    reconnects: int = 0
    interrupted: bool = False
    source_error: str | None = None
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)

    def add(self, pred: Prediction | None) -> None:
        self.items += 1
        if pred is None:
            self.errors += 1
            return
        self.defects += int(pred.defective)
        self.latencies_ms.append(pred.latency_ms)

    def finish(self) -> Summary:
        self.wall_s = time.perf_counter() - self.started
        return self

    @property
    def fps(self) -> float:
        """Items (including unreadable ones) per second of wall time, decoding and output included."""
        return self.items / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "source": self.source,
            "model": self.model,
            "providers": self.providers,
            "items": self.items,
            "ok": self.items - self.defects - self.errors,
            "defects": self.defects,
            "errors": self.errors,
            "dropped_frames": self.dropped_frames,
            "reconnects": self.reconnects,
            "latency_ms_p50": r(self.percentile(50)),
            "latency_ms_p99": r(self.percentile(99)),
            "fps": round(self.fps, 1),
            "wall_s": round(self.wall_s, 3),
            "interrupted": self.interrupted,
            "source_error": self.source_error,
        }

    def text(self) -> str:
        """The human summary printed on stderr at the end of every run."""
        d = self.to_dict()
        p50, p99 = d["latency_ms_p50"], d["latency_ms_p99"]
        lat = f"latency p50 {p50:.3f} ms, p99 {p99:.3f} ms" if p50 is not None else "latency n/a"
        lines = [
            f"summary: {d['items']} items, {d['defects']} defective, {d['ok']} ok, {d['errors']} errors; "
            f"{lat}; {d['fps']:.1f} items/s over {d['wall_s']:.2f} s",
        ]
        if self.dropped_frames or self.reconnects:
            lines.append(
                f"live source: {self.dropped_frames} frames skipped (newest-frame mode), {self.reconnects} reconnects"
            )
        if self.interrupted:
            lines.append("stopped early (interrupted); everything above was written")
        if self.source_error:
            lines.append(f"source lost: {self.source_error}")
        return "\n".join(lines)
