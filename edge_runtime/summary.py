"""The run summary: counts of what was written, and latency percentiles in bounded memory.

Standard library only, so ``edge-infer`` can create it before anything heavy is imported (a SIGTERM during
start-up still ends with a summary).

Latency percentiles come from a fixed-size uniform reservoir sample (Vitter's algorithm R, seeded): exact while
the run has at most :data:`RESERVOIR_SIZE` verdicts, a uniform sample of all of them after that. Memory stays
at a few tens of kB whether a run lasts a second or a year.

>>> s = Summary(source="parts/")
>>> s.add({"error": None, "defective": True, "latency_ms": 0.5, "warning": None})
>>> s.to_dict()["defects"], s.to_dict()["latency_ms_p50"]
(1, 0.5)
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any

RESERVOIR_SIZE = 4096
MAX_NOTES = 20  # source warnings kept for the summary (the rest are counted)
NO_PART = "no part found in the frame"  # the station check's reason, as counted (edge_runtime.station_check)
SEVERAL_PARTS = "more than one part in the frame"  # the same, for a frame showing two parts or more
SMALL_PART = "part too small in the image"  # the same, for a part the input enlarges over twice (few pixels on it)


def score_text(score: float, digits: int = 4) -> str:
    """A score to ``digits`` significant digits, with more where those would round a score below 1 up to a flat
    "1", which reads as certainty (a saved picture's label said ``defective 1`` for 0.9996).

    >>> score_text(0.025583), score_text(0.99996), score_text(0.9996, 3), score_text(1.0)
    ('0.02558', '0.99996', '0.9996', '1')
    """
    text = f"{score:.{digits}g}"
    while text == "1" and score < 1.0 and digits < 12:
        digits += 1
        text = f"{score:.{digits}g}"
    return text


def plural(n: int, word: str) -> str:
    """``1 image``, ``2 images``.

    >>> plural(1, "image"), plural(3, "file")
    ('1 image', '3 files')
    """
    return f"{n} {word}{'' if n == 1 else 's'}"


def share_text(part: int, whole: int) -> str:
    """A percentage with one decimal that never rounds a few items to 0% or all but a few to 100%.

    >>> share_text(5, 715), share_text(1, 3000), share_text(1999, 2000), share_text(3, 3), share_text(0, 9)
    ('0.7%', '<0.1%', '>99.9%', '100.0%', '0.0%')
    """
    if not whole:
        return "n/a"
    share = 100.0 * part / whole
    if 0 < share < 0.05:
        return "<0.1%"
    if 99.95 <= share < 100:
        return ">99.9%"  # 1999 of 2000 is not all of them
    return f"{share:.1f}%"


def flagged_share(flagged: int, total: int) -> str:
    """``5 of 715 items (0.7%)``: the count, and a share that one item in thousands does not round to 0%.

    >>> flagged_share(5, 715), flagged_share(1, 3000), flagged_share(2, 4), flagged_share(1999, 2000)
    ('5 of 715 items (0.7%)', '1 of 3000 items (<0.1%)', '2 of 4 items (50%)', '1999 of 2000 items (>99.9%)')
    """
    share = 100.0 * flagged / max(total, 1)
    text = f"{share:.0f}%" if 10 <= share < 99.5 or flagged == total else share_text(flagged, total)
    return f"{flagged} of {plural(total, 'item')} ({text})"


class LatencyReservoir:
    """A uniform sample of at most ``size`` values out of every value added; ``count`` counts them all."""

    def __init__(self, size: int = RESERVOIR_SIZE, seed: int = 0) -> None:
        self.size, self.count = size, 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
            return
        k = self._rng.randrange(self.count)
        if k < self.size:
            self.values[k] = value

    def percentile(self, q: float) -> float | None:
        """The sample's percentile by nearest rank, as the station page and ``edge-log`` give it (an interpolated
        p99 here differed from theirs on the same records: 2.389 against 2.494 ms); None when empty."""
        from edge_runtime.metrics import nearest_rank

        return nearest_rank(self.values, q)


def reason_kind(reason: str) -> str:
    """A station-check reason without its figures: what the summary counts, and ``NO_PART`` for a frame without a part.

    >>> reason_kind("no part found in the frame (the whole frame was used)") == NO_PART
    True
    """
    return str(reason).rsplit(" (", 1)[0]


def reasons_warning(reasons: list[str] | None) -> str | None:
    """The item's warning where a station-check reason makes its verdict untrustworthy (None otherwise), so that a
    gate fails on it:

    - more than one part: the verdict is one part's (a defective part beside an OK one passed, exit 0);
    - a part so small in the image that the input enlarges it over twice: its pinholes are a pixel or less (94 of
      200 defective test parts shrunk to 24 px were "ok", exit 0).

    >>> reasons_warning(["more than one part in the frame (2 found; the one at x=453, y=152 was judged)"])[:36]
    'more than one part in the frame (2 f'
    """
    found = []
    for why in reasons or ():
        if reason_kind(why) == SEVERAL_PARTS:
            found.append(f"{why}; a defect on the others was not looked for: show the camera one part at a time")
        elif reason_kind(why) == SMALL_PART:
            found.append(f"{why}; fine defects such as pinholes may be lost at this size, so the verdict may be "
                         "wrong: bring the camera closer or raise its resolution")  # fmt: skip
    return "; ".join(found) or None


def unlike_line(flagged: int, total: int, counts: dict[str, int], *, unchecked: int = 0) -> str | None:
    """The summary's WARNING, or None when nothing was flagged: how many of the ``total`` items checked look unlike
    the training images, and the three commonest reasons (``counts``: reason kind -> items); ``unchecked``: items
    not checked, as an error's image was never read (they had counted as items that looked like the training
    images: 9 flagged among the 10 frames read of 100 read as "9 of 100 items (9%)").

    >>> unlike_line(1, 1, {"background brighter than any training image": 1})
    '1 of 1 item (100%) looks unlike the training images: background brighter than any training image'
    >>> unlike_line(1, 3, {"no part found in the frame": 1}, unchecked=1)[-64:]
    'no part found in the frame; 1 item with an error was not checked'
    """
    if not flagged or not total:
        return None
    top = sorted(counts.items(), key=lambda kv: -kv[1])[:3]
    why = ", ".join(k + (f" ({c})" if len(top) > 1 else "") for k, c in top)
    line = f"{flagged_share(flagged, total)} {'looks' if flagged == 1 else 'look'} unlike the training images: {why}"
    if unchecked:
        line += f"; {plural(unchecked, 'item')} with an error {'was' if unchecked == 1 else 'were'} not checked"
    return line


def no_part(rec: dict[str, Any]) -> bool:
    """Whether the station check found no part in the record's frame (the whole frame was judged)."""
    return any(reason_kind(why) == NO_PART for why in rec.get("unlike_training") or ())


@dataclass
class Summary:
    """Counts and timings of a run; ``to_dict`` is what ``--summary FILE.json`` writes.

    Counts are taken from the records themselves (:meth:`add`), once each was handed to every output, so the
    summary and the lines written always agree.
    """

    source: str
    model: str = ""
    # the model file's SHA-256: a path alone named whatever file lay there later (a model swapped after the run)
    model_sha256: str = ""
    providers: list[str] = field(default_factory=list)
    items: int = 0
    defects: int = 0
    errors: int = 0
    warnings: int = 0
    unlike_training: int = 0  # station check: items unlike the training images
    unlike_reasons: dict[str, int] = field(default_factory=dict)
    unchecked: int = 0  # items with an error and no station check (their image was not read): not in its share
    dropped_frames: int = 0
    reconnects: int = 0
    ignored_files: int = 0  # files in the source folder that are not images (not inspected, no record)
    second_looks: int = 0  # items scored twice (mirrored) because their first score lay near the threshold
    symmetry_looks: int = 0  # items just below the threshold whose part symmetry was measured (symmetry look)
    symmetry_lifts: int = 0  # ... of them turned defective by it
    # The inspection loop's CPU priority (edge_runtime.priority): normal, realtime, or the policy it was started with.
    priority: str = "normal"
    priority_dropped: str | None = None  # why a real-time loop went back to normal during the run
    interrupted: bool = False
    stdout_closed: bool = False
    max_frames_reached: int | None = None  # --max-frames N ended the run (the source may have held more)
    source_error: str | None = None
    output_error: str | None = None
    notes: list[str] = field(default_factory=list)  # source warnings (truncated video, ...)
    station_notes: list[str] = field(default_factory=list)  # the log's retention, the live view's dropped updates
    cut_short: int = 0  # damaged stretches or early ends of a video whose frames were certainly missed
    started: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0
    latency: LatencyReservoir = field(default_factory=LatencyReservoir, repr=False)

    def add(self, rec: dict[str, Any]) -> None:
        """Count one record that every output has received."""
        self.items += 1
        if rec.get("warning"):
            self.warnings += 1
        if rec.get("unlike_training"):
            self.unlike_training += 1
            for reason in rec["unlike_training"]:
                kind = reason_kind(reason)
                self.unlike_reasons[kind] = self.unlike_reasons.get(kind, 0) + 1
        if rec.get("error") is not None:
            self.errors += 1
            self.unchecked += not rec.get("unlike_training")
            return
        self.defects += int(bool(rec.get("defective")))
        if rec.get("latency_ms") is not None:
            self.latency.add(float(rec["latency_ms"]))

    @property
    def no_part(self) -> int:
        """Items in which the station check found no part (the whole frame was judged): an empty tray, a lens
        cap, a dead light. A gate does not pass them (``--fail-on-defect``)."""
        return self.unlike_reasons.get(NO_PART, 0)

    def note(self, message: str) -> None:
        if len(self.notes) < MAX_NOTES:
            self.notes.append(message)

    def source_cut_short(self, message: str) -> None:
        """Frames of a video were certainly missed (a damaged stretch, an AVI that ends before its index does): a
        gate (``--fail-on-defect``) does not pass the run."""
        self.cut_short += 1
        self.note(message)

    def finish(self) -> Summary:
        self.wall_s = time.perf_counter() - self.started
        return self

    @property
    def fps(self) -> float:
        """Items (including unreadable ones) per second of wall time, decoding and output included."""
        return self.items / self.wall_s if self.wall_s > 0 else 0.0

    def percentile(self, q: float) -> float | None:
        return self.latency.percentile(q)

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 3)

        return {
            "source": self.source,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "providers": self.providers,
            "items": self.items,
            "ok": self.items - self.defects - self.errors,
            "defects": self.defects,
            "errors": self.errors,
            "warnings": self.warnings,
            "unlike_training": self.unlike_training,
            # the items the station check saw (an unreadable file is not one): the share is unlike_training of
            # these; of "items" it read low where files could not be read
            "station_checked": self.items - self.unchecked,
            # why, as the WARNING line says it: the file a station's script reads had the count alone
            "unlike_reasons": dict(sorted(self.unlike_reasons.items(), key=lambda kv: -kv[1])),
            "dropped_frames": self.dropped_frames,
            "reconnects": self.reconnects,
            "ignored_files": self.ignored_files,
            "second_looks": self.second_looks,
            "symmetry_looks": self.symmetry_looks,
            "symmetry_lifts": self.symmetry_lifts,
            "priority": self.priority,
            "priority_dropped": self.priority_dropped,
            "latency_ms_p50": r(self.percentile(50)),
            "latency_ms_p99": r(self.percentile(99)),
            "fps": round(self.fps, 1),
            "wall_s": round(self.wall_s, 3),
            "interrupted": self.interrupted,
            "stdout_closed": self.stdout_closed,
            "source_error": self.source_error,
            "output_error": self.output_error,
            "notes": list(self.notes),
            "cut_short": self.cut_short,
        }

    def text(self) -> str:
        """The human summary printed on stderr at the end of every run."""
        d = self.to_dict()
        p50, p99 = d["latency_ms_p50"], d["latency_ms_p99"]
        lat = f"latency p50 {p50:.3f} ms, p99 {p99:.3f} ms" if p50 is not None else "latency n/a"
        warned = f", {d['warnings']} with warnings" if d["warnings"] else ""
        lines = [
            f"summary: {plural(d['items'], 'item')}, {d['defects']} defective, {d['ok']} ok, "
            f"{plural(d['errors'], 'error')}{warned}; "
            f"{lat}; {d['fps']:.1f} items/s over {d['wall_s']:.2f} s",
        ]
        if self.dropped_frames or self.reconnects:
            lines.append(
                f"live source: {plural(self.dropped_frames, 'frame')} skipped (newest-frame mode), "
                f"{plural(self.reconnects, 'reconnect')}"
            )
        if self.second_looks:
            share = f" ({100 * self.second_looks / self.items:.0f}%)" if self.items else ""
            lines.append(
                f"second look: {plural(self.second_looks, 'item')}{share} lay near the threshold and "
                f"{'was' if self.second_looks == 1 else 'were'} scored again, mirrored"
            )
        if self.symmetry_looks:
            lines.append(
                f"symmetry look: {plural(self.symmetry_looks, 'item')} just below the threshold "
                f"{'was' if self.symmetry_looks == 1 else 'were'} measured against the "
                f"part's own symmetry; {self.symmetry_lifts} of them called defective by it"
            )
        if self.priority_dropped:
            lines.append(f"priority: {self.priority_dropped}")
        lines += [f"source warning: {n}" for n in self.notes]
        lines += self.station_notes
        unlike = unlike_line(
            self.unlike_training, self.items - self.unchecked, self.unlike_reasons, unchecked=self.unchecked
        )
        if unlike is not None:
            lines.append(f"WARNING: {unlike} (check the station: edge-infer --check-station DIR)")
        if self.interrupted:
            lines.append("stopped early (interrupted); everything above was written")
        if self.stdout_closed:
            lines.append("stopped early: stdout was closed by the reader")
        if self.max_frames_reached is not None:  # a gate's exit 0 had read as the whole source judged
            lines.append(
                f"stopped at --max-frames {self.max_frames_reached}: items after them, if any, were not inspected"
            )
        if self.source_error:
            lines.append(f"source lost: {self.source_error}")
        if self.output_error:
            counted = "the 1 record counted was" if self.items == 1 else f"the {self.items} records counted were"
            # a deleted output that could not be written back: they were written, into a file no longer there
            where = " to a file no longer there" if "could not be written back" in self.output_error else ""
            lines.append(f"output failed: {self.output_error}; {counted} written{where}")
        return "\n".join(lines)
